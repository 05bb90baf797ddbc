/**
 * @module fastcgi/outbound
 * The sending half shared by both sides of a FastCGI connection: one
 * RecordOutput per socket (writes records, tracks 'drain' for every stream on
 * the connection) and RecordStreamWritable, the Writable behind STDOUT/STDERR
 * (server side) and STDIN/DATA (client side).
 */
import { Writable } from 'node:stream';
import type { Duplex } from 'node:stream';
import { FCGI_HEADER_LEN, FCGI_MAX_CONTENT_LENGTH, FCGI_VERSION_1, RecordType } from './constants.js';
import { encodeRecord } from './codec.js';

/** Gathered output is written at once when it reaches this many bytes, instead of waiting for the turn to end. */
const GATHER_FLUSH_BYTES = 64 * 1024;
/** Up to this many gathered bytes are written as one buffer (one write(2)); above it they go out as a writev. */
const GATHER_CONCAT_BYTES = 16 * 1024;

export interface RecordOutputOptions {
  /**
   * Gather the records written during one turn of the event loop and write
   * them to the socket together (setImmediate, if they are still waiting once
   * the current ticks are done), or sooner once 64 KiB are waiting or flush()
   * is called. A small response is then one write(2)
   * however many records and ticks it took (data, the empty STDOUT,
   * END_REQUEST). Default false: each record is written to the socket at once.
   */
  gather?: boolean;
}

/**
 * A record of string content, gathered as the string: strings cannot change,
 * so it is encoded only at flush time, straight into the buffer that is
 * written (no buffer of its own, no copy).
 */
class PendingString {
  constructor(
    readonly type: number,
    readonly requestId: number,
    readonly data: string,
    readonly encoding: BufferEncoding,
    /** Encoded length, or -1 until flush() measures it. */
    public len: number,
  ) {}
}

/** END_REQUEST (after an empty STDOUT record with `endStdout`), encoded at flush time. */
class PendingEnd {
  constructor(
    readonly requestId: number,
    readonly appStatus: number,
    readonly protocolStatus: number,
    readonly endStdout: boolean,
  ) {}

  get length(): number {
    return this.endStdout ? 24 : 16;
  }

  /** Encodes at b[at] as encodeRecord(STDOUT) + encodeRecord(END_REQUEST, encodeEndRequestBody()) would; returns the offset after it. */
  put(b: Buffer, at: number): number {
    if (this.endStdout) {
      putHeader(b, at, RecordType.STDOUT, this.requestId, 0, 0);
      at += FCGI_HEADER_LEN;
    }
    putHeader(b, at, RecordType.END_REQUEST, this.requestId, 8, 0);
    const s = this.appStatus >>> 0;
    b[at + 8] = s >>> 24;
    b[at + 9] = (s >>> 16) & 0xff;
    b[at + 10] = (s >>> 8) & 0xff;
    b[at + 11] = s & 0xff;
    b[at + 12] = this.protocolStatus;
    b[at + 13] = 0;
    b[at + 14] = 0;
    b[at + 15] = 0;
    return at + 16;
  }
}

type Pending = Buffer | PendingString | PendingEnd;

/** Encodings where a string of n chars is n bytes. */
function oneBytePerChar(encoding: BufferEncoding): boolean {
  return encoding === 'latin1' || encoding === 'binary' || encoding === 'ascii';
}

/**
 * The write side of one socket. All streams of all requests on the connection
 * wait for 'drain' here, through one listener, instead of each adding its own
 * to the socket (which would trip MaxListenersExceeded with many requests).
 * Content is always copied (or, for strings, encoded) before write*() return:
 * a caller may reuse its buffer as soon as it is told the write is done.
 */
export class RecordOutput {
  readonly #socket: Duplex;
  readonly #gather: boolean;
  #waiters: Array<() => void> = [];
  #closed = false;
  /** Gathered records not yet handed to the socket, and about how many bytes they are. */
  #pending: Pending[] = [];
  #pendingBytes = 0;
  #flushScheduled = false;
  #holds = 0;

