/**
 * @module backend/child
 * The application process a backend starts (callscgi's PROGRAM): spawned
 * with the listening socket as its fd 0 (anonymous and launching mode) or
 * with /dev/null there (mixed mode, where it makes its own socket), tracked
 * until it exits, and stopped with SIGTERM then SIGKILL.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ChildExitedError, describeExit } from './errors.js';

export interface ExitInfo {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildSpec {
  /** PROGRAM and ARGS (execvp: PATH is searched). */
  program: readonly string[];
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string | undefined;
  log: (line: string) => void;
}

export interface SpawnChildOptions {
  /** The listening socket's fd for the child's fd 0; undefined → /dev/null. */
  listenFd?: number;
  /**
   * Kill the child when we die, even by SIGKILL (PR_SET_PDEATHSIG through
   * the gatehouse-exec wrapper). Off for children meant to outlive us.
   */
  parentDeath: boolean;
  /** The path of the gatehouse-exec wrapper, when parentDeath is wanted. */
  execWrapper?: string | undefined;
}

/** A process we started; `exited` settles once it is gone (never rejects). */
export class BackendChild {
  readonly process: ChildProcess;
  readonly program: string;
  readonly exited: Promise<ExitInfo>;
  #exit: ExitInfo | undefined;

  constructor(proc: ChildProcess, program: string, log: (line: string) => void) {
    this.process = proc;
    this.program = program;
    this.exited = new Promise((resolve) => {
      const done = (info: ExitInfo): void => {
        if (this.#exit !== undefined) return;
        this.#exit = info;
        log(`child ${proc.pid ?? '?'} (${program}) ${describeExit(info.exitCode, info.signal)}`);
        resolve(info);
      };
      proc.once('exit', (exitCode, signal) => done({ exitCode, signal }));
      // spawn() failed (e.g. ENOENT without the wrapper): report it like a failed exec.
      proc.on('error', (err: NodeJS.ErrnoException) => {
        log(`child ${program}: ${err.message}`);
        if (proc.pid === undefined) done({ exitCode: err.code === 'ENOENT' ? 127 : 126, signal: null });
      });
    });
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  get exitInfo(): ExitInfo | undefined {
    return this.#exit;
  }

  /** The exit as an error (for a BackendError's cause), or undefined while it runs. */
  exitError(cause?: unknown): ChildExitedError | undefined {
    const e = this.#exit;
    return e === undefined ? undefined : new ChildExitedError(this.pid, e.exitCode, e.signal, cause === undefined ? undefined : { cause });
  }

  /** Waits up to `timeoutMs` for the exit; undefined if it is still running then. */
  async waitExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    if (this.#exit !== undefined) return this.#exit;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal if it still runs; ESRCH means it is already gone. */
  signal(sig: NodeJS.Signals): void {
    if (!this.alive || this.pid === undefined) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      /* gone meanwhile */
    }
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with the exit. */
  async stop(timeoutMs: number): Promise<ExitInfo> {
    this.signal('SIGTERM');
    const info = await this.waitExit(timeoutMs);
    if (info !== undefined) return info;
    this.signal('SIGKILL');
    return this.exited;
  }

  /** Lets our process exit while this child runs on (launching and mixed mode). */
  detach(): void {
    this.process.unref();
  }
}

/**
 * Starts PROGRAM. Its fd 0 is the listening socket (or /dev/null), fds 1
 * and 2 are ours, and nothing else is inherited (Node's own fds are
 * close-on-exec; the wrapper also marks every fd ≥ 3 so). libuv resets
 * signal dispositions in the child, so PROGRAM does not inherit Node's
 * ignored SIGPIPE (ashd fd73543). Children that must outlive us get their
 * own session, so a signal to our process group does not reach them.
 */
export function spawnChild(spec: ChildSpec, opts: SpawnChildOptions): BackendChild {
  const [program, ...args] = spec.program;
  if (program === undefined) throw new TypeError('backend: no program to start');
  const stdio: StdioOptions = [opts.listenFd ?? 'ignore', 'inherit', 'inherit'];
  const common = { stdio, env: spec.env ?? process.env, ...(spec.cwd !== undefined && { cwd: spec.cwd }) };
  let proc: ChildProcess;
  if (opts.parentDeath && opts.execWrapper !== undefined && existsSync(opts.execWrapper)) {
    proc = spawn(opts.execWrapper, [String(process.pid), 'TERM', '--', program, ...args], common);
  } else {
    proc = spawn(program, args, { ...common, detached: !opts.parentDeath });
  }
  const child = new BackendChild(proc, program, spec.log);
  if (proc.pid !== undefined) spec.log(`started ${program} as pid ${proc.pid}${opts.listenFd !== undefined ? ' on the listening socket' : ''}`);
  return child;
}
