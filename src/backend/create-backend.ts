/**
 * @module backend/create-backend
 * createBackend(options) → Backend: the mode's Connector plus the
 * protocol's transport, and the lifecycle around them (in-flight tracking,
 * a close() that lets running requests finish before the mode cleans up).
 */
import type {
  Backend,
  BackendCall,
  BackendMode,
  BackendOptions,
  BackendProtocol,
  BackendRequest,
  BackendResponse,
  BackendResponseHead,
  ResponseSink,
} from './contract.js';
import { callViaDispatch } from './call-adapter.js';
import type { Connector, ConnectorContext } from './connector.js';
import { createConnector, decideMode } from './modes.js';
import { backendError, ChildExitedError, errorText } from './errors.js';
import { FastCgiTransport } from './fastcgi-transport.js';
import { scgiDispatch } from './scgi-transport.js';
import { AnonymousConnector, type AnonymousPool } from './anonymous-mode.js';
import { createAnonymousPool } from './pool.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_HEADER_TIMEOUT_MS = 60_000;
export const DEFAULT_STOP_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_IDLE_CONNECTIONS = 16;
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

function defaultLog(line: string): void {
  process.stderr.write(`gatehouse: backend: ${line}\n`);
}

function checkOptions(options: BackendOptions): void {
  if (options.protocol !== 'fastcgi' && options.protocol !== 'scgi') {
    throw new TypeError(`backend: unknown protocol ${String(options.protocol)}`);
  }
  const ints: Array<[string, number | undefined, number]> = [
    ['retries', options.retries, 0],
    ['processes', options.processes, 1],
    ['connectTimeoutMs', options.connectTimeoutMs, 1],
    ['headerTimeoutMs', options.headerTimeoutMs, 0],
    ['maxIdleConnections', options.maxIdleConnections, 0],
    ['idleTimeoutMs', options.idleTimeoutMs, 1],
    ['stopTimeoutMs', options.stopTimeoutMs, 0],
  ];
  for (const [name, value, min] of ints) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
      throw new RangeError(`backend: ${name} must be an integer ≥ ${min}, got ${value}`);
    }
  }
}

