/**
 * @module backend/fastcgi-transport
 * Requests over FastCGI with a pool of kept-alive connections
 * (FCGI_KEEP_CONN): one request at a time per connection (no multiplexing),
 * idle connections reused newest first and closed after idleTimeoutMs.
 *
 * A response body ends at END_REQUEST, after the connection went back to
 * the pool, so the caller's next request finds it idle.
 *
 * Safe retry: a *reused* connection may have been closed by the application
 * while it sat idle (php-cgi's PHP_FCGI_MAX_REQUESTS, an idle timeout). When
 * such a connection fails before any byte of the response arrived and
 * before any byte of the request body was taken from the caller, the
 * request is sent once more on a fresh connection. Under the same condition
 * a fresh connection that broke because the child we started was dying
 * (the connector's recover()) is sent once more to its successor. Nothing
 * else is retried.
 */
import { Readable } from 'node:stream';
import { CgiResponseParser } from '../cgi/response-head.js';
import { FastCgiClientConnection } from '../fastcgi/client-connection.js';
import type { ClientExchange, ExchangeSink } from '../fastcgi/client-exchange.js';
import type { FcgiEndInfo } from '../fastcgi/client-request.js';
import { ProtocolStatus } from '../fastcgi/constants.js';
import { FastCgiConnectionError } from '../fastcgi/errors.js';
import type { BackendRequest, BackendResponse } from './contract.js';
import type { BackendChild } from './child.js';
import { withChildExit, type Connector } from './connector.js';
import { backendError, errorCode, errorText } from './errors.js';

export interface FastCgiTransportOptions {
  headerTimeoutMs: number;
  keepConn: boolean;
  maxIdleConnections: number;
  idleTimeoutMs: number;
  log: (line: string) => void;
  /**
   * Copies of PROGRAM serving the socket, when we started them (anonymous
   * mode): FCGI_MAX_CONNS is per copy. Undefined when the pool behind the
   * address is not ours to know (client, launching, mixed).
   */
  processes?: number;
}

interface PooledConnection {
  conn: FastCgiClientConnection;
  child: BackendChild | undefined;
  /** Requests this connection has carried. */
  uses: number;
  /** The child was restarted to open this connection (no second restart for its first request). */
  restarted: boolean;
  /** Date.now() when it went idle. */
  idleSince: number;
}

type Outcome = { ok: true; response: BackendResponse } | { ok: false; error: unknown; bodyTaken: boolean };

/** A request waiting for a connection while the pool is at its cap: handed an idle connection, or null (open one). */
interface Waiter {
  grant: (p: PooledConnection | null) => void;
  fail: (err: unknown) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

interface PoolOps {
  release(p: PooledConnection): void;
  drop(p: PooledConnection): void;
}

/** How long an aborted request's connection waits for END_REQUEST before it is dropped. */
const ABORT_GRACE_MS = 5000;
/** How long the FCGI_MAX_CONNS query may take; no answer means no cap. */
const PROBE_TIMEOUT_MS = 1000;

export class FastCgiTransport {
  readonly #connector: Connector;
  readonly #opts: FastCgiTransportOptions;
  /** Idle connections, the most recently used last. */
  readonly #idle: PooledConnection[] = [];
  readonly #all = new Set<PooledConnection>();
  readonly #waiters: Waiter[] = [];
  readonly #ops: PoolOps;
  /** Connections being opened (they count against the cap). */
  #opening = 0;
  /** At most this many connections open: from FCGI_MAX_CONNS, or the override. */
  #cap: number | undefined;
  #capOverride: number | undefined;
  #probe: Promise<void> | undefined;
  /** The FCGI_MAX_CONNS query is over (answered or not): never wait for it again. */
  #probed = false;
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(connector: Connector, opts: FastCgiTransportOptions) {
    this.#connector = connector;
    this.#opts = opts;
    this.#ops = { release: (p) => this.#release(p), drop: (p) => this.#drop(p) };
  }

  /** Connections currently open (idle or busy); for tests and status. */
  get openConnections(): number {
    return this.#all.size;
  }

  get idleConnections(): number {
    return this.#idle.length;
  }

  /** The cap on open connections (undefined: none known yet). */
  get maxConnections(): number | undefined {
    return this.#capOverride ?? this.#cap;
  }

  /** Overrides the cap learnt from FCGI_MAX_CONNS (the gateway's --max-conns). */
  setMaxConnections(n: number | undefined): void {
    this.#capOverride = n;
    this.#wakeWaiters();
  }

