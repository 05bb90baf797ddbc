/**
 * @module app/cgi-head
 * Turns what node:http's ServerResponse writes (an HTTP/1.1 response head,
 * then the body, chunk-framed only when the app itself asked for
 * `Transfer-Encoding: chunked`) into a CGI response (RFC 3875 §6): a
 * `Status:` line instead of the status line, no hop-by-hop headers, and a
 * body without framing. Pure: no streams.
 */

/**
 * Headers that describe the HTTP connection between Node and a client, which
 * in CGI is the web server's business (RFC 3875 §6.3.4: hop-by-hop fields are
 * the server's to set). Removed wherever they come from.
 */
const HOP_BY_HOP_LINE = /\r\n(?:connection|keep-alive|transfer-encoding):[^\r\n]*/gi;

/**
 * Converts one complete response head (`HTTP/1.1 200 OK\r\n…\r\n\r\n`, as a
 * latin1 string) to its CGI form (`Status: 200 OK\r\n…\r\n\r\n`).
 */
export function toCgiHead(head: string): string {
  const eol = head.indexOf('\r\n');
  const space = head.indexOf(' ');
  const status = space > 0 && space < eol ? head.slice(space + 1, eol) : '200 OK';
  return 'Status: ' + status + head.slice(eol).replace(HOP_BY_HOP_LINE, '');
}

/** The status code of a head's first line (`HTTP/1.1 103 Early Hints` → 103), or 0 if unreadable. */
export function headStatus(head: string): number {
  const space = head.indexOf(' ');
  if (space < 0) return 0;
  const code = Number.parseInt(head.slice(space + 1, space + 4), 10);
  return Number.isNaN(code) ? 0 : code;
}

const CR = 0x0d;
const LF = 0x0a;

type ChunkState = 'size' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'trailer-lf' | 'done';

/**
 * Removes HTTP/1.1 chunked framing (RFC 9112 §7.1) from a byte stream that
 * node:http produced: sizes, extensions and trailers are dropped, data bytes
 * are returned as slices of the input (no copies). Node only frames bodies
 * when the app set `Transfer-Encoding: chunked` itself; this keeps that
 * framing out of the CGI body. Input that does not follow the grammar is
 * passed through unchanged from the point where it stops making sense
 * (lenient: Node generated it, so that should never happen).
 */
export class ChunkedDecoder {
  #state: ChunkState = 'size';
  #size = 0;
  #sawDigit = false;
  #inExtension = false;
  #lineLength = 0;
  #broken = false;

  /** True once the last chunk and the trailer section have been consumed. */
  get done(): boolean {
    return this.#state === 'done';
  }

  /** Returns the data bytes contained in `input` (possibly none). */
  push(input: Buffer): Buffer[] {
    if (this.#broken) return input.length > 0 ? [input] : [];
    const out: Buffer[] = [];
    let i = 0;
    const n = input.length;
    while (i < n) {
      switch (this.#state) {
        case 'size': {
          const c = input[i]!;
          i++;
          if (c === CR) this.#state = 'size-lf';
          else if (this.#inExtension) continue;
          else if (c === 0x3b /* ; */ || c === 0x20 || c === 0x09) this.#inExtension = true;
          else {
            const d = hexValue(c);
            if (d < 0) return this.#giveUp(out, input, i - 1);
            this.#size = this.#size * 16 + d;
            this.#sawDigit = true;
          }
          break;
        }
        case 'size-lf':
          if (input[i] !== LF || !this.#sawDigit) return this.#giveUp(out, input, i);
          i++;
          this.#inExtension = false;
          this.#sawDigit = false;
          if (this.#size === 0) {
            this.#state = 'trailer';
            this.#lineLength = 0;
          } else {
            this.#state = 'data';
          }
          break;
        case 'data': {
          const take = Math.min(this.#size, n - i);
          out.push(input.subarray(i, i + take));
          i += take;
          this.#size -= take;
          if (this.#size === 0) this.#state = 'data-cr';
          break;
        }
        case 'data-cr':
          if (input[i] !== CR) return this.#giveUp(out, input, i);
          i++;
          this.#state = 'data-lf';
          break;
        case 'data-lf':
          if (input[i] !== LF) return this.#giveUp(out, input, i);
          i++;
          this.#state = 'size';
          break;
        case 'trailer':
          // Trailer fields are dropped: CGI has no place for them.
          if (input[i] === CR) this.#state = 'trailer-lf';
          else this.#lineLength++;
          i++;
          break;
        case 'trailer-lf':
          if (input[i] !== LF) return this.#giveUp(out, input, i);
          i++;
          if (this.#lineLength === 0) this.#state = 'done';
          else {
            this.#lineLength = 0;
            this.#state = 'trailer';
          }
          break;
        case 'done':
          // Nothing may follow the last chunk; ignore it as HTTP would.
          return out;
      }
    }
    return out;
  }

  #giveUp(out: Buffer[], input: Buffer, at: number): Buffer[] {
    this.#broken = true;
    if (at < input.length) out.push(input.subarray(at));
    return out;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}
