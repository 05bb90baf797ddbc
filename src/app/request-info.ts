/**
 * @module app/request-info
 * What a handler can learn about a request beyond node:http's surface: the
 * CGI params as the web server sent them, the FastCGI request (role, FILTER
 * data), and a request-scoped error log that ends up in the web server's
 * error log (FCGI_STDERR). Kept in a symbol-keyed own property of the
 * IncomingMessage, so it survives Express swapping the prototype.
 */
import type { IncomingMessage } from 'node:http';
import type { Writable } from 'node:stream';
import type { FcgiServerRequest, ParamList } from '../fastcgi/contract.js';
import type { Exchange } from './exchange.js';
import { paramsObject } from './request-head.js';

const kInfo = Symbol('gatehouse.requestInfo');

/** What is kept on a request (dispatch.ts's per-request object is one). */
export interface RequestInfo {
  readonly exchange: Exchange;
  /** cgiParams(), once built. */
  params: Record<string, string> | null;
}

type Tagged = IncomingMessage & { [kInfo]?: RequestInfo };

/** Links a request to its exchange (dispatch.ts). */
export function attachExchange(req: IncomingMessage, exchange: Exchange): void {
  attachRequestInfo(req, { exchange, params: null });
}

/** Links a request to an existing RequestInfo. */
export function attachRequestInfo(req: IncomingMessage, info: RequestInfo): void {
  (req as Tagged)[kInfo] = info;
}

function info(req: IncomingMessage): RequestInfo | undefined {
  return (req as Tagged)[kInfo];
}

/** The exchange behind a request served by gatehouse, if it is one. */
export function exchangeOf(req: IncomingMessage): Exchange | undefined {
  return info(req)?.exchange;
}

/**
 * The request's CGI params (REQUEST_URI, SCRIPT_NAME, DOCUMENT_ROOT, …) as a
 * read-only object; an empty object for requests that did not come through
 * gatehouse. Built on first use.
 */
export function cgiParams(req: IncomingMessage): Readonly<Record<string, string>> {
  const i = info(req);
  if (!i) return EMPTY;
  i.params ??= Object.freeze(paramsObject(i.exchange.params));
  return i.params;
}
const EMPTY: Readonly<Record<string, string>> = Object.freeze(Object.create(null) as Record<string, string>);

/** The params in wire order (names may repeat only if the web server repeated them). */
export function cgiParamList(req: IncomingMessage): ParamList {
  return info(req)?.exchange.params ?? [];
}

/** The FastCGI request (role, requestId, keepConn, FILTER `data`), or null for SCGI and foreign requests. */
export function fastcgiRequest(req: IncomingMessage): FcgiServerRequest | null {
  return info(req)?.exchange.fastcgi ?? null;
}

/**
 * The request's error log: FCGI_STDERR while the FastCGI request is open
 * (nginx writes it to its error log as "FastCGI sent in stderr"), else the
 * process's stderr.
 */
export function requestErrorLog(req: IncomingMessage): Writable {
  const log = info(req)?.exchange.errorLog;
  if (log && !log.writableEnded && !log.destroyed) return log;
  return process.stderr;
}

/** Writes one line (an Error's stack, or a message) to the request's error log. */
export function logRequestError(req: IncomingMessage, what: unknown): void {
  const text = what instanceof Error ? (what.stack ?? `${what.name}: ${what.message}`) : String(what);
  const log = requestErrorLog(req);
  const prefix = log === process.stderr ? `gatehouse[${process.pid}]: ${req.method ?? '-'} ${req.url ?? '-'}: ` : 'gatehouse: ';
  log.write(prefix + text + (text.endsWith('\n') ? '' : '\n'));
}