  async dispatch(req: BackendRequest): Promise<BackendResponse> {
    let resent = false;
    let recovered = false;
    for (let attempt = 0; ; attempt++) {
      const got = this.#acquire(req.signal, attempt > 0);
      const pooled = got instanceof Promise ? await got : got;
      const outcome = await new Exchange(this.#ops, pooled, req, this.#opts).run();
      if (outcome.ok) return outcome.response;
      const err = outcome.error;
      // Nothing of the request reached the application's code and nothing came back: safe to send again.
      const untouched =
        !outcome.bodyTaken &&
        err instanceof FastCgiConnectionError &&
        err.code === 'ERR_FCGI_CONN_CLOSED' &&
        !err.responseStarted &&
        !req.signal?.aborted;
      if (untouched && pooled.uses > 1 && !resent) {
        resent = true;
        this.#opts.log(`fastcgi: a reused connection closed before answering (${err.message}); retrying on a new connection`);
        continue;
      }
      // A fresh connection in the backlog of a child that was exiting: restart it (once per request).
      if (untouched && !recovered && !pooled.restarted && (await this.#connector.recover?.(pooled.child))) {
        recovered = true;
        continue;
      }
      throw await this.#mapFailure(err, pooled.child, req.signal);
    }
  }

  /** Closes idle connections now and busy ones once their request is done. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#idle.splice(0)) this.#drop(p);
  }

  #acquire(signal: AbortSignal | undefined, fresh: boolean): PooledConnection | Promise<PooledConnection> {
    // An idle connection whose FIN we have not seen yet fails untouched, and the request is sent again (dispatch).
    while (!fresh && this.#idle.length > 0) {
      const p = this.#idle.pop()!;
      if (p.conn.idle) return p;
      this.#drop(p);
    }
    const cap = this.maxConnections;
    if (cap !== undefined && this.#all.size + this.#opening >= cap) return this.#waitThenOpen(signal);
    if (cap === undefined && !this.#probed && this.#all.size + this.#opening >= 1) {
      // The pool grows beyond one connection: learn the application's FCGI_MAX_CONNS first.
      this.#probe ??= this.#probeMaxConns();
      return this.#probe.then(() => this.#acquire(signal, fresh));
    }
    return this.#open(signal, false);
  }

  async #waitThenOpen(signal: AbortSignal | undefined): Promise<PooledConnection> {
    const p = await new Promise<PooledConnection | null>((grant, fail) => {
      if (signal?.aborted) return fail(signal.reason);
      const ms = this.#opts.headerTimeoutMs;
      const w: Waiter = {
        grant,
        fail,
        signal,
        timer: setTimeout(() => {
          this.#unwait(w);
          fail(backendError('ERR_BACKEND_OVERLOADED', `no FastCGI connection free within ${ms} ms (the application takes ${this.maxConnections} at a time)`));
        }, ms),
        onAbort: () => {
          this.#unwait(w);
          fail(signal!.reason);
        },
      };
      signal?.addEventListener('abort', w.onAbort, { once: true });
      this.#waiters.push(w);
    });
    return p ?? this.#open(signal, true);
  }

  #unwait(w: Waiter): void {
    clearTimeout(w.timer);
    w.signal?.removeEventListener('abort', w.onAbort);
    const at = this.#waiters.indexOf(w);
    if (at >= 0) this.#waiters.splice(at, 1);
  }

  /** Room below the cap: let waiters open connections. */
  #wakeWaiters(): void {
    while (this.#waiters.length > 0) {
      const cap = this.maxConnections;
      if (cap !== undefined && this.#all.size + this.#opening >= cap) return;
      const w = this.#waiters.shift()!;
      this.#unwait(w);
      this.#opening++; // reserved for the waiter's connect
      w.grant(null);
    }
  }

  async #open(signal: AbortSignal | undefined, reserved: boolean): Promise<PooledConnection> {
    if (!reserved) this.#opening++;
    let lease;
    try {
      lease = await this.#connector.connect(signal);
    } finally {
      this.#opening--;
    }
    const conn = new FastCgiClientConnection(lease.socket);
    const p: PooledConnection = { conn, child: lease.child, uses: 0, restarted: lease.restarted ?? false, idleSince: 0 };
    this.#all.add(p);
    conn.once('close', () => {
      const at = this.#idle.indexOf(p);
      if (at >= 0) this.#idle.splice(at, 1);
      if (this.#all.delete(p)) this.#wakeWaiters();
    });
    if (this.#waiters.length > 0) queueMicrotask(() => this.#wakeWaiters());
    return p;
  }

  /** Asks a connection of its own for FCGI_MAX_CONNS (php-cgi closes a connection after GET_VALUES). */
  async #probeMaxConns(): Promise<void> {
    let conn: FastCgiClientConnection | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const lease = await this.#connector.connect();
      conn = new FastCgiClientConnection(lease.socket);
      const values = await new Promise<Map<string, string>>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error('no answer')), Math.min(PROBE_TIMEOUT_MS, this.#opts.headerTimeoutMs));
        conn!.getValues(['FCGI_MAX_CONNS']).then(resolve, reject);
      });
      const raw = values.get('FCGI_MAX_CONNS');
      const n = raw !== undefined && /^\d{1,9}$/.test(raw) ? Number(raw) : 0;
      if (n >= 1 && this.#opts.processes === undefined && n === 1) {
        // libfcgi answers 1 per process whatever runs beside it (spawn-fcgi -F 4 is
        // four of them on one socket): a cap of 1 would serialise the whole pool.
        this.#opts.log('fastcgi: the application reports FCGI_MAX_CONNS=1 (per process); not capping connections, use --max-conns for the pool size');
      } else if (n >= 1) {
        this.#cap = n * (this.#opts.processes ?? 1);
        this.#opts.log(`fastcgi: the application takes ${this.#cap} connection${this.#cap === 1 ? '' : 's'} at a time (FCGI_MAX_CONNS)`);
      }
    } catch {
      // No answer, or none we understand: no cap, as before.
    } finally {
      clearTimeout(timer);
      if (conn !== undefined) {
        const c = conn;
        c.close();
        setTimeout(() => c.destroy(), ABORT_GRACE_MS).unref();
      }
    }
    this.#probed = true;
    this.#wakeWaiters();
  }

