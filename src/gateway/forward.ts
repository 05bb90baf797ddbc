/**
 * @module gateway/forward
 * One request handed to the backend and its answer handed back: CGI params
 * (src/cgi), the body streamed (Content-Length) or spooled first (chunked),
 * a backend slot when maxConns is set, `100 Continue` only once the backend
 * actually reads the body, a deadline for the response head, client aborts
 * passed on as an AbortSignal, and every failure turned into 502/503/504
 * plus a log line with its cause.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { BackendError, type BackendResponse } from '../backend/contract.js';
import { cgiParamsFromHttp, type CgiRequestInput } from '../cgi/request-env.js';
import type { ParamList } from '../fastcgi/contract.js';
import type { BackendSlots } from './backend-slots.js';
import { clientAddress } from './client-address.js';
import { describeCause, GatewayTimeoutError, sendError, statusForError } from './error-response.js';
import type { ResolvedGatewayOptions } from './options.js';
import { asBytes, phpExtraParams, type ScriptTarget } from './php-preset.js';
import { bodyless, ClientClosedError, ignoreError, ResponsePump, responseHead } from './response-relay.js';
import { spoolBody, type SpooledBody } from './spool.js';
import type { GatewayStats } from './status-page.js';

export interface ForwardContext {
  readonly options: ResolvedGatewayOptions;
  readonly stats: GatewayStats;
  /** Present when maxConns bounds the requests at the backend. */
  readonly slots: BackendSlots | undefined;
}

/** The client closed its connection: nothing more can be sent, the backend request is abandoned. */
class ClientGoneError extends Error {
  constructor() {
    super('gateway: the client went away');
  }
}

/**
 * Forwards `req`; never rejects. `script` is the --root preset's decision
 * (SCRIPT_NAME, PATH_INFO, SCRIPT_FILENAME, DOCUMENT_ROOT), if any.
 */
export async function forward(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, expectContinue: boolean, script?: ScriptTarget): Promise<void> {
  const { options } = ctx;
  const started = Date.now();
  const chunked = req.headers['transfer-encoding'] !== undefined;
  const declared = chunked || req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);

  let params: ParamList;
  try {
    params = buildParams(req, options, declared, script);
  } catch (err) {
    return fail(ctx, req, res, err, started);
  }

  // The body: as it arrives (Content-Length) or spooled to learn its length (chunked).
  let body: Readable | null = null;
  let contentLength = declared ?? 0;
  let spooled: SpooledBody | undefined;
  if (chunked) {
    if (expectContinue) res.writeContinue();
    try {
      spooled = await spoolBody(req, { limit: options.maxBodySpool, memoryLimit: options.spoolMemory, dir: options.spoolDir });
    } catch (err) {
      return fail(ctx, req, res, err, started);
    }
    contentLength = spooled.length;
    // The exchange is over for good once the response closes (sent or cut): only then is
    // it safe to free the file, even if the backend stopped reading the body early.
    const spool = spooled;
    res.once('close', () => void spool.dispose());
    if (contentLength > 0) {
      params.push(['CONTENT_LENGTH', String(contentLength)]);
      body = spooled.stream();
    }
  } else if (contentLength > 0) {
    body = req;
    // Say "go ahead" only when the backend really starts reading, i.e. it was reached.
    if (expectContinue) req.once('resume', () => res.headersSent || res.writeContinue());
  }

  const controller = new AbortController();
  let deadline: NodeJS.Timeout | undefined;
  const onClose = (): void => {
    if (res.writableFinished) return;
    clearTimeout(deadline);
    controller.abort(new ClientGoneError());
  };
  res.once('close', onClose);
  const startDeadline = (): void => {
    deadline = setTimeout(() => controller.abort(new GatewayTimeoutError(options.backendTimeout)), options.backendTimeout);
  };

  // Wait for a backend slot (maxConns); the wait counts against the deadline, and running out of it is overload.
  const { slots } = ctx;
  if (slots !== undefined) {
    startDeadline();
    try {
      await slots.acquire(controller.signal);
    } catch (err) {
      if (body !== req) body?.destroy();
      const overloaded = err instanceof GatewayTimeoutError ? noSlot(options.backendTimeout, slots) : err;
      return fail(ctx, req, res, overloaded, started);
    } finally {
      clearTimeout(deadline);
    }
  }

  // The head deadline runs from the end of the upload: a slow client is not a slow backend.
  if (body === req && !req.complete) req.once('end', startDeadline);
  else startDeadline();

  let resp: BackendResponse;
  try {
    resp = await untilAborted(options.backend.dispatch({ params, body, contentLength, signal: controller.signal }), controller.signal);
  } catch (err) {
    clearTimeout(deadline);
    req.off('end', startDeadline);
    slots?.release();
    if (body !== req) body?.destroy();
    return fail(ctx, req, res, controller.signal.aborted ? controller.signal.reason : err, started);
  }
  clearTimeout(deadline);
  req.off('end', startDeadline);
  if (slots !== undefined) {
    // The slot is free once the application is done, i.e. after END_REQUEST: that record usually
    // arrives with the last body bytes, so wait one I/O turn for it before the next request may
    // take the (then idle) connection; releasing earlier would open one more connection.
    resp.body.once('close', () => setImmediate(releaseSlot, slots));
  }
  // onClose stays: a client that leaves mid-body must abort the backend request too.
  relay(ctx, req, res, resp, started);
}

