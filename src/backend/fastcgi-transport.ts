/**
 * @module backend/fastcgi-transport
 * Requests over FastCGI with a pool of kept-alive connections
 * (FCGI_KEEP_CONN): one request at a time per connection (no multiplexing),
 * idle connections reused newest first and closed after idleTimeoutMs.
 *
 * call() is the core (the request itself is fastcgi-call.ts): with an idle
 * connection it goes synchronously from call() to the request's write, and
 * the body ends at END_REQUEST, after the connection went back to the pool,
 * so the caller's next request finds it idle. dispatch() is call() behind
 * streams and a promise (dispatch-adapter.ts).
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
import { FastCgiClientConnection } from '../fastcgi/client-connection.js';
import { FastCgiConnectionError } from '../fastcgi/errors.js';
import type { BackendRequest, BackendResponse, ResponseSink } from './contract.js';
import type { BackendChild } from './child.js';
import { withChildExit, type Connector } from './connector.js';
import { dispatchViaCall, type DiscardableCall } from './dispatch-adapter.js';
import { backendError, errorCode, errorText } from './errors.js';
import { ABORT_GRACE_MS, FcgiCall, type CallHost, type PooledConnection } from './fastcgi-call.js';

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

/** A request waiting for a connection while the pool is at its cap: handed an idle connection, or null (open one). */
interface Waiter {
  grant: (p: PooledConnection | null) => void;
  fail: (err: unknown) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal;
  onAbort: () => void;
}

/** Whoever asks for a connection: its signal (made only when asked for) aborts a connect or a wait. */
interface Acquirer {
  readonly signal: AbortSignal;
}

/** How long the FCGI_MAX_CONNS query may take; no answer means no cap. */
const PROBE_TIMEOUT_MS = 1000;

export class FastCgiTransport {
  readonly #connector: Connector;
  readonly #opts: FastCgiTransportOptions;
  /** Idle connections, the most recently used last. */
  readonly #idle: PooledConnection[] = [];
  readonly #all = new Set<PooledConnection>();
  readonly #waiters: Waiter[] = [];
  readonly #host: CallHost;
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
    this.#host = {
      headerTimeoutMs: opts.headerTimeoutMs,
      keepConn: opts.keepConn,
      log: opts.log,
      acquire: (owner, fresh) => this.#acquire(owner, fresh),
      release: (p) => this.#release(p),
      drop: (p) => this.#drop(p),
      recover: async (child) => (await this.#connector.recover?.(child)) ?? false,
      mapFailure: (err, child) => this.#mapFailure(err, child),
    };
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

  /**
   * Sends `req` and feeds the response to `sink` (see ResponseSink). With an
   * idle pooled connection everything up to the request's write happens
   * before call() returns; no sink callback ever runs inside call().
   */
  call(req: BackendRequest, sink: ResponseSink): DiscardableCall {
    const c = new FcgiCall(this.#host, req, sink);
    c.start(false);
    return c;
  }

  /** call() as a promise of a streamed response (callscgi/callfcgi, the ashd driver, tests). */
  dispatch(req: BackendRequest): Promise<BackendResponse> {
    return dispatchViaCall(this, req);
  }

  /** Closes idle connections now and busy ones once their request is done. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#idle.splice(0)) this.#drop(p);
  }

  #acquire(owner: Acquirer, fresh: boolean): PooledConnection | Promise<PooledConnection> {
    // An idle connection whose FIN we have not seen yet fails untouched, and the request is sent again (FcgiCall).
    while (!fresh && this.#idle.length > 0) {
      const p = this.#idle.pop()!;
      if (p.conn.idle) return p;
      this.#drop(p);
    }
    const cap = this.maxConnections;
    if (cap !== undefined && this.#all.size + this.#opening >= cap) return this.#waitThenOpen(owner.signal);
    if (cap === undefined && !this.#probed && this.#all.size + this.#opening >= 1) {
      // The pool grows beyond one connection: learn the application's FCGI_MAX_CONNS first.
      this.#probe ??= this.#probeMaxConns();
      return this.#probe.then(() => this.#acquire(owner, fresh));
    }
    return this.#open(owner.signal, false);
  }

  async #waitThenOpen(signal: AbortSignal): Promise<PooledConnection> {
    const p = await new Promise<PooledConnection | null>((grant, fail) => {
      if (signal.aborted) return fail(signal.reason);
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
          fail(signal.reason);
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.#waiters.push(w);
    });
    return p ?? this.#open(signal, true);
  }

  #unwait(w: Waiter): void {
    clearTimeout(w.timer);
    w.signal.removeEventListener('abort', w.onAbort);
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

  async #open(signal: AbortSignal, reserved: boolean): Promise<PooledConnection> {
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
    if (!p.conn.closed) {
      p.conn.close();
      // close() ends our side; an application that never answers the FIN is cut off.
      setTimeout(() => p.conn.destroy(), ABORT_GRACE_MS).unref();
    }
    // It no longer counts against the cap: the application sees our FIN and takes the next connection.
    if (this.#all.delete(p)) this.#wakeWaiters();
  }

  async #mapFailure(err: unknown, child: BackendChild | undefined): Promise<unknown> {
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
