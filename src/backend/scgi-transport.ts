/**
 * @module backend/scgi-transport
 * One request over SCGI: a new connection per request (SCGI has no
 * keep-alive), the header netstring and the body streamed with
 * backpressure, the CGI response head parsed, the rest streamed back.
 * Aborting destroys the connection, which is all SCGI offers.
 */
import { pipeline } from 'node:stream';
import type { BackendRequest, BackendResponse } from './contract.js';
import type { BackendChild } from './child.js';
import { withChildExit, type Connector } from './connector.js';
import { scgiRequest } from '../scgi/client.js';
import { ScgiProtocolError } from '../scgi/errors.js';
import { backendError, errorCode, errorText } from './errors.js';
import { readCgiResponse, HeadTimer, type ParsedResponse } from './response.js';

export interface TransportOptions {
  headerTimeoutMs: number;
}

type Outcome =
  | { ok: true; response: ParsedResponse }
  | { ok: false; error: unknown; bodyTaken: boolean; child: BackendChild | undefined; restarted: boolean };

export async function scgiDispatch(connector: Connector, req: BackendRequest, opts: TransportOptions): Promise<BackendResponse> {
  for (let attempt = 0; ; attempt++) {
    const outcome = await exchange(connector, req, opts);
    if (outcome.ok) return outcome.response;
    const err = outcome.error;
    // The connection broke before any byte came back and no body byte was taken: the
    // application never saw the request (a dying child's backlog). Recover and resend once.
    const untouched =
      attempt === 0 &&
      !outcome.restarted &&
      !outcome.bodyTaken &&
      err instanceof ScgiProtocolError &&
      err.code === 'ERR_SCGI_CONNECTION_CLOSED' &&
      !req.signal?.aborted;
    if (untouched && (await connector.recover?.(outcome.child))) continue;
    if (req.signal?.aborted) throw req.signal.reason;
    throw await mapScgiFailure(err, outcome.child);
  }
}

async function exchange(connector: Connector, req: BackendRequest, opts: TransportOptions): Promise<Outcome> {
  const lease = await connector.connect(req.signal);
  const { socket } = lease;
  let ex;
  try {
    ex = scgiRequest(socket, req.params, req.contentLength);
  } catch (err) {
    socket.destroy();
    throw backendError('ERR_BACKEND_PROTOCOL', `cannot encode the SCGI request: ${errorText(err)}`, err);
  }
  const { body, response } = ex;
  let bodyTaken = false;

  const timer = new HeadTimer(opts.headerTimeoutMs, () =>
    response.destroy(backendError('ERR_BACKEND_TIMEOUT', `no response head within ${opts.headerTimeoutMs} ms`)),
  );
  const onAbort = (): void => {
    response.destroy(req.signal?.reason);
  };
  req.signal?.addEventListener('abort', onAbort, { once: true });
  if (req.signal?.aborted) onAbort();

  // The head timeout runs once the whole request is out (a slow upload is not a slow app).
  body.once('finish', () => timer.start());
  const source = req.body;
  if (source === null || req.contentLength === 0) {
    source?.resume();
    body.end();
  } else {
    source.once('data', () => {
      bodyTaken = true;
    });
    pipeline(source, body, (err) => {
      // A client that stops sending mid-body: the application cannot answer it.
      if (err && !response.destroyed) response.destroy(backendError('ERR_BACKEND_CLOSED_EARLY', `request body failed: ${errorText(err)}`, err));
    });
  }

  try {
    const head = await readCgiResponse(response, { onHead: () => timer.stop() });
    head.body.once('close', () => req.signal?.removeEventListener('abort', onAbort));
    return { ok: true, response: head };
  } catch (err) {
    timer.stop();
    req.signal?.removeEventListener('abort', onAbort);
    socket.destroy();
    return { ok: false, error: err, bodyTaken, child: lease.child, restarted: lease.restarted ?? false };
  }
}

async function mapScgiFailure(err: unknown, child: BackendChild | undefined): Promise<unknown> {
  const code = errorCode(err);
  if (code === 'ERR_BACKEND_CLOSED_EARLY' || (err instanceof ScgiProtocolError && code === 'ERR_SCGI_CONNECTION_CLOSED')) {
    const cause = await withChildExit(err, child);
    return backendError('ERR_BACKEND_CLOSED_EARLY', `the SCGI application closed the connection before a complete response head: ${errorText(cause)}`, cause);
  }
  if (code?.startsWith('ERR_BACKEND_')) return err;
  return backendError('ERR_BACKEND_PROTOCOL', `bad SCGI response: ${errorText(err)}`, err);
}
