/**
 * @module fastcgi/server-connection
 * FastCGI from the application's side (Go's child.go): one connection from a
 * web server, its records switched on type, its requests handed out through
 * the 'request' event. No header bytes are handled here; see codec.ts.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  decodeBeginRequestBody,
  decodeGetValues,
  decodePairs,
  encodeEndRequestBody,
  encodeGetValuesResult,
  encodeRecord,
  encodeUnknownTypeBody,
  requireManagementId,
  type FcgiRecord,
} from './codec.js';
import { FCGI_NULL_REQUEST_ID, ProtocolStatus, RecordType, ValueName, roleName } from './constants.js';
import type { FcgiServerOptions, FcgiServerRequest } from './contract.js';
import { FastCgiProtocolError } from './errors.js';
import { InboundGate, type InboundStream } from './inbound.js';
import { RecordOutput } from './outbound.js';
import { RecordParser } from './record-parser.js';
import { ServerRequest, type ServerRequestHost } from './server-request.js';

/** Connection-level knobs beyond the contract's FcgiServerOptions. */
export interface FastCgiServerConnectionOptions extends FcgiServerOptions {
  /** High-water mark of each stdin/data Readable and stdout/stderr Writable (default 64 KiB). */
  highWaterMark?: number;
  /**
   * A request whose stdin/data consumer has read nothing for this long while
   * other requests on the same connection wait behind it is aborted with
   * END_REQUEST(OVERLOADED) so the others can go on (default 30 s; 0 = never).
   * See inbound.ts for the trade-off.
   */
  stallTimeoutMs?: number;
}

export const DEFAULT_MAX_REQS = 100;
export const DEFAULT_MAX_PARAMS_BYTES = 4 * 64 * 1024;
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;

interface PendingParams {
  chunks: Buffer[];
  bytes: number;
}

/**
 * Events: 'request' (req: FcgiServerRequest) once its PARAMS are complete;
 * 'protocolError' (err: FastCgiProtocolError) just before the socket is
 * destroyed for bad input; 'close' () when the socket is gone and every
 * request has been aborted or completed. Never emits 'error': peer input and
 * socket failures must not throw out to the process.
 */
export class FastCgiServerConnection extends EventEmitter implements ServerRequestHost {
  readonly socket: Duplex;
  readonly #opts: Required<Omit<FastCgiServerConnectionOptions, 'maxConns'>> & { maxConns: number | undefined };
  readonly #parser = new RecordParser();
  readonly #out: RecordOutput;
  readonly #gate: InboundGate;
  readonly #requests = new Map<number, ServerRequest>();
  readonly #params = new Map<number, PendingParams>();
  /** End the socket once no request is in flight (no KEEP_CONN, close(), or peer EOF). */
  #closeWhenIdle = false;
  #closed = false;
  #socketError: Error | null = null;

