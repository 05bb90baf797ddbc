/**
 * @module scgi/codec
 * The SCGI wire format (python.ca/scgi/protocol.txt), with no sockets: the
 * request header netstring `<len>:NAME\0VALUE\0...,` in both directions.
 * SCGI has no framing after the header: the body is CONTENT_LENGTH raw
 * bytes and the response is raw CGI output until the connection closes.
 */
import type { ParamList } from './contract.js';
import { ScgiProtocolError } from './errors.js';

/** Default bound on the netstring payload (the header block), as in ScgiServerOptions. */
export const DEFAULT_MAX_HEADER_BYTES = 64 * 1024;

const COLON = 0x3a;
const COMMA = 0x2c;
const NUL = 0x00;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** A name or value must fit in latin1 (so the bytes round-trip) and must not contain NUL (the separator). */
function checkEncodable(what: string, s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === NUL) throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', `${what} contains NUL: ${JSON.stringify(s)}`);
    if (c > 0xff) throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', `${what} is not latin1: ${JSON.stringify(s)}`);
  }
}

/**
 * Encodes the request header netstring a client sends first. The spec wants
 * CONTENT_LENGTH first and SCGI=1 present, so both are written here from
 * `contentLength` and any copies of them in `params` are dropped; the rest
 * keep their order. Names must be non-empty and unique: we send what the
 * spec allows even though we accept repeats from others.
 */
export function encodeRequestHeaders(params: ParamList, contentLength: number): Buffer {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
    throw new RangeError(`scgi: contentLength must be a non-negative integer, got ${contentLength}`);
  }
  const pairs: ParamList = [
    ['CONTENT_LENGTH', String(contentLength)],
    ['SCGI', '1'],
  ];
  const seen = new Set<string>();
  for (const [name, value] of params) {
    if (name === 'CONTENT_LENGTH' || name === 'SCGI') continue;
    if (name === '') throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', 'empty header name');
    checkEncodable('header name', name);
    checkEncodable(`value of ${name}`, value);
    if (seen.has(name)) throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', `duplicate header ${name}`);
    seen.add(name);
    pairs.push([name, value]);
  }
  let size = 0;
  for (const [name, value] of pairs) size += name.length + value.length + 2;
  const prefix = `${size}:`;
  const out = Buffer.allocUnsafe(prefix.length + size + 1);
  let at = out.write(prefix, 0, 'latin1');
  for (const [name, value] of pairs) {
    at += out.write(name, at, 'latin1');
    out[at++] = NUL;
    at += out.write(value, at, 'latin1');
    out[at++] = NUL;
  }
  out[at] = COMMA;
  return out;
}

export interface ScgiHeaderParserOptions {
  /** Upper bound on the header block (the netstring payload). Default 64 KiB. */
  maxHeaderBytes?: number;
  /**
   * Default true: CONTENT_LENGTH must be the first header, as the spec says.
   * false accepts it anywhere, because ashd's callscgi sends it as its 18th
   * variable. CONTENT_LENGTH and SCGI=1 are required either way.
   */
  strict?: boolean;
  /**
   * What to do with a name that repeats. The spec forbids repeats, but
   * nginx (checked: 1.22, scgi_pass_request_headers on) and ashd's callscgi
   * both send one HTTP_* pair per request header line, so two `X-Dup:` lines
   * arrive as HTTP_X_DUP twice. Default 'keep': every pair stays in the
   * ParamList in wire order and the consumer decides (join, first wins…).
   * 'reject': ERR_SCGI_BAD_HEADERS. A repeated CONTENT_LENGTH or SCGI is
   * always rejected: two lengths are a request-smuggling vector.
   */
  duplicates?: 'keep' | 'reject';
}

/** What the parser yields once the header netstring is complete. */
export interface ScgiParsedHeader {
  /** Every NAME/VALUE pair in wire order, latin1-decoded. */
  params: ParamList;
  /** CONTENT_LENGTH as a number. */
  contentLength: number;
  /** Bytes after the closing ',' in the chunk that completed the header (body, possibly more). */
  rest: Buffer;
}

type ParserState = 'length' | 'block' | 'comma' | 'done';

/**
 * Incremental parser of the request header netstring (the server's side).
 * Feed it chunks split anywhere; it holds at most maxHeaderBytes plus a few
 * length digits, and throws ScgiProtocolError on bad input.
 */
export class ScgiHeaderParser {
  readonly #maxHeaderBytes: number;
  readonly #strict: boolean;
  readonly #rejectDuplicates: boolean;
  #state: ParserState = 'length';
  #digits = 0;
  #length = 0;
  #block: Buffer = Buffer.alloc(0);
  #filled = 0;
  #received = 0;

  constructor(options: ScgiHeaderParserOptions = {}) {
    this.#maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    this.#strict = options.strict ?? true;
    this.#rejectDuplicates = options.duplicates === 'reject';
  }

  /** True once any byte arrived (an EOF before that is a connection that just closed, not a protocol error). */
  get started(): boolean {
    return this.#received > 0;
  }

