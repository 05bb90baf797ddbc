/**
 * @module fastcgi/inbound
 * The receiving half shared by both sides of a FastCGI connection: the
 * Readable each inbound stream (STDIN/DATA on the server, STDOUT on the client)
 * is delivered through, and the gate that pauses socket reads while any of
 * them is full.
 *
 * Backpressure and multiplexing pull against each other: records of all
 * requests share one socket, so pausing it for one slow consumer also stops
 * the others (head-of-line blocking). We choose real backpressure (bounded
 * memory) over fairness, and bound the cost: the owner may pass a stall
 * timeout, after which a consumer that has read nothing while others wait on
 * the same connection is reported through `onStall` (the server aborts those
 * requests). With one request on the connection there is no one to starve and
 * the socket stays paused as long as the consumer wants; the cost is that the
 * peer's later records (an ABORT_REQUEST, say) are read only once the consumer
 * reads again or ends the request, or the peer closes the connection.
 */
import { Readable } from 'node:stream';
import type { Duplex } from 'node:stream';

export interface InboundGateOptions {
  /** After this long paused for the same holders, while `othersWaiting()` is true, call onStall. 0 = never. */
  stallTimeoutMs?: number;
  othersWaiting?: (holders: InboundStream[]) => boolean;
  onStall?: (holders: InboundStream[]) => void;
}

/** Pauses the socket while at least one inbound stream is over its high-water mark. */
export class InboundGate {
  readonly #socket: Duplex;
  readonly #holders = new Set<InboundStream>();
  readonly #opts: InboundGateOptions;
  #stallTimer: NodeJS.Timeout | null = null;

  constructor(socket: Duplex, opts: InboundGateOptions = {}) {
    this.#socket = socket;
    this.#opts = opts;
  }

  get paused(): boolean {
    return this.#holders.size > 0;
  }

  hold(stream: InboundStream): void {
    if (this.#holders.has(stream)) return;
    this.#holders.add(stream);
    if (this.#holders.size === 1) {
      this.#socket.pause();
      this.#armStallTimer();
    }
  }

  release(stream: InboundStream): void {
    if (!this.#holders.delete(stream)) return;
    if (this.#holders.size === 0) {
      this.#clearStallTimer();
      if (!this.#socket.destroyed) this.#socket.resume();
    }
  }

  /** Drops every hold and its timer (the connection is gone). */
  dispose(): void {
    this.#holders.clear();
    this.#clearStallTimer();
  }

  #armStallTimer(): void {
    const { stallTimeoutMs = 0, othersWaiting, onStall } = this.#opts;
    if (stallTimeoutMs <= 0 || !onStall) return;
    this.#stallTimer = setTimeout(() => {
      this.#stallTimer = null;
      const holders = [...this.#holders];
      if (holders.length === 0) return;
      if (othersWaiting && !othersWaiting(holders)) {
        this.#armStallTimer();
        return;
      }
      onStall(holders);
    }, stallTimeoutMs);
    // A paused connection must not keep the process alive on its own.
    this.#stallTimer.unref();
  }

  #clearStallTimer(): void {
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
  }
}

/**
 * One inbound record stream as a Readable. deliver() pushes a record's
 * content and holds the gate when the buffer is full; the consumer's next read
 * releases it. finish() ends the stream and releases the gate for good: no
 * more bytes will come for it, so its buffer can no longer grow.
 */
export class InboundStream extends Readable {
  readonly requestId: number;
  readonly #gate: InboundGate;
  #finished = false;

  constructor(gate: InboundGate, requestId: number, highWaterMark = 64 * 1024) {
    super({ highWaterMark });
    this.#gate = gate;
    this.requestId = requestId;
  }

  /** True once the empty terminating record arrived (or the stream was ended early). */
  get finished(): boolean {
    return this.#finished;
  }

  override _read(): void {
    this.#gate.release(this);
  }

  deliver(chunk: Buffer): void {
    if (this.#finished || this.destroyed) return;
    if (!this.push(chunk)) this.#gate.hold(this);
  }

  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#gate.release(this);
    if (!this.destroyed) this.push(null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#finished = true;
    this.#gate.release(this);
    cb(err);
  }
}
