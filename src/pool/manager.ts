/**
 * @module pool/manager
 * The process manager (FCGI::ProcManager's contract, procmanager.md §3/§7),
 * shaped like Gunicorn's arbiter: all state in one worker table, signal and
 * exit handlers only enqueue, and one `tick()` drains the queue, then
 * escalates overdue workers, then tops the pool up, then arms one timer.
 *
 * Signals (the seed's contract, unchanged):
 *   HUP       TERM every worker, keep running, respawn; manager pid and pid file stay.
 *   TERM/INT  TERM every worker, wait up to dieTimeout, SIGKILL the rest and
 *             reap them; exit 0 if nobody had to be killed, else 1.
 *   2nd TERM/INT during shutdown: SIGKILL the rest now ("hurry").
 *   HUP during shutdown: ignored (logged).
 *
 * Fixes over the original, each deliberate:
 *   - a capped exponential backoff for workers that die right after starting;
 *   - every worker runs under `gatehouse-exec <manager pid> <orphanSignal>`,
 *     so `kill -9 <manager>` takes the workers down (default SIGKILL: a TERM
 *     could be ignored, and an orphan would keep the socket and block a new
 *     manager's bind; a TERM'd manager already gives the graceful path);
 *   - each worker leads its own session/process group (`detached`): a
 *     terminal's Ctrl-C reaches only the manager, which then stops the pool
 *     in order instead of every worker dying mid-request; SIGKILL goes to the
 *     worker's whole group so helpers it forked die with it;
 *   - SIGKILLed workers are reaped before exit; the pid file goes last;
 *   - HUP starts the replacements at once (retiring workers do not count
 *     toward nProcesses) and a retiring worker that outlives dieTimeout is
 *     SIGKILLed, so repeated HUPs cannot pile up TERM-ignoring workers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RespawnBackoff, type BackoffOptions } from './backoff.js';
import { PoolError } from './errors.js';
import { openListenSocket, SOCKET_ACTIVATION_VARS, type ListenSocket, type ListenSpec } from './listen-socket.js';
import { execWrapperPath, loadNative } from './native.js';
import { PidFile } from './pidfile.js';
import { managerTitle, setProcessTitle } from './process-title.js';

/** Set in every worker's environment: the manager's pid (library mode's role marker). */
export const MANAGER_PID_ENV = 'GATEHOUSE_PM_MANAGER_PID';

/** If SIGKILLed workers are not reaped within this time (D state), exit anyway. */
const REAP_AFTER_KILL_MS = 5000;
/** See cleanExitsTooFast(): beyond this many status-0 quick exits per worker per second, back off. */
const CLEAN_EXITS_PER_WORKER_PER_SECOND = 20;

export interface WorkerCommand {
  program: string;
  args?: readonly string[];
  /** Merged over the manager's environment; `undefined` removes a variable. */
  env?: Readonly<Record<string, string | undefined>>;
  cwd?: string;
}

/** What is about to be spawned; `beforeSpawn` may edit it. */
export interface SpawnPlan {
  program: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string | undefined;
}

export interface WorkerInfo {
  readonly pid: number;
  /** Date.now() at spawn. */
  readonly startedAt: number;
  /** TERM has been sent (HUP or shutdown): it no longer counts toward nProcesses. */
  readonly retiring: boolean;
}

export type ManagerLogEvent =
  | { type: 'listening'; address: string }
  | { type: 'initialized' }
  | { type: 'started'; pid: number }
  | { type: 'exited'; pid: number; status: number; code: number | null; signal: NodeJS.Signals | null; uptimeMs: number }
  | { type: 'signal'; signal: NodeJS.Signals; action: 'reload' | 'stop' | 'hurry' | 'ignored' }
  | { type: 'sending'; signal: 'SIGTERM' | 'SIGKILL'; pids: number[] }
  | { type: 'backoff'; delayMs: number; failures: number }
  | { type: 'spawn-failed'; error: Error }
  | { type: 'dying'; exitCode: number }
  | { type: 'warning' };

