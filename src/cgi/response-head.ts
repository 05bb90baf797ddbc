/**
 * @module cgi/response-head
 * An incremental parser of the head of a CGI response (RFC 3875 §6): the
 * header lines an application writes before a blank line, turned into an
 * HTTP status and header list. The gateway's side; pure, no streams.
 */
import { STATUS_CODES } from 'node:http';
import { CgiError } from './errors.js';
import { latin1 } from '../latin1.js';

/** Default bound on the head, blank line included (ashd uses the same 64 KiB). */
export const DEFAULT_MAX_HEAD_BYTES = 64 * 1024;

export interface CgiResponseHead {
  status: number;
  statusText: string;
  /** Every header but the first Status, in order, names in the application's case. */
  headers: Array<[name: string, value: string]>;
  /**
   * True when there was no Status and Location is a local path ("/x", not
   * "//host/x"): RFC 3875 §6.2.2's local redirect, which a server may serve
   * by re-dispatching to that path (dropping this response's headers and
   * body). `status` is 302 regardless, so passing it on as a client
   * redirect is also correct — our gateway does that.
   */
  localRedirect: boolean;
  /** Bytes after the blank line in the chunk that completed the head: the start of the body. */
  rest: Buffer;
}

export interface CgiResponseParserOptions {
  /** Bound on the head in bytes, its blank line included. Default 64 KiB. */
  maxHeadBytes?: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** field-value: HTAB, SP, VCHAR, obs-text; so no CR, LF, NUL or other controls. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/**
 * An NPH-style status line. php-cgi never sends one, but some applications
 * written for nph- scripts or raw HTTP do; we take its code and reason as
 * the Status (ashd's callscgi instead drops the whole response).
 */
const STATUS_LINE = /^HTTP\/[0-9]\.[0-9] ([0-9]{3})(?: (.*))?$/;
const STATUS_VALUE = /^([0-9]{3})(?:[ \t]+(.*))?$/;

/** line[from…] without leading and trailing spaces and tabs (optional whitespace around a field value). */
function trimOws(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  return line.slice(start, end);
}

function bad(detail: string): CgiError {
  return new CgiError('ERR_CGI_BAD_RESPONSE', detail);
}

/**
 * Feed it the raw response bytes in chunks split anywhere; `push` returns
 * null until the blank line, then the head. Lines end in LF, optionally
 * preceded by CR. Status rules:
 * - `Status: 404 Not Found` → 404 "Not Found"; `Status: 404` → node:http's
 *   reason phrase. Only the first Status header is consumed; a second one
 *   stays in `headers` (as ashd does).
 * - No Status, a Location → 302 Found (RFC 3875 §6.2.3 client redirect;
 *   ashd's callscgi answers 303 See Other instead); see `localRedirect`.
 * - Otherwise 200 OK.
 * Errors (CgiError): ERR_CGI_BAD_RESPONSE for a line without ':', an
 * obs-fold continuation, a bad name or value, a bad Status, or a head with
 * no header at all (§6.2 wants at least one); ERR_CGI_HEADER_TOO_LARGE past
 * maxHeadBytes; ERR_CGI_TRUNCATED_HEAD from end() before the blank line.
 */
export class CgiResponseParser {
  readonly #maxHeadBytes: number;
  #consumed = 0;
  /** The start of a line that a later chunk completes (latin1). */
  #partial = '';
  #lineCount = 0;
  #status: { code: number; text: string } | undefined;
  #headers: Array<[string, string]> = [];
  #done = false;

  constructor(options: CgiResponseParserOptions = {}) {
    this.#maxHeadBytes = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
  }

