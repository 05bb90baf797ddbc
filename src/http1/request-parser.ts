/**
 * @module http1/request-parser
 * A streaming HTTP/1.0 and HTTP/1.1 request parser (RFC 9112): bytes in,
 * events out, whatever the chunk boundaries. Pure (no sockets, no timers).
 *
 * Events per request, in order: `onHead(head)`, `onBody(chunk)` zero or more
 * times, `onTrailers(rawTrailers)` for a chunked body with trailer fields (if
 * the handler has it), then `onEnd()`. Pipelined requests follow one another.
 *
 * Flow control: `pause()` (from a callback or outside) stops events after the
 * current callback returns; the unparsed rest of the input is kept (by
 * reference, not copied) and later pushes are queued, until `resume()`, which
 * parses the queue synchronously (its events fire inside `resume()`). A server
 * that answers pipelined requests one at a time calls `pause()` in `onEnd` and
 * `resume()` when the response is written, and stops reading the socket while
 * `paused` is true: queued input is the only memory the parser does not bound.
 *
 * Memory otherwise: at most maxHeaderBytes of an incomplete head (or
 * maxTrailerBytes of trailers) is copied and held; the chunk-size line is read
 * by a byte state machine (no buffer); bodies are handed out as subarrays of
 * the input, never copied or accumulated. Header strings are cut from one
 * latin1 string per head block (V8 may keep that block, ≤ maxHeaderBytes + 2
 * characters, alive for as long as the strings are).
 *
 * Errors: bad input throws one Http1ParseError from `push()` (or `resume()`);
 * the parser is then dead and every later `push()`/`resume()` throws the same
 * error. Events before the bad byte have been delivered; the server answers
 * `err.status` and closes. An exception thrown by a callback propagates the
 * same way and also kills the parser.
 */
import { Http1ParseError, type Http1ParseErrorCode } from './errors.js';
import { latin1 } from '../latin1.js';

/** What `onHead` receives. Strings are latin1 (one char per byte). */
export interface RequestHead {
  method: string;
  /** The request-target as received (origin-, absolute-, authority- or asterisk-form). */
  target: string;
  versionMajor: number;
  versionMinor: number;
  /** [name, value, name, value, …]: names as received, values trimmed of OWS. */
  rawHeaders: string[];
  /** The body length when framed by Content-Length (undefined when chunked or absent). */
  contentLength: number | undefined;
  /** Transfer-Encoding: chunked (the only coding accepted). */
  chunked: boolean;
  /** HTTP/1.1: unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive` (RFC 9112 §9.3). */
  keepAlive: boolean;
  /** `Expect: 100-continue` on an HTTP/1.1 request (HTTP/1.0 ones are ignored, RFC 9110 §10.1.1). */
  expectContinue: boolean;
  /** Connection: upgrade with an Upgrade field. Only reported: the body is framed as usual. */
  upgrade: boolean;
}

export interface RequestParserHandler {
  onHead(head: RequestHead): void;
  /** A piece of the body; never empty; may share memory with the pushed chunk. */
  onBody(chunk: Buffer): void;
  /** Trailer fields of a chunked body, if any arrived ([name, value, …]). Optional: dropped without it. */
  onTrailers?(rawTrailers: string[]): void;
  onEnd(): void;
}

export interface RequestParserOptions {
  /** Request line + header section (through the empty line's CRLF), like node:http's maxHeaderSize. Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Header fields per request (and trailer fields per body). Default 100. */
  maxHeaders?: number;
  /** Largest chunk size accepted. Default and maximum 2^53-1 (bodies are streamed; this keeps the arithmetic exact). */
  maxChunkSize?: number;
  /** Bytes between chunk sizes and their CRLF (";", extensions, BWS) per request, all chunks together (node's CVE-2024-22019 bound). Default 16 KiB. */
  maxChunkExtensionBytes?: number;
  /** Trailer section (fields and the final CRLF). Default 16 KiB. */
  maxTrailerBytes?: number;
  /** Reject HTTP/1.1 requests without Host (RFC 9112 §3.2; node:http's requireHostHeader). Default true. */
  requireHost?: boolean;
}

