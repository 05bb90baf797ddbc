/**
 * @module gateway/forward
 * One request handed to the backend and its answer handed back: CGI params
 * (src/cgi), the body streamed (Content-Length) or spooled first (chunked),
 * a backend slot when maxConns is set, `100 Continue` only once the backend
 * actually reads the body, a deadline for the response head, client aborts
 * passed on to the backend, and every failure turned into 502/503/504 plus
 * a log line with its cause.
 *
 * The hot path is callbacks on one object per request (Forwarding): it
 * waits for the slot (SlotWaiter), receives the response (ResponseSink of
 * Backend.call()) and copies it into the client's Exchange (src/http1)
 * with backpressure, with one deadline (deadlines.ts) that is first the head deadline, then
 * the body's idle timer. No promise, stream or AbortController per request,
 * and no callback on the exchange unless it pushes back: the gateway's one
 * 'exchangeClose' listener reports the end of the exchange (exchangeClosed()).
 */
import type { Readable } from 'node:stream';
import type { Exchange } from '../http1/server.js';
import { callViaDispatch } from '../backend/call-adapter.js';
import { BackendError, type Backend, type BackendCall, type BackendRequest, type BackendResponseHead, type ResponseSink } from '../backend/contract.js';
import { cgiParamsFromHttp, type CgiRequestInput } from '../cgi/request-env.js';
import type { ParamList } from '../fastcgi/contract.js';
import type { BackendSlots, SlotWaiter } from './backend-slots.js';
import type { Deadlines, Timed } from './deadlines.js';
import { clientAddress } from './client-address.js';
import { describeCause, GatewayTimeoutError, sendError, statusForError } from './error-response.js';
import type { ResolvedGatewayOptions } from './options.js';
import type { ScriptTarget } from './php-preset.js';
import { responseHasNoBody } from '../http1/response-head.js';
import { RelayError, responseHead, type RelayHead } from './response-relay.js';
import { spoolBody, type SpooledBody } from './spool.js';
import type { LogLimiter } from './log-limiter.js';
import type { GatewayStats } from './status-page.js';

/** Backend.call(), or dispatch() adapted to it. */
export type CallBackend = (req: BackendRequest, sink: ResponseSink) => BackendCall;

export interface ForwardContext {
  readonly options: ResolvedGatewayOptions;
  readonly stats: GatewayStats;
  /** Present when maxConns bounds the requests at the backend. */
  readonly slots: BackendSlots | undefined;
  /** How requests reach the backend (callerFor(), decided once). */
  readonly call: CallBackend;
  /** A bug of ours on the asynchronous (spool) path: answer 500 and log, as for a synchronous one. */
  readonly internalError: (ex: Exchange, err: unknown) => void;
  /** Per-request failure lines, limited per kind under overload. */
  readonly failures: LogLimiter;
  /** The one sweep that fires every request's deadline. */
  readonly deadlines: Deadlines;
}

/** The backend's own call() when it has one, else its dispatch() through the adapter. */
export function callerFor(backend: Backend): CallBackend {
  if (typeof backend.call === 'function') return backend.call.bind(backend);
  return (req, sink) => callViaDispatch(backend, req, sink);
}

/**
 * Forwards `req`; never throws for anything the client or the backend does.
 * `script` is the --root preset's decision (SCRIPT_NAME, PATH_INFO,
 * SCRIPT_FILENAME, DOCUMENT_ROOT), if any.
 */
export function forward(ctx: ForwardContext, ex: Exchange, script?: ScriptTarget): void {
  const forwarding = new Forwarding(ctx, ex, script);
  ex.context = forwarding;
  forwarding.start();
}

/** Tells the exchange's Forwarding (if any) that the exchange is over: the gateway's 'exchangeClose' listener calls it. */
export function exchangeClosed(ex: Exchange): void {
  if (ex.context instanceof Forwarding) ex.context.exchangeClosed();
}

/** The response was cut by the gateway (the application's body broke off), not by the client leaving. */
export function cutByGateway(ex: Exchange): boolean {
  return ex.context instanceof Forwarding && ex.context.cut;
}

// Where a Forwarding is; each step only ever moves forward.
/** Reading a chunked body to learn its length. */
const SPOOLING = 1;
/** Queued for a backend slot (the deadline is the slot's). */
const WAITING = 2;
/** At the backend, no head yet (the deadline is the head's, from the end of the upload). */
const CALLING = 3;
/** Head sent, copying the body (the deadline is the body's idle time). */
const RELAYING = 4;
/** HEAD, 204, 304: the response is complete, the backend's bytes are read and dropped. */
const DRAINING = 5;
const DONE = 6;