  constructor(socket: Duplex, options: RecordOutputOptions = {}) {
    this.#socket = socket;
    this.#gather = options.gather === true;
    socket.on('drain', () => this.#releaseWaiters());
  }

  /** True once the connection can take no more records; writes are then dropped. */
  get closed(): boolean {
    return this.#closed || this.#socket.destroyed || this.#socket.writableEnded;
  }

  /** True while the socket is congested: a writer should wait for whenDrained(). */
  get congested(): boolean {
    return this.#socket.writableNeedDrain;
  }

  /**
   * Writes one encoded record (or several, concatenated), which the caller
   * gives up: a Buffer, or a latin1 string (one char per byte) handed to the
   * socket as it is. Returns false when the socket is congested.
   */
  write(records: Buffer | string): boolean {
    if (this.closed) return true;
    if (!this.#gather) return typeof records === 'string' ? this.#socket.write(records, 'latin1') : this.#socket.write(records);
    const bytes = typeof records === 'string' ? Buffer.from(records, 'latin1') : records;
    this.#add(bytes, bytes.length);
    return this.#afterAdd();
  }

  /**
   * Writes `data` as records of one type and request, split at 65535 bytes
   * (nothing for empty data: an empty record would end the stream). Strings
   * are encoded with `encoding` (default utf8). Returns false when the socket
   * is congested.
   */
  writeContent(type: number, requestId: number, data: Buffer | string, encoding?: BufferEncoding): boolean {
    if (this.closed) return true;
    if (typeof data === 'string') {
      if (data.length === 0) return !this.#socket.writableNeedDrain;
      const enc = encoding ?? 'utf8';
      let len = oneBytePerChar(enc) ? data.length : -1;
      // Could it be over one record's worth? Then measure now (rare: a single write of more than 21 KiB of text).
      if (len < 0 && data.length * 3 > FCGI_MAX_CONTENT_LENGTH) len = Buffer.byteLength(data, enc);
      if (len > FCGI_MAX_CONTENT_LENGTH) {
        data = Buffer.from(data, enc);
      } else if (this.#gather) {
        this.#add(new PendingString(type, requestId, data, enc, len), data.length);
        return this.#afterAdd();
      } else {
        if (len < 0) len = Buffer.byteLength(data, enc);
        if (len === 0) return !this.#socket.writableNeedDrain;
        const rec = Buffer.allocUnsafe(recordLength(len));
        putStringRecord(rec, 0, type, requestId, data, enc, len);
        return this.#socket.write(rec);
      }
    }
    const n = data.length;
    if (n === 0) return !this.#socket.writableNeedDrain;
    for (let off = 0; off < n; off += FCGI_MAX_CONTENT_LENGTH) {
      const rec = encodeRecord(type, requestId, data.subarray(off, off + FCGI_MAX_CONTENT_LENGTH));
      if (!this.#gather) this.#socket.write(rec);
      else this.#add(rec, rec.length);
    }
    return this.#gather ? this.#afterAdd() : !this.#socket.writableNeedDrain;
  }

  /** Writes END_REQUEST for `requestId`, after the empty STDOUT record with `endStdout`. */
  writeEndRequest(requestId: number, appStatus: number, protocolStatus: number, endStdout: boolean): void {
    if (this.closed) return;
    const end = new PendingEnd(requestId, appStatus, protocolStatus, endStdout);
    if (this.#gather) {
      this.#add(end, end.length);
      this.#afterAdd();
    } else {
      const rec = Buffer.allocUnsafe(end.length);
      end.put(rec, 0);
      this.#socket.write(rec);
    }
  }

  /**
   * While held (inside a batch of input handling, say), gathered records are
   * not scheduled for flushing: what the handling writes usually ends with a
   * flush() of its own. release() schedules whatever is left.
   */
  hold(): void {
    this.#holds++;
  }

  release(): void {
    if (--this.#holds === 0 && this.#pending.length > 0 && !this.#flushScheduled) this.#schedule();
  }

  /** Calls `cb` once the socket has drained, or at once if it is not congested or is closed. */
  whenDrained(cb: () => void): void {
    if (this.closed || !this.#socket.writableNeedDrain) {
      queueMicrotask(cb);
      return;
    }
    this.#waiters.push(cb);
  }

  /** Hands gathered records to the socket now. */
  flush(): void {
    const pending = this.#pending;
    const n = pending.length;
    if (n === 0) return;
    this.#pending = [];
    this.#pendingBytes = 0;
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return;
    const first = pending[0]!;
    if (n === 1 && Buffer.isBuffer(first)) {
      socket.write(first);
      return;
    }
    let total = 0;
    for (let i = 0; i < n; i++) {
      const p = pending[i]!;
      if (p instanceof PendingString) {
        if (p.len < 0) p.len = Buffer.byteLength(p.data, p.encoding);
        if (p.len > 0) total += recordLength(p.len);
      } else {
        total += p.length;
      }
    }
    if (total === 0) return;
    if (total <= GATHER_CONCAT_BYTES) {
      // One buffer, one write(2): records copied, strings encoded in place.
      const out = Buffer.allocUnsafe(total);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const p = pending[i]!;
        if (p instanceof PendingString) {
          if (p.len > 0) at = putStringRecord(out, at, p.type, p.requestId, p.data, p.encoding, p.len);
        } else if (p instanceof PendingEnd) {
          at = p.put(out, at);
        } else {
          p.copy(out, at);
          at += p.length;
        }
      }
      socket.write(out);
      return;
    }
    socket.cork();
    for (let i = 0; i < n; i++) {
      const p = pending[i]!;
      if (p instanceof PendingEnd) {
        const rec = Buffer.allocUnsafe(p.length);
        p.put(rec, 0);
        socket.write(rec);
      } else if (!(p instanceof PendingString)) socket.write(p);
      else if (p.len > 0) {
        const rec = Buffer.allocUnsafe(recordLength(p.len));
        putStringRecord(rec, 0, p.type, p.requestId, p.data, p.encoding, p.len);
        socket.write(rec);
      }
    }
    socket.uncork();
  }

  /** No more writes (gathered records still go out first); releases every stream waiting for 'drain'. */
  close(): void {
    this.flush();
    this.#closed = true;
    this.#releaseWaiters();
  }

  #add(p: Pending, bytes: number): void {
    this.#pending.push(p);
    this.#pendingBytes += bytes;
  }

  #afterAdd(): boolean {
    if (this.#pendingBytes >= GATHER_FLUSH_BYTES) this.flush();
    else if (!this.#flushScheduled && this.#holds === 0) this.#schedule();
    return !this.#socket.writableNeedDrain;
  }

  #schedule(): void {
    // First look again once the current ticks are done: a response usually ends (and
    // flush() is called) by then, and nothing is left to schedule.
    this.#flushScheduled = true;
    process.nextTick(checkPending, this);
  }

  /** After the ticks of the write that started gathering: flush at the end of the turn if anything is left. */
  checkPendingNow(): void {
    if (this.#pending.length === 0) this.#flushScheduled = false;
    else setImmediate(flushScheduled, this);
  }

  /** Called from the scheduled immediate. */
  flushScheduledNow(): void {
    this.#flushScheduled = false;
    this.flush();
  }

  #releaseWaiters(): void {
    if (this.#waiters.length === 0) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const cb of waiters) cb();
  }
}

function checkPending(out: RecordOutput): void {
  out.checkPendingNow();
}

function flushScheduled(out: RecordOutput): void {
  out.flushScheduledNow();
}

/** Header, content and padding of a record with `len` content bytes. */
function recordLength(len: number): number {
  return FCGI_HEADER_LEN + len + (-len & 7);
}

/** Buffer#utf8Write / #latin1Write where Node has them (all supported versions do): write() without its argument handling. */
type RawWrite = (this: Buffer, s: string, offset: number, length: number) => number;
const proto = Buffer.prototype as unknown as { utf8Write?: RawWrite; latin1Write?: RawWrite };
const utf8Write = proto.utf8Write;
const latin1Write = proto.latin1Write;

/** Encodes a record of `len` (≤ 65535, > 0) bytes of string content at b[at]; returns the offset after it. */
function putStringRecord(b: Buffer, at: number, type: number, requestId: number, data: string, encoding: BufferEncoding, len: number): number {
  const pad = -len & 7;
  putHeader(b, at, type, requestId, len, pad);
  if (encoding === 'utf8' && utf8Write !== undefined) utf8Write.call(b, data, at + FCGI_HEADER_LEN, len);
  else if (encoding === 'latin1' && latin1Write !== undefined) latin1Write.call(b, data, at + FCGI_HEADER_LEN, len);
  else b.write(data, at + FCGI_HEADER_LEN, len, encoding);
  const end = at + FCGI_HEADER_LEN + len + pad;
  for (let i = at + FCGI_HEADER_LEN + len; i < end; i++) b[i] = 0;
  return end;
}

/** The 8-byte header at b[at] (fields already known to be in range). */
export function putHeader(b: Buffer, at: number, type: number, requestId: number, contentLength: number, paddingLength: number): void {
  b[at] = FCGI_VERSION_1;
  b[at + 1] = type;
  b[at + 2] = requestId >>> 8;
  b[at + 3] = requestId & 0xff;
  b[at + 4] = contentLength >>> 8;
  b[at + 5] = contentLength & 0xff;
  b[at + 6] = paddingLength;
  b[at + 7] = 0;
}

export interface RecordStreamOptions {
  /**
   * When the stream ends, send the empty record that closes it 'always'
   * (STDOUT, STDIN) or only 'if-written' (STDERR: the spec's examples send no
   * STDERR terminator when nothing went to stderr).
   */
  endRecord: 'always' | 'if-written';
  highWaterMark?: number;
}

/**
 * A Writable whose bytes become records of one type for one request, split at
 * 65535 bytes. write() returns false while the socket is congested: each
 * record waits for the socket to drain before the next is written, so memory
 * stays at the caller's chunk plus about one record. end() sends the empty
 * terminating record. detach() turns it into a sink (used once the request id
 * is released, since a later record would land on a reused id).
 */
export class RecordStreamWritable extends Writable {
  readonly #out: RecordOutput;
  readonly #type: number;
  readonly #requestId: number;
  readonly #endRecord: RecordStreamOptions['endRecord'];
  #detached = false;
  #bytesSent = 0;

  constructor(out: RecordOutput, type: number, requestId: number, opts: RecordStreamOptions) {
    super({ highWaterMark: opts.highWaterMark ?? 64 * 1024 });
    this.#out = out;
    this.#type = type;
    this.#requestId = requestId;
    this.#endRecord = opts.endRecord;
  }

  /** Content bytes sent in records so far. */
  get bytesSent(): number {
    return this.#bytesSent;
  }

  /** Stops all further records (writes still succeed, their bytes are dropped). */
  detach(): void {
    this.#detached = true;
  }

  get detached(): boolean {
    return this.#detached;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#send(chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    // Small writes queued while the socket was congested go out as few records as possible.
    this.#send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.#detached && (this.#endRecord === 'always' || this.#bytesSent > 0)) {
      this.#out.write(encodeRecord(this.#type, this.#requestId));
    }
    cb();
  }

  #send(data: Buffer, cb: (err?: Error | null) => void): void {
    let off = 0;
    const step = (): void => {
      // An empty chunk must not become a record: an empty record ends the stream.
      while (off < data.length && !this.#detached && !this.#out.closed) {
        const piece = data.subarray(off, off + FCGI_MAX_CONTENT_LENGTH);
        off += piece.length;
        this.#bytesSent += piece.length;
        if (!this.#out.writeContent(this.#type, this.#requestId, piece)) {
          this.#out.whenDrained(step);
          return;
        }
      }
      cb();
    };
    step();
  }
}