export interface ManagerHooks {
  /** After the socket is listening and the pid file written, before the first spawn. */
  managerInit?(pm: ProcManager): void | Promise<void>;
  beforeSpawn?(plan: SpawnPlan): void;
  afterSpawn?(worker: WorkerInfo): void;
  /** Log sink. Default: the line on stderr (`FastCGI: manager (pid N): …`, as the original). */
  notify?(line: string, event: ManagerLogEvent): void;
}

export interface ProcManagerOptions {
  nProcesses: number;
  command: WorkerCommand;
  listen: ListenSpec;
  /** Seconds to wait for workers after TERM before SIGKILL (default 60). */
  dieTimeout?: number;
  pidFile?: string;
  /** NAME in the manager's title `gatehouse-pm [NAME]`. */
  processTitle?: string;
  /** What a worker gets when the manager dies (default SIGKILL, see the module comment). */
  orphanSignal?: 'SIGKILL' | 'SIGTERM';
  /** A worker that exits (unasked) sooner than this after spawn counts as a quick death (default 1000). */
  minUptimeMs?: number;
  backoff?: BackoffOptions;
  hooks?: ManagerHooks;
  /**
   * The original's `no_signals`: install no process signal handlers and keep
   * the process title, for a manager embedded in a program that owns its
   * signals (the gateway's anonymous pool); drive it with `signal()` instead.
   */
  noSignals?: boolean;
  /**
   * Set O_NONBLOCK on the listening socket before the first worker starts,
   * for workers known to be Node. Node sets
   * it itself when it listens, but restores the value it found at startup
   * when it exits; on a socket the other workers share, a blocking value
   * makes their accept() block. php-cgi and libfcgi programs need it
   * blocking: their accept() takes EAGAIN as fatal. Default: on when the
   * program is Node itself (this node, as for forkSelf and `serve --workers`,
   * or one named `node`/`nodejs`), off otherwise (a script that starts Node
   * is not recognised).
   */
  nonBlocking?: boolean;
}

type StopSignal = 'SIGTERM' | 'SIGINT';
type HandledSignal = 'SIGHUP' | 'SIGUSR1' | StopSignal;
/**
 * USR1 is caught only to be ignored, as the original's manager does: left
 * alone, Node would open its inspector on 127.0.0.1:9229. Other signals
 * keep their default action; the workers then die by the orphan signal.
 */
const HANDLED_SIGNALS: readonly HandledSignal[] = ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGUSR1'];

/** The only things that happen to a manager; handlers enqueue them, `tick()` acts. */
type QueuedEvent =
  | { kind: 'signal'; signal: HandledSignal }
  | { kind: 'exit'; pid: number; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'timer' };

interface WorkerRecord {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly startedAt: number; // performance.now()
  readonly startedAtEpoch: number;
  retiring: boolean;
  /** performance.now() after which SIGKILL is sent. */
  killAt: number;
  killed: boolean;
}

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'done';

export class ProcManager {
  readonly pid = process.pid;
  private readonly options: Required<Pick<ProcManagerOptions, 'nProcesses' | 'dieTimeout' | 'orphanSignal' | 'minUptimeMs'>> &
    ProcManagerOptions;
  private readonly workerTable = new Map<number, WorkerRecord>();
  /** When recent status-0 quick exits happened (a one-second window). */
  private readonly cleanExits: number[] = [];
  private readonly queue: QueuedEvent[] = [];
  private readonly backoff: RespawnBackoff;
  private readonly signalListeners = new Map<HandledSignal, () => void>();
  private state: State = 'idle';
  private tickScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private socket: ListenSocket | undefined;
  private pidFile: PidFile | undefined;
  private stopSignal: StopSignal | undefined;
  private killedOnStop = false;
  private reapDeadline = Number.POSITIVE_INFINITY;
  private resolveExit: ((code: number) => void) | undefined;
  /** Path of gatehouse-exec, resolved once in run(). */
  private wrapper = '';

