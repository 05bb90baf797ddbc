/**
 * @module gateway/gateway
 * The HTTP/1.1 front: src/http1's server, whose exchanges are sorted here
 * (status page, --root preset: static file / redirect / refusal / PHP
 * script, or straight to the backend), counted, logged, and shut down in
 * bounded time. What the parser rejects (400, 413, 431, 501, 505, a head
 * too slow: 408) the server answers itself; it is counted and logged here.
 * The per-request work lives in forward.ts and static.ts.
 */
import type { AddressInfo, Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import { Http1Server, type Exchange } from '../http1/server.js';
import { combinedLine } from './access-log.js';
import { BackendSlots } from './backend-slots.js';
import { clientAddress, type TrustProxy } from './client-address.js';
import { describeCause, sendError } from './error-response.js';
import { Deadlines } from './deadlines.js';
import { LogLimiter } from './log-limiter.js';
import { callerFor, cutByGateway, exchangeClosed, forward, type ForwardContext } from './forward.js';
import { resolveOptions, type GatewayOptions } from './options.js';
import { createPhpPreset, type PhpPreset } from './php-preset.js';
import { serveFile } from './static.js';
import { GatewayStats, sendStatusPage, type ErrorClass } from './status-page.js';

export type ListenAddress = { port: number; host?: string } | { path: string } | { fd: number };

export interface Gateway {
  readonly server: Http1Server;
  readonly stats: GatewayStats;
  /** Resolves with the URL it listens on (`http://127.0.0.1:8080/`, or the socket path). */
  listen(address: ListenAddress): Promise<string>;
  /**
   * Stops accepting, lets in-flight requests finish (up to closeTimeout),
   * then cuts what is left. Idle keep-alive connections close at once.
   * Does not close the backend.
   */
  close(): Promise<void>;
  /** HTTPS only: connections from now on present this context's certificate (a renewed one); open ones keep theirs. */
  setSecureContext(context: SecureContext): void;
}

export function createGateway(gatewayOptions: GatewayOptions): Gateway {
  const options = resolveOptions(gatewayOptions);
  const preset = options.root === undefined ? undefined : createPhpPreset(options.root);
  const stats = new GatewayStats();
  const slots = options.maxConns === undefined ? undefined : new BackendSlots(options.maxConns);
  // --max-conns overrides the cap the FastCGI pool learns from the application (FCGI_MAX_CONNS).
  if (options.maxConns !== undefined) fastcgiPoolOf(options.backend)?.setMaxConnections(options.maxConns);
  // A bug of ours, not the client's or the backend's: answer, log, keep serving.
  const internalError = (ex: Exchange, err: unknown): void => {
    stats.countError(500);
    options.log(`500 ${ex.method} ${ex.url}: ${describeCause(err)}`);
    sendError(ex, 500, { close: true });
  };
  // Decided once: the backend's own call() when it has one, else dispatch() adapted.
  const failures = new LogLimiter(options.log);
  // A deadline fires up to an eighth of backendTimeout late (at most 1 s).
  const deadlines = new Deadlines(options.backendTimeout, Math.max(5, Math.min(1000, Math.floor(options.backendTimeout / 8))));
  const ctx: ForwardContext = { options, stats, slots, call: callerFor(options.backend), internalError, failures, deadlines };
  const server = new Http1Server({ maxHeaderBytes: options.maxHeaderSize, keepAliveTimeout: options.keepAliveTimeout, secureContext: options.secureContext });
  let closing: Promise<void> | undefined;
  let drained: (() => void) | undefined;
  const accessLog = options.accessLog;

  // Once per exchange, when its response ended or its client left: counts it, tells a forwarded request, writes the access log line.
  server.on('exchangeClose', (ex: Exchange) => {
    stats.inFlight--;
    if (ex.finished) stats.served++;
    else stats.clientAborts++;
    exchangeClosed(ex);
    if (accessLog !== undefined) logResponse(accessLog, options.trustProxy, ex);
    if (closing !== undefined) {
      server.closeIdleConnections({ spareFresh: true });
      if (stats.inFlight === 0) drained?.();
    }
  });

  server.on('request', (ex: Exchange) => {
    stats.inFlight++;
    // The peer address is read while the socket is open: the access log line may be written after it closed.
    if (accessLog !== undefined) void ex.remoteAddress;
    try {
      route(ctx, preset, ex);
    } catch (err) {
      internalError(ex, err);
    }
  });
  // What the server answered itself: counted, and logged as nginx does (the request as "-").
  server.on('badRequest', (status: number, socket: Socket, bodyBytes: number) => {
    stats.countError(status as ErrorClass);
    if (accessLog !== undefined) accessLog(combinedLine(socket.remoteAddress ?? '-', undefined, status, bodyBytes));
  });

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
          resolve(urlOf(server.address(), server.encrypted));
        });
      });
    },
    setSecureContext(context) {
      server.setSecureContext(context);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        const done = new Promise<void>((r) => server.close(() => r()));
        // Connections accepted just before close() that have not sent a request yet (a TLS handshake
        // under way, say) are spared: served once with Connection: close, or closed by the server
        // within a second. A reload (serve --workers HUP) then drops no connection the kernel gave us.
        server.closeIdleConnections({ spareFresh: true });
        const timer = setTimeout(() => {
          drained = undefined;
          server.closeAllConnections();
        }, options.closeTimeout);
        // Nothing in flight: whatever is left but fresh connections is cut.
        drained = () => server.closeAllConnections({ spareFresh: true });
        if (stats.inFlight === 0) drained();
        void done.then(() => {
          clearTimeout(timer);
          deadlines.close();
          resolve();
        });
      });
      return closing;
    },
  };
}

