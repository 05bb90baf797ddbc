/**
 * @module fastcgi/client-exchange
 * A lean client-side request for callers that want callbacks rather than
 * streams (the backend's FastCGI transport): no EventEmitter, no stdout
 * Readable, no stdin Writable unless there is a body. The request head
 * (BEGIN_REQUEST, every PARAMS record and its terminator, and the empty
 * STDIN record when there is no body) is encoded straight into one buffer
 * and goes out in one write(2).
 */
import { encodeBeginRequestBody, encodePairs, encodeRecord, encodeStream } from './codec.js';
import { FCGI_HEADER_LEN, FCGI_MAX_CONTENT_LENGTH, FCGI_MAX_NAME_VALUE_LENGTH, Flags, RecordType } from './constants.js';
import type { ParamList } from './contract.js';
import { FastCgiProtocolError, type FastCgiConnectionError } from './errors.js';
import type { InboundGate, InboundStream } from './inbound.js';
import { putHeader, RecordStreamWritable, type RecordOutput } from './outbound.js';
import type { FcgiEndInfo } from './client-request.js';

/** What the connection routes a request's records to (ClientRequest and ClientExchange both are one). */
export interface ClientRecordTarget {
  readonly requestId: number;
  readonly responseStarted: boolean;
  onStdout(content: Buffer): void;
  onStderr(content: Buffer): void;
  onEnd(info: FcgiEndInfo): void;
  onConnectionError(err: FastCgiConnectionError): void;
}

/** The caller's side of a ClientExchange. Exactly one of end() and error() is called. */
export interface ExchangeSink {
  /** STDOUT content (never empty; may share the socket's chunk). Return false to pause the connection until resume(). */
  stdout(chunk: Buffer): boolean;
  /** STDERR content (never empty; a copy). */
  stderr(chunk: Buffer): void;
  /** END_REQUEST. */
  end(info: FcgiEndInfo): void;
  /** The connection ended before END_REQUEST. */
  error(err: FastCgiConnectionError): void;
}

export interface ExchangeHost {
  sendAbortFor(target: ClientRecordTarget): void;
}

export class ClientExchange implements ClientRecordTarget {
  readonly requestId: number;
  readonly #host: ExchangeHost;
  readonly #sink: ExchangeSink;
  readonly #out: RecordOutput;
  readonly #gate: InboundGate;
  readonly #highWaterMark: number;
  #stdin: RecordStreamWritable | undefined;
  #responseStarted = false;
  #stdoutDone = false;
  #held = false;
  #abortSent = false;
  #done = false;

  constructor(host: ExchangeHost, io: { out: RecordOutput; gate: InboundGate; highWaterMark: number }, requestId: number, sink: ExchangeSink) {
    this.#host = host;
    this.#out = io.out;
    this.#gate = io.gate;
    this.#highWaterMark = io.highWaterMark;
    this.requestId = requestId;
    this.#sink = sink;
  }