  constructor(options: ProcManagerOptions) {
    const nProcesses = options.nProcesses;
    const dieTimeout = options.dieTimeout ?? 60;
    if (!Number.isInteger(nProcesses) || nProcesses < 1) badOption(`nProcesses must be an integer >= 1, got ${nProcesses}`);
    if (!(dieTimeout > 0) || !Number.isFinite(dieTimeout)) badOption(`dieTimeout must be a number of seconds > 0, got ${dieTimeout}`);
    if (!options.command.program) badOption('command.program is empty');
    this.options = {
      ...options,
      nProcesses,
      dieTimeout,
      orphanSignal: options.orphanSignal ?? 'SIGKILL',
      minUptimeMs: options.minUptimeMs ?? 1000,
    };
    this.backoff = new RespawnBackoff(options.backoff);
  }

  /** The address being served (after `run()` has opened it). */
  get address(): string | undefined {
    return this.socket?.address;
  }

  /** The bound TCP port, if the socket is TCP. */
  get port(): number | undefined {
    return this.socket?.port;
  }

  /** A snapshot of the worker table. */
  workers(): WorkerInfo[] {
    return [...this.workerTable.values()].map((w) => ({ pid: w.pid, startedAt: w.startedAtEpoch, retiring: w.retiring }));
  }

  /** Programmatic equivalent of sending the manager HUP/TERM/INT. */
  signal(signal: 'SIGHUP' | StopSignal): void {
    this.enqueue({ kind: 'signal', signal });
  }

  /**
   * Opens the socket, writes the pid file, spawns the pool and manages it
   * until a stop signal has been handled. Resolves with the exit code (0 or
   * 1). Start-up failures reject with a PoolError and leave nothing behind.
   */
  async run(): Promise<number> {
    if (this.state !== 'idle') throw new PoolError('ERR_PM_BAD_OPTION', 'run() called twice');
    this.state = 'starting';
    this.wrapper = execWrapperPath(); // fail before creating anything if the build is missing
    // Handlers first: a TERM that arrives while we bind is queued and honoured, not fatal.
    for (const sig of this.options.noSignals ? [] : HANDLED_SIGNALS) {
      const listener = (): void => this.enqueue({ kind: 'signal', signal: sig });
      this.signalListeners.set(sig, listener);
      process.on(sig, listener);
    }
    try {
      this.socket = await openListenSocket(this.options.listen, (msg) => this.log(msg, { type: 'warning' }));
      if (this.options.nonBlocking ?? isNodeProgram(this.options.command.program)) loadNative().setNonBlocking(this.socket.fd, true);
      if (this.options.pidFile !== undefined) this.pidFile = PidFile.claim(this.options.pidFile, this.pid);
      if (!this.options.noSignals) setProcessTitle(managerTitle(this.options.processTitle));
      this.log(`listening on ${this.socket.address}`, { type: 'listening', address: this.socket.address });
      this.log('initialized', { type: 'initialized' });
      await this.options.hooks?.managerInit?.(this);
    } catch (err) {
      this.pidFile?.remove();
      this.socket?.close();
      this.removeSignalHandlers();
      this.state = 'done';
      throw err;
    }
    this.state = 'running';
    return new Promise<number>((resolve) => {
      this.resolveExit = resolve;
      // Children and timers keep the loop alive too; this makes "never exit by accident" explicit.
      this.keepAlive = setInterval(() => {}, 1 << 30);
      this.scheduleTick();
    });
  }

  // ---- the loop -----------------------------------------------------------

  private enqueue(event: QueuedEvent): void {
    this.queue.push(event);
    this.scheduleTick();
  }

  private scheduleTick(): void {
    if (this.tickScheduled || this.state === 'starting' || this.state === 'idle' || this.state === 'done') return;
    this.tickScheduled = true;
    setImmediate(() => this.tick());
  }

