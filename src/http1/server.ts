/**
 * @module http1/server
 * The socket half of our HTTP/1.1 server: a net.Server whose connections
 * feed RequestParser and write what response-head.ts encodes. It replaces
 * node:http in the gateway because node:http alone costs ~11 µs per request
 * on the benchmark machine (IncomingMessage + ServerResponse streams, header
 * objects, per-request socket timers): more than the whole budget left for a
 * Node front at 0.9× nginx (docs/gateway.md, "Benchmark").
 *
 * One Exchange per request is both the request (method, target, raw headers,
 * a body Readable only when there is a body) and its response (writeHead,
 * write → backpressure boolean, end, destroy).
 *
 * Output is queued per connection as one latin1 string and written at the
 * end of the event loop's turn (setImmediate), for every connection at once:
 * a whole small response is one write(2), and the responses of one epoll
 * batch leave back to back, so a client process woken by the first finds the
 * others waiting rather than being woken again for each (on the benchmark
 * machine that is ~3 µs of the gateway's CPU and ~6 µs of the machine's per
 * request: docs/gateway.md, "The HTTP/1.1 server"). Large body pieces, 100 Continue
 * and last responses go out at once, after what was queued before them.
 *
 * Connection rules, as node:http and nginx keep them:
 * - Keep-alive per RFC 9112 §9.3; pipelined requests are answered in order,
 *   one at a time (the parser is paused at the end of each request until its
 *   response has ended, and the socket stops being read meanwhile).
 * - A response that ends before its request body was read: the rest of the
 *   body is read and dropped, then the next request is served.
 * - A malformed request is answered with its status (400/413/431/501/505) and
 *   the connection closed; one that arrives mid-exchange cuts the connection.
 * - Timers are one sweep per server, not one per socket: an idle keep-alive
 *   connection is closed after keepAliveTimeout, a head that takes longer than
 *   headersTimeout gets 408, a request body not complete within
 *   requestTimeout (from its head's first byte) cuts the connection.
 * - A client's FIN while its request is under way aborts the exchange (as
 *   nginx and node:http do): nobody would read the answer.
 */