  #release(p: PooledConnection): void {
    if (this.#closed || !this.#opts.keepConn || !p.conn.idle) {
      this.#drop(p);
      return;
    }
    // Hand it straight to a request waiting at the cap.
    const w = this.#waiters.shift();
    if (w !== undefined) {
      this.#unwait(w);
      w.grant(p);
      return;
    }
    if (this.#idle.length >= this.#opts.maxIdleConnections) {
      this.#drop(p);
      return;
    }
    p.idleSince = Date.now();
    this.#idle.push(p);
    this.#sweep ??= this.#startSweep();
  }

  /** One coarse timer closes connections idle for idleTimeoutMs (instead of a timer per release). */
  #startSweep(): NodeJS.Timeout {
    const ms = this.#opts.idleTimeoutMs;
    const every = Math.max(5, Math.min(1000, Math.floor(ms / 4)));
    const t = setInterval(() => {
      const now = Date.now();
      // Oldest first: stop at the first one still fresh.
      while (this.#idle.length > 0 && now - this.#idle[0]!.idleSince >= ms) this.#drop(this.#idle[0]!);
      if (this.#idle.length === 0) {
        clearInterval(t);
        this.#sweep = undefined;
      }
    }, every);
    t.unref();
    return t;
  }

  #drop(p: PooledConnection): void {
    const at = this.#idle.indexOf(p);
    if (at >= 0) this.#idle.splice(at, 1);
    p.conn.close();
    // close() ends our side; an application that never answers the FIN is cut off.
    setTimeout(() => p.conn.destroy(), ABORT_GRACE_MS).unref();
    // It no longer counts against the cap: the application sees our FIN and takes the next connection.
    if (this.#all.delete(p)) this.#wakeWaiters();
  }

  async #mapFailure(err: unknown, child: BackendChild | undefined, signal: AbortSignal | undefined): Promise<unknown> {
    if (signal?.aborted) return signal.reason;
    const code = errorCode(err);
    if (code === 'ERR_BACKEND_CLOSED_EARLY' || err instanceof FastCgiConnectionError) {
      const cause = await withChildExit(err, child);
      return backendError(
        'ERR_BACKEND_CLOSED_EARLY',
        `the FastCGI application closed the connection before a complete response head: ${errorText(cause)}`,
        cause,
      );
    }
    if (code?.startsWith('ERR_BACKEND_')) return err;
    return backendError('ERR_BACKEND_PROTOCOL', `bad FastCGI response: ${errorText(err)}`, err);
  }
}

