/**
 * @module backend/launching-mode
 * Launching mode (address and PROGRAM, no -N): connect to the address; only
 * if nobody answers, create the listening socket there and start PROGRAM on
 * it (fd 0). The program outlives us. While a program we started is still
 * alive no second one is started (ashd §7.3 piled up duplicates); once it
 * is gone, the next refused connect launches a new one, re-binding a TCP
 * port in TIME_WAIT thanks to SO_REUSEADDR (ashd §7.2).
 */
import type { BackendChild } from './child.js';
import { spawnChild } from './child.js';
import type { AddressDialer } from './connect.js';
import { CHILD_EXIT_GRACE_MS, connectFailed, throwIfAborted, withChildExit, type Connector, type ConnectorContext, type Lease } from './connector.js';
import { backendError, errorText, isNotListening } from './errors.js';
import { closeListeningFd, listenAt } from './listen.js';

export class LaunchingConnector implements Connector {
  readonly mode = 'launching' as const;
  readonly #dialer: AddressDialer;
  readonly #ctx: ConnectorContext;
  #child: BackendChild | undefined;
  #launching: Promise<void> | undefined;
  /** Bumped by each launch, so a refusal seen before a launch finished does not count against it. */
  #generation = 0;

  constructor(dialer: AddressDialer, ctx: ConnectorContext) {
    this.#dialer = dialer;
    this.#ctx = ctx;
  }

  /** The last program we started, if any. */
  get child(): BackendChild | undefined {
    return this.#child;
  }

  async start(): Promise<void> {
    const lease = await this.connect();
    lease.socket.destroy();
  }

  async connect(signal?: AbortSignal): Promise<Lease> {
    const generation = this.#generation;
    try {
      return { socket: await this.#dialer.dial(signal), child: this.#child };
    } catch (err) {
      throwIfAborted(signal);
      if (!isNotListening(err)) throw connectFailed(`cannot connect to ${this.#dialer.describe()}`, err);
      if (this.#generation === generation) await this.#launch(err);
    }
    try {
      return { socket: await this.#dialer.dial(signal), child: this.#child };
    } catch (err) {
      throwIfAborted(signal);
      throw connectFailed(`cannot connect to ${this.#dialer.describe()} after starting ${this.#program}`, await withChildExit(err, this.#child));
    }
  }

  /** A connection to a program of ours that was dying: once it is gone, the next connect starts a new one. */
  async recover(child: BackendChild | undefined): Promise<boolean> {
    if (child === undefined || child !== this.#child) return false;
    return (await child.waitExit(CHILD_EXIT_GRACE_MS)) !== undefined;
  }

  async close(): Promise<void> {
    await this.#launching?.catch(() => {});
    // The program is left running, as callscgi does in this mode.
  }

  get #program(): string {
    return this.#ctx.child.program[0] ?? '?';
  }

  #launch(refusal: unknown): Promise<void> {
    this.#launching ??= (async () => {
      const running = this.#child;
      // A refusal often means it just died and its exit is not reaped yet: give that a moment.
      if (running?.alive && (await running.waitExit(CHILD_EXIT_GRACE_MS)) === undefined) {
        throw backendError(
          'ERR_BACKEND_UNAVAILABLE',
          `${this.#dialer.describe()} refuses connections but ${this.#program} (pid ${running.pid}) that we started still runs; not starting another`,
          refusal,
        );
      }
      await this.#doLaunch();
    })().finally(() => {
      this.#launching = undefined;
    });
    return this.#launching;
  }

  async #doLaunch(): Promise<void> {
    let listening;
    try {
      const target = await this.#dialer.listenTarget();
      listening = await listenAt(target, { probeTimeoutMs: this.#ctx.connectTimeoutMs, privateDir: this.#dialer.address.kind === 'id' });
    } catch (err) {
      throw backendError('ERR_BACKEND_UNAVAILABLE', `cannot listen on ${this.#dialer.describe()}: ${errorText(err)}`, err);
    }
    this.#generation++;
    if (listening === null) return; // somebody else started serving there meanwhile
    try {
      this.#child = spawnChild({ ...this.#ctx.child, log: this.#ctx.log }, { listenFd: listening.fd, parentDeath: false });
      this.#child.detach();
    } catch (err) {
      throw backendError('ERR_BACKEND_UNAVAILABLE', `cannot start ${this.#program}: ${errorText(err)}`, err);
    } finally {
      closeListeningFd(listening);
    }
  }
}
