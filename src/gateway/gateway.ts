/**
 * @module gateway/gateway
 * The HTTP/1.1 front: a node:http server that sorts each request (status
 * page, --root preset: static file / redirect / refusal / PHP script, or
 * straight to the backend), answers what node:http's parser rejects (431
 * for oversized headers, 400 for malformed ones), and shuts down in bounded
 * time. The per-request work lives in forward.ts and static.ts.
 */
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { combinedLine } from './access-log.js';
import { BackendSlots } from './backend-slots.js';
import { clientAddress, type TrustProxy } from './client-address.js';
import { describeCause, sendError } from './error-response.js';
import { LogLimiter } from './log-limiter.js';
import { callerFor, cutByGateway, forward, responseClosed, type ForwardContext } from './forward.js';
import { resolveOptions, type GatewayOptions } from './options.js';
import { createPhpPreset, type PhpPreset } from './php-preset.js';
import { serveFile } from './static.js';
import { GatewayStats, sendStatusPage, type ErrorClass } from './status-page.js';

export type ListenAddress = { port: number; host?: string } | { path: string } | { fd: number };

export interface Gateway {
  readonly server: http.Server;
  readonly stats: GatewayStats;
  /** Resolves with the URL it listens on (`http://127.0.0.1:8080/`, or the socket path). */
  listen(address: ListenAddress): Promise<string>;
  /**
   * Stops accepting, lets in-flight requests finish (up to closeTimeout),
   * then cuts what is left. Idle keep-alive connections close at once.
   * Does not close the backend.
   */
  close(): Promise<void>;
}

export function createGateway(gatewayOptions: GatewayOptions): Gateway {
  const options = resolveOptions(gatewayOptions);
  const preset = options.root === undefined ? undefined : createPhpPreset(options.root);
  const stats = new GatewayStats();
  const slots = options.maxConns === undefined ? undefined : new BackendSlots(options.maxConns);
  // --max-conns overrides the cap the FastCGI pool learns from the application (FCGI_MAX_CONNS).
  if (options.maxConns !== undefined) fastcgiPoolOf(options.backend)?.setMaxConnections(options.maxConns);
  // A bug of ours, not the client's or the backend's: answer, log, keep serving.
  const internalError = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    stats.countError(500);
    options.log(`500 ${req.method} ${req.url}: ${describeCause(err)}`);
    if (!res.destroyed) sendError(res, 500, { close: true });
  };
  // Decided once: the backend's own call() when it has one, else dispatch() adapted.
  const failures = new LogLimiter(options.log);
  const ctx: ForwardContext = { options, stats, slots, call: callerFor(options.backend), internalError, failures };
  const server = http.createServer({ maxHeaderSize: options.maxHeaderSize });
  server.keepAliveTimeout = options.keepAliveTimeout;
  let closing: Promise<void> | undefined;
  let drained: (() => void) | undefined;
  const accessLog = options.accessLog;

  // The one 'close' listener of a response: counts it, tells a forwarded request whose client left, writes the access log line.
  const onResponseClose = function (this: ServerResponse): void {
    stats.inFlight--;
    if (this.writableFinished) stats.served++;
    else stats.clientAborts++;
    responseClosed(this);
    if (accessLog !== undefined) logResponse(accessLog, options.trustProxy, this);
    if (closing !== undefined) {
      server.closeIdleConnections();
      if (stats.inFlight === 0) drained?.();
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void => {
    stats.inFlight++;
    res.on('close', onResponseClose);
    // node:http caches the peer address on first read; once the client is gone it could not be read any more.
    if (accessLog !== undefined) void req.socket.remoteAddress;
    // While shutting down, every response ends its connection.
    if (closing !== undefined) res.shouldKeepAlive = false;
    try {
      route(ctx, preset, req, res, expectContinue);
    } catch (err) {
      internalError(req, res, err);
    }
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handle(req, res, false));
  // With a listener here node:http does not send 100 Continue itself: forward() decides.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => handle(req, res, true));
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => answerClientError(err, socket, stats, accessLog));

  return {
    server,
    stats,
    listen(address) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(address, () => {
          server.off('error', reject);
          // After startup, an accept() failure (EMFILE) is logged, not fatal.
          server.on('error', (err) => options.log(`server error: ${describeCause(err)}`));
          resolve(urlOf(server.address()));
        });
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        const done = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        const timer = setTimeout(() => drained?.(), options.closeTimeout);
        drained = () => {
          clearTimeout(timer);
          server.closeAllConnections();
        };
        if (stats.inFlight === 0) drained();
        void done.then(resolve);
      });
      return closing;
    },
  };
}