/** The response body: reads release the connection's read gate; destroying it drops the rest of STDOUT. */
class ResponseBody extends Readable {
  readonly #owner: Exchange;
  constructor(owner: Exchange) {
    super();
    this.#owner = owner;
  }
  override _read(): void {
    this.#owner.ex?.resume();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#owner.bodyGone();
    cb(err);
  }
}

/**
 * One request on one pooled connection, as the connection's sink: the CGI
 * head parsed from STDOUT, then a body stream that ends at END_REQUEST,
 * once the connection is back in the pool (so a caller's next request finds
 * it idle). Resolves with an Outcome, never rejects.
 */
class Exchange implements ExchangeSink {
  ex: ClientExchange | undefined;
  readonly #ops: PoolOps;
  readonly #p: PooledConnection;
  readonly #req: BackendRequest;
  readonly #opts: FastCgiTransportOptions;
  #parser: CgiResponseParser | undefined;
  #body: ResponseBody | undefined;
  #bodyEnded = false;
  #stderr: Readable | undefined;
  #earlyStderr: Buffer[] | undefined;
  #timer: NodeJS.Timeout | undefined;
  #abortTimer: NodeJS.Timeout | undefined;
  #settled = false;
  #resolved = false;
  #aborted = false;
  #bodyTaken = false;
  #detachBody: (() => void) | undefined;
  #resolve: (o: Outcome) => void = () => {};

  constructor(ops: PoolOps, p: PooledConnection, req: BackendRequest, opts: FastCgiTransportOptions) {
    this.#ops = ops;
    this.#p = p;
    this.#req = req;
    this.#opts = opts;
  }

