/**
 * @module backend/fastcgi-call
 * One Backend.call() over FastCGI: the request on a pooled connection and
 * its response fed straight into the caller's ResponseSink, without streams,
 * promises or AbortSignals on the way. With an idle connection in the pool,
 * call() runs synchronously down to the one write of the request head; only
 * the slow paths (a connection to open or to wait for, a failure to map)
 * go through promises, and those belong to the pool (fastcgi-transport.ts).
 *
 * FcgiCall is the caller's handle and decides about retries; each try on a
 * connection is an Attempt (the connection's ExchangeSink).
 */
import { CgiResponseParser } from '../cgi/response-head.js';
import type { FastCgiClientConnection } from '../fastcgi/client-connection.js';
import type { ClientExchange, ExchangeSink } from '../fastcgi/client-exchange.js';
import type { FcgiEndInfo } from '../fastcgi/client-request.js';
import { ProtocolStatus } from '../fastcgi/constants.js';
import { FastCgiConnectionError } from '../fastcgi/errors.js';
import { CallAbortedError } from './call-adapter.js';
import type { BackendCall, BackendRequest, BackendResponseHead, ResponseSink } from './contract.js';
import type { BackendChild } from './child.js';
import { backendError, errorText } from './errors.js';

export interface PooledConnection {
  conn: FastCgiClientConnection;
  child: BackendChild | undefined;
  /** Requests this connection has carried. */
  uses: number;
  /** The child was restarted to open this connection (no second restart for its first request). */
  restarted: boolean;
  /** Date.now() when it went idle. */
  idleSince: number;
}

/** What a call needs of the pool. */
export interface CallHost {
  readonly headerTimeoutMs: number;
  readonly keepConn: boolean;
  log(line: string): void;
  /** An idle connection now (fast path), or a promise of one. `fresh`: never a reused one. */
  acquire(owner: { readonly signal: AbortSignal }, fresh: boolean): PooledConnection | Promise<PooledConnection>;
  release(p: PooledConnection): void;
  drop(p: PooledConnection): void;
  /** The connector's recover(): may the request go once more to a restarted child? */
  recover(child: BackendChild | undefined): Promise<boolean>;
  /** A failure before the head as the BackendError the caller gets. */
  mapFailure(err: unknown, child: BackendChild | undefined): Promise<unknown>;
}

/** How long an aborted request's connection waits for END_REQUEST before it is dropped. */
export const ABORT_GRACE_MS = 5000;

/**
 * The caller's handle. Guards the sink (nothing after abort(), exactly one
 * of end()/error()), holds back body chunks while the sink is paused (the
 * connection delivers the rest of a socket read after a false), and sends
 * the request once more where the safe retry allows it.
 */
export class FcgiCall implements BackendCall {
  readonly #host: CallHost;
  readonly #req: BackendRequest;
  readonly #sink: ResponseSink;
  /** The try on the wire; undefined while a connection is acquired or a failure mapped. */
  #attempt: Attempt | undefined;
  /** Made only on a slow path: cancels a connect or a wait at the cap. */
  #controller: AbortController | undefined;
  /** The sink has heard its last, or the caller gave up: it hears nothing more. */
  #over = false;
  /** The caller wants no more body (dispatch()'s destroyed body); end, error and stderr still come. */
  #discarded = false;
  /** data() returned false: chunks wait in #held until resume(). */
  #paused = false;
  #held: Buffer[] | undefined;
  /** END_REQUEST came while chunks were held: end() once they are delivered. */
  #endHeld = false;
  #resent = false;
  #recovered = false;

  constructor(host: CallHost, req: BackendRequest, sink: ResponseSink) {
    this.#host = host;
    this.#req = req;
    this.#sink = sink;
  }

