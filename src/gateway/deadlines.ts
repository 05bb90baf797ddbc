/**
 * @module gateway/deadlines
 * Every request's deadline on one intrusive list and one interval, instead
 * of a Timeout per request. All deadlines have the same length, so arming
 * (again) is "now + length, move to the tail" and the list stays sorted: a
 * sweep fires from the head until the first deadline not yet due. No object
 * is allocated per request and nothing is hashed (a Set of in-flight
 * requests cost more in garbage collection than it saved). A Timeout
 * created, refreshed and cleared per request cost ≈ 2 µs of the gateway's
 * per-request CPU under load (docs/gateway.md, "Benchmark"); the price is
 * precision: a deadline fires up to one period late.
 */

/** What a sweep can fire. The list fields are Deadlines' own. */
export interface Timed {
  deadline: number;
  prevTimed: Timed | null;
  nextTimed: Timed | null;
  onDeadline(): void;
}

export class Deadlines {
  readonly #ms: number;
  readonly #timer: NodeJS.Timeout;
  #head: Timed | null = null;
  #tail: Timed | null = null;

  /** Deadlines `ms` long, checked every `periodMs`. */
  constructor(ms: number, periodMs: number) {
    this.#ms = ms;
    // unref: pending deadlines alone do not keep the process alive (the sockets they belong to do).
    this.#timer = setInterval(() => this.#sweep(), periodMs).unref();
  }

  /** Fires `item` one deadline length from now (moved there if it was armed already). */
  arm(item: Timed): void {
    item.deadline = Date.now() + this.#ms;
    if (this.#tail === item) return;
    this.disarm(item);
    item.prevTimed = this.#tail;
    if (this.#tail === null) this.#head = item;
    else this.#tail.nextTimed = item;
    this.#tail = item;
  }

  disarm(item: Timed): void {
    const prev = item.prevTimed;
    const next = item.nextTimed;
    if (prev === null && this.#head !== item) return; // not armed
    if (prev === null) this.#head = next;
    else prev.nextTimed = next;
    if (next === null) this.#tail = prev;
    else next.prevTimed = prev;
    item.prevTimed = item.nextTimed = null;
  }

  /** Stops the sweeps; armed items never fire. */
  close(): void {
    clearInterval(this.#timer);
    while (this.#head !== null) this.disarm(this.#head);
  }

  #sweep(): void {
    const now = Date.now();
    // onDeadline() may arm or disarm others: take the head afresh each time.
    for (let item = this.#head; item !== null && item.deadline <= now; item = this.#head) {
      this.disarm(item);
      item.onDeadline();
    }
  }
}
