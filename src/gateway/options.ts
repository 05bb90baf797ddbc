/**
 * @module gateway/options
 * What createGateway takes, and the defaults that make it safe to expose:
 * bounded bodies, headers, waits and shutdown. Every limit is an option.
 */
import { tmpdir } from 'node:os';
import type { SecureContext } from 'node:tls';
import type { Backend } from '../backend/contract.js';
import type { TrustProxy } from './client-address.js';

export interface GatewayOptions {
  /** Where requests go (src/backend's createBackend). The gateway does not close it. */
  backend: Backend;
  /** `--root DIR`: static files from DIR, `*.php` to the backend, front controller /index.php. */
  root?: string;
  /** A request whose Content-Length is larger is refused with 413 before its body is read. Default 64 MiB. */
  maxBodySize?: number;
  /** A chunked request body is spooled up to this size (413 beyond). Default 64 MiB. */
  maxBodySpool?: number;
  /** Spooled bodies up to this size stay in memory, larger ones go to a temp file. Default 64 KiB. */
  spoolMemory?: number;
  /** Directory for spooled bodies. Default os.tmpdir(). */
  spoolDir?: string;
  /** Request line + headers, in bytes; beyond it 431 (node:http's maxHeaderSize). Default 16 KiB. */
  maxHeaderSize?: number;
  /** Idle client keep-alive connections are closed after this. Default 5 s. */
  keepAliveTimeout?: number;
  /**
   * No response head within this long after the request was sent, or no
   * body bytes for this long once the response started → 504 / cut. Default 60 s.
   */
  backendTimeout?: number;
  /**
   * At most this many requests at the backend at once; more wait in the
   * gateway (FIFO) within backendTimeout, then 503. Set it to the worker
   * count of one-connection-per-process applications (php-cgi, php-fpm).
   * Default: unbounded.
   */
  maxConns?: number;
  /** Retry-After seconds on 503 (cannot start or reach the backend). Default 1. */
  retryAfter?: number;
  /** Believe X-Forwarded-For/Forwarded for REMOTE_ADDR: from any peer (true) or these peers. Default off. */
  trustProxy?: TrustProxy;
  /** Serve the status page at this exact path (e.g. `/gatehouse-status`). Default: no status page. */
  statusPath?: string;
  /** close(): how long in-flight requests may take to finish before connections are cut. Default 10 s. */
  closeTimeout?: number;
  /** The backend's own report on the status page (connections, children). Default: protocol and mode. */
  backendState?: () => Record<string, unknown>;
  /**
   * One nginx "combined" line (newline included) per finished or cut
   * response, handed over as it is made; the lines are only built when this
   * is set. A client that left before its response was complete is logged
   * as 499, as nginx does. Default: no access log.
   */
  accessLog?: (line: string) => void;
  /** One line per failure (cause included). Default: stderr, prefixed `gatehouse: `. */
  log?: (line: string) => void;
  /** Serve HTTPS with this context (tls.createSecureContext({ cert, key })); the application sees HTTPS=on. Default: plain HTTP. */
  secureContext?: SecureContext;
}

type Optional = 'root' | 'statusPath' | 'backendState' | 'maxConns' | 'accessLog' | 'secureContext';
export type ResolvedGatewayOptions = Required<Omit<GatewayOptions, Optional>> & Pick<GatewayOptions, Optional>;

const MiB = 1024 * 1024;

function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`gateway: ${name} must be an integer ≥ ${min}, got ${value}`);
  return value;
}

export function resolveOptions(options: GatewayOptions): ResolvedGatewayOptions {
  if (options.statusPath !== undefined && !options.statusPath.startsWith('/')) {
    throw new RangeError(`gateway: statusPath must start with '/', got ${JSON.stringify(options.statusPath)}`);
  }
  return {
    ...options,
    maxBodySize: positiveInt('maxBodySize', options.maxBodySize, 64 * MiB, 0),
    maxBodySpool: positiveInt('maxBodySpool', options.maxBodySpool, 64 * MiB, 0),
    spoolMemory: positiveInt('spoolMemory', options.spoolMemory, 64 * 1024, 0),
    spoolDir: options.spoolDir ?? tmpdir(),
    maxHeaderSize: positiveInt('maxHeaderSize', options.maxHeaderSize, 16 * 1024),
    keepAliveTimeout: positiveInt('keepAliveTimeout', options.keepAliveTimeout, 5000),
    backendTimeout: positiveInt('backendTimeout', options.backendTimeout, 60_000),
    retryAfter: positiveInt('retryAfter', options.retryAfter, 1, 0),
    ...(options.maxConns !== undefined && { maxConns: positiveInt('maxConns', options.maxConns, 1) }),
    trustProxy: options.trustProxy ?? false,
    closeTimeout: positiveInt('closeTimeout', options.closeTimeout, 10_000, 0),
    log: options.log ?? ((line) => process.stderr.write(`gatehouse: ${line}\n`)),
  };
}