  constructor(socket: Duplex, options: FastCgiServerConnectionOptions = {}) {
    super();
    this.socket = socket;
    this.#opts = {
      maxConns: options.maxConns,
      maxReqs: options.maxReqs ?? DEFAULT_MAX_REQS,
      mpxsConns: options.mpxsConns ?? true,
      maxParamsBytes: options.maxParamsBytes ?? DEFAULT_MAX_PARAMS_BYTES,
      roles: options.roles ?? ['RESPONDER'],
      highWaterMark: options.highWaterMark ?? 64 * 1024,
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    };
    this.#out = new RecordOutput(socket);
    this.#gate = new InboundGate(socket, {
      stallTimeoutMs: this.#opts.stallTimeoutMs,
      othersWaiting: (holders) => this.#requests.size > new Set(holders.map((h) => h.requestId)).size,
      onStall: (holders) => this.#onStall(holders),
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onReadEnd());
    socket.on('error', (err: Error) => {
      this.#socketError ??= err;
    });
    socket.on('close', () => this.#onClose());
  }

  /** Requests begun and not yet completed or aborted. */
  get activeRequests(): number {
    return this.#requests.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The socket error that ended the connection, if any. */
  get socketError(): Error | null {
    return this.#socketError;
  }

  /** Graceful close: new requests get OVERLOADED; the socket ends once the in-flight ones complete. */
  close(): void {
    this.#closeWhenIdle = true;
    this.#maybeEndSocket();
  }

  /** Drops the connection now; in-flight requests are aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  // ---------------------------------------------------------------- ServerRequestHost

  completeRequest(req: ServerRequest, appStatus: number): void {
    this.#finish(req, appStatus, ProtocolStatus.REQUEST_COMPLETE);
  }

  // ---------------------------------------------------------------- input

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    let records: FcgiRecord[];
    try {
      records = this.#parser.push(chunk);
    } catch (err) {
      this.#fail(err as FastCgiProtocolError);
      return;
    }
    for (const rec of records) {
      if (this.socket.destroyed) return;
      try {
        this.#handleRecord(rec);
      } catch (err) {
        // Only our own validation throws FastCgiProtocolError; anything else
        // comes from an application's listener and is its to handle.
        if (!(err instanceof FastCgiProtocolError)) throw err;
        this.#fail(err);
        return;
      }
    }
  }

  #handleRecord(rec: FcgiRecord): void {
    switch (rec.type) {
      case RecordType.BEGIN_REQUEST:
        return this.#onBeginRequest(rec);
      case RecordType.GET_VALUES:
        return this.#onGetValues(rec);
      case RecordType.UNKNOWN_TYPE:
        // Never answer UNKNOWN_TYPE with UNKNOWN_TYPE: two confused peers would ping-pong forever.
        return;
    }
    if (rec.requestId === FCGI_NULL_REQUEST_ID) {
      this.#out.write(encodeRecord(RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, encodeUnknownTypeBody(rec.type)));
      return;
    }
    const req = this.#requests.get(rec.requestId);
    // The spec says to ignore records for request ids not in flight.
    if (!req) return;
    switch (rec.type) {
      case RecordType.ABORT_REQUEST:
        return this.#abort(req, ProtocolStatus.REQUEST_COMPLETE);
      case RecordType.PARAMS:
        return this.#onParams(req, rec.content);
      case RecordType.STDIN:
        return deliver(req.stdin, rec.content);
      case RecordType.DATA:
        return deliver(req.data, rec.content);
      default:
        this.#out.write(encodeRecord(RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, encodeUnknownTypeBody(rec.type)));
    }
  }

  #onBeginRequest(rec: FcgiRecord): void {
    const id = rec.requestId;
    if (id === FCGI_NULL_REQUEST_ID) throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', 'BEGIN_REQUEST on request id 0');
    const { role, keepConn } = decodeBeginRequestBody(rec.content);
    if (this.#requests.has(id)) throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `BEGIN_REQUEST for request id ${id}, already in flight`);
    const name = roleName(role);
    let refusal: number | null = null;
    if (!this.#opts.mpxsConns && this.#requests.size > 0) refusal = ProtocolStatus.CANT_MPX_CONN;
    else if (this.#requests.size >= this.#opts.maxReqs || this.#closeWhenIdle) refusal = ProtocolStatus.OVERLOADED;
    else if (name === undefined || !this.#opts.roles.includes(name)) refusal = ProtocolStatus.UNKNOWN_ROLE;
    if (refusal !== null || name === undefined) {
      // The refused id never enters the table, so its PARAMS/STDIN are ignored as unknown.
      this.#writeEndRequest(id, 0, refusal ?? ProtocolStatus.UNKNOWN_ROLE);
      if (!keepConn && refusal !== ProtocolStatus.CANT_MPX_CONN) this.close();
      return;
    }
    const req = new ServerRequest(this, { out: this.#out, gate: this.#gate, highWaterMark: this.#opts.highWaterMark }, id, name, keepConn);
    this.#requests.set(id, req);
    this.#params.set(id, { chunks: [], bytes: 0 });
  }

  #onParams(req: ServerRequest, content: Buffer): void {
    const pending = this.#params.get(req.requestId);
    if (!pending) return; // PARAMS after the stream ended: ignored
    if (content.length > 0) {
      pending.bytes += content.length;
      if (pending.bytes > this.#opts.maxParamsBytes) {
        throw new FastCgiProtocolError('ERR_FCGI_PARAMS_TOO_LARGE', `PARAMS of request ${req.requestId} exceed ${this.#opts.maxParamsBytes} bytes`);
      }
      // Copy: the record may share the socket chunk, and PARAMS are kept until the request ends.
      pending.chunks.push(Buffer.from(content));
      return;
    }
    this.#params.delete(req.requestId);
    req.setParams(decodePairs(Buffer.concat(pending.chunks, pending.bytes)));
    this.emit('request', req satisfies FcgiServerRequest);
  }

  #onGetValues(rec: FcgiRecord): void {
    requireManagementId(rec);
    const answers: Array<[string, string]> = [];
    for (const name of decodeGetValues(rec.content)) {
      const value = this.#valueOf(name);
      if (value !== undefined) answers.push([name, value]);
    }
    this.#out.write(encodeGetValuesResult(answers));
  }

  #valueOf(name: string): string | undefined {
    switch (name) {
      case ValueName.MAX_CONNS:
        return this.#opts.maxConns === undefined ? undefined : String(this.#opts.maxConns);
      case ValueName.MAX_REQS:
        return String(this.#opts.maxReqs);
      case ValueName.MPXS_CONNS:
        return this.#opts.mpxsConns ? '1' : '0';
      default:
        return undefined; // the spec: names the application does not know are left out
    }
  }

  // ---------------------------------------------------------------- request endings

  #finish(req: ServerRequest, appStatus: number, protocolStatus: number): void {
    if (this.#requests.get(req.requestId) !== req) return;
    this.#requests.delete(req.requestId);
    this.#params.delete(req.requestId);
    this.#writeEndRequest(req.requestId, appStatus, protocolStatus);
    req.markClosed();
    if (!req.keepConn) this.#closeWhenIdle = true;
    this.#maybeEndSocket();
  }

  /** ABORT_REQUEST (spec §5.4: answered at once with END_REQUEST) or a stall. */
  #abort(req: ServerRequest, protocolStatus: number): void {
    req.markAborted();
    this.#finish(req, 0, protocolStatus);
  }

  #onStall(holders: InboundStream[]): void {
    for (const id of new Set(holders.map((h) => h.requestId))) {
      const req = this.#requests.get(id);
      if (req) this.#abort(req, ProtocolStatus.OVERLOADED);
    }
  }

  #writeEndRequest(id: number, appStatus: number, protocolStatus: number): void {
    this.#out.write(encodeRecord(RecordType.END_REQUEST, id, encodeEndRequestBody(appStatus, protocolStatus)));
  }

  #maybeEndSocket(): void {
    if (this.#closeWhenIdle && this.#requests.size === 0 && !this.socket.writableEnded && !this.socket.destroyed) {
      this.#out.close();
      this.socket.end();
    }
  }

  // ---------------------------------------------------------------- connection endings

  /** The peer finished sending: requests still waiting for input can never complete. */
  #onReadEnd(): void {
    for (const req of [...this.#requests.values()]) {
      if (!req.paramsDone || !req.stdin.finished || !req.data.finished) this.#abort(req, ProtocolStatus.REQUEST_COMPLETE);
    }
    this.close();
  }

  #fail(err: FastCgiProtocolError): void {
    this.emit('protocolError', err);
    this.socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.close();
    this.#gate.dispose();
    for (const req of [...this.#requests.values()]) {
      req.markAborted();
      req.markClosed();
    }
    this.#requests.clear();
    this.#params.clear();
    this.emit('close');
  }
}

