/**
 * @module fastcgi/contract
 * The shapes the FastCGI connection layer offers to its users (src/app on the
 * server side, src/backend on the client side). Implemented in
 * server-connection.ts and client-connection.ts; kept here so both sides can
 * be written against one agreed surface.
 */
import type { Readable, Writable } from 'node:stream';
import type { EventEmitter } from 'node:events';

/** FastCGI 1.0 roles (spec §6). */
export type FcgiRoleName = 'RESPONDER' | 'AUTHORIZER' | 'FILTER';

/** Name–value pairs in wire order. Values are decoded as latin1 so bytes round-trip. */
export type ParamList = Array<[name: string, value: string]>;

/** One request as a FastCGI server (the application side) sees it. */
export interface FcgiServerRequest extends EventEmitter {
  readonly requestId: number;
  readonly role: FcgiRoleName;
  readonly keepConn: boolean;
  /** All PARAMS, complete (the 'request' event fires after the empty PARAMS record). */
  readonly params: ParamList;
  /** FCGI_STDIN, ended by the empty STDIN record. Backpressure pauses reading the socket. */
  readonly stdin: Readable;
  /** FCGI_DATA (FILTER role only; otherwise ends immediately). */
  readonly data: Readable;
  /** FCGI_STDOUT as a Writable: chunks become STDOUT records of ≤ 65535 bytes. */
  readonly stdout: Writable;
  /** FCGI_STDERR as a Writable. */
  readonly stderr: Writable;
  /** True once ABORT_REQUEST arrived or the connection went away. */
  readonly aborted: boolean;
  /**
   * Ends the streams and writes END_REQUEST(appStatus, protocolStatus).
   * Waits for stdout/stderr to flush first. Idempotent.
   */
  end(appStatus?: number): void;
  // events: 'abort' (ABORT_REQUEST or connection lost), 'close' (after END_REQUEST was written or abort)
}

export interface FcgiServerOptions {
  /** Advertised in GET_VALUES_RESULT and enforced. */
  maxConns?: number;
  maxReqs?: number;
  /** Whether this server multiplexes requests on one connection (FCGI_MPXS_CONNS). */
  mpxsConns?: boolean;
  /** Upper bound on the total PARAMS bytes of one request (default 64 KiB × 4). */
  maxParamsBytes?: number;
  /** Roles this server accepts; others get END_REQUEST(FCGI_UNKNOWN_ROLE). Default: RESPONDER only. */
  roles?: FcgiRoleName[];
}

/** One request as a FastCGI client (the web-server side) drives it. */
export interface FcgiClientRequest extends EventEmitter {
  readonly requestId: number;
  /** FCGI_STDIN. end() writes the empty STDIN record. */
  readonly stdin: Writable;
  /** FCGI_STDOUT bytes (the raw CGI response: headers, blank line, body). */
  readonly stdout: Readable;
  /** Sends ABORT_REQUEST; 'end' still follows when the server answers. */
  abort(): void;
  // events: 'stderr' (chunk: Buffer), 'end' ({ appStatus, protocolStatus }), 'error' (err)
}
