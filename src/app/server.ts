/**
 * @module app/server
 * createServer(): a net.Server that speaks FastCGI or SCGI on every accepted
 * connection and serves each request with a node:http handler, offering the
 * http.Server surface frameworks touch (listen overloads, address(), close(),
 * closeIdleConnections(), timeouts). Being a net.Server subclass gives every
 * listen() form (port/host, path, handle, {fd}) and 'listening'/'close'/
 * 'error' exactly as node:http has them.
 */
import net from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FcgiRoleName, FcgiServerRequest } from '../fastcgi/contract.js';
import { serveConnection, type FastCgiServerConnection } from '../fastcgi/server-connection.js';
import { serveScgiConnection } from '../scgi/server-connection.js';
import type { ScgiServerRequest } from '../scgi/contract.js';
import { dispatch, type DispatchHost } from './dispatch.js';
import { FastCgiExchange, ScgiExchange } from './exchange.js';

export type Protocol = 'fastcgi' | 'scgi';

/** What createServer() accepts as a handler: node:http's RequestListener (may return a promise). */
export type RequestListener = (req: IncomingMessage, res: ServerResponse) => unknown;

export interface ServerOptions {
  /** Default 'fastcgi'. */
  protocol?: Protocol;
  /** FastCGI: advertised in GET_VALUES as FCGI_MAX_CONNS and enforced as net.Server#maxConnections. */
  maxConns?: number;
  /** FastCGI: concurrent requests per connection (FCGI_MAX_REQS), default 100. */
  maxReqs?: number;
  /** FastCGI: accept several requests at once on one connection (FCGI_MPXS_CONNS), default true. */
  mpxsConns?: boolean;
  /** FastCGI: bound on one request's PARAMS bytes. */
  maxParamsBytes?: number;
  /** FastCGI: roles served; others get END_REQUEST(UNKNOWN_ROLE). Default RESPONDER only. */
  roles?: FcgiRoleName[];
  /** FastCGI: buffer size of each request stream (default 64 KiB). */
  highWaterMark?: number;
  /** FastCGI: abort a request whose body nobody reads while others wait on its connection (default 30 s). */
  stallTimeoutMs?: number;
  /**
   * FastCGI: when the web server closes its side of a connection, abort the
   * requests still running on it (default true). nginx never half-closes a
   * FastCGI connection: it closes it when its client goes away (it does not
   * send ABORT_REQUEST), so this is how a handler learns the client is gone,
   * as node:http does on a client's EOF. false keeps serving a peer that
   * half-closes after sending its requests.
   */
  abortOnPeerEnd?: boolean;
  /** SCGI: bound on the header netstring (default 64 KiB). */
  maxHeaderBytes?: number;
  /**
   * When the server closes, a connection that has not begun a request yet
   * gets this long to begin one before it is closed (default 1000 ms): the web
   * server sends a request right after connecting, and closing in between
   * would turn that request into a 502.
   */
  freshConnectionGraceMs?: number;
  /** Called before each request's handler (FCGI::ProcManager's pm_pre_dispatch). */
  preDispatch?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Called when each request is over: response finished or request aborted (pm_post_dispatch). */
  postDispatch?: (req: IncomingMessage, res: ServerResponse) => void;
}

/** One accepted connection as the server tracks it for close()/closeIdleConnections(). */
interface Tracked {
  readonly socket: net.Socket;
  /** Requests begun on it so far. */
  served: number;
  /** Requests in flight now. */
  active(): number;
  /** Finish in-flight requests, take no new ones, then close. */
  closeGracefully(): void;
  destroy(): void;
}

const DEFAULT_FRESH_GRACE_MS = 1000;
/** How long a closing connection waits for the peer to close its side after ours has ended. */
const PEER_LINGER_MS = 2000;

export class Server extends net.Server implements DispatchHost {
  readonly protocol: Protocol;
  readonly options: Readonly<ServerOptions>;
  // Fields http.Server has; frameworks set or read them. The web server owns client timeouts, so they are recorded only.
  timeout = 0;
  keepAliveTimeout = 5000;
  headersTimeout = 60_000;
  requestTimeout = 300_000;
  maxHeadersCount: number | null = null;
  maxRequestsPerSocket: number | null = null;

  preDispatch: ServerOptions['preDispatch'];
  postDispatch: ServerOptions['postDispatch'];
  readonly listenerThis: object = this;

