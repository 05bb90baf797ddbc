/**
 * @module fastcgi/outbound
 * The sending half shared by both sides of a FastCGI connection: one
 * RecordOutput per socket (writes records, tracks 'drain' for every stream on
 * the connection) and RecordStreamWritable, the Writable behind STDOUT/STDERR
 * (server side) and STDIN/DATA (client side).
 */
import { Writable } from 'node:stream';
import type { Duplex } from 'node:stream';
import { FCGI_MAX_CONTENT_LENGTH } from './constants.js';
import { encodeRecord } from './codec.js';

/**
 * The write side of one socket. All streams of all requests on the connection
 * wait for 'drain' here, through one listener, instead of each adding its own
 * to the socket (which would trip MaxListenersExceeded with many requests).
 */
export class RecordOutput {
  readonly #socket: Duplex;
  #waiters: Array<() => void> = [];
  #closed = false;

  constructor(socket: Duplex) {
    this.#socket = socket;
    socket.on('drain', () => this.#flush());
  }

  /** True once the connection can take no more records; writes are then dropped. */
  get closed(): boolean {
    return this.#closed || this.#socket.destroyed || this.#socket.writableEnded;
  }

  /** Writes one encoded record (or several, concatenated). Returns false when the socket is congested. */
  write(bytes: Buffer): boolean {
    if (this.closed) return true;
    return this.#socket.write(bytes);
  }

  /** Calls `cb` once the socket has drained, or at once if it is not congested or is closed. */
  whenDrained(cb: () => void): void {
    if (this.closed || !this.#socket.writableNeedDrain) {
      queueMicrotask(cb);
      return;
    }
    this.#waiters.push(cb);
  }

  /** No more writes; releases every stream waiting for 'drain'. */
  close(): void {
    this.#closed = true;
    this.#flush();
  }

  #flush(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const cb of waiters) cb();
  }
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
        if (!this.#out.write(encodeRecord(this.#type, this.#requestId, piece))) {
          this.#out.whenDrained(step);
          return;
        }
      }
      cb();
    };
    step();
  }
}
