/**
 * @module app/dispatch
 * Serves one exchange with a node:http handler: builds a real
 * http.IncomingMessage and http.ServerResponse around a CgiSocket, streams
 * the body in with backpressure, and does what node:http's server does
 * around a response (resOnFinish, abortIncoming), plus what it does not:
 * a handler that throws or rejects gets a 500 for that request only.
 */
import { IncomingMessage, OutgoingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { CgiSocket, type CgiSocketHooks } from './cgi-socket.js';
import type { Exchange, ExchangeWatcher } from './exchange.js';
import { readRequestHead, readRequestHeadFromPairs } from './request-head.js';
import { attachRequestInfo, logRequestError, type RequestInfo } from './request-info.js';

/** What dispatch needs from the server: its handlers and hooks. */
export interface DispatchHost {
  /** The 'request' listeners, called in order like EventEmitter#emit would. */
  requestListeners(): Function[];
  /** `this` for the listeners (the Server, as with node:http). */
  readonly listenerThis: object;
  preDispatch?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  postDispatch?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** A handler threw or rejected (already logged to the request's error log). */
  onHandlerError?: ((err: unknown, req: IncomingMessage, res: ServerResponse) => void) | undefined;
}

/** IncomingMessage fields node:http's own server uses; stable since Node 0.x but not in @types/node. */
interface IncomingInternals {
  _consuming?: boolean;
  _dump?: () => void;
  _addHeaderLines?: (headers: string[], n: number) => void;
}

/** OutgoingMessage fields node:http sets when the response is done (emitCloseNT). */
interface OutgoingInternals {
  _closed?: boolean;
}

/**
 * OutgoingMessage's "a write returned false, owe a 'drain'" flag. Node's HTTP
 * server clears it and emits 'drain' when the socket drains (socketOnDrain);
 * we own the socket, so we do the same. Found by its description because it
 * is a module-private symbol; if a future Node renames it we still emit
 * 'drain' (pipe() tolerates a spare one) but cannot clear the flag.
 */
const kNeedDrain: symbol | undefined = Object.getOwnPropertySymbols(new OutgoingMessage()).find((s) => s.description === 'kNeedDrain');

function relayDrain(res: ServerResponse): void {
  if (res.writableEnded || !res.writableNeedDrain) return;
  if (kNeedDrain) (res as unknown as Record<symbol, boolean>)[kNeedDrain] = false;
  res.emit('drain');
}

function emitClose(res: ServerResponse): void {
  const r = res as ServerResponse & OutgoingInternals;
  if (r._closed) return;
  r.destroyed = true;
  r._closed = true;
  res.emit('close');
}

function abortError(): Error {
  // What node:http gives req.destroy() when the client goes away (connResetException('aborted')).
  return Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
}

/** The ServerResponse flags removeHeader() sets; set directly when Node has them (it always has). */
interface RemovedFlags {
  _removedConnection?: unknown;
  _removedTE?: unknown;
}

/** Where a response's own listeners find their Dispatch (no closure per request). */
const kDispatch = Symbol('gatehouse.dispatch');
type Tagged = ServerResponse & { [kDispatch]?: Dispatch };

function onResponseFinish(this: Tagged): void {
  this[kDispatch]?.responseFinished();
}

function onResponsePrefinish(this: Tagged): void {
  this[kDispatch]?.responsePrefinished();
}

function onSocketDrain(this: CgiSocket): void {
  const res = this._httpMessage as ServerResponse | null | undefined;
  if (res) relayDrain(res);
}

/** Serves `exchange`; `onDone` (if given) is called once the protocol layer is done with it. */
export function dispatch(host: DispatchHost, exchange: Exchange, onDone: (() => void) | null = null): void {
  new Dispatch(host, exchange, onDone).run();
}

/**
 * One request being served: the IncomingMessage/ServerResponse pair around a
 * CgiSocket, and the state shared by their listeners. A class rather than a
 * dozen closures: this runs for every request. It is also the CgiSocket's
 * hooks object.
 */
class Dispatch implements CgiSocketHooks, ExchangeWatcher, RequestInfo {
  readonly #host: DispatchHost;
  readonly #exchange: Exchange;
  /** RequestInfo: cgiParams() finds the request's exchange here. */
  params: Record<string, string> | null = null;
  #onDone: (() => void) | null;
  readonly #body: Readable | null;
  readonly #socket: CgiSocket;
  readonly #req: IncomingMessage & IncomingInternals;
  readonly #res: ServerResponse;
  #finished = false;
  /** exchange.complete() was called. */
  #completed = false;
  #aborted = false;
  #bodyWired: boolean;
  /** Set while a body is wired: removes the body listeners. */
  #unwire: (() => void) | null = null;

  constructor(host: DispatchHost, exchange: Exchange, onDone: (() => void) | null) {
    this.#host = host;
    this.#exchange = exchange;
    this.#onDone = onDone;
    // First, so that onDone is called however the rest goes.
    exchange.watch(this);
    const rawParams = exchange.rawParams;
    const head = rawParams !== null ? readRequestHeadFromPairs(rawParams) : readRequestHead(exchange.params);
    // No body at all (a GET from nginx): nothing to wire; the request just ends, as node:http's parser ends it.
    this.#body = exchange.bodyEmpty ? null : exchange.body;
    this.#bodyWired = this.#body !== null;

    const socket = new CgiSocket(exchange.sink, head, this);
    this.#socket = socket;

    // A CgiSocket stands in for net.Socket: IncomingMessage/ServerResponse only use its stream
    // surface plus the address fields it carries (see cgi-socket.ts).
    const req = new IncomingMessage(socket as unknown as Socket) as IncomingMessage & IncomingInternals;
    this.#req = req;
    req.method = head.method;
    req.url = head.url;
    req.httpVersionMajor = head.httpVersionMajor;
    req.httpVersionMinor = head.httpVersionMinor;
    req.httpVersion = head.httpVersionMajor === 1 ? (head.httpVersionMinor === 1 ? '1.1' : head.httpVersionMinor === 0 ? '1.0' : `1.${head.httpVersionMinor}`) : `${head.httpVersionMajor}.${head.httpVersionMinor}`;
    if (typeof req._addHeaderLines === 'function') {
      // The parser's own entry point: req.headers is then built lazily, with node's duplicate rules.
      req._addHeaderLines(head.rawHeaders, head.rawHeaders.length);
    } else {
      req.rawHeaders = head.rawHeaders;
      const headers: Record<string, string> = {};
      for (let i = 0; i < head.rawHeaders.length; i += 2) headers[head.rawHeaders[i]!] = head.rawHeaders[i + 1]!;
      req.headers = headers;
    }
    attachRequestInfo(req, this);

    const res = new ServerResponse(req);
    this.#res = res;
    // The web server frames the response for its client and adds Date; we send an unframed CGI body.
    res.sendDate = false;
    // HTTP/1.0 or HTTP/2 requests turn this off in the constructor; it only decides whether
    // res.end(body) gets an automatic Content-Length, which CGI wants regardless of the client.
    res.useChunkedEncodingByDefault = true;
    // No Connection header, no chunked framing: what removeHeader('connection') and
    // removeHeader('transfer-encoding') do on a fresh response (flags only), without their work.
    const flags = res as ServerResponse & RemovedFlags;
    if (typeof flags._removedConnection === 'boolean' && typeof flags._removedTE === 'boolean') {
      flags._removedConnection = true;
      flags._removedTE = true;
    } else {
      res.removeHeader('connection');
      res.removeHeader('transfer-encoding');
    }
    res.assignSocket(socket as unknown as Socket);
    // The socket's 'drain' is relayed to res (node:http's socketOnDrain) once a write can make it owe one: see needDrain().
  }

  get exchange(): Exchange {
    return this.#exchange;
  }

  run(): void {
    const req = this.#req;
    const res = this.#res;
    if (this.#body !== null) this.#wireBody(this.#body);

    // ---------------------------------------------------------------- end of the response
    (res as Tagged)[kDispatch] = this;
    res.on('prefinish', onResponsePrefinish);
    res.on('finish', onResponseFinish);

    // ---------------------------------------------------------------- the handler
    const host = this.#host;
    try {
      host.preDispatch?.(req, res);
      const listeners = host.requestListeners();
      if (listeners.length === 0) {
        this.#failed(new Error('no request listener: pass a handler to createServer() or add one with server.on("request", …)'));
      }
      for (const listener of listeners) {
        const result: unknown = listener.call(host.listenerThis, req, res);
        if (isThenable(result)) result.then(undefined, (err: unknown) => this.#failed(err));
      }
    } catch (err) {
      this.#failed(err);
    }
    // node:http ends a bodyless request right after its handler was called (parserOnMessageComplete).
    if (this.#body === null && !req.destroyed) {
      req.complete = true;
      req.push(null);
    }
  }

  // ---------------------------------------------------------------- CgiSocketHooks

  onResume(): void {
    if (this.#bodyWired) this.#body!.resume();
  }

  onDestroy(): void {
    this.#unwireBody();
    // Destroyed by the app (res.destroy(), req.destroy() mid-body) rather than by an abort:
    // the web server must see the response as broken.
    if (!this.#completed && !this.#aborted) this.#exchange.fail();
  }

  beforeWrite(): void {
    this.#exchange.batch();
  }

  needDrain(): void {
    this.#socket.on('drain', onSocketDrain);
  }

  // ---------------------------------------------------------------- body: exchange → req

  #wireBody(body: Readable): void {
    const req = this.#req;
    const onData = (chunk: Buffer): void => {
      if (!req.push(chunk)) body.pause();
    };
    const onEnd = (): void => {
      this.#bodyWired = false;
      this.#unwire = null;
      req.complete = true;
      req.push(null);
    };
    // Stays attached after unwiring: a body that fails later must not become an uncaught 'error'.
    const onBodyError = (err: Error): void => {
      if (!this.#bodyWired) return;
      this.#unwireBody();
      if (!req.destroyed) req.destroy(err);
    };
    const onBodyClose = (): void => {
      // Closed without 'end': the protocol layer dropped the stream (request released or aborted).
      if (this.#bodyWired) onBodyError(abortError());
    };
    this.#unwire = () => {
      body.removeListener('data', onData);
      body.removeListener('end', onEnd);
      body.removeListener('close', onBodyClose);
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.on('error', onBodyError);
    body.once('close', onBodyClose);
  }

  #unwireBody(): void {
    const body = this.#body;
    if (!this.#bodyWired || body === null) return;
    this.#bodyWired = false;
    this.#unwire?.();
    this.#unwire = null;
    // Whatever is left is read and dropped, so the protocol layer can go on.
    if (!body.destroyed) body.resume();
  }

  // ---------------------------------------------------------------- endings

  /**
   * res.end() has handed everything to the socket ('prefinish', inside
   * res.end()). If the CgiSocket passed it all on at once (nothing waits in
   * its buffer), the response is complete now: END_REQUEST goes out with
   * the data in the same write, without waiting a tick for 'finish'.
   */
  responsePrefinished(): void {
    if (this.#completed || this.#aborted || this.#socket.writableLength !== 0 || this.#socket.destroyed) return;
    this.#completed = true;
    this.#exchange.complete();
  }

  responseFinished(): void {
    if (this.#finished) return;
    this.#finished = true;
    const req = this.#req;
    const res = this.#res;
    if (!this.#completed) {
      this.#completed = true;
      this.#exchange.complete();
    }
    // As node:http's resOnFinish: drop a body nobody read, detach, then 'close'.
    if (!req._consuming && req.readableFlowing !== true) {
      if (typeof req._dump === 'function') req._dump();
      else req.resume();
    }
    res.detachSocket(this.#socket as unknown as Socket);
    process.nextTick(emitClose, res);
    postDispatch(this.#host, req, res);
  }

  // ---------------------------------------------------------------- ExchangeWatcher

  requestAborted(): void {
    this.#abort();
  }

  requestClosed(): void {
    const done = this.#onDone;
    this.#onDone = null;
    done?.();
  }

  #abort(): void {
    if (this.#finished || this.#aborted) return;
    this.#aborted = true;
    this.#unwireBody();
    const req = this.#req;
    // As node:http's abortIncoming: socket 'close' → res 'close'; req 'aborted' + 'close'.
    this.#socket.destroy();
    if (!req.destroyed) req.destroy(abortError());
    postDispatch(this.#host, req, this.#res);
  }

  #failed(err: unknown): void {
    handlerFailed(this.#host, err, this.#req, this.#res, this.#socket);
  }
}

/** The hook runs inside stream callbacks, where a throw would take the process down. */
function postDispatch(host: DispatchHost, req: IncomingMessage, res: ServerResponse): void {
  if (!host.postDispatch) return;
  try {
    host.postDispatch(req, res);
  } catch (err) {
    logRequestError(req, err);
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

const ERROR_BODY = 'Internal Server Error\n';

/** A handler threw or rejected: log it; 500 if nothing was sent yet, else a broken response. */
function handlerFailed(host: DispatchHost, err: unknown, req: IncomingMessage, res: ServerResponse, socket: CgiSocket): void {
  try {
    logRequestError(req, err);
    host.onHandlerError?.(err, req, res);
  } catch {
    // Logging must not turn one failed request into a crashed process.
  }
  if (res.writableEnded || res.destroyed) return;
  if (!res.headersSent) {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.statusCode = 500;
    res.statusMessage = 'Internal Server Error';
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(ERROR_BODY));
    res.end(ERROR_BODY);
  } else {
    socket.destroy();
  }
}
