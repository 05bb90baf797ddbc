/**
 * @module gateway/backend-slots
 * At most N requests at the backend at once; the rest wait here, first come
 * first served. This matters for applications that serve one connection per
 * process (php-cgi, php-fpm): with kept-alive FastCGI connections each
 * worker stays with its connection, so a connection opened beyond the
 * worker count sits in the listen queue behind connections that never let
 * go, and its request starves (measured: p99 4 s at 64 clients on 4
 * workers). Waiting in the gateway instead keeps the backend's connections
 * hot and makes overload visible: a request that gets no slot in time is
 * answered 503.
 */

interface Waiter {
  grant: () => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class BackendSlots {
  readonly max: number;
  #busy = 0;
  readonly #waiting: Waiter[] = [];

  constructor(max: number) {
    this.max = max;
  }

  get busy(): number {
    return this.#busy;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Resolves once a slot is held; rejects with the signal's reason if it aborts first. */
  acquire(signal: AbortSignal): Promise<void> {
    if (this.#busy < this.max && this.#waiting.length === 0) {
      this.#busy++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const waiter: Waiter = {
        grant: resolve,
        signal,
        onAbort: () => {
          const at = this.#waiting.indexOf(waiter);
          if (at >= 0) this.#waiting.splice(at, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /** Gives the slot to the next waiter, or frees it. Call once per successful acquire(). */
  release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) {
      this.#busy--;
      return;
    }
    next.signal.removeEventListener('abort', next.onAbort);
    next.grant();
  }
}
