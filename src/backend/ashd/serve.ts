/**
 * @module backend/ashd/serve
 * One ashd request, end to end: the datagram decoded, the body read from
 * the passed response socket (EOF after the body), the request handed to a
 * Backend, and `HTTP/1.1 <code> <msg>` + headers + body written back. A
 * failure before the head answers 400/502/503/504 with a short body (ashd
 * just closed the socket, §7.6).
 */
import net from 'node:net';
import { Readable } from 'node:stream';
import type { Backend, BackendProtocol, BackendResponse } from '../contract.js';
import { BackendError } from '../contract.js';
import { statusForBackendError } from '../errors.js';
import { ashdCgiParams } from './env.js';
import { AshdProtocolError, decodeAshdRequest, getHeader, type AshdRequest } from './request.js';

export interface AshdServeOptions {
  backend: Backend;
  protocol: BackendProtocol;
  serverSoftware: string;
  /** For relative X-Ash-File values. */
  cwd: string;
  /** A body without Content-Length (htparser de-chunked it) is buffered up to this many bytes to learn its length. */
  maxBufferedBody: number;
  log: (line: string) => void;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  413: 'Content Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** An HTTP error the handler itself answers with (not the application). */
class HandlerError extends Error {
  readonly status: number;
  constructor(status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}

/** `HTTP/1.1 <code> <msg>\r\n`, the headers, and the blank line (CRLF; ashd wrote a bare LF there). */
export function formatResponseHead(status: number, statusText: string, headers: ReadonlyArray<readonly [string, string]>): Buffer {
  let head = `HTTP/1.1 ${status} ${statusText.replace(/[\r\n]/g, ' ')}\r\n`;
  for (const [name, value] of headers) {
    // A CR or LF would let the application forge headers or a second response.
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) continue;
    head += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** The complete answer for a request the handler fails itself. */
export function formatErrorResponse(status: number, text: string, extra: Array<[string, string]> = []): Buffer {
  const body = Buffer.from(`${text}\n`, 'utf8');
  const head = formatResponseHead(status, REASONS[status] ?? 'Error', [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Length', String(body.length)],
    ...extra,
  ]);
  return Buffer.concat([head, body]);
}

/** Every message in an error's cause chain, for the log. */
export function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 6; depth++) {
    if (e instanceof Error) {
      const code = (e as { code?: unknown }).code;
      parts.push(`${typeof code === 'string' ? `${code}: ` : ''}${e.message}`);
      e = e.cause;
    } else {
      parts.push(String(e));
      e = undefined;
    }
  }
  return parts.join(' <- ');
}

/**
 * Serves the request in `payload` on the response socket `fd` (which it
 * now owns). Resolves when the exchange is over, never rejects.
 */
export async function serveAshdRequest(payload: Buffer, fd: number, opts: AshdServeOptions): Promise<void> {
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  socket.on('error', () => {}); // reported through 'close' and failed writes
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let req: AshdRequest | undefined;
  let body: Readable | null = null;
  const abort = new AbortController();
  const onGone = (): void => abort.abort(new Error('the response socket closed'));
  socket.once('close', onGone);
  try {
    req = decodeAshdRequest(payload);
    const request = await requestBody(req, socket, opts.maxBufferedBody);
    body = request.body;
    let params;
    try {
      params = ashdCgiParams(req, { protocol: opts.protocol, serverSoftware: opts.serverSoftware, contentLength: request.contentLength, cwd: opts.cwd });
    } catch (err) {
      throw new HandlerError(400, err instanceof Error ? err.message : String(err), { cause: err });
    }
    const response = await opts.backend.dispatch({ params, body, contentLength: request.contentLength, signal: abort.signal });
    await sendResponse(socket, response, opts.log);
  } catch (err) {
    if (!abort.signal.aborted) answerError(socket, err, req, opts.log);
    else socket.destroy();
  } finally {
    socket.off('close', onGone);
    // Whatever of the body the application did not take is drained, so the socket can close.
    body?.destroy();
    socket.resume();
  }
  await closed;
}

/** The request body as the backend wants it: a stream of exactly contentLength bytes, or null. */
async function requestBody(req: AshdRequest, socket: net.Socket, maxBuffered: number): Promise<{ contentLength: number; body: Readable | null }> {
  // htparser forwards a body only when the request has a Content-Type; otherwise it half-closes at once.
  if (getHeader(req, 'Content-Type') === undefined) {
    socket.resume();
    return { contentLength: 0, body: null };
  }
  const declared = getHeader(req, 'Content-Length');
  if (declared !== undefined) {
    if (!/^[0-9]+$/.test(declared.trim()) || !Number.isSafeInteger(Number(declared.trim()))) {
      throw new HandlerError(400, `bad Content-Length: ${JSON.stringify(declared)}`);
    }
    const length = Number(declared.trim());
    return { contentLength: length, body: length === 0 ? null : takeBytes(socket, length) };
  }
  // A de-chunked body of unknown length: SCGI's CONTENT_LENGTH must be known up front.
  const all = await readToEnd(socket, maxBuffered);
  return { contentLength: all.length, body: all.length === 0 ? null : Readable.from([all]) };
}

/** Reads `socket` to EOF, at most `max` bytes (more is a 413; the socket stays usable for the answer). */
function readToEnd(socket: net.Socket, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) {
        finish();
        reject(new HandlerError(413, `request body without Content-Length is larger than ${max} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      finish();
      resolve(Buffer.concat(chunks));
    };
    const onClose = (): void => {
      finish();
      reject(new Error('the response socket closed while the request body was read'));
    };
    function finish(): void {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
  });
}

/** A Readable of the next `length` bytes of `socket`, with backpressure; EOF before that is an error. */
function takeBytes(socket: net.Socket, length: number): Readable {
  let remaining = length;
  const body = new Readable({
    read() {
      socket.resume();
    },
    destroy(err, callback) {
      done();
      callback(err);
    },
  });
  const onData = (chunk: Buffer): void => {
    const piece = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
    remaining -= piece.length;
    const more = body.push(piece);
    if (remaining === 0) {
      done();
      body.push(null);
      socket.resume(); // anything beyond the body is ignored
    } else if (!more) {
      socket.pause();
    }
  };
  const onEnd = (): void => {
    done();
    body.destroy(new Error(`the request body ended after ${length - remaining} of ${length} bytes`));
  };
  function done(): void {
    socket.off('data', onData);
    socket.off('end', onEnd);
  }
  socket.on('data', onData);
  socket.on('end', onEnd);
  return body;
}

async function sendResponse(socket: net.Socket, response: BackendResponse, log: (line: string) => void): Promise<void> {
  response.stderr?.on('data', (chunk: Buffer) => log(`application stderr: ${chunk.toString('utf8').trimEnd()}`));
  socket.write(formatResponseHead(response.status, response.statusText, response.headers));
  await new Promise<void>((resolve) => {
    response.body.on('error', (err) => {
      log(`response body broke off: ${causeChain(err)}`);
      socket.destroy();
      resolve();
    });
    response.body.on('end', () => {
      socket.end();
      resolve();
    });
    socket.once('close', () => {
      response.body.destroy();
      resolve();
    });
    response.body.pipe(socket, { end: false });
  });
}

function answerError(socket: net.Socket, err: unknown, req: AshdRequest | undefined, log: (line: string) => void): void {
  let status = 500;
  let text = 'The request handler failed.';
  const extra: Array<[string, string]> = [];
  if (err instanceof BackendError) {
    status = statusForBackendError(err.code);
    text =
      status === 504
        ? 'The application did not answer in time.'
        : status === 503
          ? 'The application is not available.'
          : 'The application sent an invalid response.';
    if (err.code === 'ERR_BACKEND_UNAVAILABLE' || err.code === 'ERR_BACKEND_OVERLOADED') extra.push(['Retry-After', '1']);
  } else if (err instanceof HandlerError) {
    status = err.status;
    text = status === 413 ? 'The request body is too large.' : 'Bad request.';
  } else if (err instanceof AshdProtocolError) {
    status = 400;
    text = 'Bad request.';
  }
  const what = req ? `${req.method} ${req.url}` : 'request';
  log(`${what}: ${status}: ${causeChain(err)}`);
  if (socket.destroyed) return;
  socket.end(formatErrorResponse(status, text, extra));
}
