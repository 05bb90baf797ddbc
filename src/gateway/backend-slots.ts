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
 * answered 503 (the caller's deadline: see forward.ts).
 *
 * Callbacks, not promises: under load nearly every request waits here, and
 * the hand-over is on the gateway's hot path.
 */

/** Who waits for a slot: told once it holds one. */
export interface SlotWaiter {
  slotGranted(): void;
}

export class BackendSlots {
  readonly max: number;
  #busy = 0;
  /** Waiters in arrival order; #head is the first still waiting (cancelled ones are nulled). */
  #queue: Array<SlotWaiter | null> = [];
  #head = 0;
  #waiting = 0;
  /** release() calls not yet handed on (see release()). */
  #pending = 0;
  #releasing = false;

  constructor(max: number) {
    this.max = max;
  }

  get busy(): number {
    return this.#busy;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /**
   * true: a slot is held now (nothing else happens). false: `waiter` is
   * queued and its slotGranted() runs when one frees, unless cancel()ed
   * first. Every slot held is given back with release().
   */
  acquire(waiter: SlotWaiter): boolean {
    if (this.#busy < this.max && this.#waiting === 0) {
      this.#busy++;
      return true;
    }
    this.#queue.push(waiter);
    this.#waiting++;
    return false;
  }

  /** Takes a waiter out of the queue (it gave up); a no-op if it is not waiting. */
  cancel(waiter: SlotWaiter): void {
    const at = this.#queue.indexOf(waiter, this.#head);
    if (at < 0) return;
    this.#queue[at] = null;
    this.#waiting--;
    this.#compact();
  }

  /**
   * Gives the slot to the next waiter (its slotGranted() runs now), or frees
   * it. A release from inside slotGranted() (the request failed at once) is
   * handled by the outer call's loop, so a queue of such failures does not
   * nest on the stack.
   */
  release(): void {
    this.#pending++;
    if (this.#releasing) return;
    this.#releasing = true;
    try {
      while (this.#pending > 0) {
        this.#pending--;
        const next = this.#shift();
        if (next === undefined) this.#busy--;
        else next.slotGranted();
      }
    } finally {
      this.#releasing = false;
    }
  }

  #shift(): SlotWaiter | undefined {
    while (this.#waiting > 0) {
      const next = this.#queue[this.#head];
      this.#queue[this.#head++] = null;
      if (next === null || next === undefined) continue;
      this.#waiting--;
      this.#compact();
      return next;
    }
    this.#compact();
    return undefined;
  }

  /** Drops the consumed front of the queue now and then, so it does not grow without end. */
  #compact(): void {
    if (this.#waiting === 0) {
      if (this.#queue.length > 0) {
        this.#queue.length = 0;
        this.#head = 0;
      }
      return;
    }
    if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
