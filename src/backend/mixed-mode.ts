/**
 * @module backend/mixed-mode
 * Mixed mode (address, PROGRAM and -N): connect to the address; if that
 * fails, start PROGRAM with /dev/null on stdin (it makes its own socket,
 * usually from its ARGS) and connect again right away, then once a second
 * up to RETRIES more times. A program we started that still runs is not
 * started again (ashd §7.3); one that exited ends the waiting early.
 */
import type { BackendChild } from './child.js';
import { spawnChild } from './child.js';
import type { AddressDialer } from './connect.js';
import {
  CHILD_EXIT_GRACE_MS,
  connectFailed,
  retryPause,
  throwIfAborted,
  withChildExit,
  type Connector,
  type ConnectorContext,
  type Lease,
} from './connector.js';
import { backendError, errorText } from './errors.js';

export class MixedConnector implements Connector {
  readonly mode = 'mixed' as const;
  readonly #dialer: AddressDialer;
  readonly #ctx: ConnectorContext;
  #child: BackendChild | undefined;

  constructor(dialer: AddressDialer, ctx: ConnectorContext) {
    this.#dialer = dialer;
    this.#ctx = ctx;
  }

  /** The last program we started, if any. */
  get child(): BackendChild | undefined {
    return this.#child;
  }

  async start(): Promise<void> {
    try {
      (await this.#dialer.dial()).destroy();
    } catch {
      this.#spawnIfNeeded();
    }
  }

  async connect(signal?: AbortSignal): Promise<Lease> {
    let last: unknown;
    try {
      return { socket: await this.#dialer.dial(signal), child: this.#child };
    } catch (err) {
      throwIfAborted(signal);
      last = err;
    }
    const child = this.#spawnIfNeeded();
    const retries = this.#ctx.retries;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        if (!child.alive) break;
        this.#ctx.log(`mixed: cannot connect to ${this.#dialer.describe()} (${errorText(last)}); retry ${attempt} of ${retries} in 1 s`);
        await retryPause(signal);
      }
      try {
        return { socket: await this.#dialer.dial(signal), child };
      } catch (err) {
        throwIfAborted(signal);
        last = err;
      }
    }
    throw connectFailed(`cannot connect to ${this.#dialer.describe()} after starting ${this.#program}`, await withChildExit(last, child.alive ? undefined : child));
  }

  /** A connection to a program of ours that was dying: once it is gone, the next connect starts a new one. */
  async recover(child: BackendChild | undefined): Promise<boolean> {
    if (child === undefined || child !== this.#child) return false;
    return (await child.waitExit(CHILD_EXIT_GRACE_MS)) !== undefined;
  }

  async close(): Promise<void> {
    // The program is left running, as callscgi does in this mode.
  }

  get #program(): string {
    return this.#ctx.child.program[0] ?? '?';
  }

  #spawnIfNeeded(): BackendChild {
    if (this.#child?.alive) return this.#child;
    try {
      this.#child = spawnChild({ ...this.#ctx.child, log: this.#ctx.log }, { parentDeath: false });
      this.#child.detach();
      return this.#child;
    } catch (err) {
      throw backendError('ERR_BACKEND_UNAVAILABLE', `cannot start ${this.#program}: ${errorText(err)}`, err);
    }
  }
}