/** Empty lines tolerated before a request line (RFC 9112 §2.2 asks for at least one). */
export const MAX_LEADING_EMPTY_LINES = 4;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
const SEMI = 59;
/** Bytes decoded at a time when looking for lines (more only for a longer line). */
const BLOCK_BYTES = 1024;

/** tchar (RFC 9110 §5.6.2): what a method and a field name are made of. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** field-vchar / SP / HTAB / obs-text (RFC 9110 §5.5): every byte but CTLs (except HTAB) and DEL. */
const VALUE_OK = new Uint8Array(256);
VALUE_OK[HTAB] = 1;
for (let c = 0x20; c <= 0xff; c++) if (c !== 0x7f) VALUE_OK[c] = 1;

/** Hex digit value + 1 (0 = not a hex digit). */
const HEX = new Uint8Array(256);
for (let i = 0; i < 16; i++) HEX['0123456789abcdef'.charCodeAt(i)] = i + 1;
for (let i = 10; i < 16; i++) HEX['ABCDEF'.charCodeAt(i - 10)] = i + 1;

/** Case-insensitive compare of str[s..] with a lowercase literal (letters and '-' only; see the note at the call). */
function eqLower(str: string, s: number, lit: string): boolean {
  for (let k = 0; k < lit.length; k++) if ((str.charCodeAt(s + k) | 0x20) !== lit.charCodeAt(k)) return false;
  return true;
}

function fail(code: Http1ParseErrorCode, detail: string): never {
  throw new Http1ParseError(code, detail);
}

// Parser states.
const S_START = 0; // before a request line (leading empty lines tolerated)
const S_HEADERS = 1; // field lines of the head
const S_BODY_CL = 2; // Content-Length body
const S_CHUNK_SIZE = 3; // chunk-size [ext] CRLF, byte by byte
const S_CHUNK_DATA = 4;
const S_CHUNK_DATA_CR = 5;
const S_CHUNK_DATA_LF = 6;
const S_TRAILERS = 7; // trailer field lines
const S_MSG_DONE = 8; // onEnd owed (kept as a state so pause() between the last body byte and onEnd holds)

// Chunk-size line sub-states.
const CS_DIGITS = 0;
const CS_BWS = 1;
const CS_EXT = 2;
const CS_LF = 3;

const MAX_HEX_DIGITS = 16;

export class RequestParser {
  readonly #h: RequestParserHandler;
  readonly #maxHeaderBytes: number;
  readonly #maxHeaders: number;
  readonly #maxChunkSize: number;
  readonly #maxExtBytes: number;
  readonly #maxTrailerBytes: number;
  readonly #requireHost: boolean;

  #state = S_START;
  #failure: unknown = undefined;
  #failed = false;
  #paused = false;
  #running = false;
  /** Input not yet parsed: only non-empty while paused (or during a callback). */
  #queue: Buffer[] = [];
  #queueOff = 0;
  /** Copied bytes of an incomplete line (head or trailers). */
  #pending: Buffer[] = [];
  #pendingLen = 0;

  // Per head.
  #leadingEmpty = 0;
  #headBytes = 0;
  #method = '';
  #target = '';
  #minor = 1;
  #raw: string[] = [];
  #clText: string | undefined = undefined;
  #te: string[] | null = null;
  #hostCount = 0;
  #connClose = false;
  #connKeepAlive = false;
  #connUpgrade = false;
  #hasUpgrade = false;
  #expect100 = false;

  // Per body.
  #remaining = 0;
  #cs = CS_DIGITS;
  #csDigits = 0;
  #csValue = 0;
  #extBytes = 0;
  #trailerBytes = 0;
  #trailers: string[] | null = null;