class Forwarding implements ResponseSink, SlotWaiter, Timed {
  readonly #ctx: ForwardContext;
  readonly #ex: Exchange;
  readonly #script: ScriptTarget | undefined;
  readonly #started = Date.now();
  #phase = 0;
  #params: ParamList | undefined;
  /** The exchange's body (Content-Length), a spooled copy (chunked), or none. */
  #body: Readable | null = null;
  /** The spooled copy, freed when the exchange is over. */
  #spooled: SpooledBody | undefined;
  #contentLength = 0;
  #call: BackendCall | undefined;
  /** abort() was wanted before call() returned. */
  #abortWanted = false;
  /** When the current wait runs out (Deadlines owns it): slot, head, or body idle. */
  deadline = 0;
  prevTimed: Timed | null = null;
  nextTimed: Timed | null = null;
  #holdsSlot = false;
  /** The head deadline waits for the end of the upload. */
  #uploading = false;
  /** The application's Content-Length, and the body bytes relayed so far. */
  #expected: number | undefined;
  #sent = 0;
  /** data() returned false: call.resume() on the exchange's ondrain. */
  #paused = false;
  /** #cut() ended the response (the access log keeps its status rather than 499). */
  cut = false;

  constructor(ctx: ForwardContext, ex: Exchange, script: ScriptTarget | undefined) {
    this.#ctx = ctx;
    this.#ex = ex;
    this.#script = script;
  }

  start(): void {
    const ex = this.#ex;
    const declared = ex.contentLength;
    try {
      this.#params = buildParams(ex, this.#ctx.options, declared, this.#script);
    } catch (err) {
      return this.#fail(err);
    }
    if (ex.chunked) {
      this.#spool().catch((err: unknown) => this.#internalError(err));
      return;
    }
    if (declared !== undefined && declared > 0) {
      this.#contentLength = declared;
      // `100 Continue` goes out when the backend starts reading it (src/http1's RequestBody), i.e. it was reached.
      this.#body = ex.body;
    }
    this.#queue();
  }

  /** The body without Content-Length, read to its end first (CGI needs CONTENT_LENGTH up front). */
  async #spool(): Promise<void> {
    this.#phase = SPOOLING;
    const { options } = this.#ctx;
    let spooled;
    try {
      spooled = await spoolBody(this.#ex.body!, { limit: options.maxBodySpool, memoryLimit: options.spoolMemory, dir: options.spoolDir });
    } catch (err) {
      return this.#fail(err);
    }
    // The exchange is over for good once the response closes (sent or cut): only then is
    // it safe to free the file, even if the backend stopped reading the body early.
    if (this.#phase !== SPOOLING) {
      void spooled.dispose(); // the client is gone already
      return;
    }
    this.#spooled = spooled;
    this.#contentLength = spooled.length;
    if (spooled.length > 0) {
      this.#params!.push(['CONTENT_LENGTH', String(spooled.length)]);
      this.#body = spooled.stream();
    }
    this.#queue();
  }