  private tick(): void {
    this.tickScheduled = false;
    if (this.state === 'done') return;
    for (let event = this.queue.shift(); event !== undefined; event = this.queue.shift()) {
      if (event.kind === 'signal') this.handleSignal(event.signal);
      else if (event.kind === 'exit') this.handleExit(event.pid, event.code, event.signal);
      // 'timer' carries no data: it only wakes the loop for the steps below.
    }
    const now = performance.now();
    this.escalateOverdue(now);
    if (this.state === 'running') this.spawnMissing(now);
    if (this.state === 'stopping' && this.stopIsComplete(now)) {
      this.finish();
      return;
    }
    this.armTimer(now);
  }

  private handleSignal(signal: HandledSignal): void {
    const name = signal.slice(3);
    if (signal === 'SIGUSR1') {
      this.log('received signal USR1: ignored', { type: 'signal', signal, action: 'ignored' });
      return;
    }
    if (signal === 'SIGHUP') {
      if (this.state !== 'running') {
        this.log(`received signal HUP during shutdown: ignored`, { type: 'signal', signal, action: 'ignored' });
        return;
      }
      this.log('received signal HUP', { type: 'signal', signal, action: 'reload' });
      // An operator's reload means "try again now", whatever the crash history.
      this.backoff.reset();
      this.retire(this.activeWorkers(), performance.now());
      return;
    }
    if (this.state === 'running') {
      this.log(`received signal ${name}`, { type: 'signal', signal, action: 'stop' });
      this.state = 'stopping';
      this.stopSignal = signal;
      const now = performance.now();
      this.retire(this.activeWorkers(), now);
      // Workers retired by an earlier HUP keep the earlier of the two deadlines.
      const deadline = now + this.options.dieTimeout * 1000;
      for (const w of this.workerTable.values()) w.killAt = Math.min(w.killAt, deadline);
      return;
    }
    // Second TERM/INT while stopping: do not wait for the die timeout.
    this.log(`received signal ${name} again: hurrying`, { type: 'signal', signal, action: 'hurry' });
    const now = performance.now();
    for (const w of this.workerTable.values()) w.killAt = Math.min(w.killAt, now);
  }

