/**
 * @module pool/backoff
 * Respawn throttle for workers that die right after they start. The Perl
 * original re-forks at once, forever: a worker that cannot start gave ~1500
 * forks/s at 100 % CPU (procmanager.md §6.1). Here the first quick death is
 * respawned at once (a one-off crash costs nothing), then the wait doubles
 * from `initialMs` up to `maxMs`, and a pool that has had no quick death for
 * `resetAfterMs` starts from zero again. Pure: time is passed in.
 */

export interface BackoffOptions {
  /** Wait after the second consecutive quick death (default 100 ms). */
  initialMs?: number;
  /** Cap of the doubling (default 15 s). */
  maxMs?: number;
  /** A pool without quick deaths for this long counts as stable (default 60 s). */
  resetAfterMs?: number;
}

export class RespawnBackoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly resetAfterMs: number;
  private failures = 0;
  private lastFailureAt = Number.NEGATIVE_INFINITY;
  private notBefore = Number.NEGATIVE_INFINITY;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 100;
    this.maxMs = options.maxMs ?? 15_000;
    this.resetAfterMs = options.resetAfterMs ?? 60_000;
  }

  /** Records a quick death at `now`; returns the wait before the next spawn. */
  recordQuickExit(now: number): number {
    if (now - this.lastFailureAt >= this.resetAfterMs) this.failures = 0;
    this.failures += 1;
    this.lastFailureAt = now;
    const delay = this.failures < 2 ? 0 : Math.min(this.initialMs * 2 ** (this.failures - 2), this.maxMs);
    this.notBefore = now + delay;
    return delay;
  }

  /** Earliest time a spawn may happen (−Infinity when not throttled). */
  spawnNotBefore(): number {
    return this.notBefore;
  }

  /** Consecutive quick deaths counted so far (0 after a reset). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Forget the history: an operator's reload (HUP) means "try again now". */
  reset(): void {
    this.failures = 0;
    this.lastFailureAt = Number.NEGATIVE_INFINITY;
    this.notBefore = Number.NEGATIVE_INFINITY;
  }
}
