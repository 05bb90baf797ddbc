/**
 * @module backend/contract
 * How the gateway (and callscgi/callfcgi) hand one request to an application
 * and get its response back, whatever the protocol (FastCGI or SCGI) and the
 * mode (client, anonymous, launching, mixed). Implemented in src/backend.
 */
import type { Readable } from 'node:stream';
import type { ParamList } from '../fastcgi/contract.js';
import { GatehouseError } from '../errors.js';

export type BackendProtocol = 'fastcgi' | 'scgi';
export type BackendMode = 'client' | 'anonymous' | 'launching' | 'mixed';

export interface BackendRequest {
  /** CGI meta-variables (from src/cgi), CONTENT_LENGTH included when there is a body. */
  params: ParamList;
  /** The request body, streamed; null when there is none. Must carry exactly contentLength bytes. */
  body: Readable | null;
  contentLength: number;
  /** Aborting it sends FCGI_ABORT_REQUEST / closes the SCGI connection. */
  signal?: AbortSignal;
}

export interface BackendResponse {
  status: number;
  statusText: string;
  /** Response headers from the CGI head, in order, Status removed. */
  headers: Array<[name: string, value: string]>;
  /** The body, streamed with backpressure. Errors if the backend breaks off mid-body. */
  body: Readable;
  /** FastCGI STDERR lines arrive here as they come (SCGI has none). */
  stderr?: Readable;
}

/** The response head of Backend.call(): status, reason and headers as BackendResponse has them. */
export type BackendResponseHead = Omit<BackendResponse, 'body' | 'stderr'>;

/**
 * Where Backend.call() delivers one response as it arrives: no stream, no
 * promise per request (the gateway's hot path). After head(), data() may
 * run any number of times, then exactly one of end() and error(). Before
 * head(), only error() can end it. Nothing is called after the caller's
 * BackendCall.abort().
 */
export interface ResponseSink {
  /** The CGI response head; once, before any data(). */
  head(head: BackendResponseHead): void;
  /** Body bytes (never empty; may share memory with the socket's chunk: copy to keep). Return false to stop the flow until BackendCall.resume(). */
  data(chunk: Buffer): boolean;
  /** The body is complete. FastCGI: END_REQUEST came, and the connection is back in the pool. */
  end(): void;
  /**
   * The request failed. Before head(): why no response (a BackendError, as
   * dispatch() would reject with). After head(): the body broke off.
   */
  error(err: unknown): void;
  /** FastCGI STDERR content as it comes (a copy). */
  stderr?(chunk: Buffer): void;
}

/** The caller's handle on a Backend.call() in progress. */
export interface BackendCall {
  /** Gives up on the request (FCGI_ABORT_REQUEST / closing the SCGI connection); the sink hears nothing more. Idempotent, a no-op once ended. */
  abort(): void;
  /** Lets data() run again after it returned false. */
  resume(): void;
}

export interface Backend {
  readonly protocol: BackendProtocol;
  readonly mode: BackendMode;
  /** Eager start where the mode allows it (anonymous/launching may also start lazily). */
  start(): Promise<void>;
  dispatch(req: BackendRequest): Promise<BackendResponse>;
  /**
   * The same request as dispatch(), with the response delivered to `sink`
   * (req.signal is ignored: use the returned BackendCall's abort()).
   * Optional for other implementations; the gateway adapts dispatch() when
   * it is missing.
   */
  call?(req: BackendRequest, sink: ResponseSink): BackendCall;
  /** Stops taking requests, lets in-flight ones finish, then cleans up per mode (anonymous: SIGTERM child, remove socket). */
  close(): Promise<void>;
}

/** Why a request could not be served; the gateway maps code → status. */
export type BackendErrorCode =
  | 'ERR_BACKEND_UNAVAILABLE' // cannot connect / cannot start → 503 + Retry-After
  | 'ERR_BACKEND_PROTOCOL' // broke the protocol, bad CGI head → 502
  | 'ERR_BACKEND_CLOSED_EARLY' // closed before a complete response head → 502
  | 'ERR_BACKEND_TIMEOUT' // no answer in time → 504
  | 'ERR_BACKEND_OVERLOADED'; // FCGI_OVERLOADED / queue full → 503

export class BackendError extends GatehouseError<BackendErrorCode> {}

// ---- Added by src/backend (additive): how a Backend is configured. ----

/** Where the application listens: callscgi's -u / -t / -i. */
export type BackendAddress =
  /** -u PATH: a Unix stream socket. */
  | { kind: 'unix'; path: string }
  /** -t [HOST:]PORT: host defaults to localhost; port may be a service name from /etc/services. */
  | { kind: 'tcp'; host: string; port: number | string }
  /** -i ID: a per-user Unix socket path derived from ID. */
  | { kind: 'id'; id: string };

/**
 * createBackend(options). The mode follows callscgi's rules: address and no
 * program → client; program and no address → anonymous; both → launching,
 * or mixed when retries > 0.
 */
export interface BackendOptions {
  protocol: BackendProtocol;
  address?: BackendAddress;
  /** PROGRAM and its ARGS, run with execvp semantics (PATH search). */
  program?: readonly string[];
  /** callscgi -N: extra connect tries, one second apart (client and mixed mode); 0 = not given. */
  retries?: number;
  /** Anonymous mode: run this many workers on the socket through the pool manager (default 1). */
  processes?: number;
  /**
   * Anonymous mode: run PROGRAM under the pool manager even when processes
   * is 1. The manager keeps the socket open and respawns a program that
   * exits, so processes other than ours that connect to the socket
   * (`serve --workers`) never find it refusing. Default false: one child,
   * restarted by the next connect that it refuses.
   */
  pooled?: boolean;
  /** Bound on one connect() (default 10 s) → ERR_BACKEND_TIMEOUT. */
  connectTimeoutMs?: number;
  /**
   * Bound on waiting for the complete response head after the request was
   * sent (default 60 s) → ERR_BACKEND_TIMEOUT. 0: none, for a caller that
   * keeps its own deadline (the gateway: one timer per request, not two).
   */
  headerTimeoutMs?: number;
  /** FastCGI only: reuse connections with FCGI_KEEP_CONN (default true). */
  keepConn?: boolean;
  /** FastCGI only: idle kept-alive connections held open (default 16). */
  maxIdleConnections?: number;
  /** FastCGI only: an idle connection is closed after this long (default 30 s). */
  idleTimeoutMs?: number;
  /** Environment and working directory of PROGRAM (default: ours). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** close(): how long a child gets after SIGTERM before SIGKILL (default 5 s). */
  stopTimeoutMs?: number;
  /** Where service names for -t are looked up (default /etc/services). */
  servicesFile?: string;
  /** One line per notable event (child started/exited, connect retries, restarts). Default: stderr. */
  log?: (line: string) => void;
}
