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
import { PassThrough } from 'node:stream';
import { FastCgiClientConnection } from '../fastcgi/client-connection.js';
import type { ClientRequest, FcgiEndInfo } from '../fastcgi/client-request.js';
import { ProtocolStatus } from '../fastcgi/constants.js';
import { FastCgiConnectionError } from '../fastcgi/errors.js';
import type { BackendRequest, BackendResponse } from './contract.js';
import type { BackendChild } from './child.js';
import { withChildExit, type Connector } from './connector.js';
import { backendError, errorCode, errorText } from './errors.js';
import { HeadTimer, readCgiResponse } from './response.js';

export interface FastCgiTransportOptions {
  headerTimeoutMs: number;
  keepConn: boolean;
  maxIdleConnections: number;
  idleTimeoutMs: number;
  log: (line: string) => void;
}

interface PooledConnection {
  conn: FastCgiClientConnection;
  child: BackendChild | undefined;
  /** Requests this connection has carried. */
  uses: number;
  /** The child was restarted to open this connection (no second restart for its first request). */
  restarted: boolean;
  idleTimer?: NodeJS.Timeout | undefined;
}

/** How long an aborted request's connection waits for END_REQUEST before it is dropped. */
const ABORT_GRACE_MS = 5000;

export class FastCgiTransport {
  readonly #connector: Connector;
  readonly #opts: FastCgiTransportOptions;
  /** Idle connections, the most recently used last. */
  readonly #idle: PooledConnection[] = [];
  readonly #all = new Set<PooledConnection>();
  #closed = false;

  constructor(connector: Connector, opts: FastCgiTransportOptions) {
    this.#connector = connector;
    this.#opts = opts;
  }

  /** Connections currently open (idle or busy); for tests and status. */
  get openConnections(): number {
    return this.#all.size;
  }

  get idleConnections(): number {
    return this.#idle.length;
  }

  async dispatch(req: BackendRequest): Promise<BackendResponse> {
    let resent = false;
    let recovered = false;
    for (let attempt = 0; ; attempt++) {
      const pooled = await this.#acquire(req.signal, attempt > 0);
      const outcome = await this.#exchange(pooled, req);
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

  async #acquire(signal: AbortSignal | undefined, fresh: boolean): Promise<PooledConnection> {
    while (!fresh && this.#idle.length > 0) {
      const p = this.#idle.pop()!;
      clearTimeout(p.idleTimer);
      // Let an already queued FIN from the application be seen before we write.
      await new Promise((resolve) => setImmediate(resolve));
      if (p.conn.idle) return p;
      this.#drop(p);
    }
    const lease = await this.#connector.connect(signal);
    const conn = new FastCgiClientConnection(lease.socket);
    const p: PooledConnection = { conn, child: lease.child, uses: 0, restarted: lease.restarted ?? false };
    this.#all.add(p);
    conn.once('close', () => {
      this.#all.delete(p);
      const at = this.#idle.indexOf(p);
      if (at >= 0) this.#idle.splice(at, 1);
      clearTimeout(p.idleTimer);
    });
    return p;
  }

  #release(p: PooledConnection): void {
    if (this.#closed || !this.#opts.keepConn || !p.conn.idle || this.#idle.length >= this.#opts.maxIdleConnections) {
      this.#drop(p);
      return;
    }
    p.idleTimer = setTimeout(() => this.#drop(p), this.#opts.idleTimeoutMs);
    p.idleTimer.unref();
    this.#idle.push(p);
  }

  #drop(p: PooledConnection): void {
    clearTimeout(p.idleTimer);
    const at = this.#idle.indexOf(p);
    if (at >= 0) this.#idle.splice(at, 1);
    p.conn.close();
    // close() ends our side; an application that never answers the FIN is cut off.
    setTimeout(() => p.conn.destroy(), ABORT_GRACE_MS).unref();
  }

