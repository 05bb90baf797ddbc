/**
 * @module fastcgi/codec
 * The raw FastCGI 1.0 wire format, for both sides: record headers, records with
 * padding, the split of a stream into records, name–value pairs and the fixed
 * bodies (BEGIN_REQUEST, END_REQUEST, UNKNOWN_TYPE, GET_VALUES[_RESULT]).
 * Pure: no sockets, no timers. The streaming parser lives in record-parser.ts
 * and is re-exported here.
 */
import {
  FCGI_HEADER_LEN,
  FCGI_MAX_CONTENT_LENGTH,
  FCGI_MAX_NAME_VALUE_LENGTH,
  FCGI_MAX_REQUEST_ID,
  FCGI_NULL_REQUEST_ID,
  FCGI_VERSION_1,
  Flags,
  RecordType,
} from './constants.js';
import type { ParamList } from './contract.js';
import { FastCgiProtocolError, badVersion } from './errors.js';
import { latin1 } from '../latin1.js';

export { RecordParser } from './record-parser.js';

/** The 8-byte record header (spec §3.3). */
export interface FcgiHeader {
  version: number;
  type: number;
  requestId: number;
  contentLength: number;
  paddingLength: number;
}

/** One record as the parser yields it: padding dropped, content exactly contentLength bytes. */
export interface FcgiRecord {
  type: number;
  requestId: number;
  content: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** Padding that brings `contentLength` to a multiple of 8 (what Go and Caddy send; the spec recommends it). */
export function paddingFor(contentLength: number): number {
  return -contentLength & 7;
}

/** Encodes a header. Ranges are checked because a silently truncated field would corrupt the stream. */
export function encodeHeader(type: number, requestId: number, contentLength: number, paddingLength: number): Buffer {
  if (contentLength > FCGI_MAX_CONTENT_LENGTH) {
    throw new FastCgiProtocolError('ERR_FCGI_RECORD_TOO_LARGE', `record content of ${contentLength} bytes exceeds ${FCGI_MAX_CONTENT_LENGTH}`);
  }
  if (!isUint(type, 0xff) || !isUint(requestId, FCGI_MAX_REQUEST_ID) || !isUint(contentLength, 0xffff) || !isUint(paddingLength, 0xff)) {
    throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `header field out of range (type ${type}, id ${requestId}, padding ${paddingLength})`);
  }
  const h = Buffer.allocUnsafe(FCGI_HEADER_LEN);
  h[0] = FCGI_VERSION_1;
  h[1] = type;
  h.writeUInt16BE(requestId, 2);
  h.writeUInt16BE(contentLength, 4);
  h[6] = paddingLength;
  h[7] = 0;
  return h;
}

/** Decodes the header at `offset` (which must hold 8 bytes); rejects any version but 1. */
export function decodeHeader(buf: Uint8Array, offset = 0): FcgiHeader {
  if (buf.length - offset < FCGI_HEADER_LEN) {
    throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `short header: ${buf.length - offset} of ${FCGI_HEADER_LEN} bytes`);
  }
  const version = buf[offset]!;
  if (version !== FCGI_VERSION_1) throw badVersion(version);
  return {
    version,
    type: buf[offset + 1]!,
    requestId: (buf[offset + 2]! << 8) | buf[offset + 3]!,
    contentLength: (buf[offset + 4]! << 8) | buf[offset + 5]!,
    paddingLength: buf[offset + 6]!,
  };
}

/** One whole record: header, content, zero padding to a multiple of 8. Content must be ≤ 65535 bytes. */
export function encodeRecord(type: number, requestId: number, content: Uint8Array = EMPTY): Buffer {
  const len = content.length;
  const pad = paddingFor(len);
  if (len > FCGI_MAX_CONTENT_LENGTH || !isUint(type, 0xff) || !isUint(requestId, FCGI_MAX_REQUEST_ID)) {
    encodeHeader(type, requestId, len, pad); // throws the precise error
  }
  // One buffer (pooled when small), filled in place: the same bytes as header + content + zeros.
  const out = Buffer.allocUnsafe(FCGI_HEADER_LEN + len + pad);
  out[0] = FCGI_VERSION_1;
  out[1] = type;
  out[2] = requestId >>> 8;
  out[3] = requestId & 0xff;
  out[4] = len >>> 8;
  out[5] = len & 0xff;
  out[6] = pad;
  out[7] = 0;
  if (len > 0) out.set(content, FCGI_HEADER_LEN);
  for (let i = FCGI_HEADER_LEN + len; i < out.length; i++) out[i] = 0;
  return out;
}

