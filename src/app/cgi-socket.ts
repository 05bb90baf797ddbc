/**
 * @module app/cgi-socket
 * The "socket" a request's IncomingMessage and ServerResponse are attached
 * to. node:http's ServerResponse serialises itself onto `res.socket` as
 * HTTP/1.1; this Duplex takes those bytes and writes them on as a CGI
 * response to the protocol layer (FastCGI STDOUT records or the SCGI
 * connection): the head rewritten by cgi-head.ts, 1xx interim heads dropped
 * (CGI cannot carry them), chunk framing removed. Its read side carries
 * nothing; `resume()` is how IncomingMessage asks for more body (see
 * request body wiring in dispatch.ts).
 *
 * Why a socket stand-in rather than overriding ServerResponse internals:
 * Express replaces the prototypes of req/res with its own (which inherit from
 * http.IncomingMessage/ServerResponse), so methods we put on a subclass would
 * vanish; the socket keeps its class. And ServerResponse's use of its socket
 * (write/cork/uncork/_writableState/destroyed/writable) has been the same
 * from Node 12 to 26.
 */
import { Duplex, type Writable } from 'node:stream';
import { ChunkedDecoder, headStatus, toCgiHead } from './cgi-head.js';
import type { RequestHead } from './request-head.js';

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** A hop-by-hop field in a head (toCgiHead removes them; the fast path only takes heads without). */
const HOP_BY_HOP_FIELD = /\r\n(?:connection|keep-alive|transfer-encoding):/i;

type Piece = [data: string | Buffer, encoding: BufferEncoding | undefined];

export interface CgiSocketHooks {
  /** IncomingMessage wants more body (its _read called readStart(socket)). */
  onResume(): void;
  /** The socket was destroyed (by the app, Node, or us on abort). */
  onDestroy(err: Error | null): void;
  /** The response head went out, with its status code. */
  onHead?(status: number): void;
  /** Output is about to be written (see Exchange#batch). */
  beforeWrite?(): void;
  /** A write filled the socket's buffer: it will emit 'drain' (called once per socket, before the first such 'drain'). */
  needDrain?(): void;
}

/**
 * Where a CgiSocket writes the CGI response: the part of a Writable it uses
 * (any Writable is one), so a protocol layer can offer something lighter.
 */
export interface CgiOutput {
  readonly destroyed: boolean;
  readonly writableNeedDrain: boolean;
  write(data: string | Buffer, encoding?: BufferEncoding): boolean;
  cork(): void;
  uncork(): void;
  once(event: 'drain', listener: () => void): unknown;
}

/** What node:http's ServerResponse sets on its socket (assignSocket). */
interface AttachedMessage {
  chunkedEncoding?: boolean;
}

export class CgiSocket extends Duplex {
  // Addresses as net.Socket names them; frameworks read these (req.ip, req.protocol).
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  remoteFamily: string | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  /** Present (true) only when the client used TLS, as on a tls.TLSSocket. */
  declare encrypted?: boolean;
  /** Set by ServerResponse#assignSocket; declared, not initialised, so Node's own property wins. */
  declare _httpMessage: AttachedMessage | null | undefined;
  readonly connecting = false;

  readonly #out: CgiOutput;
  readonly #hooks: CgiSocketHooks;
  /** Bytes of a head that arrived in pieces (never with Node's own writer, kept for safety). */
  #partialHead: Buffer | null = null;
  #headDone = false;
  #decoder: ChunkedDecoder | null = null;
  #timeout = 0;
  #needDrainTold = false;