  push(chunk: Uint8Array): CgiResponseHead | null {
    if (this.#done) throw new Error('cgi: CgiResponseParser.push() after the head was complete');
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    // Only the bytes that still fit in the limit may belong to the head. One char per byte from here
    // on: string offsets are byte offsets, and a line is a slice, not a Buffer view of its own.
    const text = latin1(bytes, 0, Math.min(bytes.length, Math.max(0, this.#maxHeadBytes - this.#consumed)));
    let at = 0;
    while (at < text.length) {
      const lf = text.indexOf('\n', at);
      if (lf < 0) break;
      const line = this.#takeLine(text, at, lf);
      at = lf + 1;
      if (line === '') {
        this.#consumed += at;
        return this.#finish(bytes.subarray(at));
      }
      this.#parseLine(line);
    }
    if (bytes.length > text.length) {
      throw new CgiError('ERR_CGI_HEADER_TOO_LARGE', `response head exceeds ${this.#maxHeadBytes} bytes`);
    }
    this.#consumed += text.length;
    if (at < text.length) this.#partial += text.slice(at);
    return null;
  }

  /** Call at EOF: throws ERR_CGI_TRUNCATED_HEAD unless the head was complete. */
  end(): void {
    if (!this.#done) throw new CgiError('ERR_CGI_TRUNCATED_HEAD', 'response ended before the blank line ending the head');
  }

  /** The current line (the held start + text[from, lf)), its final CR removed. */
  #takeLine(text: string, from: number, lf: number): string {
    const end = lf > from && text.charCodeAt(lf - 1) === 0x0d ? lf - 1 : lf;
    let line = text.slice(from, end);
    if (this.#partial !== '') {
      // A CR ending the held part belongs to this line's end only when nothing follows it here.
      line = lf === from ? this.#partial.replace(/\r$/, '') : this.#partial + text.slice(from, end);
      this.#partial = '';
    }
    return line;
  }

  #parseLine(line: string): void {
    const first = this.#lineCount++ === 0;
    const statusLine = first ? STATUS_LINE.exec(line) : null;
    if (statusLine) {
      this.#setStatus(statusLine[1]!, statusLine[2] ?? '', line);
      return;
    }
    if (line[0] === ' ' || line[0] === '\t') throw bad(`obs-fold continuation line ${JSON.stringify(line)}`);
    const colon = line.indexOf(':');
    if (colon < 0) throw bad(`header line without ':' ${JSON.stringify(line)}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw bad(`bad header name ${JSON.stringify(name)}`);
    const value = trimOws(line, colon + 1);
    if (!FIELD_VALUE.test(value)) throw bad(`header ${name} has a control character in its value`);
    if (this.#status === undefined && name.toLowerCase() === 'status') {
      const m = STATUS_VALUE.exec(value);
      if (!m) throw bad(`bad Status ${JSON.stringify(value)}`);
      this.#setStatus(m[1]!, m[2] ?? '', line);
      return;
    }
    this.#headers.push([name, value]);
  }

  #setStatus(digits: string, reason: string, line: string): void {
    const code = Number(digits);
    // 1xx is never a final status; a CGI response is always final.
    if (code < 200 || code > 599) throw bad(`status out of range in ${JSON.stringify(line)}`);
    const text = reason.trim();
    if (!FIELD_VALUE.test(text)) throw bad(`control character in ${JSON.stringify(line)}`);
    this.#status = { code, text: text !== '' ? text : (STATUS_CODES[code] ?? 'Unknown') };
  }

  #finish(rest: Buffer): CgiResponseHead {
    this.#done = true;
    if (this.#lineCount === 0) throw bad('response head has no header lines');
    const headers = this.#headers;
    if (this.#status) {
      return { status: this.#status.code, statusText: this.#status.text, headers, localRedirect: false, rest };
    }
    const location = headers.find(([name]) => name.toLowerCase() === 'location')?.[1];
    if (location !== undefined) {
      const local = location.startsWith('/') && !location.startsWith('//');
      return { status: 302, statusText: STATUS_CODES[302]!, headers, localRedirect: local, rest };
    }
    return { status: 200, statusText: STATUS_CODES[200]!, headers, localRedirect: false, rest };
  }
}