function route(ctx: ForwardContext, preset: PhpPreset | undefined, ex: Exchange): void {
  const { options, stats } = ctx;
  const url = ex.url;
  if (options.statusPath !== undefined && (url === options.statusPath || url.startsWith(options.statusPath + '?'))) {
    const backend = options.backendState?.() ?? { protocol: options.backend.protocol, mode: options.backend.mode };
    if (ctx.slots !== undefined) Object.assign(backend, { 'max conns': ctx.slots.max, 'slots busy': ctx.slots.busy, 'requests waiting': ctx.slots.waiting });
    return sendStatusPage(ex, stats, backend);
  }
  // Refuse an oversized body before reading a byte of it (and before any 100 Continue).
  const cl = ex.contentLength;
  if (cl !== undefined && cl > options.maxBodySize) return refuse(stats, ex, 413, { close: true });

  if (preset === undefined) return forward(ctx, ex);
  const decision = preset.resolve(url);
  switch (decision.kind) {
    case 'script':
      return forward(ctx, ex, decision.script);
    case 'static':
      serveFile(ex, decision.file);
      return;
    case 'redirect':
      return refuse(stats, ex, 301, { headers: { Location: decision.location } });
    case 'refused':
      return refuse(stats, ex, decision.status);
  }
}

function refuse(stats: GatewayStats, ex: Exchange, status: number, options: Parameters<typeof sendError>[2] = {}): void {
  if (status >= 400) stats.countError(status as ErrorClass);
  sendError(ex, status, options);
}

/**
 * The access log line of an exchange that closed. $body_bytes_sent is the
 * body bytes handed to the socket. A response the client did not receive to
 * its end is 499, as in nginx, unless the gateway itself cut it (the
 * application broke off): then its status.
 */
function logResponse(accessLog: (line: string) => void, trust: TrustProxy, ex: Exchange): void {
  const status = ex.finished || cutByGateway(ex) ? ex.statusCode : 499;
  const peer = ex.remoteAddress;
  const addr = trust === false ? peer : clientAddress(peer, ex.headers, trust);
  accessLog(combinedLine(addr, ex, status, ex.bodyBytesSent));
}

function urlOf(address: AddressInfo | string | null, encrypted: boolean): string {
  if (address === null) return '';
  if (typeof address === 'string') return address;
  return httpUrl(address.address, address.port, encrypted);
}

/** `http://host:port/` (`https` with TLS), an IPv6 address in brackets. */
export function httpUrl(host: string, port: number, tls: boolean): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

/** The backend's FastCGI connection pool, when it is ours (GatehouseBackend). */
function fastcgiPoolOf(backend: unknown): { setMaxConnections(n: number | undefined): void } | undefined {
  const pool = (backend as { fastcgiPool?: unknown }).fastcgiPool;
  return typeof pool === 'object' && pool !== null && typeof (pool as { setMaxConnections?: unknown }).setMaxConnections === 'function'
    ? (pool as { setMaxConnections(n: number | undefined): void })
    : undefined;
}