  constructor(out: Writable | CgiOutput, head: RequestHead, hooks: CgiSocketHooks) {
    // No options object: the stream constructors then skip a dozen (megamorphic) option lookups,
    // and their defaults are ours (allowHalfOpen included) but for decodeStrings, set just after.
    super();
    // decodeStrings off: Node hands us "head + body" as one string; we rewrite it without a Buffer
    // round trip. (Were this setting ever ignored, strings would arrive as Buffers, which work too.)
    (this as unknown as { _writableState: { decodeStrings: boolean } })._writableState.decodeStrings = false;
    this.#out = out;
    this.#hooks = hooks;
    this.remoteAddress = head.remoteAddress;
    this.remotePort = head.remotePort;
    this.remoteFamily = familyOf(head.remoteAddress);
    this.localAddress = head.localAddress;
    this.localPort = head.localPort;
    if (head.encrypted) this.encrypted = true;
    // res.destroy(err) reaches us as destroy(err); the error is the app's own, not a crash.
    this.on('error', ignore);
  }

  /** True once the response head has been written on. */
  get headSent(): boolean {
    return this.#headDone;
  }

  // ------------------------------------------------------------ net.Socket look-alikes

  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress ?? '', family: familyOf(this.localAddress) ?? 'IPv4', port: this.localPort ?? 0 };
  }

  /** Recorded only: the web server owns client timeouts. */
  setTimeout(ms: number, cb?: () => void): this {
    this.#timeout = ms;
    if (cb) this.once('timeout', cb);
    return this;
  }

  get timeout(): number {
    return this.#timeout;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  destroySoon(): void {
    this.end();
  }

  override resume(): this {
    this.#hooks.onResume();
    // Nothing ever arrives on the read side, so there is nothing to flow: only undo a pause()
    // (readStop), rather than start flowing on every request's first read (a resume_ tick and a read(0)).
    if (this.isPaused()) super.resume();
    return this;
  }

  // ------------------------------------------------------------ stream implementation

  override _read(): void {
    // Nothing ever arrives on this side: the body is pushed into the IncomingMessage directly.
  }

  override _write(chunk: string | Buffer, encoding: BufferEncoding | 'buffer', cb: (err?: Error | null) => void): void {
    if (!this.#needDrainTold && this.writableNeedDrain) this.#tellNeedDrain();
    const pieces: Piece[] = [];
    this.#take(chunk, encoding === 'buffer' ? undefined : encoding, pieces);
    this.#send(pieces, cb);
  }

  override _writev(chunks: Array<{ chunk: string | Buffer; encoding: BufferEncoding | 'buffer' }>, cb: (err?: Error | null) => void): void {
    if (!this.#needDrainTold && this.writableNeedDrain) this.#tellNeedDrain();
    const pieces: Piece[] = [];
    for (const { chunk, encoding } of chunks) this.#take(chunk, encoding === 'buffer' ? undefined : encoding, pieces);
    this.#send(pieces, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#hooks.onDestroy(err);
    cb(err);
  }

  /** The Writable owes a 'drain' (set before _write is called for the write that filled it). */
  #tellNeedDrain(): void {
    this.#needDrainTold = true;
    this.#hooks.needDrain?.();
  }

  /** Turns one write from node:http into what goes to the protocol layer. */
  #take(chunk: string | Buffer, encoding: BufferEncoding | undefined, pieces: Piece[]): void {
    if (!this.#headDone) {
      const rest = this.#takeHead(chunk, encoding, pieces);
      if (rest === null) return;
      chunk = rest;
    }
    if (chunk.length === 0) return;
    if (this.#decoder) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
      for (const data of this.#decoder.push(bytes)) pieces.push([data, undefined]);
      return;
    }
    // Head and body in one string (Node's "shameful hack"): keep them together, one write.
    const last = pieces.length - 1;
    if (last >= 0 && typeof chunk === 'string' && typeof pieces[last]![0] === 'string' && pieces[last]![1] === encoding) {
      pieces[last]![0] += chunk;
    } else {
      pieces.push([chunk, encoding]);
    }
  }

  /**
   * Consumes response heads at the start of the stream. Returns what follows
   * the final (non-1xx) head, or null if the head is not complete yet.
   */
  #takeHead(chunk: string | Buffer, encoding: BufferEncoding | undefined, pieces: Piece[]): string | Buffer | null {
    if (this.#partialHead === null && typeof chunk === 'string') {
      const fast = this.#takeWholeHead(chunk, encoding, pieces);
      if (fast !== null) return fast;
    }
    let data: string | Buffer = chunk;
    if (this.#partialHead !== null) {
      data = Buffer.concat([this.#partialHead, typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk]);
      this.#partialHead = null;
      encoding = undefined;
    }
    for (;;) {
      const end = typeof data === 'string' ? data.indexOf('\r\n\r\n') : data.indexOf(HEAD_END);
      if (end < 0) {
        if (data.length > 0) this.#partialHead = typeof data === 'string' ? Buffer.from(data, encoding) : data;
        return null;
      }
      const head = typeof data === 'string' ? data.slice(0, end + 4) : data.toString('latin1', 0, end + 4);
      data = typeof data === 'string' ? data.slice(end + 4) : data.subarray(end + 4);
      // "HTTP/1.1 200 …": the status code's first digit is at 9; only a '1' needs a closer look.
      const status = head.charCodeAt(9) === 0x31 || head.charCodeAt(8) !== 0x20 ? headStatus(head) : 0;
      // 100 Continue, 102, 103 Early Hints: a CGI response has exactly one head, the final one.
      if (status >= 100 && status < 200) continue;
      this.#headDone = true;
      this.#hooks.onHead?.(status || headStatus(head));
      if (this._httpMessage?.chunkedEncoding === true) this.#decoder = new ChunkedDecoder();
      // The head is ASCII/latin1; when it shares a string with body text, Node encoded both alike.
      pieces.push([toCgiHead(head), typeof data === 'string' ? encoding : 'latin1']);
      return data;
    }
  }

  /**
   * The usual case, done with less string work: Node's writer hands over a
   * final head ("HTTP/1.1 200 OK\r\n…\r\n\r\n", no hop-by-hop field, as
   * we remove Connection and Transfer-Encoding) in one string, usually with
   * the body. Its CGI form is then "Status: " + everything after
   * "HTTP/1.1 ", head and body in one piece. Returns what follows (always ''
   * here), or null to leave the chunk to the general path.
   */
  #takeWholeHead(data: string, encoding: BufferEncoding | undefined, pieces: Piece[]): string | null {
    const end = data.indexOf('\r\n\r\n');
    // "HTTP/1.1 2…": a final status, the code right after the version and its space.
    if (end < 0 || data.indexOf(' ') !== 8 || data.charCodeAt(9) === 0x31 || data.indexOf('\r\n') < 9) return null;
    if (HOP_BY_HOP_FIELD.test(data.length === end + 4 ? data : data.slice(0, end + 4))) return null;
    this.#headDone = true;
    if (this.#hooks.onHead) this.#hooks.onHead(headStatus(data));
    const cgi = 'Status: ' + data.slice(9);
    if (this._httpMessage?.chunkedEncoding === true) {
      // Framed body: the head goes as is, the rest through the decoder.
      this.#decoder = new ChunkedDecoder();
      pieces.push([cgi.slice(0, end + 3), encoding]);
      return data.slice(end + 4);
    }
    pieces.push([cgi, encoding]);
    return '';
  }

  #send(pieces: Piece[], cb: (err?: Error | null) => void): void {
    const out = this.#out;
    if (pieces.length === 0 || out.destroyed) {
      cb();
      return;
    }
    this.#hooks.beforeWrite?.();
    if (pieces.length === 1) {
      const [data, encoding] = pieces[0]!;
      if (encoding === undefined) out.write(data);
      else out.write(data, encoding);
    } else {
      out.cork();
      for (const [data, encoding] of pieces) {
        if (encoding === undefined) out.write(data);
        else out.write(data, encoding);
      }
      out.uncork();
    }
    // Backpressure: ServerResponse sees our buffer fill up while the protocol layer is congested.
    if (out.writableNeedDrain) out.once('drain', () => cb());
    else cb();
  }
}

function familyOf(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  return address.includes(':') ? 'IPv6' : 'IPv4';
}

function ignore(): void {}
