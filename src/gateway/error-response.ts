/**
 * @module gateway/error-response
 * Every failure the client can see, in one place: which status an error
 * means (BackendError codes → 502/503/504, a bad request header → 400, an
 * oversized body → 413), the short plain-text body that goes with it, and
 * the log line that carries the cause chain (errno codes, a child's exit
 * status) the client must not see.
 */
import { statusBody } from '../http1/response-head.js';
import type { Exchange } from '../http1/server.js';
import { BackendError } from '../backend/contract.js';
import { statusForBackendError } from '../backend/errors.js';
import { CgiError } from '../cgi/errors.js';
import { SpoolError } from './spool.js';
import type { ErrorClass } from './status-page.js';

/** Our own reason to give up on the backend before it answered (gateway-side backendTimeout). */
export class GatewayTimeoutError extends BackendError {
  constructor(ms: number) {
    super('ERR_BACKEND_TIMEOUT', `gateway: no response head from the backend within ${ms} ms`);
  }
}

/** The status a failure before the response head maps to. */
export function statusForError(err: unknown): ErrorClass {
  if (err instanceof BackendError) return statusForBackendError(err.code);
  // The request side of src/cgi refuses what the client sent; the response side, what the application sent.
  if (err instanceof CgiError) return err.code === 'ERR_CGI_BAD_HEADER' || err.code === 'ERR_CGI_BAD_PATH' ? 400 : 502;
  if (err instanceof SpoolError) return err.code === 'ERR_GATEWAY_BODY_TOO_LARGE' ? 413 : 400;
  return 502;
}

export interface ErrorReplyOptions {
  /** Seconds for Retry-After (503 only). */
  retryAfter?: number;
  /** Close the connection after the reply (the request body was not read). */
  close?: boolean;
  /** Extra headers (Allow, Location). */
  headers?: Record<string, string>;
}

/**
 * Answers with `status` and a one-line plain-text body, unless a response
 * is already under way (then the connection is cut: a half-sent response
 * must not look complete).
 */
export function sendError(ex: Exchange, status: number, options: ErrorReplyOptions = {}): void {
  if (ex.finished || ex.destroyed) return;
  if (ex.headersSent) {
    ex.destroy();
    return;
  }
  const body = statusBody(status);
  const headers = ['Content-Type', 'text/plain; charset=utf-8', 'Cache-Control', 'no-store'];
  if (options.headers !== undefined) for (const [name, value] of Object.entries(options.headers)) headers.push(name, value);
  if (status === 503 && options.retryAfter !== undefined) headers.push('Retry-After', String(options.retryAfter));
  ex.writeHead(status, undefined, headers, body.length, options.close === true);
  ex.end(body);
}

/**
 * The cause chain in one line: each message once, then the errno code and
 * exit status found along the way, e.g.
 * "backend: cannot connect to /run/app.sock: connect ECONNREFUSED /run/app.sock [ECONNREFUSED]".
 */
export function describeCause(err: unknown): string {
  const parts: string[] = [];
  const codes: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 8; depth++) {
    if (!(e instanceof Error)) {
      parts.push(String(e));
      break;
    }
    // Wrappers usually quote their cause's message already: say it once.
    const message = e.message;
    if (!parts.some((p) => p.includes(message))) parts.push(message);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !code.startsWith('ERR_') && !codes.includes(code)) codes.push(code);
    e = e.cause;
  }
  return parts.join(': ') + (codes.length > 0 ? ` [${codes.join(', ')}]` : '');
}