  /** FCGI_STDIN for a request with a body (created on first use; end() sends the empty STDIN record). */
  get stdin(): RecordStreamWritable {
    this.#stdin ??= new RecordStreamWritable(this.#out, RecordType.STDIN, this.requestId, { endRecord: 'always', highWaterMark: this.#highWaterMark });
    if (this.#done || this.#abortSent) this.#stdin.detach();
    return this.#stdin;
  }

  get responseStarted(): boolean {
    return this.#responseStarted;
  }

  get done(): boolean {
    return this.#done;
  }

  /** Sends ABORT_REQUEST (once); END_REQUEST still follows if the application answers. */
  abort(): void {
    if (this.#done || this.#abortSent) return;
    this.#abortSent = true;
    this.#stdin?.detach();
    this.#host.sendAbortFor(this);
  }

  /** Lets the connection read again after stdout() returned false. */
  resume(): void {
    if (!this.#held) return;
    this.#held = false;
    this.#gate.release(this as unknown as InboundStream);
  }

  /** No more STDOUT is wanted (the consumer is gone): drop it and never pause the connection for it. */
  discardStdout(): void {
    this.#stdoutDone = true;
    this.resume();
  }

  onStdout(content: Buffer): void {
    if (content.length === 0) {
      this.#stdoutDone = true;
      this.resume();
      return;
    }
    this.#responseStarted = true;
    if (this.#stdoutDone || this.#done) return;
    if (!this.#sink.stdout(content) && !this.#held && !this.#stdoutDone) {
      this.#held = true;
      // The gate only keeps a set of holders: this stands in for an InboundStream.
      this.#gate.hold(this as unknown as InboundStream);
    }
  }

  onStderr(content: Buffer): void {
    if (content.length === 0) return;
    this.#responseStarted = true;
    this.#sink.stderr(Buffer.from(content));
  }

  onEnd(info: FcgiEndInfo): void {
    if (this.#done) return;
    this.#done = true;
    this.#stdin?.detach();
    this.#stdoutDone = true;
    this.resume();
    this.#sink.end(info);
  }

  onConnectionError(err: FastCgiConnectionError): void {
    if (this.#done) return;
    this.#done = true;
    this.#stdin?.detach();
    this.#stdoutDone = true;
    this.resume();
    this.#sink.error(err);
  }
}

// ---------------------------------------------------------------- encoding

/** Reused between calls: byte length of each name/value (negative: send as UTF-8). */
let lens = new Int32Array(128);

/** Byte length of a name or value as stringBytes() would encode it; negative for UTF-8. */
function byteLen(s: string): number {
  const n = s.length;
  // Fast path: pure ASCII (UTF-8 length equals char count and no char is above U+00FF).
  const u = Buffer.byteLength(s, 'utf8');
  if (u === n) return n;
  return /[^\u0000-\u00ff]/.test(s) ? -u : n;
}

function tooLarge(n: number): FastCgiProtocolError {
  return new FastCgiProtocolError('ERR_FCGI_PARAMS_TOO_LARGE', `name/value length ${n} is not encodable (max ${FCGI_MAX_NAME_VALUE_LENGTH})`);
}

function putSize(b: Buffer, at: number, n: number): number {
  if (n <= 127) {
    b[at] = n;
    return at + 1;
  }
  b.writeUInt32BE((n | 0x80000000) >>> 0, at);
  return at + 4;
}

/** Single-character length prefixes 0–127 (one byte each once written as latin1). */
const SHORT_SIZES = Array.from({ length: 128 }, (_, n) => String.fromCharCode(n));
/** A character latin1 cannot carry: the string must go out as UTF-8. */
const WIDE_CHAR = /[^\u0000-\u00ff]/;

/** A name-value length prefix as latin1 characters (one for 0–127, else four with the top bit set). */
function sizeChars(n: number): string {
  return n <= 127 ? SHORT_SIZES[n]! : String.fromCharCode(0x80 | (n >>> 24), (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/**
 * BEGIN_REQUEST, PARAMS (pairs encoded as encodePairs() does), the empty
 * PARAMS record and, with `endStdin`, the empty STDIN record, in one buffer:
 * the same bytes as encoding each with codec.ts and concatenating them.
 */
export function encodeRequestHead(requestId: number, role: number, keepConn: boolean, params: ParamList, endStdin: boolean): Buffer {
  const head = requestHead(requestId, role, keepConn, params, endStdin);
  return typeof head === 'string' ? Buffer.from(head, 'latin1') : head;
}

/**
 * encodeRequestHead()'s bytes as RecordOutput.write() takes them: for the
 * usual request (byte-string params that fit one record) a latin1 string,
 * one char per byte, that the socket writes as it is: per-string
 * byteLength() / write() calls into C++ cost more than the bytes themselves
 * (≈4 µs vs ≈1 µs for a typical PHP request), and a Buffer in between costs
 * an allocation. Otherwise a Buffer.
 */
export function requestHead(requestId: number, role: number, keepConn: boolean, params: ParamList, endStdin: boolean): string | Buffer {
  return requestHeadText(requestId, role, keepConn, params, endStdin) ?? encodeRequestHeadGeneral(requestId, role, keepConn, params, endStdin);
}

/** requestHead() for the usual request; null when the params need the general encoder. */
function requestHeadText(requestId: number, role: number, keepConn: boolean, params: ParamList, endStdin: boolean): string | null {
  let content = '';
  for (let i = 0; i < params.length; i++) {
    const pair = params[i]!;
    content += sizeChars(pair[0].length) + sizeChars(pair[1].length) + pair[0] + pair[1];
    if (content.length > FCGI_MAX_CONTENT_LENGTH) return null;
  }
  if (WIDE_CHAR.test(content)) return null;
  const pairBytes = content.length;
  const pad = -pairBytes & 7;
  let head = headerChars(RecordType.BEGIN_REQUEST, requestId, 8, 0) + String.fromCharCode(role >>> 8, role & 0xff, keepConn ? Flags.KEEP_CONN : 0, 0, 0, 0, 0, 0);
  if (pairBytes > 0) head += headerChars(RecordType.PARAMS, requestId, pairBytes, pad) + content + PADDING[pad]!;
  head += headerChars(RecordType.PARAMS, requestId, 0, 0);
  if (endStdin) head += headerChars(RecordType.STDIN, requestId, 0, 0);
  return head;
}

/** A record header (putHeader()) as 8 latin1 chars. */
function headerChars(type: number, requestId: number, contentLength: number, paddingLength: number): string {
  return String.fromCharCode(1, type, requestId >>> 8, requestId & 0xff, contentLength >>> 8, contentLength & 0xff, paddingLength, 0);
}

const PADDING = Array.from({ length: 8 }, (_, n) => '\0'.repeat(n));

/** BEGIN_REQUEST: header, role (2 bytes), flags, 5 reserved. */
function putBeginRequest(out: Buffer, requestId: number, role: number, keepConn: boolean): void {
  putHeader(out, 0, RecordType.BEGIN_REQUEST, requestId, 8, 0);
  out[8] = role >>> 8;
  out[9] = role & 0xff;
  out[10] = keepConn ? Flags.KEEP_CONN : 0;
  out.fill(0, 11, 16);
}

/** encodeRequestHead() for params with characters beyond latin1 (sent as UTF-8) or beyond one record. */
function encodeRequestHeadGeneral(requestId: number, role: number, keepConn: boolean, params: ParamList, endStdin: boolean): Buffer {
  const count = params.length;
  if (lens.length < count * 2) lens = new Int32Array(count * 4);
  let pairBytes = 0;
  for (let i = 0; i < count; i++) {
    const pair = params[i]!;
    const ln = byteLen(pair[0]);
    const lv = byteLen(pair[1]);
    const an = ln < 0 ? -ln : ln;
    const av = lv < 0 ? -lv : lv;
    if (an > FCGI_MAX_NAME_VALUE_LENGTH) throw tooLarge(an);
    if (av > FCGI_MAX_NAME_VALUE_LENGTH) throw tooLarge(av);
    lens[2 * i] = ln;
    lens[2 * i + 1] = lv;
    pairBytes += (an > 127 ? 4 : 1) + (av > 127 ? 4 : 1) + an + av;
  }
  if (pairBytes > FCGI_MAX_CONTENT_LENGTH) {
    // More than one PARAMS record: the general (rare) path.
    const parts = [
      encodeRecord(RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(role, keepConn)),
      ...encodeStream(RecordType.PARAMS, requestId, encodePairs(params), { end: true }),
    ];
    if (endStdin) parts.push(encodeRecord(RecordType.STDIN, requestId));
    return Buffer.concat(parts);
  }
  const pad = -pairBytes & 7;
  const paramsAt = FCGI_HEADER_LEN + 8;
  const paramsEnd = paramsAt + (pairBytes > 0 ? FCGI_HEADER_LEN + pairBytes + pad : 0);
  const total = paramsEnd + FCGI_HEADER_LEN + (endStdin ? FCGI_HEADER_LEN : 0);
  const out = Buffer.allocUnsafe(total);
  putBeginRequest(out, requestId, role, keepConn);
  if (pairBytes > 0) {
    putHeader(out, paramsAt, RecordType.PARAMS, requestId, pairBytes, pad);
    let at = paramsAt + FCGI_HEADER_LEN;
    for (let i = 0; i < count; i++) {
      const pair = params[i]!;
      const ln = lens[2 * i]!;
      const lv = lens[2 * i + 1]!;
      const an = ln < 0 ? -ln : ln;
      const av = lv < 0 ? -lv : lv;
      at = putSize(out, at, an);
      at = putSize(out, at, av);
      if (an > 0) at += out.write(pair[0], at, an, ln < 0 ? 'utf8' : 'latin1');
      if (av > 0) at += out.write(pair[1], at, av, lv < 0 ? 'utf8' : 'latin1');
    }
    if (pad > 0) out.fill(0, at, at + pad);
  }
  putHeader(out, paramsEnd, RecordType.PARAMS, requestId, 0, 0);
  if (endStdin) putHeader(out, paramsEnd + FCGI_HEADER_LEN, RecordType.STDIN, requestId, 0, 0);
  return out;
}