  /** For the pool's slow paths (connect, wait at the cap): aborted once the caller gives up. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#over) this.#controller.abort(new CallAbortedError());
    }
    return this.#controller.signal;
  }

  /** Gets a connection and sends the request: synchronously when one is idle. */
  start(fresh: boolean): void {
    const got = this.#host.acquire(this, fresh);
    if (got instanceof Promise) got.then((p) => this.#send(p), (err: unknown) => this.#error(err));
    else this.#send(got);
  }

  abort(): void {
    if (this.#over) return;
    this.#over = true;
    this.#held = undefined;
    this.#controller?.abort(new CallAbortedError());
    this.#attempt?.abort();
  }

  resume(): void {
    if (this.#over || !this.#paused) return;
    this.#paused = false;
    const held = this.#held;
    while (held !== undefined && held.length > 0 && !this.#paused && !this.#over && !this.#discarded) {
      if (!this.#sink.data(held.shift()!)) this.#paused = true;
    }
    if (this.#paused || this.#over) return;
    if (this.#endHeld) this.ended();
    else this.#attempt?.resume();
  }

  /** Stops the body for good but lets the request run to END_REQUEST, so the connection stays reusable. */
  discard(): void {
    if (this.#over || this.#discarded) return;
    this.#discarded = true;
    this.#held = undefined;
    this.#attempt?.discard();
    if (this.#endHeld) this.ended();
  }

  // ---------------------------------------------------------------- from the attempt

  head(head: BackendResponseHead): void {
    if (!this.#over) this.#sink.head(head);
  }

  data(chunk: Buffer): boolean {
    if (this.#over || this.#discarded) return true;
    if (this.#paused) {
      (this.#held ??= []).push(chunk);
      return false;
    }
    if (this.#sink.data(chunk)) return true;
    this.#paused = true;
    return false;
  }

  stderr(chunk: Buffer): void {
    if (!this.#over) this.#sink.stderr?.(chunk);
  }

  /** END_REQUEST after the head; the connection is already back in the pool. */
  ended(): void {
    if (this.#over) return;
    if (this.#held !== undefined && this.#held.length > 0) {
      this.#endHeld = true;
      return;
    }
    this.#over = true;
    this.#sink.end();
  }

  /** The body broke off (or the request body failed) after the head. */
  bodyFailed(err: unknown): void {
    if (this.#over) return;
    this.#over = true;
    this.#held = undefined;
    this.#sink.error(err);
  }

  /** The params could not be encoded: nothing was sent. */
  unsendable(err: unknown): void {
    this.#attempt = undefined;
    // We may be inside call(): the sink must not hear anything before it returns.
    queueMicrotask(() => this.#error(err));
  }

  /** The attempt failed before a head: send it again if that is safe, else report why. */
  attemptFailed(err: unknown, bodyTaken: boolean, p: PooledConnection): void {
    this.#attempt = undefined;
    if (this.#over) return;
    // Nothing of the request reached the application's code and nothing came back: safe to send again.
    const untouched = !bodyTaken && err instanceof FastCgiConnectionError && err.code === 'ERR_FCGI_CONN_CLOSED' && !err.responseStarted;
    // We run inside the connection's close, before the pool's own 'close' listener: take it out of the count now.
    if (untouched) this.#host.drop(p);
    if (untouched && p.uses > 1 && !this.#resent) {
      this.#resent = true;
      this.#host.log(`fastcgi: a reused connection closed before answering (${err.message}); retrying on a new connection`);
      this.start(true);
      return;
    }
    if (untouched && !this.#recovered && !p.restarted) {
      // A fresh connection in the backlog of a child that was exiting: restart it (once per request).
      this.#host.recover(p.child).then((again) => {
        if (this.#over) return;
        if (!again) return this.#fail(err, p.child);
        this.#recovered = true;
        this.start(false);
      }, (e: unknown) => this.#error(e));
      return;
    }
    this.#fail(err, p.child);
  }

  // ---------------------------------------------------------------- internals

  #send(p: PooledConnection): void {
    if (this.#over) {
      // The caller gave up while we waited: the connection was never used.
      this.#host.release(p);
      return;
    }
    const a = new Attempt(this, this.#host, p, this.#req);
    this.#attempt = a;
    a.run();
  }

  #fail(err: unknown, child: BackendChild | undefined): void {
    const report = (e: unknown): void => this.#error(e);
    this.#host.mapFailure(err, child).then(report, report);
  }

  /** A failure before the head (always asynchronous: from a promise or a socket event). */
  #error(err: unknown): void {
    if (this.#over) return;
    this.#over = true;
    this.#sink.error(err);
  }
}

/**
 * One try of the request on one pooled connection, as the connection's
 * ExchangeSink: the CGI head parsed from STDOUT, then the body passed on to
 * the call, which ends at END_REQUEST once the connection is back in the
 * pool. A failure before the head goes to call.attemptFailed() (once);
 * later callbacks of the exchange only tidy up.
 */
class Attempt implements ExchangeSink {
  readonly #call: FcgiCall;
  readonly #host: CallHost;
  readonly #p: PooledConnection;
  readonly #req: BackendRequest;
  #ex: ClientExchange | undefined;
  #parser: CgiResponseParser | undefined;
  #headDone = false;
  /** Failed before a head, reported to the call. */
  #failed = false;
  /** END_REQUEST or a connection failure: the request is over on the wire. */
  #settled = false;
  /** ABORT_REQUEST went out: the connection is dropped, not reused. */
  #aborted = false;
  #bodyTaken = false;
  #timer: NodeJS.Timeout | undefined;
  #abortTimer: NodeJS.Timeout | undefined;
  #detachBody: (() => void) | undefined;

  constructor(call: FcgiCall, host: CallHost, p: PooledConnection, req: BackendRequest) {
    this.#call = call;
    this.#host = host;
    this.#p = p;
    this.#req = req;
  }

  run(): void {
    const p = this.#p;
    const req = this.#req;
    p.uses++;
    const endStdin = req.body === null || req.contentLength === 0;
    let ex;
    try {
      ex = p.conn.exchange(req.params, this.#host.keepConn, endStdin, this);
    } catch (err) {
      // Nothing was sent (the params cannot be encoded): the connection is still good.
      this.#failed = true;
      this.#host.release(p);
      this.#call.unsendable(err);
      return;
    }
    if (ex instanceof FastCgiConnectionError) {
      this.#failed = true;
      this.#call.attemptFailed(ex, false, p);
      return;
    }
    this.#ex = ex;
    if (endStdin) {
      req.body?.resume();
      this.#startTimer();
    } else {
      this.#sendBody(ex);
    }
  }

  resume(): void {
    this.#ex?.resume();
  }

  discard(): void {
    if (!this.#settled) this.#ex?.discardStdout();
  }

  /** The caller gave up: ABORT_REQUEST; before the head the connection is cut at once, after it END_REQUEST gets a grace period. */
  abort(): void {
    if (this.#settled || this.#failed || this.#aborted) return;
    if (!this.#headDone) {
      this.#failHead(new CallAbortedError());
      return;
    }
    this.#abortOnWire();
  }

  // ---------------------------------------------------------------- ExchangeSink

  stdout(chunk: Buffer): boolean {
    if (this.#headDone) return this.#call.data(chunk);
    if (this.#failed) return true;
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
    this.#headDone = true;
    this.#call.head({ status: head.status, statusText: head.statusText, headers: head.headers });
    return head.rest.length > 0 ? this.#call.data(head.rest) : true;
  }

  stderr(chunk: Buffer): void {
    if (!this.#failed) this.#call.stderr(chunk);
  }

  end(info: FcgiEndInfo): void {
    this.#settle();
    // Back in the pool before the body ends, so the caller's next request finds it idle.
    if (this.#aborted) this.#host.drop(this.#p);
    else this.#host.release(this.#p);
    if (this.#headDone) {
      this.#call.ended();
      return;
    }
    if (this.#failed) return;
    let err;
    if (info.protocolStatus === ProtocolStatus.OVERLOADED) {
      err = backendError('ERR_BACKEND_OVERLOADED', 'the FastCGI application is overloaded (FCGI_OVERLOADED)');
    } else if (info.protocolStatus !== ProtocolStatus.REQUEST_COMPLETE) {
      err = backendError('ERR_BACKEND_PROTOCOL', `the FastCGI application refused the request (protocol status ${info.protocolStatus})`);
    } else {
      const early = backendError('ERR_BACKEND_CLOSED_EARLY', 'the response ended before a complete CGI head');
      err = backendError('ERR_BACKEND_PROTOCOL', 'the FastCGI application ended the request without a complete response head', early);
    }
    this.#failed = true;
    this.#call.attemptFailed(err, this.#bodyTaken, this.#p);
  }

  error(err: FastCgiConnectionError): void {
    this.#settle();
    if (this.#headDone) {
      this.#call.bodyFailed(backendError('ERR_BACKEND_CLOSED_EARLY', `the connection failed before END_REQUEST: ${errorText(err)}`, err));
      return;
    }
    if (this.#failed) return;
    this.#failed = true;
    this.#call.attemptFailed(err, this.#bodyTaken, this.#p);
  }

  // ---------------------------------------------------------------- internals

  #settle(): void {
    this.#settled = true;
    this.#stopTimer();
    clearTimeout(this.#abortTimer);
    this.#detachBody?.();
  }

  /** The head failed (bad head, timeout, upload error, abort) with the request still open: this connection is in an unknown state. */
  #failHead(err: unknown): void {
    if (this.#failed || this.#headDone) return;
    this.#failed = true;
    this.#stopTimer();
    if (!this.#settled) {
      this.#ex?.abort();
      this.#p.conn.destroy();
    }
    this.#call.attemptFailed(err, this.#bodyTaken, this.#p);
  }

  /** After the head: ABORT_REQUEST, the rest of STDOUT dropped, the connection dropped at END_REQUEST or after a grace period. */
  #abortOnWire(): void {
    this.#aborted = true;
    this.#ex?.abort();
    this.#ex?.discardStdout();
    const conn = this.#p.conn;
    this.#abortTimer = setTimeout(() => conn.destroy(), ABORT_GRACE_MS);
    this.#abortTimer.unref();
  }

  #startTimer(): void {
    const ms = this.#host.headerTimeoutMs;
    // 0: no deadline here (the caller keeps its own, as the gateway does).
    if (this.#timer !== undefined || this.#headDone || this.#failed || ms === 0) return;
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
      if (!this.#headDone) {
        this.#failHead(e);
        return;
      }
      if (!this.#settled && !this.#aborted) this.#abortOnWire();
      this.#call.bodyFailed(e);
    };
    body.once('data', onTaken);
    body.once('error', onError);
    body.pipe(stdin);
    stdin.once('finish', () => {
      if (!this.#settled) this.#startTimer();
    });
    this.#detachBody = () => {
      this.#detachBody = undefined;
      body.off('data', onTaken);
      body.off('error', onError);
      body.unpipe(stdin);
      // Hold the rest of the body for a retry: nothing may flow with no listener.
      if (!this.#headDone) body.pause();
    };
  }
}