  constructor(handler: RequestParserHandler, options: RequestParserOptions = {}) {
    this.#h = handler;
    this.#maxHeaderBytes = positive('maxHeaderBytes', options.maxHeaderBytes ?? 16384);
    this.#maxHeaders = positive('maxHeaders', options.maxHeaders ?? 100);
    this.#maxChunkSize = positive('maxChunkSize', options.maxChunkSize ?? Number.MAX_SAFE_INTEGER);
    this.#maxExtBytes = positive('maxChunkExtensionBytes', options.maxChunkExtensionBytes ?? 16384, true);
    this.#maxTrailerBytes = positive('maxTrailerBytes', options.maxTrailerBytes ?? 16384);
    this.#requireHost = options.requireHost ?? true;
  }

  /** True while events are held (see pause()). */
  get paused(): boolean {
    return this.#paused;
  }

  /** The Http1ParseError that killed the parser, if one did. */
  get error(): Http1ParseError | null {
    return this.#failure instanceof Http1ParseError ? this.#failure : null;
  }

  /** No request half-read and no input held: EOF here is a clean end of the connection. */
  get idle(): boolean {
    return this.#state === S_START && this.#pendingLen === 0 && this.#queue.length === 0 && !this.#failed;
  }

  /** Bytes held between pushes: a copied partial line plus queued input (the latter only while paused). */
  get bufferedBytes(): number {
    let n = this.#pendingLen - this.#queueOff;
    for (const b of this.#queue) n += b.length;
    return n;
  }

  /** Parses `chunk` (any size, any boundary), firing events synchronously unless paused. */
  push(chunk: Buffer): void {
    if (this.#failed) throw this.#failure;
    if (chunk.length === 0) return;
    this.#queue.push(chunk);
    if (!this.#running && !this.#paused) this.#drain();
  }

  /** Holds further events (effective when the current callback returns) until resume(). */
  pause(): void {
    this.#paused = true;
  }

  /** Lets events flow again and parses what was queued (its events fire inside this call). */
  resume(): void {
    if (this.#failed) throw this.#failure;
    this.#paused = false;
    if (!this.#running) this.#drain();
  }

  #drain(): void {
    this.#running = true;
    try {
      const q = this.#queue;
      while (!this.#paused) {
        if (this.#state === S_MSG_DONE) {
          this.#state = S_START;
          this.#h.onEnd();
          continue;
        }
        if (q.length === 0) break;
        const buf = q[0]!;
        const off = this.#parse(buf, this.#queueOff);
        if (off >= buf.length) {
          q.shift();
          this.#queueOff = 0;
        } else {
          this.#queueOff = off;
        }
      }
    } catch (err) {
      this.#failed = true;
      this.#failure = err;
      this.#queue = [];
      this.#queueOff = 0;
      this.#pending = [];
      this.#pendingLen = 0;
      this.#raw = [];
      throw err;
    } finally {
      this.#running = false;
    }
  }

  /** Parses from `off` until the buffer is used up, a request ends, or a callback pauses. Returns the new offset. */
  #parse(buf: Buffer, off: number): number {
    const len = buf.length;
    while (off < len && !this.#paused) {
      switch (this.#state) {
        case S_START:
        case S_HEADERS:
        case S_TRAILERS:
          off = this.#lines(buf, off);
          break;
        case S_BODY_CL: {
          const n = Math.min(this.#remaining, len - off);
          const body = buf.subarray(off, off + n);
          off += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = S_MSG_DONE;
          this.#h.onBody(body);
          break;
        }
        case S_CHUNK_SIZE:
          off = this.#chunkSize(buf, off);
          break;
        case S_CHUNK_DATA: {
          const n = Math.min(this.#remaining, len - off);
          const body = buf.subarray(off, off + n);
          off += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = S_CHUNK_DATA_CR;
          this.#h.onBody(body);
          break;
        }
        case S_CHUNK_DATA_CR:
          // RFC 9112 §7.1: chunk-data is followed by CRLF; anything else means the size lied.
          if (buf[off] !== CR) fail('ERR_HTTP1_BAD_CHUNK', 'chunk data not followed by CRLF');
          off++;
          this.#state = S_CHUNK_DATA_LF;
          break;
        case S_CHUNK_DATA_LF:
          if (buf[off] !== LF) fail('ERR_HTTP1_BAD_CHUNK', 'chunk data not followed by CRLF');
          off++;
          this.#state = S_CHUNK_SIZE;
          this.#cs = CS_DIGITS;
          this.#csDigits = 0;
          this.#csValue = 0;
          break;
        case S_MSG_DONE:
          return off; // the drain loop fires onEnd
      }
    }
    return off;
  }

  /**
   * Reads whole lines while in a line state; stashes (copies) an incomplete one under the byte
   * limit. Lines are decoded to latin1 one block at a time (through the head's CRLFCRLF when it
   * fits in a guess, never more than the limit can still take) and parsed as a string: one
   * C++ call per head instead of one per line and field, which is most of the cost otherwise.
   */
  #lines(buf: Buffer, off: number): number {
    const len = buf.length;
    let wide = false;
    while (off < len) {
      if (this.#pendingLen > 0) {
        const lf = buf.indexOf(LF, off);
        if (lf === -1) {
          this.#stash(buf, off);
          return len;
        }
        this.#pending.push(buf.subarray(off, lf + 1));
        const line = Buffer.concat(this.#pending, this.#pendingLen + lf + 1 - off);
        this.#pending = [];
        this.#pendingLen = 0;
        off = lf + 1;
        const str = latin1(line, 0, line.length);
        this.#line(str, 0, str.length - 1);
        if (this.#paused || !this.#inLines()) return off;
        continue;
      }
      const trailers = this.#state === S_TRAILERS;
      if (trailers && buf[off] === CR && buf[off + 1] === LF) {
        // The common last-chunk without trailers: no block to decode.
        this.#line('\r\n', 0, 1);
        return off + 2;
      }
      // Decode a block: a guess (a head is usually well under BLOCK_BYTES) that never exceeds what
      // the size limit can still take; a line longer than the guess gets a block of the whole room.
      const room = (trailers ? this.#maxTrailerBytes - this.#trailerBytes : this.#maxHeaderBytes - this.#headBytes) + 2;
      const end = Math.min(len, off + Math.min(room, wide ? room : BLOCK_BYTES));
      const str = latin1(buf, off, end);
      let p = 0;
      for (let lf = str.indexOf('\n'); lf !== -1; lf = str.indexOf('\n', p)) {
        this.#line(str, p, lf);
        p = lf + 1;
        if (this.#paused || !this.#inLines()) return off + p;
      }
      if (p === 0) {
        if (end < len && end - off < room) {
          wide = true;
          continue;
        }
        // The rest is one incomplete line, kept, or (if it fills the room) one too long: #stash throws.
        this.#stash(buf, off);
        return len;
      }
      wide = false;
      off += p;
    }
    return off;
  }

  #inLines(): boolean {
    const st = this.#state;
    return st === S_START || st === S_HEADERS || st === S_TRAILERS;
  }

  #stash(buf: Buffer, off: number): void {
    const n = buf.length - off;
    const held = this.#pendingLen + n;
    // Checked as bytes arrive so an endless line fails at the same byte whatever the chunking.
    if (this.#state === S_TRAILERS) {
      if (this.#trailerBytes + held > this.#maxTrailerBytes) this.#trailersTooLarge();
    } else if (this.#headBytes + held > this.#maxHeaderBytes) {
      this.#headTooLarge();
    }
    this.#pending.push(Buffer.from(buf.subarray(off)));
    this.#pendingLen = held;
  }

  #headTooLarge(): never {
    fail('ERR_HTTP1_HEADERS_TOO_LARGE', `request head exceeds ${this.#maxHeaderBytes} bytes`);
  }

  #trailersTooLarge(): never {
    fail('ERR_HTTP1_TRAILERS_TOO_LARGE', `trailer section exceeds ${this.#maxTrailerBytes} bytes`);
  }

  /** One line: str[start..lf], lf the index of its LF. */
  #line(str: string, start: number, lf: number): void {
    const lineBytes = lf + 1 - start;
    const state = this.#state;
    // Size limits first, so an oversized line gives the same error whether it arrived whole or in pieces.
    if (state === S_TRAILERS) {
      this.#trailerBytes += lineBytes;
      if (this.#trailerBytes > this.#maxTrailerBytes) this.#trailersTooLarge();
    } else if (state !== S_START || lineBytes > 2) {
      // (Leading empty lines, RFC 9112 §2.2, are not counted against the head.)
      this.#headBytes += lineBytes;
      if (this.#headBytes > this.#maxHeaderBytes) this.#headTooLarge();
    }
    // RFC 9112 §2.2: a recipient MAY accept a bare LF; like llhttp in strict mode we do not
    // (a bare LF that one hop ends a line at and another does not is a smuggling vector).
    if (lf === start || str.charCodeAt(lf - 1) !== CR) fail('ERR_HTTP1_BARE_LF', 'line ends in a bare LF');
    const end = lf - 1;
    if (state === S_START) {
      if (end === start) {
        if (++this.#leadingEmpty > MAX_LEADING_EMPTY_LINES) fail('ERR_HTTP1_BAD_REQUEST_LINE', 'too many empty lines before the request line');
        return;
      }
      this.#requestLine(str, start, end);
      this.#state = S_HEADERS;
      return;
    }
    if (end === start) {
      if (state === S_HEADERS) this.#endHead();
      else this.#endTrailers();
      return;
    }
    this.#field(str, start, end, state === S_TRAILERS);
  }

  /** request-line = method SP request-target SP HTTP-version (RFC 9112 §3). */
  #requestLine(str: string, s: number, e: number): void {
    let i = s;
    while (i < e && TCHAR[str.charCodeAt(i)] === 1) i++;
    if (i === e) fail('ERR_HTTP1_BAD_REQUEST_LINE', 'request line without spaces');
    if (str.charCodeAt(i) !== SP || i === s) fail('ERR_HTTP1_BAD_METHOD', 'method is not a token'); // §3.1
    const v = str.lastIndexOf(' ', e - 1);
    if (v <= i) fail('ERR_HTTP1_BAD_REQUEST_LINE', 'request line without a version');
    // HTTP-version = "HTTP" "/" DIGIT "." DIGIT (§2.3), case-sensitive.
    if (e - v !== 9 || !str.startsWith('HTTP/', v + 1) || !isDigit(str.charCodeAt(v + 6)) || str.charCodeAt(v + 7) !== 0x2e || !isDigit(str.charCodeAt(v + 8))) {
      fail('ERR_HTTP1_BAD_VERSION', 'malformed HTTP version');
    }
    const major = str.charCodeAt(v + 6) - 0x30;
    const minor = str.charCodeAt(v + 8) - 0x30;
    if (major !== 1 || minor > 1) fail('ERR_HTTP1_UNSUPPORTED_VERSION', `HTTP/${major}.${minor} is not supported`);
    // request-target: no whitespace or CTL (§3.2); obs-text is tolerated, like nginx.
    const ts = i + 1;
    if (ts === v) fail('ERR_HTTP1_BAD_TARGET', 'empty request-target');
    for (let k = ts; k < v; k++) {
      const c = str.charCodeAt(k);
      if (c <= SP || c === 0x7f) fail('ERR_HTTP1_BAD_TARGET', 'whitespace or control byte in the request-target');
    }
    const method = i - s === 3 && str.startsWith('GET', s) ? 'GET' : i - s === 4 && str.startsWith('POST', s) ? 'POST' : str.slice(s, i);
    const target = str.slice(ts, v);
    checkTargetForm(method, target);
    this.#method = method;
    this.#target = target;
    this.#minor = minor;
  }

  /** field-line = field-name ":" OWS field-value OWS (RFC 9112 §5). */
  #field(str: string, s: number, e: number, trailer: boolean): void {
    const c0 = str.charCodeAt(s);
    // §5.2: obs-fold is rejected; §2.2: so is whitespace between the start-line and the first field.
    if (c0 === SP || c0 === HTAB) fail('ERR_HTTP1_OBS_FOLD', 'field line starts with whitespace (obs-fold)');
    let i = s;
    while (i < e && TCHAR[str.charCodeAt(i)] === 1) i++;
    // §5.1: no whitespace between field name and colon (400); the name is a token.
    if (i === e || str.charCodeAt(i) !== COLON || i === s) fail('ERR_HTTP1_BAD_HEADER_NAME', 'field name is not a token followed by a colon');
    let vs = i + 1;
    let ve = e;
    while (vs < ve && (str.charCodeAt(vs) === SP || str.charCodeAt(vs) === HTAB)) vs++;
    while (ve > vs && (str.charCodeAt(ve - 1) === SP || str.charCodeAt(ve - 1) === HTAB)) ve--;
    for (let k = vs; k < ve; k++) {
      const c = str.charCodeAt(k);
      if (VALUE_OK[c] !== 1) fail('ERR_HTTP1_BAD_HEADER_VALUE', `control byte 0x${c.toString(16).padStart(2, '0')} in a field value`);
    }
    if (trailer) {
      const t = (this.#trailers ??= []);
      if (t.length >= this.#maxHeaders * 2) fail('ERR_HTTP1_TRAILERS_TOO_LARGE', `more than ${this.#maxHeaders} trailer fields`);
      t.push(str.slice(s, i), str.slice(vs, ve));
      return;
    }
    const raw = this.#raw;
    if (raw.length >= this.#maxHeaders * 2) fail('ERR_HTTP1_TOO_MANY_HEADERS', `more than ${this.#maxHeaders} header fields`);
    const value = str.slice(vs, ve);
    raw.push(str.slice(s, i), value);
    // Fields that matter to framing and the connection. eqLower is exact here: the name is all
    // tchar, and the only tchar that ORs with 0x20 into a lowercase letter or '-' is its own case pair.
    switch (i - s) {
      case 4:
        if (eqLower(str, s, 'host')) this.#hostCount++;
        break;
      case 6:
        if (eqLower(str, s, 'expect') && value.length === 12 && value.toLowerCase() === '100-continue') this.#expect100 = true;
        break;
      case 7:
        if (eqLower(str, s, 'upgrade')) this.#hasUpgrade = true;
        break;
      case 10:
        if (eqLower(str, s, 'connection')) this.#connection(value);
        break;
      case 14:
        if (eqLower(str, s, 'content-length')) this.#contentLength(value);
        break;
      case 17:
        if (eqLower(str, s, 'transfer-encoding')) (this.#te ??= []).push(value);
        break;
    }
  }

  /** Content-Length = 1*DIGIT; repeats and lists must agree exactly (RFC 9112 §6.3 rule 5, RFC 9110 §8.6). */
  #contentLength(value: string): void {
    if (value.indexOf(',') === -1) this.#contentLengthItem(value);
    else for (const part of value.split(',')) this.#contentLengthItem(trimOws(part));
  }

  #contentLengthItem(t: string): void {
    let ok = t.length > 0 && t.length <= 16;
    for (let k = 0; ok && k < t.length; k++) ok = isDigit(t.charCodeAt(k));
    if (!ok) fail('ERR_HTTP1_BAD_CONTENT_LENGTH', 'Content-Length is not a decimal number');
    if (this.#clText === undefined) {
      if (Number(t) > Number.MAX_SAFE_INTEGER) fail('ERR_HTTP1_BAD_CONTENT_LENGTH', 'Content-Length too large');
      this.#clText = t;
    } else if (t !== this.#clText) {
      fail('ERR_HTTP1_BAD_CONTENT_LENGTH', 'conflicting Content-Length values');
    }
  }

  /** Connection options (RFC 9110 §7.6.1), case-insensitive. */
  #connection(value: string): void {
    const lower = value.toLowerCase();
    if (lower === 'close') {
      this.#connClose = true;
      return;
    }
    if (lower === 'keep-alive') {
      this.#connKeepAlive = true;
      return;
    }
    for (const part of lower.split(',')) {
      const t = trimOws(part);
      if (t === 'close') this.#connClose = true;
      else if (t === 'keep-alive') this.#connKeepAlive = true;
      else if (t === 'upgrade') this.#connUpgrade = true;
    }
  }

  #endHead(): void {
    const minor = this.#minor;
    if (this.#hostCount > 1) fail('ERR_HTTP1_BAD_HOST', 'more than one Host field');
    if (this.#hostCount === 0 && minor === 1 && this.#requireHost) fail('ERR_HTTP1_BAD_HOST', 'HTTP/1.1 request without Host');
    let chunked = false;
    let contentLength: number | undefined;
    if (this.#te !== null) {
      // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
      if (minor === 0) fail('ERR_HTTP1_BAD_TRANSFER_ENCODING', 'Transfer-Encoding in an HTTP/1.0 request');
      // §6.3 rule 3: TE + CL is how requests get smuggled; we reject rather than drop CL.
      if (this.#clText !== undefined) fail('ERR_HTTP1_CONFLICTING_FRAMING', 'both Transfer-Encoding and Content-Length');
      checkTransferEncoding(this.#te);
      chunked = true;
    } else if (this.#clText !== undefined) {
      contentLength = Number(this.#clText);
    }
    const head: RequestHead = {
      method: this.#method,
      target: this.#target,
      versionMajor: 1,
      versionMinor: minor,
      rawHeaders: this.#raw,
      contentLength,
      chunked,
      // RFC 9112 §9.3: persistence defaults.
      keepAlive: minor === 1 ? !this.#connClose : this.#connKeepAlive && !this.#connClose,
      expectContinue: minor === 1 && this.#expect100,
      upgrade: this.#connUpgrade && this.#hasUpgrade,
    };
    // Reset per-head state before the callback (it may pause, or throw).
    this.#leadingEmpty = 0;
    this.#headBytes = 0;
    this.#raw = [];
    this.#clText = undefined;
    this.#te = null;
    this.#hostCount = 0;
    this.#connClose = this.#connKeepAlive = this.#connUpgrade = this.#hasUpgrade = this.#expect100 = false;
    if (chunked) {
      this.#state = S_CHUNK_SIZE;
      this.#cs = CS_DIGITS;
      this.#csDigits = 0;
      this.#csValue = 0;
      this.#extBytes = 0;
    } else if (contentLength !== undefined && contentLength > 0) {
      this.#state = S_BODY_CL;
      this.#remaining = contentLength;
    } else {
      // §6.3 rule 7: a request with neither has no body.
      this.#state = S_MSG_DONE;
    }
    this.#h.onHead(head);
  }

  #endTrailers(): void {
    const t = this.#trailers;
    this.#trailers = null;
    this.#trailerBytes = 0;
    this.#state = S_MSG_DONE;
    if (t !== null && this.#h.onTrailers !== undefined) this.#h.onTrailers(t);
  }

  /** Counts one byte between the chunk size and its CR (whitespace, ";", the extension). */
  #extByte(): void {
    if (++this.#extBytes > this.#maxExtBytes) fail('ERR_HTTP1_CHUNK_EXTENSIONS_TOO_LARGE', `chunk extensions exceed ${this.#maxExtBytes} bytes`);
  }

  /** chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1), one byte at a time: nothing is buffered. */
  #chunkSize(buf: Buffer, off: number): number {
    const len = buf.length;
    while (off < len) {
      const c = buf[off++]!;
      switch (this.#cs) {
        case CS_DIGITS: {
          const h = HEX[c]!;
          if (h !== 0) {
            if (++this.#csDigits > MAX_HEX_DIGITS) fail('ERR_HTTP1_BAD_CHUNK', 'chunk size has too many digits');
            this.#csValue = this.#csValue * 16 + (h - 1);
            if (this.#csValue > this.#maxChunkSize) fail('ERR_HTTP1_CHUNK_TOO_LARGE', `chunk larger than ${this.#maxChunkSize} bytes`);
            break;
          }
          if (this.#csDigits === 0) fail('ERR_HTTP1_BAD_CHUNK', 'chunk size is not hexadecimal');
          if (c === CR) this.#cs = CS_LF;
          else if (c === SEMI) this.#cs = CS_EXT;
          else if (c === SP || c === HTAB) this.#cs = CS_BWS;
          else fail('ERR_HTTP1_BAD_CHUNK', 'bad byte after the chunk size');
          if (c !== CR) this.#extByte();
          break;
        }
        case CS_BWS:
          // BWS is only allowed before ";" (chunk-ext = *( BWS ";" … )).
          if (c === SEMI) this.#cs = CS_EXT;
          else if (c !== SP && c !== HTAB) fail('ERR_HTTP1_BAD_CHUNK', 'whitespace after the chunk size');
          this.#extByte();
          break;
        case CS_EXT:
          // Extensions are ignored (§7.1.1) but bounded, and may not hold a CTL: in particular no
          // bare CR or LF, which other parsers disagree about.
          if (c === CR) {
            this.#cs = CS_LF;
          } else {
            if (VALUE_OK[c] !== 1) fail('ERR_HTTP1_BAD_CHUNK', 'control byte in a chunk extension');
            this.#extByte();
          }
          break;
        case CS_LF:
          if (c !== LF) fail('ERR_HTTP1_BAD_CHUNK', 'chunk-size line not ended by CRLF');
          if (this.#csValue === 0) {
            this.#state = S_TRAILERS; // last-chunk: the trailer section follows (§7.1.2)
            this.#trailerBytes = 0;
          } else {
            this.#state = S_CHUNK_DATA;
            this.#remaining = this.#csValue;
          }
          return off;
      }
    }
    return off;
  }
}

function positive(name: string, v: number, allowZero = false): number {
  if (!Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) throw new RangeError(`RequestParser: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} safe integer`);
  return v;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === SP || s.charCodeAt(a) === HTAB)) a++;
  while (b > a && (s.charCodeAt(b - 1) === SP || s.charCodeAt(b - 1) === HTAB)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** The four request-target forms and the methods they go with (RFC 9112 §3.2.1–§3.2.4). */
function checkTargetForm(method: string, target: string): void {
  const first = target.charCodeAt(0);
  if (method === 'CONNECT') {
    // authority-form = uri-host ":" port, only for CONNECT.
    const colon = target.lastIndexOf(':');
    let ok = colon > 0 && colon < target.length - 1 && first !== 0x2f && !/[/?#@]/.test(target);
    for (let k = colon + 1; ok && k < target.length; k++) ok = target.charCodeAt(k) >= 0x30 && target.charCodeAt(k) <= 0x39;
    if (!ok) fail('ERR_HTTP1_BAD_TARGET', 'CONNECT needs an authority-form target (host:port)');
    return;
  }
  if (first === 0x2f) return; // origin-form
  if (target === '*') {
    if (method !== 'OPTIONS') fail('ERR_HTTP1_BAD_TARGET', 'asterisk-form is only for OPTIONS');
    return;
  }
  if (!SCHEME.test(target)) fail('ERR_HTTP1_BAD_TARGET', 'request-target is neither origin-form nor absolute-form');
}

/** Accepts exactly one `chunked`, last (RFC 9112 §6.3 rule 4, §7); other codings before it → 501 (§6.1). */
function checkTransferEncoding(values: string[]): void {
  const codings: string[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const t = trimOws(part).toLowerCase();
      if (t.length > 0) codings.push(t); // empty list elements are ignored (RFC 9110 §5.6.1)
    }
  }
  const last = codings.length - 1;
  if (last < 0 || codings[last] !== 'chunked') fail('ERR_HTTP1_BAD_TRANSFER_ENCODING', 'final transfer coding is not chunked');
  for (let k = 0; k < last; k++) {
    if (codings[k] === 'chunked' || codings[k]!.startsWith('chunked;') || codings[k]!.startsWith('chunked ')) {
      fail('ERR_HTTP1_BAD_TRANSFER_ENCODING', 'chunked applied more than once');
    }
  }
  if (last > 0) fail('ERR_HTTP1_UNSUPPORTED_TRANSFER_CODING', `unsupported transfer coding ${codings[0]}`);
}