/**
 * Splits `body` into records of at most 65535 content bytes (Go's streamWriter).
 * With `end`, the empty record that closes the stream follows. An empty body
 * without `end` yields no record at all: an empty record would end the stream.
 */
export function encodeStream(type: number, requestId: number, body: Uint8Array, opts: { end?: boolean } = {}): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < body.length; off += FCGI_MAX_CONTENT_LENGTH) {
    out.push(encodeRecord(type, requestId, body.subarray(off, off + FCGI_MAX_CONTENT_LENGTH)));
  }
  if (opts.end) out.push(encodeRecord(type, requestId, EMPTY));
  return out;
}

// ---------------------------------------------------------------- name–value pairs (spec §3.4)

/** A length as 1 byte (≤ 127) or 4 bytes with the high bit set. */
export function encodeSize(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > FCGI_MAX_NAME_VALUE_LENGTH) {
    throw new FastCgiProtocolError('ERR_FCGI_PARAMS_TOO_LARGE', `name/value length ${n} is not encodable (max ${FCGI_MAX_NAME_VALUE_LENGTH})`);
  }
  if (n <= 127) return Buffer.from([n]);
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0, 0);
  return b;
}

/** Reads a length at `offset`; null when the bytes stop inside it. */
export function readSize(buf: Uint8Array, offset: number): { size: number; bytes: 1 | 4 } | null {
  if (offset >= buf.length) return null;
  const b0 = buf[offset]!;
  if ((b0 & 0x80) === 0) return { size: b0, bytes: 1 };
  if (offset + 4 > buf.length) return null;
  const size = ((b0 & 0x7f) * 0x1000000) + (buf[offset + 1]! << 16) + (buf[offset + 2]! << 8) + buf[offset + 3]!;
  return { size, bytes: 4 };
}

/**
 * Strings are byte strings: each char ≤ U+00FF is one byte (latin1), so values
 * decoded by decodePairs round-trip exactly. A string with a char above U+00FF
 * cannot be a byte string, so it is taken as text and sent as UTF-8.
 */
export function stringBytes(s: string): Buffer {
  return /[^\u0000-\u00ff]/.test(s) ? Buffer.from(s, 'utf8') : Buffer.from(s, 'latin1');
}

/** Encodes pairs back to back, as PARAMS and GET_VALUES[_RESULT] carry them. */
export function encodePairs(pairs: Iterable<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of pairs) {
    const n = stringBytes(name);
    const v = stringBytes(value);
    parts.push(encodeSize(n.length), encodeSize(v.length), n, v);
  }
  return Buffer.concat(parts);
}

/** Decodes a complete pair stream; names and values as latin1. Throws ERR_FCGI_BAD_NAME_VALUE if truncated. */
export function decodePairs(buf: Uint8Array): ParamList {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ParamList = [];
  const end = b.length;
  let off = 0;
  // One pass, lengths read inline (this runs for every request's PARAMS).
  while (off < end) {
    let nl = b[off]!;
    if (nl < 0x80) off += 1;
    else {
      if (off + 4 > end) throw truncated(off, 'name length');
      nl = (nl & 0x7f) * 0x1000000 + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!;
      off += 4;
    }
    if (off >= end) throw truncated(off, 'value length');
    let vl = b[off]!;
    if (vl < 0x80) off += 1;
    else {
      if (off + 4 > end) throw truncated(off, 'value length');
      vl = (vl & 0x7f) * 0x1000000 + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!;
      off += 4;
    }
    if (nl > end - off) throw truncated(off, 'name');
    const name = latin1(b, off, off + nl);
    off += nl;
    if (vl > end - off) throw truncated(off, 'value');
    const value = vl === 0 ? '' : latin1(b, off, off + vl);
    off += vl;
    out.push([name, value]);
  }
  return out;
}

/**
 * Checks that `buf` is a complete pair stream, as decodePairs would (same
 * errors), without decoding it: a request's PARAMS are checked when they end
 * and decoded only if someone asks for them.
 */