export class GatehouseBackend implements Backend {
  readonly protocol: BackendProtocol;
  readonly mode: BackendMode;
  readonly connector: Connector;
  readonly #fastcgi: FastCgiTransport | undefined;
  readonly #headerTimeoutMs: number;
  readonly #log: (line: string) => void;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: BackendOptions) {
    checkOptions(options);
    this.protocol = options.protocol;
    this.mode = decideMode(options);
    const log = options.log ?? defaultLog;
    this.#log = log;
    const ctx: ConnectorContext = {
      child: { program: options.program ?? [], env: options.env, cwd: options.cwd },
      retries: options.retries ?? 0,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      stopTimeoutMs: options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS,
      log,
    };
    let pool: AnonymousPool | undefined;
    if (this.mode === 'anonymous' && ((options.processes ?? 1) > 1 || options.pooled === true)) pool = createAnonymousPool(options, ctx);
    this.connector = createConnector(this.mode, options, ctx, pool);
    this.#headerTimeoutMs = options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
    if (this.protocol === 'fastcgi') {
      this.#fastcgi = new FastCgiTransport(this.connector, {
        headerTimeoutMs: this.#headerTimeoutMs,
        keepConn: options.keepConn ?? true,
        maxIdleConnections: options.maxIdleConnections ?? DEFAULT_MAX_IDLE_CONNECTIONS,
        idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        ...(this.mode === 'anonymous' && { processes: pool !== undefined ? (options.processes ?? 1) : 1 }),
        log,
      });
    }
  }

  /** Requests whose response has not finished yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The FastCGI connection pool (undefined for SCGI); for tests and status. */
  get fastcgiPool(): FastCgiTransport | undefined {
    return this.#fastcgi;
  }

  /** Anonymous mode: the application's socket, once started (what other processes may connect to). */
  get socketPath(): string | undefined {
    return this.connector instanceof AnonymousConnector ? this.connector.socketPath : undefined;
  }

  async start(): Promise<void> {
    if (this.#closing) throw backendError('ERR_BACKEND_UNAVAILABLE', 'the backend is closed');
    await this.connector.start();
  }

  async dispatch(req: BackendRequest): Promise<BackendResponse> {
    if (this.#closing) throw backendError('ERR_BACKEND_UNAVAILABLE', 'the backend is closing');
    this.#inFlight++;
    let response: BackendResponse;
    try {
      response = this.#fastcgi
        ? await this.#fastcgi.dispatch(req)
        : await scgiDispatch(this.connector, req, { headerTimeoutMs: this.#headerTimeoutMs });
    } catch (err) {
      this.#done();
      // A crash is worth a line of its own, with the status of the child that failed.
      const exit = childExitIn(err);
      if (exit !== undefined) this.#log(`request failed: ${errorText(err)}`);
      throw err;
    }
    // In flight until the body is over, whichever way it ends.
    response.body.once('close', () => this.#done());
    return response;
  }

  /**
   * dispatch() with the response fed to `sink` (FastCGI: the transport's own
   * call(); SCGI: dispatch() adapted). In flight until the sink ends or
   * fails, or the caller aborts.
   */
  call(req: BackendRequest, sink: ResponseSink): BackendCall {
    if (this.#closing) return refused(sink, backendError('ERR_BACKEND_UNAVAILABLE', 'the backend is closing'));
    this.#inFlight++;
    const tracked = new TrackedCall(sink, this.#doneOnce, this.#log);
    tracked.inner = this.#fastcgi
      ? this.#fastcgi.call(req, tracked)
      : callViaDispatch({ dispatch: (r) => scgiDispatch(this.connector, r, { headerTimeoutMs: this.#headerTimeoutMs }) }, req, tracked);
    return tracked;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      await this.#fastcgi?.close();
      await this.connector.close();
    })();
    return this.#closing;
  }

  #done(): void {
    this.#inFlight--;
    if (this.#inFlight === 0) this.#drained?.();
  }

  readonly #doneOnce = (): void => this.#done();
}

/** A call that never started: the sink hears `err` just after call() returns, unless the caller aborts first. */
function refused(sink: ResponseSink, err: unknown): BackendCall {
  let aborted = false;
  queueMicrotask(() => aborted || sink.error(err));
  return {
    abort() {
      aborted = true;
    },
    resume() {},
  };
}

/**
 * The caller's sink and handle around a transport's call: counts the request
 * in flight until its end, its error or the caller's abort (once), and logs
 * a crash before the head as dispatch() does.
 */
class TrackedCall implements ResponseSink, BackendCall {
  inner: BackendCall | undefined;
  readonly #sink: ResponseSink;
  readonly #done: () => void;
  readonly #log: (line: string) => void;
  #headSeen = false;
  #over = false;

  constructor(sink: ResponseSink, done: () => void, log: (line: string) => void) {
    this.#sink = sink;
    this.#done = done;
    this.#log = log;
  }

  head(head: BackendResponseHead): void {
    this.#headSeen = true;
    this.#sink.head(head);
  }

  data(chunk: Buffer): boolean {
    return this.#sink.data(chunk);
  }

  end(): void {
    this.#finish();
    this.#sink.end();
  }

  error(err: unknown): void {
    this.#finish();
    // A crash is worth a line of its own, with the status of the child that failed.
    if (!this.#headSeen && childExitIn(err) !== undefined) this.#log(`request failed: ${errorText(err)}`);
    this.#sink.error(err);
  }

  stderr(chunk: Buffer): void {
    this.#sink.stderr?.(chunk);
  }

  abort(): void {
    if (this.#over) return;
    this.#finish();
    this.inner?.abort();
  }

  resume(): void {
    this.inner?.resume();
  }

  #finish(): void {
    if (this.#over) return;
    this.#over = true;
    this.#done();
  }
}

/** The first ChildExitedError in an error's cause chain. */
function childExitIn(err: unknown): ChildExitedError | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof ChildExitedError) return e;
  }
  return undefined;
}

/** Creates the backend for `options`; the mode follows callscgi's rules (see modes.ts). */
export function createBackend(options: BackendOptions): GatehouseBackend {
  return new GatehouseBackend(options);
}