  async #exchange(
    p: PooledConnection,
    req: BackendRequest,
  ): Promise<{ ok: true; response: BackendResponse } | { ok: false; error: unknown; bodyTaken: boolean }> {
    p.uses++;
    const fr = p.conn.request(req.params, { keepConn: this.#opts.keepConn });
    let bodyTaken = false;
    let aborted = false;

    const stderr = new PassThrough();
    fr.on('stderr', (chunk: Buffer) => stderr.write(chunk));

    // The request's fate once the response is under way: the connection goes back to the pool or away.
    let settled: { end?: FcgiEndInfo; error?: unknown } | undefined;
    // The response body ends only at END_REQUEST, once the connection is back in the pool,
    // so a caller's next request finds it idle.
    let openGate: () => void = () => {};
    let failGate: (err: unknown) => void = () => {};
    const endGate = new Promise<void>((resolve, reject) => {
      openGate = resolve;
      failGate = reject;
    });
    endGate.catch(() => {});
    const settle = (s: { end?: FcgiEndInfo; error?: unknown }): void => {
      if (settled) return;
      settled = s;
      stderr.end();
      req.signal?.removeEventListener('abort', onAbort);
      clearTimeout(abortTimer);
      if (s.end !== undefined && !aborted) this.#release(p);
      else if (s.end !== undefined) this.#drop(p);
      if (s.end !== undefined) openGate();
      else failGate(backendError('ERR_BACKEND_CLOSED_EARLY', `the connection failed before END_REQUEST: ${errorText(s.error)}`, s.error));
    };
    fr.once('end', (info: FcgiEndInfo) => settle({ end: info }));
    fr.once('error', (err: unknown) => settle({ error: err }));

    let abortTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      aborted = true;
      fr.abort();
      fr.stdout.destroy(req.signal?.reason);
      abortTimer = setTimeout(() => p.conn.destroy(), ABORT_GRACE_MS);
      abortTimer.unref();
    };
    req.signal?.addEventListener('abort', onAbort, { once: true });

    const timer = new HeadTimer(this.#opts.headerTimeoutMs, () => {
      p.conn.destroy();
      fr.stdout.destroy(backendError('ERR_BACKEND_TIMEOUT', `no response head within ${this.#opts.headerTimeoutMs} ms`));
    });
    fr.stdin.once('finish', () => timer.start());
    sendBody(req, fr, () => {
      bodyTaken = true;
    });
    if (req.signal?.aborted) onAbort();

    // END_REQUEST or a connection failure before the head: stdout may just end, so race them.
    const failure = new Promise<never>((_, reject) => {
      fr.once('error', reject);
      fr.once('end', (info: FcgiEndInfo) => {
        if (info.protocolStatus === ProtocolStatus.OVERLOADED) {
          reject(backendError('ERR_BACKEND_OVERLOADED', 'the FastCGI application is overloaded (FCGI_OVERLOADED)'));
        } else if (info.protocolStatus !== ProtocolStatus.REQUEST_COMPLETE) {
          reject(backendError('ERR_BACKEND_PROTOCOL', `the FastCGI application refused the request (protocol status ${info.protocolStatus})`));
        }
      });
    });
    failure.catch(() => {});
    try {
      const head = await Promise.race([readCgiResponse(fr.stdout, { onHead: () => timer.stop(), endGate }), failure]);
      return { ok: true, response: { ...head, stderr } };
    } catch (err) {
      timer.stop();
      req.signal?.removeEventListener('abort', onAbort);
      if (!settled) {
        // The head failed (bad head, timeout): this connection is in an unknown state.
        fr.abort();
        p.conn.destroy();
      }
      stderr.end();
      if (req.signal?.aborted) return { ok: false, error: req.signal.reason, bodyTaken: true };
      if (settled?.end !== undefined && errorCode(err) === 'ERR_BACKEND_CLOSED_EARLY') {
        const e = backendError('ERR_BACKEND_PROTOCOL', 'the FastCGI application ended the request without a complete response head', err);
        return { ok: false, error: e, bodyTaken };
      }
      return { ok: false, error: err, bodyTaken };
    }
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

/** Streams the caller's body into FCGI_STDIN; `onTaken` runs when the first byte is taken. */
function sendBody(req: BackendRequest, fr: ClientRequest, onTaken: () => void): void {
  const body = req.body;
  if (body === null || req.contentLength === 0) {
    body?.resume();
    fr.stdin.end();
    return;
  }
  const onError = (err: Error): void => {
    // The client went away mid-upload: the application cannot get a complete request.
    fr.abort();
    fr.stdout.destroy(backendError('ERR_BACKEND_CLOSED_EARLY', `request body failed: ${errorText(err)}`, err));
  };
  body.once('data', onTaken);
  body.once('error', onError);
  body.pipe(fr.stdin);
  const detach = (): void => {
    body.off('data', onTaken);
    body.off('error', onError);
    body.unpipe(fr.stdin);
  };
  fr.once('end', detach);
  fr.once('error', () => {
    detach();
    // Hold the rest of the body for a retry: nothing may flow with no listener.
    body.pause();
  });
}