import net, { type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { Readable } from 'node:stream';
import { Http1ParseError } from './errors.js';
import { RequestParser, type RequestHead, type RequestParserHandler } from './request-parser.js';
import { CHUNK_END, chunkHeader, encodeResponseHead, httpDate, LAST_CHUNK, responseFraming, statusBody, type BodyFraming } from './response-head.js';
import { GatehouseError } from '../errors.js';
import { latin1 } from '../latin1.js';

export interface Http1ServerOptions {
  /** Request line + header section, in bytes (431 beyond). Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Header fields per request. Default 100. */
  maxHeaders?: number;
  /** An idle keep-alive connection is closed after this (ms). Default 5 s. */
  keepAliveTimeout?: number;
  /** From the first byte of a request to the end of its head (ms); 408 beyond. Default 60 s (node:http's). */
  headersTimeout?: number;
  /** From the first byte of a request to the end of its body (ms); the connection is cut beyond. Default 300 s (node:http's). */
  requestTimeout?: number;
  /**
   * Response bytes waiting for a client that reads none of them for this
   * long cut the connection (nginx's send_timeout). Default 60 s.
   */
  sendTimeout?: number;
  /** Request body bytes buffered before the socket stops being read. Default 64 KiB. */
  bodyHighWaterMark?: number;
  /**
   * Serve HTTPS: each accepted connection is wrapped in a server-side TLS
   * socket with this context (ALPN offers http/1.1 only). Replaceable while
   * serving (setSecureContext): new connections get the new one.
   */
  secureContext?: SecureContext;
}

export type Http1ServerErrorCode = 'ERR_HTTP1_HEADERS_TIMEOUT' | 'ERR_HTTP1_REQUEST_TIMEOUT' | 'ERR_HTTP1_ABORTED';

/** A connection-level failure that is not a parse error: a timeout, or the client leaving mid-body. */
export class Http1ServerError extends GatehouseError<Http1ServerErrorCode> {}

/**
 * Events: 'request' (exchange: Exchange); 'exchangeClose' (exchange) once per
 * exchange, when its response ended (`finished`) or its connection closed
 * first; 'badRequest' (status, socket, bodyBytes, cause) after the server
 * answered a request it could not take (malformed, or its head too slow).
 */
export class Http1Server extends net.Server {
  readonly keepAliveTimeout: number;
  readonly headersTimeout: number;
  readonly requestTimeout: number;
  readonly sendTimeout: number;
  readonly bodyHighWaterMark: number;
  readonly parserOptions: { maxHeaderBytes: number; maxHeaders: number };
  /** Set by close(): every response from now on closes its connection. */
  closing = false;
  /** When close() was called. */
  closingSince = 0;
  readonly #connections = new Set<Connection>();
  #sweep: NodeJS.Timeout | undefined;
  #secureContext: SecureContext | undefined;

  constructor(options: Http1ServerOptions = {}) {
    // allowHalfOpen: a client's FIN is ours to decide on (#onEnd), not net's automatic end() of our side.
    super({ allowHalfOpen: true, noDelay: true });
    this.keepAliveTimeout = options.keepAliveTimeout ?? 5000;
    this.headersTimeout = options.headersTimeout ?? 60_000;
    this.requestTimeout = options.requestTimeout ?? 300_000;
    this.sendTimeout = options.sendTimeout ?? 60_000;
    this.bodyHighWaterMark = options.bodyHighWaterMark ?? 64 * 1024;
    this.parserOptions = { maxHeaderBytes: options.maxHeaderBytes ?? 16 * 1024, maxHeaders: options.maxHeaders ?? 100 };
    this.#secureContext = options.secureContext;
    this.on('connection', (raw: Socket) => {
      const context = this.#secureContext;
      // TLS as tls.Server does it, on our own net.Server (so listen, fd handover and close stay one
      // code path). A handshake that never ends is an idle connection: keepAliveTimeout closes it.
      const socket = context === undefined ? raw : new TLSSocket(raw, { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
      this.#connections.add(new Connection(this, socket));
    });
    this.on('listening', () => {
      const shortest = Math.min(this.keepAliveTimeout, this.headersTimeout, this.requestTimeout, this.sendTimeout);
      const period = Math.max(20, Math.min(1000, Math.floor(shortest / 4)));
      this.#sweep ??= setInterval(() => this.#check(), period).unref();
    });
    this.on('close', () => {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    });
  }

  /** Whether connections are TLS (the secureContext option). */
  get encrypted(): boolean {
    return this.#secureContext !== undefined;
  }

  /** Connections accepted from now on use `context` (a renewed certificate); open ones keep theirs. Only for a server made with a secureContext. */
  setSecureContext(context: SecureContext): void {
    if (this.#secureContext === undefined) throw new Error('http1: setSecureContext() on a server without TLS');
    this.#secureContext = context;
  }

  /** Open connections (for tests and the status page). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Stops accepting; responses from now on close their connections. Idle
   * ones are left to closeIdleConnections(). A connection that never carried
   * a request is closed by the sweep FRESH_GRACE_MS after this if its first
   * request has not begun by then.
   */
  override close(callback?: (err?: Error) => void): this {
    this.closing = true;
    this.closingSince = Date.now();
    return super.close(callback);
  }

  /**
   * Closes every connection that has no request under way. `spareFresh`:
   * not those that never carried one (accepted just before close(): a TLS
   * handshake or a first request on its way); they are answered once, with
   * Connection: close, or closed by the sweep (see close()). A reload that
   * hands the listening socket to new processes then drops none of them.
   */
  closeIdleConnections(options: { spareFresh?: boolean } = {}): void {
    for (const c of this.#connections) if (c.idle && !(options.spareFresh === true && !c.used)) c.closeIdle();
  }

  /** Cuts every connection (what ended responses queued is handed to the socket first, as if written at once); `spareFresh` as in closeIdleConnections(). */
  closeAllConnections(options: { spareFresh?: boolean } = {}): void {
    for (const c of this.#connections) {
      if (options.spareFresh === true && !c.used) continue;
      c.flush();
      c.socket.destroy();
    }
  }

  /** @internal */
  forget(c: Connection): void {
    this.#connections.delete(c);
  }

  #check(): void {
    const now = Date.now();
    for (const c of this.#connections) c.check(now);
  }
}

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const PLAIN = ['Content-Type', 'text/plain; charset=utf-8'];
/** Body pieces up to this size are copied into the queued output; larger ones are written as they are. */
const SMALL_WRITE = 16 * 1024;
/** After close(), how long a connection that never carried a request may take to begin its first one. */
const FRESH_GRACE_MS = 1000;
/** Queued output beyond this is written at once. */
const OUT_HIGH_WATER = 64 * 1024;


/** One request and its response. */
export class Exchange {
  readonly method: string;
  /** The request-target as received. */
  readonly url: string;
  readonly versionMinor: number;
  /** [name, value, …], names as received. */
  readonly rawHeaders: string[];
  /** The request's own Content-Length (undefined: chunked or no body). */
  readonly contentLength: number | undefined;
  readonly chunked: boolean;
  readonly expectContinue: boolean;
  /** The client allows keep-alive (RequestFacts for responseFraming). */
  readonly keepAlive: boolean;
  readonly socket: Socket;
  /** Status of the response head, once sent. */
  statusCode = 0;
  headersSent = false;
  /** end() was called on a live connection: the whole response was handed to the socket. */
  finished = false;
  /** Response body bytes handed to the socket (without the head and chunk framing). */
  bodyBytesSent = 0;
  /** The socket took writes again after write() returned false. */
  ondrain: (() => void) | null = null;
  /** The connection closed before end(). */
  onabort: (() => void) | null = null;
  /** For the server's user: one slot of its own per exchange (the gateway keeps its Forwarding here). */
  context: unknown = undefined;

  /** @internal */ readonly conn: Connection;
  /** @internal */ body: RequestBody | null;
  /** @internal The parser's onEnd came: every byte of the request was read. */ requestComplete = false;
  #framing: BodyFraming = 'none';
  #keepOpen = true;
  /** Bytes still owed under Content-Length framing. */
  #remaining = 0;
  #continued = false;
  #headers: Record<string, string | string[]> | undefined;

  constructor(conn: Connection, head: RequestHead) {
    this.conn = conn;
    this.socket = conn.socket;
    this.method = head.method;
    this.url = head.target;
    this.versionMinor = head.versionMinor;
    this.rawHeaders = head.rawHeaders;
    this.contentLength = head.contentLength;
    this.chunked = head.chunked;
    this.expectContinue = head.expectContinue;
    this.keepAlive = head.keepAlive;
    this.body = head.chunked || (head.contentLength !== undefined && head.contentLength > 0) ? new RequestBody(this, conn.server.bodyHighWaterMark) : null;
  }

  get httpVersion(): string {
    return this.versionMinor === 0 ? '1.0' : '1.1';
  }

  /** The whole request body has arrived (true from the start when there is none). */
  get complete(): boolean {
    return this.requestComplete || this.body === null;
  }

  /** The connection is gone. */
  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  /** The request came over TLS. */
  get encrypted(): boolean {
    return this.socket instanceof TLSSocket;
  }

  /** The first value of a header (`lower`: its lowercase name), else undefined. */
  header(lower: string): string | undefined {
    const raw = this.rawHeaders;
    const n = lower.length;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length === n && name.toLowerCase() === lower) return raw[i + 1];
    }
    return undefined;
  }

  /** node:http's `req.headers`: lowercase names, repeats joined with ", " (Set-Cookie: an array). Built on first use. */
  get headers(): Record<string, string | string[]> {
    if (this.#headers !== undefined) return this.#headers;
    const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const value = raw[i + 1]!;
      const had = out[name];
      if (had === undefined) out[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(had)) had.push(value);
      else out[name] = `${had}, ${value}`;
    }
    return (this.#headers = out);
  }

  /** `100 Continue`, once, before any response head (for a request with `Expect: 100-continue`). */
  writeContinue(): void {
    if (this.#continued || this.headersSent || this.finished || this.socket.destroyed) return;
    this.#continued = true;
    this.conn.queue(CONTINUE);
    this.conn.flush();
  }

  /**
   * Sends the head: `headers` flat [name, value, …] without Content-Length,
   * Transfer-Encoding or Connection (those follow from `contentLength` and
   * the connection). `close`: this is the connection's last response.
   * Throws Http1ResponseError (nothing sent) for a head that must not go out.
   */
  writeHead(status: number, reason: string | undefined, headers: readonly string[], contentLength: number | undefined, close = false): void {
    if (this.headersSent) throw new Error('http1: writeHead() twice');
    const conn = this.conn;
    // A client told to wait for `100 Continue` that never came may send its next request instead of the
    // body (RFC 9110 §10.1.1): the body cannot be told apart from it, so this is the last response (as node:http).
    const unsentBody = this.expectContinue && !this.#continued && !this.complete;
    const framing = responseFraming(this, status, contentLength, close || unsentBody || conn.closeAfter || conn.server.closing);
    const head = encodeResponseHead(status, reason, headers, framing, contentLength, httpDate(), framing.keepAlive && this.versionMinor === 0);
    this.statusCode = status;
    this.headersSent = true;
    this.#framing = framing.body;
    this.#keepOpen = framing.keepAlive;
    this.#remaining = contentLength ?? 0;
    if (!framing.keepAlive) conn.closeAfter = true;
    if (this.socket.destroyed) return;
    conn.queue(head);
  }

  /** A piece of the body; false: the client pushes back, wait for ondrain. Dropped for bodiless responses. */
  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) throw new Error('http1: write() before writeHead()');
    const socket = this.socket;
    if (this.finished) return true;
    if (socket.destroyed) return false;
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const n = data.length;
    if (n === 0) return true;
    const framing = this.#framing;
    if (framing === 'none') return true;
    if (framing === 'length') {
      if (n > this.#remaining) {
        // More than the head promised would be taken for the next response: cut instead.
        socket.destroy();
        return false;
      }
      this.#remaining -= n;
    }
    this.bodyBytesSent += n;
    const chunked = framing === 'chunked';
    const conn = this.conn;
    if (n <= SMALL_WRITE) return conn.queue(chunked ? chunkHeader(n) + latin1(data) + CHUNK_END : latin1(data));
    return chunked ? conn.writeThrough(chunkHeader(n), data, CHUNK_END) : conn.writeThrough('', data, '');
  }

  /**
   * Ends the response (after `chunk`, if given). A Content-Length body left
   * short cuts the connection rather than leave the client waiting.
   */
  end(chunk?: Buffer | string): void {
    if (!this.headersSent) throw new Error('http1: end() before writeHead()');
    if (this.finished) return;
    if (chunk !== undefined) this.write(chunk);
    const socket = this.socket;
    if (socket.destroyed) return; // the connection's 'close' reports it
    if (this.#framing === 'length' && this.#remaining > 0) {
      socket.destroy();
      return;
    }
    if (this.#framing === 'chunked') this.conn.queue(LAST_CHUNK);
    this.finished = true;
    this.conn.responseEnded(this, this.#keepOpen);
  }

  /** Cuts the connection (a response that cannot be completed must not look complete). */
  destroy(): void {
    this.socket.destroy();
  }
}

/** Connections with queued output, written by one immediate for all of them (see the module comment). */
const toFlush: Connection[] = [];

function flushQueued(): void {
  for (let i = 0; i < toFlush.length; i++) toFlush[i]!.flushQueuedOutput();
  toFlush.length = 0;
}

/** The request body as a Readable, fed by the parser; reading it is what lets the socket be read (and sends 100 Continue). */
export class RequestBody extends Readable {
  readonly #ex: Exchange;

  constructor(ex: Exchange, highWaterMark: number) {
    super({ highWaterMark });
    this.#ex = ex;
  }

  override _read(): void {
    const ex = this.#ex;
    // The consumer asked for the body: only now is "go ahead" true.
    if (ex.expectContinue) ex.writeContinue();
    ex.conn.bodyWanted(ex);
  }
}

/** One client connection: parser events in, exchanges out. */
class Connection implements RequestParserHandler {
  readonly server: Http1Server;
  readonly socket: Socket;
  readonly parser: RequestParser;
  /** The exchange whose request or response is still under way. */
  exchange: Exchange | null = null;
  /** No more requests on this connection once the current response ends. */
  closeAfter = false;
  /** A request has begun on this connection (its head was parsed). */
  used = false;
  /** Start of the current wait: idle since, or the first byte of the request being read. */
  #since = Date.now();
  /** Response bytes queued in the socket at the last sweep, and since when none of them left. */
  #pending = 0;
  #stalledSince = 0;
  #remoteAddress: string | undefined;
  /** Response bytes not yet handed to the socket (see the module comment). */
  #out = '';
  #flushQueued = false;

  constructor(server: Http1Server, socket: Socket) {
    this.server = server;
    this.socket = socket;
    this.parser = new RequestParser(this, server.parserOptions);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.exchange?.ondrain?.());
    socket.on('end', () => this.#onEnd());
    socket.on('error', () => {}); // 'close' follows and says what matters
    socket.on('close', () => this.#onClose());
  }

  /** Read once, while the socket is open: a peer address cannot be asked for after it closed. */
  get remoteAddress(): string {
    return (this.#remoteAddress ??= this.socket.remoteAddress ?? '');
  }

  /** Nothing under way: closing now loses nothing. */
  get idle(): boolean {
    return this.exchange === null && this.parser.idle;
  }

  // ---------------------------------------------------------------- output

  /** Queues response bytes (latin1) for the end of the turn; false: the client pushes back. */
  queue(text: string): boolean {
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      if (toFlush.push(this) === 1) setImmediate(flushQueued);
    }
    this.#out += text;
    return this.#out.length >= OUT_HIGH_WATER ? this.flush() : !this.socket.writableNeedDrain;
  }

  /** Writes what is queued now. */
  flush(): boolean {
    const out = this.#out;
    const socket = this.socket;
    if (out === '' || socket.destroyed) return !socket.writableNeedDrain;
    this.#out = '';
    return socket.write(out, 'latin1');
  }

  /** A large body piece as it is, between `before` and `after` (latin1), in one writev with what was queued ahead of it. */
  writeThrough(before: string, data: Buffer, after: string): boolean {
    const socket = this.socket;
    const ahead = this.#out + before;
    this.#out = '';
    socket.cork();
    if (ahead !== '') socket.write(ahead, 'latin1');
    let ok = socket.write(data);
    if (after !== '') ok = socket.write(after, 'latin1');
    socket.uncork();
    return ok;
  }

  /** @internal From the end-of-turn immediate. */
  flushQueuedOutput(): void {
    this.#flushQueued = false;
    this.flush();
  }

  /** For closeIdleConnections(): an idle connection with output still queued is ended after it, not cut. */
  closeIdle(): void {
    if (this.#out === '') this.socket.destroy();
    else this.#closeGracefully();
  }

  // ---------------------------------------------------------------- parser events

  onHead(head: RequestHead): void {
    this.used = true;
    const ex = new Exchange(this, head);
    this.exchange = ex;
    try {
      this.server.emit('request', ex);
    } catch (err) {
      // A throwing 'request' listener is a bug of the server's user, not a bad request: do not answer 400 for it.
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  onBody(chunk: Buffer): void {
    const ex = this.exchange!;
    // The response ended already: the rest of the body is read and dropped.
    if (ex.finished) return;
    const body = ex.body!;
    if (!body.push(chunk)) this.parser.pause();
  }

  onEnd(): void {
    const ex = this.exchange!;
    ex.requestComplete = true;
    if (ex.body !== null && !ex.finished) ex.body.push(null);
    if (ex.finished) this.#next();
    // Pipelined requests wait for this response.
    else this.parser.pause();
  }

  // ---------------------------------------------------------------- from the exchange

  bodyWanted(ex: Exchange): void {
    if (ex !== this.exchange || ex.requestComplete) return;
    this.#resume();
  }

  responseEnded(ex: Exchange, keepOpen: boolean): void {
    this.server.emit('exchangeClose', ex);
    if (!keepOpen) {
      this.closeAfter = true;
      this.#closeGracefully();
      return;
    }
    if (ex.requestComplete) this.#next();
    // Else the rest of the body is dropped (onBody), then #next() at its end.
    else this.#resume();
  }

  /** The exchange is over both ways: on to the next request, if any. */
  #next(): void {
    this.exchange = null;
    this.#since = Date.now();
    if (this.closeAfter) {
      this.#closeGracefully();
      return;
    }
    if (!this.parser.paused) return;
    // Parsing queued input now would run the next request inside this one's end(): a tick later.
    if (this.parser.bufferedBytes > 0) process.nextTick(Connection.#resumeLater, this);
    else this.#resume();
  }

  static #resumeLater(c: Connection): void {
    if (c.exchange === null && !c.socket.destroyed) c.#resume();
  }

  #resume(): void {
    if (this.socket.destroyed) return;
    if (this.parser.paused) {
      try {
        this.parser.resume();
      } catch (err) {
        return this.#parseFailed(err);
      }
    }
    if (!this.parser.paused && this.socket.isPaused()) this.socket.resume();
  }

  // ---------------------------------------------------------------- socket events

  #onData(chunk: Buffer): void {
    if (this.exchange === null && this.parser.idle) this.#since = Date.now();
    try {
      this.parser.push(chunk);
    } catch (err) {
      return this.#parseFailed(err);
    }
    // Input the parser holds is not bounded by it: stop reading until it runs again. (Only then:
    // pausing a socket is an epoll_ctl, too dear to do at the end of every request.)
    if (this.parser.paused && this.parser.bufferedBytes > 0) this.socket.pause();
  }

  /**
   * The client's FIN. Between requests it is a clean end. With a request
   * under way it is taken as the client leaving, as nginx (499, "client
   * prematurely closed connection") and node:http do: the backend request is
   * aborted rather than finished for nobody.
   */
  #onEnd(): void {
    if (!this.idle) this.socket.destroy();
    else {
      this.flush();
      this.socket.end();
    }
  }

  #onClose(): void {
    this.server.forget(this);
    const ex = this.exchange;
    if (ex === null) return;
    this.exchange = null;
    if (ex.body !== null && !ex.requestComplete) {
      abortBody(ex.body, new Http1ServerError('ERR_HTTP1_ABORTED', 'http1: the client went away in the middle of the request body'));
    }
    if (ex.finished) return;
    ex.onabort?.();
    this.server.emit('exchangeClose', ex);
  }

  #parseFailed(err: unknown): void {
    if (!(err instanceof Http1ParseError)) throw err;
    const ex = this.exchange;
    if (ex !== null) {
      // Mid-exchange (a bad chunk in the body): nothing can be answered on this connection any more.
      abortBody(ex.body, err);
      this.socket.destroy();
      return;
    }
    this.#answer(err.status, err);
  }

  /** A canned error response, then close: for what never became an exchange. */
  #answer(status: number, cause: Error): void {
    const socket = this.socket;
    this.closeAfter = true;
    this.parser.pause();
    socket.pause();
    const body = statusBody(status);
    const head = encodeResponseHead(status, undefined, PLAIN, { body: 'length', keepAlive: false }, body.length, httpDate());
    this.queue(head + body);
    this.server.emit('badRequest', status, socket, body.length, cause);
    this.#closeGracefully();
  }

  /** FIN after what was written, then the socket is freed (destroySoon). */
  #closeGracefully(): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    this.parser.pause();
    socket.pause();
    this.flush();
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  }

  /** The server's sweep: the timeouts of this connection, against `now`. */
  check(now: number): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    const server = this.server;
    const pending = socket.writableLength;
    if (pending > 0) {
      // Output that drains is progress (a queue that only grows is not): a slow reader is served, one that reads nothing is cut.
      if (pending < this.#pending || this.#pending === 0) this.#stalledSince = now;
      this.#pending = pending;
      if (now - this.#stalledSince >= server.sendTimeout) {
        socket.destroy();
        return;
      }
    } else {
      this.#pending = 0;
    }
    // A last response on its way out: only the send timeout above applies.
    if (this.closeAfter) return;
    const ex = this.exchange;
    // Spared by closeIdleConnections({ spareFresh }) when the server closed: a first request that has not begun by now will not be waited for.
    if (server.closing && !this.used && this.parser.idle && ex === null && now - server.closingSince >= FRESH_GRACE_MS) {
      socket.destroy();
      return;
    }
    if (ex === null) {
      if (this.parser.idle) {
        // Idle from when the last response has left: a slow reader still taking one is not cut.
        if (pending > 0) this.#since = now;
        else if (now - this.#since >= server.keepAliveTimeout) socket.destroy();
      } else if (now - this.#since >= server.headersTimeout) {
        this.#answer(408, new Http1ServerError('ERR_HTTP1_HEADERS_TIMEOUT', `http1: no complete request head within ${server.headersTimeout} ms`));
      }
    } else if (!ex.requestComplete && now - this.#since >= server.requestTimeout) {
      abortBody(ex.body, new Http1ServerError('ERR_HTTP1_REQUEST_TIMEOUT', `http1: the request body was not complete within ${server.requestTimeout} ms`));
      this.socket.destroy();
    }
  }
}

/**
 * A body that cannot be completed: an 'error' for whoever listens for one
 * (the backend's upload), else just closed — an error nobody listens for
 * would be thrown as uncaught.
 */
function abortBody(body: RequestBody | null, err: Error): void {
  if (body === null || body.destroyed || body.readableEnded) return;
  body.destroy(body.listenerCount('error') > 0 ? err : undefined);
}