  /** A backend slot (maxConns), now or once one frees; the wait counts against the deadline. */
  #queue(): void {
    const slots = this.#ctx.slots;
    if (slots === undefined) return this.#send();
    if (slots.acquire(this)) {
      this.#holdsSlot = true;
      return this.#send();
    }
    this.#phase = WAITING;
    this.#armTimer();
  }

  /** BackendSlots: this request holds a slot now. */
  slotGranted(): void {
    this.#holdsSlot = true;
    if (this.#phase !== WAITING) return this.#releaseSlot();
    this.#send();
  }

  #send(): void {
    this.#phase = CALLING;
    const ex = this.#ex;
    const body = this.#body;
    // The head deadline runs from the end of the upload: a slow client is not a slow backend.
    if (body !== null && body === ex.body && !ex.complete) {
      this.#uploading = true;
      body.once('end', () => this.#uploadEnded());
    } else {
      this.#armTimer();
    }
    let call: BackendCall;
    try {
      call = this.#ctx.call({ params: this.#params!, body, contentLength: this.#contentLength }, this);
    } catch (err) {
      return this.#fail(err);
    }
    this.#call = call;
    if (this.#abortWanted) call.abort();
  }

  #uploadEnded(): void {
    this.#uploading = false;
    if (this.#phase === CALLING) this.#armTimer();
  }

  // ---------------------------------------------------------------- ResponseSink

  head(head: BackendResponseHead): void {
    if (this.#phase !== CALLING) return;
    const ex = this.#ex;
    let relay: RelayHead;
    try {
      relay = responseHead(head);
      ex.writeHead(head.status, head.statusText, relay.flat, relay.contentLength);
    } catch (err) {
      this.#abortCall();
      return this.#fail(err);
    }
    this.#expected = relay.contentLength;
    // From here the deadline is the body's idle time.
    this.#armTimer();
    // (1xx never gets here: responseHead() refused it as a final response.)
    if (responseHasNoBody(ex.method, head.status)) {
      // Whatever comes (a HEAD answered with a body) is read and dropped so the backend connection can be reused.
      this.#phase = DRAINING;
      ex.end();
    } else {
      this.#phase = RELAYING;
    }
  }

  data(chunk: Buffer): boolean {
    const phase = this.#phase;
    if (phase === RELAYING) {
      const sent = (this.#sent += chunk.length);
      const expected = this.#expected;
      if (expected !== undefined && sent > expected) {
        this.#cut(new RelayError('ERR_GATEWAY_LENGTH_MISMATCH', `gateway: the application sent more than its Content-Length ${expected}`), false);
        return true;
      }
      this.#armTimer();
      const ex = this.#ex;
      if (ex.write(chunk)) return true;
      // The client pushes back (or is gone: then the exchange closes instead of draining).
      this.#paused = true;
      ex.ondrain ??= () => this.#drained();
      return false;
    }
    if (phase === DRAINING) this.#armTimer();
    return true;
  }

  end(): void {
    const phase = this.#phase;
    if (phase === RELAYING) {
      const expected = this.#expected;
      if (expected !== undefined && this.#sent !== expected) {
        const err = new RelayError('ERR_GATEWAY_LENGTH_MISMATCH', `gateway: the application sent ${this.#sent} of its Content-Length ${expected} bytes`);
        return this.#cut(err, true);
      }
      this.#phase = DONE;
      this.#ctx.deadlines.disarm(this);
      this.#ex.end();
      this.#releaseSlot();
    } else if (phase === DRAINING) {
      this.#phase = DONE;
      this.#ctx.deadlines.disarm(this);
      this.#releaseSlot();
    } else if (phase === CALLING) {
      this.#fail(new BackendError('ERR_BACKEND_PROTOCOL', 'gateway: the backend ended the response before its head'));
    }
  }

  error(err: unknown): void {
    const phase = this.#phase;
    if (phase === CALLING) {
      this.#fail(err);
    } else if (phase === RELAYING) {
      this.#cut(err, true);
    } else if (phase === DRAINING) {
      // The client has its complete response; only the slot is left to free.
      this.#phase = DONE;
      this.#ctx.deadlines.disarm(this);
      this.#releaseSlot();
    }
  }

  stderr(chunk: Buffer): void {
    // FastCGI STDERR (PHP warnings) goes to our log, as nginx's "FastCGI sent in stderr".
    const ex = this.#ex;
    this.#ctx.failures.log('application stderr', () => `${ex.method} ${ex.url}: application stderr: ${chunk.toString('latin1').trimEnd()}`);
  }

  // ---------------------------------------------------------------- events

  /** The gateway's 'exchangeClose' listener: the client left unless the response was complete. */
  exchangeClosed(): void {
    // Only now is the exchange over for good (sent or cut), even if the backend stopped reading the body early.
    if (this.#spooled !== undefined) void this.#spooled.dispose();
    const phase = this.#phase;
    if (phase === DONE || this.#ex.finished) return;
    this.#phase = DONE;
    this.#ctx.deadlines.disarm(this);
    if (phase === WAITING) this.#ctx.slots!.cancel(this);
    this.#abortCall();
    this.#releaseSlot();
    this.#dropSpooled();
  }

  #drained(): void {
    if (!this.#paused || this.#phase !== RELAYING) return;
    this.#paused = false;
    this.#call?.resume();
  }

  /** Deadlines: the current wait ran out. */
  onDeadline(): void {
    const { options, slots } = this.#ctx;
    switch (this.#phase) {
      case WAITING:
        // Running out of time in the queue is overload.
        slots!.cancel(this);
        return this.#fail(
          new BackendError(
            'ERR_BACKEND_OVERLOADED',
            `gateway: no free backend slot within ${options.backendTimeout} ms (${slots!.busy} of ${slots!.max} busy, ${slots!.waiting} more waiting)`,
          ),
        );
      case CALLING:
        if (this.#uploading) return; // armed again at the end of the upload
        this.#abortCall();
        return this.#fail(new GatewayTimeoutError(options.backendTimeout));
      case RELAYING:
        return this.#cut(new RelayError('ERR_GATEWAY_BODY_IDLE', 'gateway: the application sent no body bytes for too long'), false);
      case DRAINING:
        this.#phase = DONE;
        this.#abortCall();
        this.#releaseSlot();
        return;
    }
  }

  // ---------------------------------------------------------------- endings

  /** (Re)starts the one deadline: backendTimeout from now. */
  #armTimer(): void {
    this.#ctx.deadlines.arm(this);
  }

  #abortCall(): void {
    if (this.#call !== undefined) this.#call.abort();
    else this.#abortWanted = true;
  }

  #releaseSlot(): void {
    if (!this.#holdsSlot) return;
    this.#holdsSlot = false;
    this.#ctx.slots!.release();
  }

  /** A spooled body the backend will not read to its end (the file itself goes at 'close'). */
  #dropSpooled(): void {
    const body = this.#body;
    if (body !== null && body !== this.#ex.body) body.destroy();
  }

  /** A bug of ours on the asynchronous path: give up on everything, then the gateway answers 500. */
  #internalError(err: unknown): void {
    this.#phase = DONE;
    this.#ctx.deadlines.disarm(this);
    this.#abortCall();
    this.#releaseSlot();
    this.#dropSpooled();
    this.#ctx.internalError(this.#ex, err);
  }

  /** Answers a failure before the response head (unless the client is gone) and logs 5xx causes. */
  #fail(err: unknown): void {
    if (this.#phase === DONE) return;
    this.#phase = DONE;
    this.#ctx.deadlines.disarm(this);
    this.#releaseSlot();
    this.#dropSpooled();
    const ex = this.#ex;
    if (ex.destroyed) return;
    const { options, stats, failures } = this.#ctx;
    const status = statusForError(err);
    stats.countError(status);
    if (status >= 500) failures.log(String(status), () => `${status} ${ex.method} ${ex.url} after ${Date.now() - this.#started} ms: ${describeCause(err)}`);
    // An unread body would have to be read and dropped first: close instead.
    sendError(ex, status, { retryAfter: options.retryAfter, close: !ex.complete });
  }

  /**
   * The body broke off after the head was sent: the connection is cut (a
   * half-sent response must not look complete). `ended`: the backend is
   * done with the request already (nothing to abort).
   */
  #cut(err: unknown, ended: boolean): void {
    this.#phase = DONE;
    this.cut = true;
    this.#ctx.deadlines.disarm(this);
    if (!ended) this.#abortCall();
    this.#releaseSlot();
    this.#ex.destroy();
    const { failures, stats } = this.#ctx;
    stats.brokenResponses++;
    failures.log('response cut', () => `${this.#ex.method} ${this.#ex.url}: response cut after ${Date.now() - this.#started} ms: ${describeCause(err)}`);
  }
}

function buildParams(ex: Exchange, options: ResolvedGatewayOptions, contentLength: number | undefined, script?: ScriptTarget): ParamList {
  const socket = ex.socket;
  const peer = ex.remoteAddress;
  // One object shape with or without a script (the fields cgiParamsFromHttp treats as absent when undefined).
  const input: CgiRequestInput = {
    method: ex.method,
    url: ex.url,
    httpVersion: ex.httpVersion,
    rawHeaders: ex.rawHeaders,
    remoteAddress: options.trustProxy === false ? peer : clientAddress(peer, ex.headers, options.trustProxy),
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
    https: ex.encrypted,
    scriptName: undefined,
    pathInfo: undefined,
    scriptFilename: undefined,
    documentRoot: undefined,
    contentLength,
  };
  if (script === undefined) return cgiParamsFromHttp(input);
  const bytes = script.params;
  input.scriptName = bytes.scriptName;
  input.pathInfo = bytes.pathInfo;
  input.scriptFilename = bytes.scriptFilename;
  input.documentRoot = bytes.documentRoot;
  const params = cgiParamsFromHttp(input);
  const extra = bytes.extra;
  for (let i = 0; i < extra.length; i++) params.push(extra[i]!);
  return params;
}
