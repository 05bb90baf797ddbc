/**
 * @module http1/response-head
 * The other half of an HTTP/1.1 server core, as pure functions: how a
 * response is framed (RFC 9112 §6.3, §9.3) and its head as the latin1
 * string that goes on the wire, plus the chunked-coding pieces. No sockets:
 * a server writes what these return.
 *
 * The caller owns the hop-by-hop fields: Content-Length, Transfer-Encoding
 * and Connection are decided here from the framing and are refused in the
 * header list, so an application's copy can never contradict (or smuggle
 * past) the framing actually used.
 */
import { STATUS_CODES } from 'node:http';
import { Http1ResponseError } from './errors.js';

/** What the server knows about the request a response answers. */
export interface RequestFacts {
  method: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor: number;
  /** The request allows the connection to stay open (RequestHead.keepAlive). */
  keepAlive: boolean;
}

/**
 * How the body is delimited:
 * - `none`: no body bytes are sent (HEAD, 1xx, 204, 304), whatever the length;
 * - `length`: Content-Length;
 * - `chunked`: HTTP/1.1 with an unknown length;
 * - `close`: HTTP/1.0 with an unknown length: the body ends when the connection does.
 */
export type BodyFraming = 'none' | 'length' | 'chunked' | 'close';

export interface ResponseFraming {
  body: BodyFraming;
  /** The connection stays open after this response. */
  keepAlive: boolean;
}

/** No body at all (RFC 9110 §6.4.1): 1xx, 204 and 304 responses, and every response to HEAD. */
export function responseHasNoBody(method: string, status: number): boolean {
  return method === 'HEAD' || status < 200 || status === 204 || status === 304;
}

/**
 * The framing of a response with `status` to `req`, whose body is
 * `contentLength` bytes (undefined: not known in advance). `close`: the
 * server wants this to be the connection's last response (shutting down, an
 * unread request body).
 */
export function responseFraming(req: RequestFacts, status: number, contentLength: number | undefined, close = false): ResponseFraming {
  let keepAlive = req.keepAlive && !close;
  let body: BodyFraming;
  if (responseHasNoBody(req.method, status)) body = 'none';
  else if (contentLength !== undefined) body = 'length';
  else if (req.versionMinor >= 1) body = 'chunked';
  else {
    body = 'close';
    keepAlive = false;
  }
  return { body, keepAlive };
}

/** tchar of RFC 9110 §5.6.2. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** field-value: HTAB, SP, VCHAR, obs-text (no CR, LF, NUL or other controls). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** reason-phrase: HTAB, SP, VCHAR, obs-text. */
const REASON = FIELD_VALUE;
/** Decided by the framing, never taken from the caller's list. */
const FRAMING_FIELDS = new Set(['content-length', 'transfer-encoding', 'connection']);

/**
 * The response head as a latin1 string: status line, the caller's fields
 * in order, then Date, the framing fields and the blank line.
 *
 * `headers` is flat ([name, value, …], latin1 strings). `contentLength` is
 * sent for `length` framing, and for `none` framing when the caller knows
 * it (HEAD: the length a GET would have had, RFC 9110 §8.6) — except on
 * 1xx and 204, which must not carry it. Throws Http1ResponseError for a
 * status outside 100–999, a name that is not a token, a value or reason
 * with CR, LF or another control character (response splitting), or a
 * framing field in `headers`.
 */
export function encodeResponseHead(
  status: number,
  reason: string | undefined,
  headers: readonly string[],
  framing: ResponseFraming,
  contentLength: number | undefined,
  date: string,
  /** An HTTP/1.0 client that asked for keep-alive is told it was granted (`Connection: keep-alive`). */
  announceKeepAlive = false,
): string {
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new Http1ResponseError('ERR_HTTP1_BAD_STATUS', `status ${status} is not a 3-digit code`);
  const text = reason ?? STATUS_CODES[status] ?? 'Unknown';
  if (!REASON.test(text)) throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', `reason phrase ${JSON.stringify(text)} has a control character`);
  if (headers.length % 2 !== 0) throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', 'the header list has a name without a value');
  let head = `HTTP/1.1 ${status} ${text}\r\n`;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (!TOKEN.test(name)) throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', `bad header name ${JSON.stringify(name)}`);
    if (!FIELD_VALUE.test(value)) throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', `header ${name} has a control character`);
    if (name.length <= 17 && FRAMING_FIELDS.has(name.toLowerCase())) {
      throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', `${name} is decided by the framing, not passed in`);
    }
    head += `${name}: ${value}\r\n`;
  }
  head += `Date: ${date}\r\n`;
  const mayCarryLength = framing.body === 'length' || (framing.body === 'none' && status !== 204 && status >= 200);
  if (mayCarryLength && contentLength !== undefined) {
    if (!Number.isSafeInteger(contentLength) || contentLength < 0) throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', `bad Content-Length ${contentLength}`);
    head += `Content-Length: ${contentLength}\r\n`;
  } else if (framing.body === 'length') {
    throw new Http1ResponseError('ERR_HTTP1_BAD_RESPONSE_FIELD', 'length framing without a Content-Length');
  }
  if (framing.body === 'chunked') head += 'Transfer-Encoding: chunked\r\n';
  // HTTP/1.1 keeps the connection by default; HTTP/1.0 closes it unless told (RFC 9112 §9.3).
  if (!framing.keepAlive) head += 'Connection: close\r\n';
  else if (announceKeepAlive) head += 'Connection: keep-alive\r\n';
  return head + '\r\n';
}

/** The one-line plain-text body of an error answered by the server or gateway itself: `404 Not Found\n`. */
export function statusBody(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? 'Error'}\n`;
}

/** The line before a chunk of `size` bytes (size > 0: a 0 would end the body). */
export function chunkHeader(size: number): string {
  if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`http1: a chunk must have 1 or more bytes, not ${size}`);
  return `${size.toString(16)}\r\n`;
}

/** After each chunk's data. */
export const CHUNK_END = '\r\n';
/** The last chunk and the end of an empty trailer section. */
export const LAST_CHUNK = '0\r\n\r\n';

let cachedSecond = -1;
let cachedDate = '';

/** The Date field value (IMF-fixdate) for `nowMs`, formatted once per second. */
export function httpDate(nowMs: number = Date.now()): string {
  const second = Math.floor(nowMs / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedDate = new Date(second * 1000).toUTCString();
  }
  return cachedDate;
}