/**
 * The response, or the signal's reason once it aborts even if the backend
 * ignores the signal: a client must never wait on a backend that does not
 * give up. A response that comes after all the same is thrown away.
 */
function untilAborted(dispatch: Promise<BackendResponse>, signal: AbortSignal): Promise<BackendResponse> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    dispatch.then(
      (resp) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) resp.body.destroy();
        else resolve(resp);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function releaseSlot(slots: BackendSlots): void {
  slots.release();
}

function noSlot(ms: number, slots: BackendSlots): BackendError {
  return new BackendError('ERR_BACKEND_OVERLOADED', `gateway: no free backend slot within ${ms} ms (${slots.busy} of ${slots.max} busy, ${slots.waiting} more waiting)`);
}

function buildParams(req: IncomingMessage, options: ResolvedGatewayOptions, contentLength: number | undefined, script?: ScriptTarget): ParamList {
  const socket = req.socket;
  const peer = socket.remoteAddress ?? '';
  const input: CgiRequestInput = {
    method: req.method ?? 'GET',
    url: req.url ?? '/',
    httpVersion: req.httpVersion,
    rawHeaders: req.rawHeaders,
    remoteAddress: options.trustProxy === false ? peer : clientAddress(peer, req.headers, options.trustProxy),
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
    https: false,
    contentLength,
  };
  if (script === undefined) return cgiParamsFromHttp(input);
  input.scriptName = asBytes(script.scriptName);
  // pathInfo is taken as still percent-encoded: escape '%' so a decoded '%' is not decoded twice.
  input.pathInfo = asBytes(script.pathInfo).replaceAll('%', '%25');
  input.scriptFilename = asBytes(script.scriptFilename);
  input.documentRoot = asBytes(script.documentRoot);
  const params = cgiParamsFromHttp(input);
  params.push(...phpExtraParams(script));
  return params;
}

function relay(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, resp: BackendResponse, started: number): void {
  const { options, stats } = ctx;
  resp.body.on('error', ignoreError);
  // FastCGI STDERR (PHP warnings) goes to our log, as nginx's "FastCGI sent in stderr".
  resp.stderr?.on('data', (chunk: Buffer) => options.log(`${req.method} ${req.url}: application stderr: ${chunk.toString('latin1').trimEnd()}`));
  let head;
  try {
    head = responseHead(resp);
    res.writeHead(resp.status, resp.statusText, head.flat);
  } catch (err) {
    resp.body.destroy();
    return fail(ctx, req, res, err, started);
  }
  if (bodyless(req.method, resp.status)) {
    // Read and drop whatever came (a HEAD answered with a body) so the backend connection can be reused.
    resp.body.resume();
    res.end();
    return;
  }
  new ResponsePump(resp.body, res, head.contentLength, options.backendTimeout, (err) => {
    if (err === undefined || err instanceof ClientClosedError) return;
    stats.brokenResponses++;
    options.log(`${req.method} ${req.url}: response cut after ${Date.now() - started} ms: ${describeCause(err)}`);
  });
}

/** Answers a failure before the response head (unless the client is gone) and logs 5xx causes. */
function fail(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, err: unknown, started: number): void {
  if (err instanceof ClientGoneError || res.destroyed) return;
  const status = statusForError(err);
  ctx.stats.countError(status);
  if (status >= 500) ctx.options.log(`${status} ${req.method} ${req.url} after ${Date.now() - started} ms: ${describeCause(err)}`);
  // An unread body would be taken for the next request: close instead.
  sendError(res, status, { retryAfter: ctx.options.retryAfter, close: !req.complete });
}
