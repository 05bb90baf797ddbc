/**
 * @module fastcgi/record-parser
 * A streaming FastCGI record parser for either side: bytes in, whole records
 * out, whatever the chunk boundaries. Pure (no sockets, no timers).
 */
import { FCGI_HEADER_LEN, FCGI_VERSION_1 } from './constants.js';
import type { FcgiRecord } from './codec.js';
import { badVersion, type FastCgiProtocolError } from './errors.js';

const EMPTY = Buffer.alloc(0);

type State = 'header' | 'content' | 'padding';

/**
 * `push(chunk)` returns the records completed by that chunk. Records do not
 * depend on how the stream was chunked. Memory is bounded: the parser holds at
 * most one header (8 bytes) and one partial content (≤ 65535 bytes); padding is
 * skipped, never stored. A record whose content lies wholly inside one chunk
 * shares that chunk's memory instead of being copied (sockets hand out fresh
 * buffers, so that is safe there; a caller reusing its buffer must copy).
 *
 * Bad input throws one FastCgiProtocolError; the parser then stays failed and
 * every later push throws the same error. Records completed earlier in the
 * failing chunk are not returned: the stream is broken from that point and the
 * caller is expected to drop the connection.
 */
export class RecordParser {
  #state: State = 'header';
  readonly #header = Buffer.alloc(FCGI_HEADER_LEN);
  #headerFilled = 0;
  #type = 0;
  #requestId = 0;
  #contentLength = 0;
  #paddingLeft = 0;
  /** Partial content being assembled across chunks (null when none). */
  #content: Buffer | null = null;
  #contentFilled = 0;
  #error: FastCgiProtocolError | null = null;

  /** Bytes held between pushes (a partial header plus a partial content). Never above 8 + 65535. */
  get bufferedBytes(): number {
    return this.#headerFilled + this.#contentFilled;
  }

  /** True when no record is half-read: EOF here is a clean end of stream. */
  get atRecordBoundary(): boolean {
    return this.#state === 'header' && this.#headerFilled === 0;
  }

  /** The error that failed the parser, if it did. */
  get error(): FastCgiProtocolError | null {
    return this.#error;
  }

  push(input: Uint8Array): FcgiRecord[] {
    if (this.#error) throw this.#error;
    const chunk = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    const out: FcgiRecord[] = [];
    let off = 0;
    try {
      while (off < chunk.length) {
        switch (this.#state) {
          case 'header':
            off = this.#readHeader(chunk, off, out);
            break;
          case 'content':
            off = this.#readContent(chunk, off, out);
            break;
          case 'padding': {
            const n = Math.min(this.#paddingLeft, chunk.length - off);
            this.#paddingLeft -= n;
            off += n;
            if (this.#paddingLeft === 0) this.#state = 'header';
            break;
          }
        }
      }
    } catch (err) {
      this.#error = err as FastCgiProtocolError;
      this.#content = null;
      this.#contentFilled = 0;
      throw err;
    }
    return out;
  }

  #readHeader(chunk: Buffer, off: number, out: FcgiRecord[]): number {
    // Check the version as soon as its byte arrives, so a bad stream fails at
    // the same byte whatever the chunking.
    if (this.#headerFilled === 0 && chunk[off] !== FCGI_VERSION_1) throw badVersion(chunk[off]!);
    const n = Math.min(FCGI_HEADER_LEN - this.#headerFilled, chunk.length - off);
    chunk.copy(this.#header, this.#headerFilled, off, off + n);
    this.#headerFilled += n;
    if (this.#headerFilled < FCGI_HEADER_LEN) return off + n;
    const h = this.#header;
    this.#type = h[1]!;
    this.#requestId = (h[2]! << 8) | h[3]!;
    this.#contentLength = (h[4]! << 8) | h[5]!;
    this.#paddingLeft = h[6]!;
    this.#headerFilled = 0;
    this.#state = 'content';
    if (this.#contentLength === 0) this.#finishContent(EMPTY, out);
    return off + n;
  }

  #readContent(chunk: Buffer, off: number, out: FcgiRecord[]): number {
    const want = this.#contentLength - this.#contentFilled;
    const avail = chunk.length - off;
    if (this.#content === null && avail >= want) {
      // Whole content in this chunk: hand out a view, no copy.
      this.#finishContent(chunk.subarray(off, off + want), out);
      return off + want;
    }
    this.#content ??= Buffer.allocUnsafe(this.#contentLength);
    const n = Math.min(want, avail);
    chunk.copy(this.#content, this.#contentFilled, off, off + n);
    this.#contentFilled += n;
    if (this.#contentFilled === this.#contentLength) {
      const content = this.#content;
      this.#content = null;
      this.#contentFilled = 0;
      this.#finishContent(content, out);
    }
    return off + n;
  }

  #finishContent(content: Buffer, out: FcgiRecord[]): void {
    out.push({ type: this.#type, requestId: this.#requestId, content });
    this.#state = this.#paddingLeft > 0 ? 'padding' : 'header';
  }
}
