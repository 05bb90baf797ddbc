/**
 * @module bench/lib/procfs
 * Linux /proc readers for the pool benches: a process's parent, state and
 * syscall, whether it is blocked in accept(), its memory, and a watcher that
 * follows a process's descendants (so workers stay known after they are
 * re-parented, as spawn-fcgi's are when it exits).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** x86_64 syscall numbers; /proc/PID/syscall starts with the number of the blocking call. */
export const SYS_ACCEPT = 43;
export const SYS_ACCEPT4 = 288;

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function readStat(pid: number): ProcStat | undefined {
  const text = readOrUndefined(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const rest = text.slice(close + 2).split(' ');
  return { pid, comm, state: rest[0] ?? '?', ppid: Number(rest[1]), pgid: Number(rest[2]) };
}

/** True while the process is alive and not a zombie. */
export function isAlive(pid: number): boolean {
  const st = readStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

/** The syscall the process is blocked in, or undefined (running, gone, or not readable). */
export function blockedSyscall(pid: number): number | undefined {
  const text = readOrUndefined(`/proc/${pid}/syscall`);
  if (text === undefined) return undefined;
  const first = text.split(' ', 1)[0] ?? '';
  return /^\d+$/.test(first) ? Number(first) : undefined;
}

export function inAccept(pid: number): boolean {
  const nr = blockedSyscall(pid);
  return nr === SYS_ACCEPT || nr === SYS_ACCEPT4;
}

/** VmRSS and VmHWM (peak) in kB. */
export function memoryKb(pid: number): { rssKb: number; hwmKb: number } {
  const text = readOrUndefined(`/proc/${pid}/status`) ?? '';
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

export function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * Follows the descendants of `root`: a pid joins the family when first seen
 * with a parent in the family, or (when `marker` is given) with `marker` in
 * its environment — for workers that are re-parented before we see them, as
 * spawn-fcgi's are: it forks its children back to back and exits. A member
 * stays one after re-parenting. Pids seen once outside the family are not
 * read again (children get higher pids than their parent unless the pid
 * space wraps, which a bench can ignore).
 */
export class Family {
  readonly members = new Set<number>();
  private readonly strangers = new Set<number>();

  constructor(
    readonly root: number,
    readonly marker?: string,
  ) {
    this.members.add(root);
  }

  refresh(): void {
    for (const pid of allPids()) {
      if (this.members.has(pid) || this.strangers.has(pid)) continue;
      const st = readStat(pid);
      if (st === undefined) continue;
      if (this.members.has(st.ppid) || this.hasMarker(pid)) this.members.add(pid);
      else this.strangers.add(pid);
    }
  }

  /** True if `pid` is alive and carries the marker (a pid reused by a stranger does not). */
  hasMarker(pid: number): boolean {
    if (this.marker === undefined) return false;
    const environ = readOrUndefined(`/proc/${pid}/environ`);
    return environ !== undefined && environ.split('\0').includes(this.marker);
  }

  /** Live descendants (not the root). */
  descendants(): number[] {
    return [...this.members].filter((pid) => pid !== this.root && isAlive(pid));
  }

  /** Descendants blocked in accept()/accept4(). */
  accepting(): number[] {
    return [...this.members].filter((pid) => pid !== this.root && inAccept(pid));
  }
}

/**
 * Polls (every ~1 ms) until `n` distinct descendants of `root` are blocked in
 * accept. Returns the milliseconds since `t0` (a performance.now() value) and
 * their pids; throws after `timeoutMs` or when `abort()` returns a reason.
 */
export async function waitAccepting(
  family: Family,
  n: number,
  t0: number,
  timeoutMs: number,
  abort?: () => string | undefined,
): Promise<{ ms: number; pids: number[] }> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    family.refresh();
    const pids = family.accepting();
    if (pids.length >= n) return { ms: performance.now() - t0, pids };
    const why = abort?.();
    if (why !== undefined) throw new Error(`waiting for ${n} workers in accept(): ${why}`);
    if (performance.now() > deadline) {
      const seen = family
        .descendants()
        .map((pid) => `${pid}:${readStat(pid)?.comm ?? '?'}/${readStat(pid)?.state ?? '?'}/syscall ${blockedSyscall(pid) ?? 'running'}`);
      throw new Error(`only ${pids.length} of ${n} workers of pid ${family.root} in accept() after ${timeoutMs} ms; live descendants: ${seen.join(' ') || 'none'}`);
    }
    await sleep(1);
  }
}

/** Polls until every pid is gone (or a zombie); returns false on timeout. */
export async function waitGone(pids: readonly number[], timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (pids.some(isAlive)) {
    if (performance.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

/** Clock ticks per second for /proc's utime/stime: 100 on every Linux build we run on. */
const TICK_MS = 10;

/** CPU time (user + system, ms) used so far by the live processes of process group `pgid`. */
export function groupCpuMs(pgid: number): number {
  let ticks = 0;
  for (const pid of allPids()) {
    const text = readOrUndefined(`/proc/${pid}/stat`);
    if (text === undefined) continue;
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[2]) !== pgid) continue;
    ticks += Number(rest[11]) + Number(rest[12]);
  }
  return ticks * TICK_MS;
}

/** Busy and total CPU time of the whole machine so far (ms, all CPUs), from /proc/stat. */
export function machineCpuMs(): { busy: number; total: number } {
  const line = (readOrUndefined('/proc/stat') ?? '').split('\n', 1)[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS };
}