  run(): Promise<Outcome> {
    const p = this.#p;
    const req = this.#req;
    p.uses++;
    const promise = new Promise<Outcome>((resolve) => (this.#resolve = resolve));
    const endStdin = req.body === null || req.contentLength === 0;
    let ex;
    try {
      ex = p.conn.exchange(req.params, this.#opts.keepConn, endStdin, this);
    } catch (err) {
      // Nothing was sent (the params cannot be encoded): the connection is still good.
      this.#ops.release(p);
      throw err;
    }
    if (ex instanceof FastCgiConnectionError) {
      this.#finish({ ok: false, error: ex, bodyTaken: false });
      return promise;
    }
    this.ex = ex;
    req.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (endStdin) {
      req.body?.resume();
      this.#startTimer();
    } else {
      this.#sendBody(ex);
    }
    if (req.signal?.aborted) this.#onAbort();
    return promise;
  }

  // ---------------------------------------------------------------- ExchangeSink

  stdout(chunk: Buffer): boolean {
    if (this.#body !== undefined) return this.#body.push(chunk);
    if (this.#resolved) return true;
    this.#parser ??= new CgiResponseParser();
    let head;
    try {
      head = this.#parser.push(chunk);
    } catch (err) {
      this.#failHead(backendError('ERR_BACKEND_PROTOCOL', `bad CGI response head: ${errorText(err)}`, err));
      return true;
    }
    if (head === null) return true;
    this.#stopTimer();
    const body = new ResponseBody(this);
    this.#body = body;
    const stderr = new Readable({ read() {} });
    this.#stderr = stderr;
    if (this.#earlyStderr !== undefined) for (const c of this.#earlyStderr) stderr.push(c);
    this.#earlyStderr = undefined;
    this.#finish({ ok: true, response: { status: head.status, statusText: head.statusText, headers: head.headers, body, stderr } });
    return head.rest.length > 0 ? body.push(head.rest) : true;
  }

  stderr(chunk: Buffer): void {
    if (this.#stderr !== undefined) this.#stderr.push(chunk);
    else if (!this.#settled && !this.#resolved) (this.#earlyStderr ??= []).push(chunk);
  }

  end(info: FcgiEndInfo): void {
    this.#settle();
    if (this.#aborted) this.#ops.drop(this.#p);
    else this.#ops.release(this.#p);
    if (this.#body !== undefined) {
      this.#bodyEnded = true;
      if (!this.#body.destroyed) this.#body.push(null);
      return;
    }
    if (info.protocolStatus === ProtocolStatus.OVERLOADED) {
      this.#fail(backendError('ERR_BACKEND_OVERLOADED', 'the FastCGI application is overloaded (FCGI_OVERLOADED)'));
    } else if (info.protocolStatus !== ProtocolStatus.REQUEST_COMPLETE) {
      this.#fail(backendError('ERR_BACKEND_PROTOCOL', `the FastCGI application refused the request (protocol status ${info.protocolStatus})`));
    } else {
      const early = backendError('ERR_BACKEND_CLOSED_EARLY', 'the response ended before a complete CGI head');
      this.#fail(backendError('ERR_BACKEND_PROTOCOL', 'the FastCGI application ended the request without a complete response head', early));
    }
  }

  error(err: FastCgiConnectionError): void {
    this.#settle();
    if (this.#body !== undefined) {
      this.#bodyEnded = true;
      this.#body.destroy(backendError('ERR_BACKEND_CLOSED_EARLY', `the connection failed before END_REQUEST: ${errorText(err)}`, err));
      return;
    }
    this.#fail(err);
  }

  /** The consumer destroyed the body: STDOUT is no longer wanted (the request still ends at END_REQUEST). */
  bodyGone(): void {
    if (!this.#bodyEnded) this.ex?.discardStdout();
  }

  // ---------------------------------------------------------------- internals

  /** END_REQUEST or a connection failure: the request is over on the wire. */
  #settle(): void {
    this.#settled = true;
    this.#stopTimer();
    clearTimeout(this.#abortTimer);
    this.#req.signal?.removeEventListener('abort', this.#onAbort);
    this.#detachBody?.();
    this.#stderr?.push(null);
  }

  #finish(o: Outcome): void {
    if (this.#resolved) return;
    this.#resolved = true;
    this.#resolve(o);
  }

  /** A failure before the head: report it (an abort wins). */
  #fail(err: unknown): void {
    const signal = this.#req.signal;
    if (signal?.aborted) this.#finish({ ok: false, error: signal.reason, bodyTaken: true });
    else this.#finish({ ok: false, error: err, bodyTaken: this.#bodyTaken });
  }

  /** The head failed (bad head, timeout, upload error) with the request still open: this connection is in an unknown state. */
  #failHead(err: unknown): void {
    if (this.#resolved) return;
    this.#stopTimer();
    this.#req.signal?.removeEventListener('abort', this.#onAbort);
    if (!this.#settled) {
      this.ex?.abort();
      this.#p.conn.destroy();
    }
    this.#fail(err);
  }

  readonly #onAbort = (): void => {
    if (this.#aborted || this.#settled) return;
    this.#aborted = true;
    this.ex?.abort();
    const reason: unknown = this.#req.signal?.reason;
    if (this.#body === undefined) {
      this.#failHead(reason);
      return;
    }
    this.#body.destroy(reason instanceof Error ? reason : new Error(String(reason)));
    this.#abortTimer = setTimeout(() => this.#p.conn.destroy(), ABORT_GRACE_MS);
    this.#abortTimer.unref();
  };

  #startTimer(): void {
    if (this.#timer !== undefined || this.#body !== undefined || this.#resolved) return;
    const ms = this.#opts.headerTimeoutMs;
    this.#timer = setTimeout(() => this.#failHead(backendError('ERR_BACKEND_TIMEOUT', `no response head within ${ms} ms`)), ms);
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Streams the caller's body into FCGI_STDIN; the head timer starts once it is all sent. */
  #sendBody(ex: ClientExchange): void {
    const body = this.#req.body!;
    const stdin = ex.stdin;
    const onTaken = (): void => {
      this.#bodyTaken = true;
    };
    const onError = (err: Error): void => {
      // The client went away mid-upload: the application cannot get a complete request.
      const e = backendError('ERR_BACKEND_CLOSED_EARLY', `request body failed: ${errorText(err)}`, err);
      if (this.#body !== undefined) {
        ex.abort();
        this.#body.destroy(e);
      } else this.#failHead(e);
    };
    body.once('data', onTaken);
    body.once('error', onError);
    body.pipe(stdin);
    stdin.once('finish', () => {
      if (this.#body === undefined && !this.#settled) this.#startTimer();
    });
    this.#detachBody = () => {
      this.#detachBody = undefined;
      body.off('data', onTaken);
      body.off('error', onError);
      body.unpipe(stdin);
      // Hold the rest of the body for a retry: nothing may flow with no listener.
      if (!this.#bodyEnded && this.#body === undefined) body.pause();
    };
  }
}