  /** Feeds a chunk; returns null until the closing ',' has been seen. */
  push(chunk: Uint8Array): ScgiParsedHeader | null {
    if (this.#state === 'done') throw new Error('scgi: ScgiHeaderParser.push() after the header was complete');
    this.#received += chunk.length;
    let i = 0;
    while (i < chunk.length) {
      switch (this.#state) {
        case 'length': {
          const b = chunk[i++]!;
          if (b === COLON) {
            if (this.#digits === 0) throw new ScgiProtocolError('ERR_SCGI_NETSTRING', 'netstring has no length digits');
            this.#block = Buffer.allocUnsafe(this.#length);
            this.#state = this.#length === 0 ? 'comma' : 'block';
          } else if (b >= DIGIT_0 && b <= DIGIT_9) {
            // Netstrings forbid leading zeros; "0:" alone is the empty string.
            if (this.#digits === 1 && this.#length === 0) {
              throw new ScgiProtocolError('ERR_SCGI_NETSTRING', 'netstring length has a leading zero');
            }
            this.#length = this.#length * 10 + (b - DIGIT_0);
            this.#digits++;
            if (this.#length > this.#maxHeaderBytes) {
              throw new ScgiProtocolError(
                'ERR_SCGI_HEADER_TOO_LARGE',
                `header netstring announces more than ${this.#maxHeaderBytes} bytes`,
              );
            }
          } else {
            throw new ScgiProtocolError('ERR_SCGI_NETSTRING', `unexpected byte 0x${b.toString(16)} in netstring length`);
          }
          break;
        }
        case 'block': {
          const n = Math.min(this.#length - this.#filled, chunk.length - i);
          this.#block.set(chunk.subarray(i, i + n), this.#filled);
          this.#filled += n;
          i += n;
          if (this.#filled === this.#length) this.#state = 'comma';
          break;
        }
        case 'comma': {
          const b = chunk[i++]!;
          if (b !== COMMA) throw new ScgiProtocolError('ERR_SCGI_NETSTRING', "netstring does not end with ','");
          this.#state = 'done';
          const params = parseHeaderBlock(this.#block, this.#rejectDuplicates);
          const contentLength = checkRequiredHeaders(params, this.#strict);
          this.#block = Buffer.alloc(0);
          const rest = Buffer.from(chunk.buffer, chunk.byteOffset + i, chunk.length - i);
          return { params, contentLength, rest };
        }
      }
    }
    return null;
  }

  /**
   * Call at EOF. Throws ERR_SCGI_NETSTRING if the header had started but not
   * finished; does nothing if nothing arrived at all or it was complete.
   */
  end(): void {
    if (this.#state !== 'done' && this.#received > 0) {
      throw new ScgiProtocolError('ERR_SCGI_NETSTRING', 'connection closed inside the header netstring');
    }
  }
}

/** Splits the netstring payload into NAME\0VALUE\0 pairs. */
function parseHeaderBlock(block: Buffer, rejectDuplicates: boolean): ParamList {
  const params: ParamList = [];
  if (block.length === 0) return params;
  if (block[block.length - 1] !== NUL) {
    throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', 'header block does not end with NUL');
  }
  const seen = new Set<string>();
  let at = 0;
  while (at < block.length) {
    const nameEnd = block.indexOf(NUL, at);
    const valueEnd = block.indexOf(NUL, nameEnd + 1);
    if (valueEnd < 0) throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', 'header name without a value (odd number of strings)');
    if (nameEnd === at) throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', 'empty header name');
    const name = block.toString('latin1', at, nameEnd);
    const value = block.toString('latin1', nameEnd + 1, valueEnd);
    // Repeats of these two are never allowed: two lengths are a smuggling vector.
    if (seen.has(name) && (rejectDuplicates || name === 'CONTENT_LENGTH' || name === 'SCGI')) {
      throw new ScgiProtocolError('ERR_SCGI_BAD_HEADERS', `duplicate header ${name}`);
    }
    seen.add(name);
    params.push([name, value]);
    at = valueEnd + 1;
  }
  return params;
}

const DECIMAL = /^[0-9]+$/;

/** Checks CONTENT_LENGTH (first in strict mode, decimal) and SCGI=1; returns the length. */
function checkRequiredHeaders(params: ParamList, strict: boolean): number {
  const index = params.findIndex(([name]) => name === 'CONTENT_LENGTH');
  if (index < 0) throw new ScgiProtocolError('ERR_SCGI_NO_CONTENT_LENGTH', 'CONTENT_LENGTH is missing');
  if (strict && index !== 0) {
    throw new ScgiProtocolError('ERR_SCGI_NO_CONTENT_LENGTH', 'CONTENT_LENGTH is not the first header');
  }
  const raw = params[index]![1];
  const length = DECIMAL.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(length)) {
    throw new ScgiProtocolError('ERR_SCGI_NO_CONTENT_LENGTH', `CONTENT_LENGTH is not a decimal: ${JSON.stringify(raw)}`);
  }
  if (!params.some(([name, value]) => name === 'SCGI' && value === '1')) {
    throw new ScgiProtocolError('ERR_SCGI_NO_SCGI', 'SCGI=1 is missing');
  }
  return length;
}
