/**
 * @module bench/lib/procs
 * Processes a bench starts: each in its own process group, its stdout and
 * stderr kept as timestamped lines, an `exited` promise set up at spawn (no
 * race with a fast exit), and a bounded stop that escalates to SIGKILL of the
 * group. Everything started here, plus pids registered with `adoptPid` (for
 * processes that are not our children, e.g. spawn-fcgi's re-parented
 * workers), is SIGKILLed when the bench process exits for any reason.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when Node saw the exit. */
  at: number;
}

export interface Line {
  at: number;
  text: string;
}

const liveGroups = new Set<BenchProcess>();
/** pid → a check that it is still ours (not a reused pid) before it is killed. */
const adopted = new Map<number, () => boolean>();

function kill(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs everything still known. Safe to call more than once. */
export function killEverything(): void {
  for (const p of liveGroups) p.killGroup('SIGKILL');
  for (const [pid, stillOurs] of adopted) if (stillOurs()) kill(pid, 'SIGKILL');
  adopted.clear();
}

process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killEverything();
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[sig]);
  });
}

/** Remembers a pid that is not our child so it is killed on exit (until `releasePid`), if `stillOurs()` then. */
export function adoptPid(pid: number, stillOurs: () => boolean = () => true): void {
  if (!adopted.has(pid)) adopted.set(pid, stillOurs);
}

export function releasePid(pid: number): void {
  adopted.delete(pid);
}

export class BenchProcess {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  readonly exited: Promise<Exit>;
  /** performance.now() just before spawn(). */
  readonly startedAt: number;
  private exitInfo: Exit | undefined;

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    options: Omit<SpawnOptions, 'detached' | 'stdio'> = {},
  ) {
    this.startedAt = performance.now();
    this.child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    liveGroups.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal, at: performance.now() };
        liveGroups.delete(this);
        resolve(this.exitInfo);
      });
      this.child.once('error', () => {
        // spawn failure (ENOENT…): no 'exit' follows
        if (this.exitInfo) return;
        this.exitInfo = { code: 127, signal: null, at: performance.now() };
        liveGroups.delete(this);
        resolve(this.exitInfo);
      });
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (text) => this.lines.push({ at: performance.now(), text }));
    }
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.command} did not start`);
    return this.child.pid;
  }

  get exit(): Exit | undefined {
    return this.exitInfo;
  }

  text(from = 0): string {
    return this.lines
      .slice(from)
      .map((l) => l.text)
      .join('\n');
  }

  count(re: RegExp, from = 0): number {
    return this.lines.slice(from).filter((l) => re.test(l.text)).length;
  }

  /** Signals the whole process group (and the leader, in case it left it). */
  killGroup(signal: NodeJS.Signals): void {
    if (this.exitInfo || this.child.pid === undefined) return;
    kill(-this.child.pid, signal);
    kill(this.child.pid, signal);
  }

  /** Resolves with the exit, or undefined after timeoutMs. */
  async waitExit(timeoutMs: number): Promise<Exit | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** `signal` to the leader only, wait up to graceMs, then SIGKILL the group; bounded. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<Exit | undefined> {
    if (this.exitInfo) return this.exitInfo;
    if (this.child.pid !== undefined) kill(this.child.pid, signal);
    const exit = await this.waitExit(graceMs);
    if (exit) return exit;
    this.killGroup('SIGKILL');
    return this.waitExit(5000);
  }
}