export function checkPairs(buf: Uint8Array): void {
  const end = buf.length;
  let off = 0;
  while (off < end) {
    let nl = buf[off]!;
    if (nl < 0x80) off += 1;
    else {
      if (off + 4 > end) throw truncated(off, 'name length');
      nl = (nl & 0x7f) * 0x1000000 + (buf[off + 1]! << 16) + (buf[off + 2]! << 8) + buf[off + 3]!;
      off += 4;
    }
    if (off >= end) throw truncated(off, 'value length');
    let vl = buf[off]!;
    if (vl < 0x80) off += 1;
    else {
      if (off + 4 > end) throw truncated(off, 'value length');
      vl = (vl & 0x7f) * 0x1000000 + (buf[off + 1]! << 16) + (buf[off + 2]! << 8) + buf[off + 3]!;
      off += 4;
    }
    if (nl > end - off) throw truncated(off, 'name');
    off += nl;
    if (vl > end - off) throw truncated(off, 'value');
    off += vl;
  }
}

function truncated(off: number, what: string): FastCgiProtocolError {
  return new FastCgiProtocolError('ERR_FCGI_BAD_NAME_VALUE', `name-value pairs end inside a ${what} at byte ${off}`);
}

// ---------------------------------------------------------------- fixed bodies

function requireBodyLength(content: Uint8Array, type: string): void {
  if (content.length !== 8) {
    throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `${type} body is ${content.length} bytes, want 8`);
  }
}

/** FCGI_BeginRequestBody: role (2 bytes), flags, 5 reserved. */
export function encodeBeginRequestBody(role: number, keepConn: boolean): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(role, 0);
  b[2] = keepConn ? Flags.KEEP_CONN : 0;
  return b;
}

export function decodeBeginRequestBody(content: Uint8Array): { role: number; flags: number; keepConn: boolean } {
  requireBodyLength(content, 'BEGIN_REQUEST');
  const flags = content[2]!;
  return { role: (content[0]! << 8) | content[1]!, flags, keepConn: (flags & Flags.KEEP_CONN) !== 0 };
}

/** FCGI_EndRequestBody: appStatus (4 bytes), protocolStatus, 3 reserved. */
export function encodeEndRequestBody(appStatus: number, protocolStatus: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(appStatus >>> 0, 0);
  b[4] = protocolStatus;
  return b;
}

export function decodeEndRequestBody(content: Uint8Array): { appStatus: number; protocolStatus: number } {
  requireBodyLength(content, 'END_REQUEST');
  const appStatus = ((content[0]! << 24) | (content[1]! << 16) | (content[2]! << 8) | content[3]!) >>> 0;
  return { appStatus, protocolStatus: content[4]! };
}

/** FCGI_UnknownTypeBody: the type not understood, 7 reserved. */
export function encodeUnknownTypeBody(type: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = type;
  return b;
}

export function decodeUnknownTypeBody(content: Uint8Array): { type: number } {
  requireBodyLength(content, 'UNKNOWN_TYPE');
  return { type: content[0]! };
}

/** A GET_VALUES record (id 0): the names asked, each with an empty value. */
export function encodeGetValues(names: readonly string[]): Buffer {
  return encodeRecord(RecordType.GET_VALUES, FCGI_NULL_REQUEST_ID, encodePairs(names.map((n) => [n, ''] as const)));
}

/** The names a GET_VALUES record asks for (values are ignored, as the spec says they are empty). */
export function decodeGetValues(content: Uint8Array): string[] {
  return decodePairs(content).map(([name]) => name);
}

/** A GET_VALUES_RESULT record (id 0). */
export function encodeGetValuesResult(values: Iterable<readonly [string, string]>): Buffer {
  return encodeRecord(RecordType.GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID, encodePairs(values));
}

export function decodeGetValuesResult(content: Uint8Array): Map<string, string> {
  return new Map(decodePairs(content));
}

/** Throws ERR_FCGI_BAD_RECORD unless a management record is on id 0 (spec §3.3). */
export function requireManagementId(rec: FcgiRecord): void {
  if (rec.requestId !== FCGI_NULL_REQUEST_ID) {
    throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `management record type ${rec.type} on request id ${rec.requestId}, want 0`);
  }
}

function isUint(n: number, max: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= max;
}
