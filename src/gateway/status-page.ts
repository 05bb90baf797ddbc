/**
 * @module gateway/status-page
 * The gateway's counters and the small page that shows them (only at the
 * configured statusPath): requests served, in flight, errors by status, and
 * whatever the backend reports about itself. Plain text by default, JSON for
 * `?json` or `Accept: application/json` (php-fpm's status page does both).
 */
import type { Exchange } from '../http1/server.js';

/** The error statuses the gateway itself produces, counted separately. */
export const ERROR_CLASSES = [400, 403, 404, 405, 408, 413, 431, 500, 502, 503, 504] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

export class GatewayStats {
  readonly startedAt = new Date();
  /** Requests answered (whatever the status). */
  served = 0;
  inFlight = 0;
  /** Client connections that went away before their response was complete. */
  clientAborts = 0;
  /** Responses the gateway produced itself for these reasons (not the application's own 404s). */
  readonly errors = new Map<ErrorClass, number>();
  /**
   * The application's response broke off after its head had been sent:
   * the client connection was cut, no status could be sent.
   */
  brokenResponses = 0;

  countError(status: ErrorClass): void {
    this.errors.set(status, (this.errors.get(status) ?? 0) + 1);
  }

  snapshot(backend: Record<string, unknown>): Record<string, unknown> {
    return {
      // With `serve --workers N` each gateway process answers for itself: which one this is.
      pid: process.pid,
      'start time': this.startedAt.toISOString(),
      'start since': Math.floor((Date.now() - this.startedAt.getTime()) / 1000),
      'requests served': this.served,
      'requests in flight': this.inFlight,
      'client aborts': this.clientAborts,
      'broken responses': this.brokenResponses,
      errors: Object.fromEntries([...this.errors].sort(([a], [b]) => a - b).map(([k, v]) => [String(k), v])),
      backend,
    };
  }
}

/** Writes the status page; `backend` is the backend's own report (protocol, mode, …). */
export function sendStatusPage(ex: Exchange, stats: GatewayStats, backend: Record<string, unknown>): void {
  const snap = stats.snapshot(backend);
  const wantsJson = ex.url.includes('?json') || (ex.header('accept') ?? '').includes('application/json');
  const body = Buffer.from(wantsJson ? JSON.stringify(snap) + '\n' : toText(snap), 'utf8');
  // A status page is a live reading, never a cached one.
  ex.writeHead(200, undefined, ['Content-Type', wantsJson ? 'application/json' : 'text/plain; charset=utf-8', 'Cache-Control', 'no-store'], body.length);
  ex.end(body);
}

function toText(snap: Record<string, unknown>, indent = ''): string {
  let out = '';
  for (const [k, v] of Object.entries(snap)) {
    if (v !== null && typeof v === 'object') out += `${indent}${k}:\n${toText(v as Record<string, unknown>, indent + '  ')}`;
    else out += `${indent}${k}: ${String(v)}\n`;
  }
  return out;
}