function deliver(stream: InboundStream, content: Buffer): void {
  if (content.length === 0) stream.finish();
  else stream.deliver(content);
}

/** Serves one accepted socket: `onRequest` gets every request of the connection. */
export function serveConnection(
  socket: Duplex,
  options: FastCgiServerConnectionOptions,
  onRequest: (req: FcgiServerRequest) => void,
): FastCgiServerConnection {
  const conn = new FastCgiServerConnection(socket, options);
  conn.on('request', onRequest);
  return conn;
}

/**
 * FCGI_MAX_CONNS is enforced where connections are accepted, not per
 * connection: this sets net.Server#maxConnections, which makes Node close
 * connections over the limit as soon as they are accepted.
 */
export function applyMaxConns(server: net.Server, options: Pick<FcgiServerOptions, 'maxConns'>): void {
  if (options.maxConns !== undefined) server.maxConnections = options.maxConns;
}

/**
 * A net.Server serving FastCGI on every connection, with maxConns applied.
 * allowHalfOpen lets a response go out after a peer that half-closes its side
 * once it has sent the request; the connection then ends itself when idle.
 */
export function createFastCgiServer(
  options: FastCgiServerConnectionOptions,
  onRequest: (req: FcgiServerRequest) => void,
  onConnection?: (conn: FastCgiServerConnection) => void,
): net.Server {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const conn = serveConnection(socket, options, onRequest);
    onConnection?.(conn);
  });
  applyMaxConns(server, options);
  return server;
}