function route(ctx: ForwardContext, preset: PhpPreset | undefined, req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
  const { options, stats } = ctx;
  const url = req.url ?? '/';
  if (options.statusPath !== undefined && (url === options.statusPath || url.startsWith(options.statusPath + '?'))) {
    const backend = options.backendState?.() ?? { protocol: options.backend.protocol, mode: options.backend.mode };
    if (ctx.slots !== undefined) Object.assign(backend, { 'max conns': ctx.slots.max, 'slots busy': ctx.slots.busy, 'requests waiting': ctx.slots.waiting });
    return sendStatusPage(req, res, stats, backend);
  }
  // Refuse an oversized body before reading a byte of it (and before any 100 Continue).
  const cl = req.headers['content-length'];
  if (cl !== undefined && Number(cl) > options.maxBodySize) return refuse(stats, res, 413, { close: true });

  if (preset === undefined) return forward(ctx, req, res, expectContinue);
  const decision = preset.resolve(url);
  switch (decision.kind) {
    case 'script':
      return forward(ctx, req, res, expectContinue, decision.script);
    case 'static':
      serveFile(req, res, decision.file);
      return;
    case 'redirect':
      return refuse(stats, res, 301, { headers: { Location: decision.location } });
    case 'refused':
      return refuse(stats, res, decision.status);
  }
}

function refuse(stats: GatewayStats, res: ServerResponse, status: number, options: Parameters<typeof sendError>[2] = {}): void {
  if (status >= 400) stats.countError(status as ErrorClass);
  sendError(res, status, options);
}

/**
 * What node:http's parser rejected, answered like its default handler but
 * counted: 431 for headers over maxHeaderSize, 408 for a request that took
 * too long to arrive, 400 for anything malformed (CR/LF injection included).
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex, stats: GatewayStats, accessLog: ((line: string) => void) | undefined): void {
  const inResponse = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage?.headersSent === true;
  if (err.code === 'ECONNRESET' || !socket.writable || inResponse) {
    socket.destroy();
    return;
  }
  const status: ErrorClass = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  stats.countError(status);
  const body = `${status} ${STATUS_CODES[status]}\n`;
  // No request to show: nginx logs what it could not parse, we log "-".
  if (accessLog !== undefined) accessLog(combinedLine((socket as Socket).remoteAddress ?? '-', undefined, status, body.length));
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Per connection: socket.bytesWritten when its previous response was logged. */
const LOGGED_BYTES = Symbol('gatehouse.loggedBytes');
type MarkedSocket = Socket & { [LOGGED_BYTES]?: number };

/**
 * The access log line of a response that closed. $body_bytes_sent is what
 * the connection took since the previous response on it was logged, less
 * this response's head (node:http's header string): exact for keep-alive
 * and one-shot connections; a `100 Continue` counts too, and with pipelined
 * requests bytes may be counted against the neighbouring response. A
 * response the client did not receive to its end is 499, as in nginx,
 * unless the gateway itself cut it (the application broke off): then its status.
 */
function logResponse(accessLog: (line: string) => void, trust: TrustProxy, res: ServerResponse): void {
  const req = res.req;
  const socket = req.socket as MarkedSocket;
  const written = socket.bytesWritten ?? 0;
  const before = socket[LOGGED_BYTES] ?? 0;
  socket[LOGGED_BYTES] = written;
  const head = (res as ServerResponse & { _header?: unknown })._header;
  const bytes = written - before - (typeof head === 'string' ? head.length : 0);
  const status = res.writableFinished || cutByGateway(res) ? res.statusCode : 499;
  const peer = socket.remoteAddress ?? '';
  const addr = trust === false ? peer : clientAddress(peer, req.headers, trust);
  accessLog(combinedLine(addr, req, status, bytes > 0 ? bytes : 0));
}

function urlOf(address: AddressInfo | string | null): string {
  if (address === null) return '';
  if (typeof address === 'string') return address;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}/`;
}

/** The backend's FastCGI connection pool, when it is ours (GatehouseBackend). */
function fastcgiPoolOf(backend: unknown): { setMaxConnections(n: number | undefined): void } | undefined {
  const pool = (backend as { fastcgiPool?: unknown }).fastcgiPool;
  return typeof pool === 'object' && pool !== null && typeof (pool as { setMaxConnections?: unknown }).setMaxConnections === 'function'
    ? (pool as { setMaxConnections(n: number | undefined): void })
    : undefined;
}
