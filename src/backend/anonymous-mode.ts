/**
 * @module backend/anonymous-mode
 * Anonymous mode (PROGRAM, no address): we own a Unix socket at an
 * unguessable path in a private 0700 directory and start PROGRAM with it on
 * fd 0. We do not keep the listening fd ourselves, so a dead child means a
 * refused connect: then the child is restarted (new socket, new child, the
 * old one SIGTERMed) and the connect retried once. If the restarted child
 * fails too, that second failure is what the request and the log get (ashd
 * 6f761f0), with its exit status when it died. close() SIGTERMs the child
 * and removes the socket and the directory.
 */
import { join } from 'node:path';
import { BackendChild, spawnChild } from './child.js';
import { connectTarget } from './connect.js';
import {
  CHILD_EXIT_GRACE_MS,
  connectFailed,
  throwIfAborted,
  withChildExit,
  type Connector,
  type ConnectorContext,
  type Lease,
} from './connector.js';
import { backendError, errorText, isNotListening } from './errors.js';
import { closeListeningFd, listenAnonymous, makeAnonymousDir, removeAnonymousDir } from './listen.js';
import { execWrapperPath } from '../pool/native.js';

/** The parent-death wrapper, or undefined when it is not built (the child then dies only with a clean exit of ours). */
function execWrapper(): string | undefined {
  try {
    return execWrapperPath();
  } catch {
    return undefined;
  }
}

/** What anonymous mode needs from a pool of workers (processes > 1). */
export interface AnonymousPool {
  /** Starts the workers on a listening socket at `path`, which the pool owns and keeps open. */
  start(path: string): Promise<void>;
  stop(): Promise<void>;
}

export class AnonymousConnector implements Connector {
  readonly mode = 'anonymous' as const;
  readonly #ctx: ConnectorContext;
  readonly #pool: AnonymousPool | undefined;
  #dir: string | undefined;
  #path: string | undefined;
  #child: BackendChild | undefined;
  /** Bumped by each (re)start, so concurrent failures restart only once. */
  #generation = 0;
  #starting: Promise<void> | undefined;
  #closed = false;

  constructor(ctx: ConnectorContext, pool?: AnonymousPool) {
    this.#ctx = ctx;
    this.#pool = pool;
  }

  /** The socket path (once started). */
  get socketPath(): string | undefined {
    return this.#path;
  }

  /** The private directory (once started). */
  get socketDir(): string | undefined {
    return this.#dir;
  }

  /** The current child (single-process mode). */
  get child(): BackendChild | undefined {
    return this.#child;
  }

  async start(): Promise<void> {
    await this.#ensureStarted();
  }

  async connect(signal?: AbortSignal): Promise<Lease> {
    await this.#ensureStarted();
    const path = this.#path!;
    const generation = this.#generation;
    const child = this.#child;
    const opts = { timeoutMs: this.#ctx.connectTimeoutMs, ...(signal && { signal }) };
    try {
      return { socket: await connectTarget({ kind: 'unix', path }, opts), child };
    } catch (err) {
      throwIfAborted(signal);
      if (!isNotListening(err) || this.#pool !== undefined) {
        // The pool respawns its own workers; a timeout is not a crash.
        throw connectFailed(`cannot connect to ${path}`, err);
      }
      const first = await withChildExit(err, child);
      this.#ctx.log(`anonymous: ${path} refused a connection (${errorText(first)}); restarting ${this.#program}`);
      await this.#restart(generation);
    }
    const second = this.#child;
    try {
      return { socket: await connectTarget({ kind: 'unix', path }, opts), child: second, restarted: true };
    } catch (err) {
      throwIfAborted(signal);
      const cause = await withChildExit(err, second);
      throw connectFailed(`restarted ${this.#program} (pid ${second?.pid ?? '?'}) failed too`, cause);
    }
  }

  async recover(child: BackendChild | undefined): Promise<boolean> {
    if (this.#pool !== undefined || child === undefined || this.#closed) return false;
    if ((await child.waitExit(CHILD_EXIT_GRACE_MS)) === undefined) return false;
    if (this.#child === child) {
      this.#ctx.log(`anonymous: ${this.#program} (pid ${child.pid}) died with a request in its queue; restarting`);
      await this.#restart(this.#generation);
    }
    return true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#starting?.catch(() => {});
    if (this.#pool !== undefined) await this.#pool.stop();
    if (this.#child !== undefined) await this.#child.stop(this.#ctx.stopTimeoutMs);
    if (this.#dir !== undefined) await removeAnonymousDir(this.#dir);
  }

  get #program(): string {
    return this.#ctx.child.program[0] ?? '?';
  }

  #ensureStarted(): Promise<void> {
    if (this.#closed) return Promise.reject(backendError('ERR_BACKEND_UNAVAILABLE', 'the backend is closed'));
    if (this.#generation > 0 && this.#starting === undefined) return Promise.resolve();
    this.#starting ??= this.#launch().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /** Restarts unless somebody already did since `generation` was current. */
  #restart(generation: number): Promise<void> {
    if (this.#closed) return Promise.reject(backendError('ERR_BACKEND_UNAVAILABLE', 'the backend is closed'));
    if (this.#starting !== undefined) return this.#starting;
    if (this.#generation !== generation) return Promise.resolve();
    this.#starting = this.#launch().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #launch(): Promise<void> {
    try {
      if (this.#dir === undefined) {
        this.#dir = await makeAnonymousDir();
        this.#path = join(this.#dir, 'app.sock');
      }
      const path = this.#path!;
      if (this.#pool !== undefined) {
        await this.#pool.start(path);
        this.#generation++;
        return;
      }
      // A child that closed its socket but still runs must not linger next to its successor.
      this.#child?.signal('SIGTERM');
      const listening = await listenAnonymous(path);
      try {
        this.#child = spawnChild(
          { ...this.#ctx.child, log: this.#ctx.log },
          { listenFd: listening.fd, parentDeath: true, execWrapper: execWrapper() },
        );
      } finally {
        // The child holds the only copy: when it dies, connects are refused.
        closeListeningFd(listening);
      }
      this.#generation++;
    } catch (err) {
      throw backendError('ERR_BACKEND_UNAVAILABLE', `cannot start ${this.#program}: ${errorText(err)}`, err);
    }
  }
}
