/**
 * @module backend/client-mode
 * Client mode (an address, no PROGRAM): connect to a server someone else
 * runs. A failed connect is tried again `retries` (-N) more times, one
 * second apart; then the request fails with ERR_BACKEND_UNAVAILABLE (ashd
 * exited the whole process instead, §7.4).
 */
import type { AddressDialer } from './connect.js';
import { connectFailed, retryPause, throwIfAborted, type Connector, type ConnectorContext, type Lease } from './connector.js';
import { errorText } from './errors.js';

export class ClientConnector implements Connector {
  readonly mode = 'client' as const;
  readonly #dialer: AddressDialer;
  readonly #ctx: ConnectorContext;

  constructor(dialer: AddressDialer, ctx: ConnectorContext) {
    this.#dialer = dialer;
    this.#ctx = ctx;
  }

  async start(): Promise<void> {
    // Nothing to start; the first request connects.
  }

  async connect(signal?: AbortSignal): Promise<Lease> {
    const tries = 1 + this.#ctx.retries;
    let last: unknown;
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (attempt > 1) {
        this.#ctx.log(`client: cannot connect to ${this.#dialer.describe()} (${errorText(last)}); try ${attempt} of ${tries} in 1 s`);
        await retryPause(signal);
      }
      try {
        return { socket: await this.#dialer.dial(signal), child: undefined };
      } catch (err) {
        throwIfAborted(signal);
        last = err;
      }
    }
    throw connectFailed(`cannot connect to ${this.#dialer.describe()}`, last);
  }

  async close(): Promise<void> {
    // Nothing of ours runs.
  }
}