  readonly #connections = new Set<Tracked>();
  /** rawListeners('request'), kept until a 'request' listener is added or removed (it is read on every request). */
  #listeners: Function[] | null = null;
  #closing = false;
  #requestsServed = 0;
  #inFlight = 0;

  constructor(options: ServerOptions = {}, handler?: RequestListener) {
    // allowHalfOpen: a peer that shuts down its write side after the request still gets the response.
    super({ allowHalfOpen: true });
    this.protocol = options.protocol ?? 'fastcgi';
    if (this.protocol !== 'fastcgi' && this.protocol !== 'scgi') {
      throw new TypeError(`createServer: protocol must be 'fastcgi' or 'scgi', got ${String(this.protocol)}`);
    }
    this.options = { ...options };
    this.preDispatch = options.preDispatch;
    this.postDispatch = options.postDispatch;
    if (this.protocol === 'fastcgi' && options.maxConns !== undefined) this.maxConnections = options.maxConns;
    const invalidate = (event: string | symbol): void => {
      if (event === 'request') this.#listeners = null;
    };
    this.on('newListener', invalidate);
    this.on('removeListener', invalidate);
    if (handler) this.on('request', handler);
    this.on('connection', (socket: net.Socket) => this.#onConnection(socket));
  }

  /** Requests whose handler has been called and whose response is not over yet. */
  get requestsInFlight(): number {
    return this.#inFlight;
  }

  /** Requests dispatched since the server was created. */
  get requestsServed(): number {
    return this.#requestsServed;
  }

  /** True once close() was called. */
  get closing(): boolean {
    return this.#closing;
  }

  requestListeners(): Function[] {
    // A once() listener removes itself when called, which resets the cache.
    return (this.#listeners ??= this.rawListeners('request'));
  }

  /** As http.Server#setTimeout: recorded, and 'timeout' listeners kept, but the web server owns timeouts. */
  setTimeout(ms = 0, cb?: () => void): this {
    this.timeout = ms;
    if (cb) this.on('timeout', cb);
    return this;
  }

  /**
   * Stops accepting; connections end once their in-flight requests are done
   * (idle kept-alive FastCGI connections at once). 'close' fires when the last
   * one is gone, as with http.Server.
   */
  override close(callback?: (err?: Error) => void): this {
    if (!this.#closing) {
      this.#closing = true;
      for (const c of this.#connections) this.#closeConnection(c);
    }
    return super.close(callback);
  }

  /** Closes every connection with no request in flight (http.Server#closeIdleConnections). */
  closeIdleConnections(): void {
    for (const c of this.#connections) if (c.active() === 0) c.destroy();
  }

  /** Drops every connection now; in-flight requests are aborted (http.Server#closeAllConnections). */
  closeAllConnections(): void {
    for (const c of this.#connections) c.destroy();
  }

  #closeConnection(c: Tracked): void {
    if (c.served > 0 || c.active() > 0) {
      c.closeGracefully();
      return;
    }
    const grace = this.options.freshConnectionGraceMs ?? DEFAULT_FRESH_GRACE_MS;
    const timer = setTimeout(() => c.closeGracefully(), grace);
    c.socket.once('close', () => clearTimeout(timer));
  }

  #onConnection(socket: net.Socket): void {
    // Small STDOUT + END_REQUEST records must not wait for Nagle (no-op on unix sockets).
    socket.setNoDelay(true);
    const tracked = this.protocol === 'fastcgi' ? this.#serveFastCgi(socket) : this.#serveScgi(socket);
    this.#connections.add(tracked);
    socket.once('close', () => this.#connections.delete(tracked));
    if (this.#closing) this.#closeConnection(tracked);
  }

  #serveFastCgi(socket: net.Socket): Tracked {
    const o = this.options;
    const conn: FastCgiServerConnection = serveConnection(
      socket,
      {
        ...(o.maxConns !== undefined && { maxConns: o.maxConns }),
        ...(o.maxReqs !== undefined && { maxReqs: o.maxReqs }),
        ...(o.mpxsConns !== undefined && { mpxsConns: o.mpxsConns }),
        ...(o.maxParamsBytes !== undefined && { maxParamsBytes: o.maxParamsBytes }),
        ...(o.roles !== undefined && { roles: o.roles }),
        ...(o.highWaterMark !== undefined && { highWaterMark: o.highWaterMark }),
        ...(o.stallTimeoutMs !== undefined && { stallTimeoutMs: o.stallTimeoutMs }),
      },
      (req: FcgiServerRequest) => {
        tracked.served++;
        // A request that slipped in while we close (the fresh-connection grace): serve it, take no more here.
        if (this.#closing) conn.close();
        this.#serve(new FastCgiExchange(req, conn));
      },
    );
    conn.on('protocolError', (err: Error) => this.#protocolError(err, socket));
    if (o.abortOnPeerEnd !== false) {
      // The connection layer has already aborted requests still waiting for input; drop the rest.
      socket.once('end', () => {
        if (conn.activeRequests > 0) conn.destroy();
      });
    }
    const tracked: Tracked = {
      socket,
      served: 0,
      active: () => conn.activeRequests,
      closeGracefully: () => {
        conn.close();
        // Our side ends once the in-flight requests are done; a peer that then never closes
        // its side must not hold the server's 'close' (and a graceful exit) forever.
        const linger = (): void => void setTimeout(() => socket.destroy(), PEER_LINGER_MS).unref();
        if (socket.writableFinished) linger();
        else socket.once('finish', linger);
      },
      destroy: () => conn.destroy(),
    };
    return tracked;
  }

  #serveScgi(socket: net.Socket): Tracked {
    let active = 0;
    serveScgiConnection(
      socket,
      {
        ...(this.options.maxHeaderBytes !== undefined && { maxHeaderBytes: this.options.maxHeaderBytes }),
        onError: (err: Error) => this.#protocolError(err, socket),
      },
      (req: ScgiServerRequest) => {
        tracked.served++;
        active = 1;
        socket.once('close', () => (active = 0));
        this.#serve(new ScgiExchange(req, socket));
      },
    );
    const tracked: Tracked = {
      socket,
      served: 0,
      active: () => active,
      // One request per connection: it closes itself once the response is out.
      closeGracefully: () => {
        if (active === 0) socket.destroy();
      },
      destroy: () => socket.destroy(),
    };
    return tracked;
  }

  #serve(exchange: FastCgiExchange | ScgiExchange): void {
    this.#requestsServed++;
    this.#inFlight++;
    // #requestDone runs once the protocol layer is done with the request (END_REQUEST written, or aborted / connection gone).
    dispatch(this, exchange, this.#requestDone);
  }

  /** One function for all requests (dispatch calls it once per request), not a closure each. */
  readonly #requestDone = (): void => {
    this.#inFlight--;
    if (this.#inFlight === 0) this.emit('idle');
  };

  /**
   * Bad protocol bytes or a socket failure on one connection (the protocol
   * layer has already dropped it). Reported as 'protocolError' (err, socket);
   * logged to stderr when nobody listens. Not 'clientError': frameworks answer
   * that with an HTTP response written to the socket, which is not HTTP here.
   */
  #protocolError(err: Error, socket: net.Socket): void {
    if (this.listenerCount('protocolError') > 0) {
      this.emit('protocolError', err, socket);
      return;
    }
    const code = (err as { code?: unknown }).code;
    // A peer that hangs up mid-request is routine, not worth a log line per occurrence.
    if (code === 'ECONNRESET' || code === 'EPIPE') return;
    const peer = socket.remoteAddress ? ` from ${socket.remoteAddress}:${socket.remotePort}` : '';
    process.stderr.write(`gatehouse[${process.pid}]: ${this.protocol} connection${peer}: ${typeof code === 'string' ? code + ' ' : ''}${err.message}\n`);
  }
}

/**
 * Creates a FastCGI (default) or SCGI server for a node:http handler:
 * `createServer(handler, { protocol })`, or node's order
 * `createServer({ protocol }, handler)`. Express apps, Koa's app.callback()
 * and Fastify's serverFactory handler all fit.
 */
export function createServer(handler?: RequestListener, options?: ServerOptions): Server;
export function createServer(options: ServerOptions, handler?: RequestListener): Server;
export function createServer(a?: RequestListener | ServerOptions, b?: RequestListener | ServerOptions): Server {
  const handler = typeof a === 'function' ? a : typeof b === 'function' ? b : undefined;
  const options = typeof a === 'object' && a !== null ? a : typeof b === 'object' && b !== null ? b : {};
  return new Server(options, handler);
}