  private handleExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const w = this.workerTable.get(pid);
    if (!w) return;
    this.workerTable.delete(pid);
    const now = performance.now();
    const uptimeMs = now - w.startedAt;
    const status = code !== null ? (code & 0xff) << 8 : (osConstants.signals[signal ?? 'SIGKILL'] ?? 0);
    const how = code !== null ? `exit code ${code}` : `signal ${signal}`;
    this.log(`server (pid ${pid}) exited with status ${status} (${how}, uptime ${(uptimeMs / 1000).toFixed(3)} s)`, {
      type: 'exited',
      pid,
      status,
      code,
      signal,
      uptimeMs,
    });
    if (this.state !== 'running' || w.retiring || uptimeMs >= this.options.minUptimeMs) return;
    if (code === 0 && !this.cleanExitsTooFast(now)) return;
    this.noteQuickDeath(now);
  }

  /**
   * A quick exit with status 0 is a worker recycling itself (php-cgi after
   * PHP_FCGI_MAX_REQUESTS, libfcgi max requests), which under load happens
   * many times a second and must be replaced at once, as the original does.
   * Only a rate no recycling pool reaches (more than 20 per worker per second)
   * counts as a crash loop of a program that exits 0.
   */
  private cleanExitsTooFast(now: number): boolean {
    this.cleanExits.push(now);
    while (this.cleanExits.length > 0 && now - this.cleanExits[0]! > 1000) this.cleanExits.shift();
    return this.cleanExits.length > CLEAN_EXITS_PER_WORKER_PER_SECOND * this.options.nProcesses;
  }

  private noteQuickDeath(now: number): void {
    const delayMs = this.backoff.recordQuickExit(now);
    const failures = this.backoff.consecutiveFailures;
    if (delayMs > 0) {
      this.log(`respawning too fast: waiting ${(delayMs / 1000).toFixed(1)} s (${failures} quick exits in a row)`, {
        type: 'backoff',
        delayMs,
        failures,
      });
    }
  }

  /** SIGKILL (to the worker's process group) every worker past its deadline. */
  private escalateOverdue(now: number): void {
    const overdue = [...this.workerTable.values()].filter((w) => !w.killed && w.killAt <= now);
    if (overdue.length === 0) return;
    const pids = overdue.map((w) => w.pid);
    const why = this.state === 'stopping' ? 'wait timeout' : 'retiring workers outlived the die timeout';
    this.log(`${why}: sending KILL to PIDs, ${pids.join(' ')}`, { type: 'sending', signal: 'SIGKILL', pids });
    for (const w of overdue) {
      w.killed = true;
      this.sendSignal(-w.pid, 'SIGKILL'); // its group: helpers it forked go too
      this.sendSignal(w.pid, 'SIGKILL'); // in case it left its group
    }
    if (this.state === 'stopping') this.killedOnStop = true;
    this.reapDeadline = Math.min(this.reapDeadline, now + REAP_AFTER_KILL_MS);
  }

  private spawnMissing(now: number): void {
    let missing = this.options.nProcesses - this.activeWorkers().length;
    while (missing > 0 && now >= this.backoff.spawnNotBefore()) {
      this.spawnWorker(now);
      missing -= 1;
    }
  }

  private stopIsComplete(now: number): boolean {
    if (this.workerTable.size === 0) return true;
    const unreaped = [...this.workerTable.values()];
    if (unreaped.every((w) => w.killed) && now >= this.reapDeadline) {
      this.log(`PIDs ${unreaped.map((w) => w.pid).join(' ')} not reaped ${REAP_AFTER_KILL_MS} ms after KILL; exiting anyway`, {
        type: 'warning',
      });
      return true;
    }
    return false;
  }

  /** One timer for the earliest thing the loop must do without an event. */
  private armTimer(now: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    let wakeAt = Number.POSITIVE_INFINITY;
    for (const w of this.workerTable.values()) if (!w.killed) wakeAt = Math.min(wakeAt, w.killAt);
    if (this.state === 'stopping') wakeAt = Math.min(wakeAt, this.reapDeadline);
    if (this.state === 'running' && this.activeWorkers().length < this.options.nProcesses) {
      wakeAt = Math.min(wakeAt, this.backoff.spawnNotBefore());
    }
    if (wakeAt === Number.POSITIVE_INFINITY) return;
    this.timer = setTimeout(() => this.enqueue({ kind: 'timer' }), Math.max(0, Math.ceil(wakeAt - now)));
  }

  // ---- worker operations ----------------------------------------------------

  private activeWorkers(): WorkerRecord[] {
    return [...this.workerTable.values()].filter((w) => !w.retiring);
  }

  /** TERM the given workers; SIGKILL follows at now + dieTimeout if they are still there. */
  private retire(workers: WorkerRecord[], now: number): void {
    if (workers.length === 0) return;
    const pids = workers.map((w) => w.pid);
    this.log(`sending TERM to PIDs, ${pids.join(' ')}`, { type: 'sending', signal: 'SIGTERM', pids });
    for (const w of workers) {
      w.retiring = true;
      w.killAt = now + this.options.dieTimeout * 1000;
      this.sendSignal(w.pid, 'SIGTERM');
    }
  }

  private spawnWorker(now: number): void {
    const { command, orphanSignal } = this.options;
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of SOCKET_ACTIVATION_VARS) delete env[name];
    for (const [k, v] of Object.entries(command.env ?? {})) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    env[MANAGER_PID_ENV] = String(this.pid);
    const plan: SpawnPlan = { program: command.program, args: [...(command.args ?? [])], env, cwd: command.cwd };
    this.options.hooks?.beforeSpawn?.(plan);

    let child: ChildProcess;
    try {
      // The socket goes over at fd 3 and the wrapper moves it to fd 0: libuv's spawn clears O_NONBLOCK
      // on a child's fds 0-2, a flag the running workers share (see native/exec-wrapper.c).
      child = spawn(this.wrapper, [String(this.pid), orphanSignal, '--listen-fd', '3', '--', plan.program, ...plan.args], {
        stdio: ['ignore', 'inherit', 'inherit', this.socketFd()],
        env: plan.env,
        cwd: plan.cwd,
        detached: true,
      });
    } catch (err) {
      this.logSpawnFailure(plan.program, err as Error);
      this.noteQuickDeath(now);
      return;
    }
    const pid = child.pid;
    if (pid === undefined) {
      // spawn() reports the cause asynchronously through 'error'; count the failure now so the loop cannot spin.
      child.once('error', (err) => this.logSpawnFailure(plan.program, err));
      this.noteQuickDeath(now);
      return;
    }
    child.on('error', () => {}); // later errors are kill() races with exit: the 'exit' event tells the truth
    child.once('exit', (code, signal) => this.enqueue({ kind: 'exit', pid, code, signal }));
    const record: WorkerRecord = {
      pid,
      child,
      startedAt: now,
      startedAtEpoch: Date.now(),
      retiring: false,
      killAt: Number.POSITIVE_INFINITY,
      killed: false,
    };
    this.workerTable.set(pid, record);
    this.log(`server (pid ${pid}) started`, { type: 'started', pid });
    this.options.hooks?.afterSpawn?.({ pid, startedAt: record.startedAtEpoch, retiring: false });
  }

  private logSpawnFailure(program: string, error: Error): void {
    this.log(`cannot spawn ${program}: ${error.message}`, { type: 'spawn-failed', error });
  }

  private socketFd(): number {
    if (!this.socket) throw new Error('pool: no listening socket'); // unreachable: run() opens it first
    return this.socket.fd;
  }

  // ---- the end --------------------------------------------------------------

  private finish(): void {
    this.state = 'done';
    clearTimeout(this.timer);
    clearInterval(this.keepAlive);
    const exitCode = this.killedOnStop ? 1 : 0;
    this.socket?.close();
    const why = this.killedOnStop ? 'workers had to be killed' : `safe exit from signal ${this.stopSignal?.slice(3) ?? 'TERM'}`;
    this.log(`dying: ${why}`, { type: 'dying', exitCode });
    // Last of all: while the file exists, something of ours may still be running.
    this.pidFile?.remove();
    this.removeSignalHandlers();
    this.resolveExit?.(exitCode);
  }

  private removeSignalHandlers(): void {
    for (const [sig, listener] of this.signalListeners) process.removeListener(sig, listener);
    this.signalListeners.clear();
  }

  /**
   * kill() that treats ESRCH as "already gone" (Gunicorn's kill_worker); any
   * other failure (EPERM: a worker that changed uid) is logged, never thrown
   * out of the loop.
   */
  private sendSignal(pid: number, signal: NodeJS.Signals): void {
    try {
      process.kill(pid, signal);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ESRCH') this.log(`cannot send ${signal} to ${pid}: ${code}`, { type: 'warning' });
    }
  }

  private log(message: string, event: ManagerLogEvent): void {
    const line = `FastCGI: manager (pid ${this.pid}): ${message}`;
    const notify = this.options.hooks?.notify;
    if (notify) notify(line, event);
    else process.stderr.write(`${line}\n`);
  }
}

function badOption(message: string): never {
  throw new PoolError('ERR_PM_BAD_OPTION', message);
}

/** Whether `program` is Node: this node's path, or a command named node/nodejs. */
function isNodeProgram(program: string): boolean {
  return program === process.execPath || /^node(js)?$/.test(basename(program));
}
