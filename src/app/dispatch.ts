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
import { CgiSocket } from './cgi-socket.js';
import type { Exchange } from './exchange.js';
import { readRequestHead } from './request-head.js';
import { attachExchange, logRequestError } from './request-info.js';

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

export function dispatch(host: DispatchHost, exchange: Exchange): void {
  const head = readRequestHead(exchange.params);
  const body = exchange.body;
  let finished = false;
  let aborted = false;
  let bodyWired = true;

  const socket = new CgiSocket(exchange.output, head, {
    onResume: () => {
      if (bodyWired) body.resume();
    },
    onDestroy: () => {
      unwireBody();
      // Destroyed by the app (res.destroy(), req.destroy() mid-body) rather than by an abort:
      // the web server must see the response as broken.
      if (!finished && !aborted) exchange.fail();
    },
    beforeWrite: () => exchange.batch(),
  });

  // A CgiSocket stands in for net.Socket: IncomingMessage/ServerResponse only use its stream
  // surface plus the address fields it carries (see cgi-socket.ts).
  const req = new IncomingMessage(socket as unknown as Socket);
  req.method = head.method;
  req.url = head.url;
  req.httpVersionMajor = head.httpVersionMajor;
  req.httpVersionMinor = head.httpVersionMinor;
  req.httpVersion = `${head.httpVersionMajor}.${head.httpVersionMinor}`;
  const internals = req as IncomingMessage & IncomingInternals;
  if (typeof internals._addHeaderLines === 'function') {
    // The parser's own entry point: req.headers is then built lazily, with node's duplicate rules.
    internals._addHeaderLines(head.rawHeaders, head.rawHeaders.length);
  } else {
    req.rawHeaders = head.rawHeaders;
    const headers: Record<string, string> = {};
    for (let i = 0; i < head.rawHeaders.length; i += 2) headers[head.rawHeaders[i]!] = head.rawHeaders[i + 1]!;
    req.headers = headers;
  }
  attachExchange(req, exchange);

  const res = new ServerResponse(req);
  // The web server frames the response for its client and adds Date; we send an unframed CGI body.
  res.sendDate = false;
  // HTTP/1.0 or HTTP/2 requests turn this off in the constructor; it only decides whether
  // res.end(body) gets an automatic Content-Length, which CGI wants regardless of the client.
  res.useChunkedEncodingByDefault = true;
  // Public API whose side effect is what we need: no Connection header, no chunked framing.
  res.removeHeader('connection');
  res.removeHeader('transfer-encoding');
  res.assignSocket(socket as unknown as Socket);
  socket.on('drain', () => relayDrain(res));

  // ---------------------------------------------------------------- body: exchange → req
  const onData = (chunk: Buffer): void => {
    if (!req.push(chunk)) body.pause();
  };
  const onEnd = (): void => {
    bodyWired = false;
    req.complete = true;
    req.push(null);
  };
  // Stays attached after unwiring: a body that fails later must not become an uncaught 'error'.
  const onBodyError = (err: Error): void => {
    if (!bodyWired) return;
    unwireBody();
    if (!req.destroyed) req.destroy(err);
  };
  const onBodyClose = (): void => {
    // Closed without 'end': the protocol layer dropped the stream (request released or aborted).
    if (bodyWired) onBodyError(abortError());
  };
  function unwireBody(): void {
    if (!bodyWired) return;
    bodyWired = false;
    body.removeListener('data', onData);
    body.removeListener('end', onEnd);
    body.removeListener('close', onBodyClose);
    // Whatever is left is read and dropped, so the protocol layer can go on.
    if (!body.destroyed) body.resume();
  }
  body.on('data', onData);
  body.once('end', onEnd);
  body.on('error', onBodyError);
  body.once('close', onBodyClose);

  // ---------------------------------------------------------------- end of the response
  res.once('finish', () => {
    finished = true;
    exchange.complete();
    // As node:http's resOnFinish: drop a body nobody read, detach, then 'close'.
    if (!internals._consuming && req.readableFlowing !== true) {
      if (typeof internals._dump === 'function') internals._dump();
      else req.resume();
    }
    res.detachSocket(socket as unknown as Socket);
    process.nextTick(emitClose, res);
    postDispatch(host, req, res);
  });

  exchange.onAbort(() => {
    if (finished || aborted) return;
    aborted = true;
    unwireBody();
    // As node:http's abortIncoming: socket 'close' → res 'close'; req 'aborted' + 'close'.
    socket.destroy();
    if (!req.destroyed) req.destroy(abortError());
    postDispatch(host, req, res);
  });

  // ---------------------------------------------------------------- the handler
  const failed = (err: unknown): void => handlerFailed(host, err, req, res, socket);
  try {
    host.preDispatch?.(req, res);
    const listeners = host.requestListeners();
    if (listeners.length === 0) {
      failed(new Error('no request listener: pass a handler to createServer() or add one with server.on("request", …)'));
      return;
    }
    for (const listener of listeners) {
      const result: unknown = listener.call(host.listenerThis, req, res);
      if (isThenable(result)) result.then(undefined, failed);
    }
  } catch (err) {
    failed(err);
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
