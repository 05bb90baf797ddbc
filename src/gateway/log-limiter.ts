/**
 * @module gateway/log-limiter
 * Per-request error lines under overload: a backend that is down turns every
 * request into a 503 and every 503 into a line, and at thousands of
 * requests a second the log (a synchronous stderr write each) becomes the
 * load. Each kind of line (its status, or "cut", or "stderr") gets `burst`
 * lines per window; the rest are counted, and the first line of a later
 * window says how many were left out. Nothing is timed: windows advance
 * when lines arrive, so an idle gateway holds no timer.
 */

export interface LogLimiterOptions {
  /** Lines let through per kind and window (default 20). */
  burst?: number;
  /** Window length in ms (default 1000). */
  windowMs?: number;
  /** Milliseconds now (tests pass a fake clock). */
  now?: () => number;
}

interface KindState {
  windowStart: number;
  written: number;
  suppressed: number;
}

export class LogLimiter {
  readonly #write: (line: string) => void;
  readonly #burst: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #kinds = new Map<string, KindState>();

  constructor(write: (line: string) => void, options: LogLimiterOptions = {}) {
    this.#write = write;
    this.#burst = options.burst ?? 20;
    this.#windowMs = options.windowMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Writes `line()` unless this kind is over its burst in the current window (the line is then not even built). */
  log(kind: string, line: () => string): void {
    const now = this.#now();
    let state = this.#kinds.get(kind);
    if (state === undefined) {
      state = { windowStart: now, written: 0, suppressed: 0 };
      this.#kinds.set(kind, state);
    } else if (now - state.windowStart >= this.#windowMs) {
      if (state.suppressed > 0) this.#write(`${state.suppressed} more "${kind}" line${state.suppressed === 1 ? '' : 's'} left out (over ${this.#burst} per ${this.#windowMs} ms)`);
      state.windowStart = now;
      state.written = 0;
      state.suppressed = 0;
    }
    if (state.written < this.#burst) {
      state.written++;
      this.#write(line());
    } else {
      state.suppressed++;
    }
  }
}
