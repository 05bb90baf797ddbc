/**
 * Shared by the pool tests: start real managers (ours or the Perl original)
 * with their log captured line by line, make FastCGI requests with
 * cgi-fcgi, wait on events with bounded deadlines, and kill every process a
 * test started (by pid / process group, never by name).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitUntil } from '../helpers/wait.js';

/** Repository root (this file runs from dist/test/pool). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const MANAGE_MAIN = join(ROOT, 'dist/src/cli/manage-main.js');
export const PERL_FIXTURES = join(ROOT, 'test/fixtures/perl');
export const PERL_APP = join(PERL_FIXTURES, 'app.pl');
export const PERL_PM_APP = join(PERL_FIXTURES, 'pm_app.pl');

const STARTED = /server \(pid (\d+)\) started/;
const EXITED = /server \(pid (\d+)\) exited with status (\d+)/;

/** A short temp dir (Unix socket paths are limited to 107 bytes); removed by cleanup(). */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ghpm-'));
  tempDirs.push(dir);
  return dir;
}

export interface LogLine {
  /** Date.now() when the line arrived. */
  at: number;
  text: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** A process in its own process group whose stdout+stderr are kept as lines. */
export class LoggedProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; stdin?: number | 'ignore' } = {}) {
    this.child = spawn(command, args, {
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      detached: true,
    });
    tracked.add(this);
    for (const stream of [this.child.stdout, this.child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (text) => {
        this.lines.push({ at: Date.now(), text });
        this.wake();
      });
    }
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal, at: Date.now() };
        resolveExit(this.exitInfo);
        this.wake();
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('process did not start');
    return this.child.pid;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  text(): string {
    return this.lines.map((l) => l.text).join('\n');
  }

  /** Lines matching `re`, from line index `from` on. */
  matches(re: RegExp, from = 0): { index: number; line: LogLine; match: RegExpExecArray }[] {
    const out: { index: number; line: LogLine; match: RegExpExecArray }[] = [];
    this.lines.forEach((line, index) => {
      const match = index >= from ? re.exec(line.text) : null;
      if (match) out.push({ index, line, match });
    });
    return out;
  }

  /** Worker pids from the manager's "server (pid N) started" lines (ours and the original's). */
  startedPids(from = 0): number[] {
    return this.matches(STARTED, from).map((m) => Number(m.match[1]));
  }

  /**
   * Resolves once the manager's log says it started `pid` (bounded). A reply
   * from a worker may be handled before the log line that came earlier on
   * another pipe, on a loaded machine: wait for the line, do not just look.
   */
  async waitForStarted(pid: number | undefined, timeoutMs = 5000): Promise<void> {
    if (pid === undefined) throw new Error('no pid to look for');
    await this.waitUntilLog(() => this.startedPids().includes(pid), `server (pid ${pid}) started`, timeoutMs);
  }

  exitedPids(from = 0): number[] {
    return this.matches(EXITED, from).map((m) => Number(m.match[1]));
  }

  /** Waits until `count` lines from index `from` match `re`; rejects with the log on timeout or exit. */
  async waitFor(re: RegExp, options: { from?: number; count?: number; timeoutMs?: number } = {}) {
    const { from = 0, count = 1, timeoutMs = 5000 } = options;
    await this.waitUntilLog(() => this.matches(re, from).length >= count, `${count}× ${re}`, timeoutMs);
    const all = this.matches(re, from);
    return all[count - 1]!;
  }

  private waitUntilLog(done: () => boolean, what: string, timeoutMs: number): Promise<void> {
    return new Promise((resolveWait, reject) => {
      const check = (): void => {
        if (done()) {
          finish();
          resolveWait();
        } else if (this.exitInfo) {
          finish();
          reject(new Error(`process exited (${JSON.stringify(this.exitInfo)}) before ${what}; log:\n${this.text()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; log:\n${this.text()}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  private wake(): void {
    for (const l of [...this.listeners]) l();
  }
}

/** Our manager: `node dist/src/cli/manage-main.js ARGS`. */
export function startGatehouse(args: readonly string[], env: NodeJS.ProcessEnv = {}): LoggedProcess {
  return new LoggedProcess(process.execPath, [MANAGE_MAIN, ...args], { env: { ...process.env, ...env } });
}

/** The Perl original (FCGI::ProcManager) serving PoolTestApp on `socketPath`. */
export function startPerlOriginal(socketPath: string, env: NodeJS.ProcessEnv = {}): LoggedProcess {
  return new LoggedProcess('perl', [PERL_PM_APP, socketPath], { env: { ...process.env, ...env } });
}

export interface FcgiReply {
  code: number | null;
  stdout: string;
  stderr: string;
  /** pid= from the body (both the PHP and the Perl fixtures print it). */
  pid: number | undefined;
}

/** One request through `cgi-fcgi -bind -connect` (its environment becomes the FastCGI params). */
export function fcgiRequest(socketPath: string, params: Record<string, string> = {}, timeoutMs = 20_000): Promise<FcgiReply> {
  return new Promise((resolveReply, reject) => {
    const child = spawn('cgi-fcgi', ['-bind', '-connect', socketPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        REQUEST_METHOD: 'GET',
        SERVER_PROTOCOL: 'HTTP/1.0',
        SCRIPT_NAME: '/x',
        QUERY_STRING: '',
        REDIRECT_STATUS: '200',
        ...params,
      },
    });
    const pid = child.pid;
    if (pid !== undefined) clients.add(pid);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cgi-fcgi ${socketPath} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (pid !== undefined) clients.delete(pid);
      const m = /pid=(\d+)/.exec(stdout);
      resolveReply({ code, stdout, stderr, pid: m ? Number(m[1]) : undefined });
    });
  });
}

/** Retries a request until the socket answers (a worker is accepting), bounded. */
export async function waitForService(socketPath: string, params: Record<string, string> = {}, timeoutMs = 5000): Promise<FcgiReply> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await fcgiRequest(socketPath, params);
    if (reply.code === 0 && reply.pid !== undefined) return reply;
    if (Date.now() > deadline) throw new Error(`${socketPath} not serving: ${JSON.stringify(reply)}`);
    await tick(20);
  }
}


function tick(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** State letter from /proc/PID/stat, or undefined when the pid does not exist. */
export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** Gone = no such pid, or dead and waiting to be reaped by someone else (zombie). */
export function isGone(pid: number): boolean {
  const s = procState(pid);
  return s === undefined || s === 'Z' || s === 'X';
}

export function isAlive(pid: number): boolean {
  return !isGone(pid);
}

/** Blocked in accept()/accept4() (x86_64 syscall numbers 43/288), from /proc/PID/syscall. */
export function inAccept(pid: number): boolean {
  try {
    const nr = readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0];
    return nr === '43' || nr === '288';
  } catch {
    return false;
  }
}

/**
 * Waits until every pid sits in accept(). A worker that logged "ready" may not
 * be there yet, and a TERM landing in between is only noticed after its next
 * request (both libfcgi and FCGI::ProcManager check their flag after accept);
 * tests that mean "idle worker" must wait for this.
 */
export function waitAccepting(pids: readonly number[], timeoutMs = 5000): Promise<number> {
  return waitUntil(() => pids.every(inAccept), timeoutMs, `workers ${pids.join(' ')} blocked in accept()`);
}

/** Parent pid from /proc, or undefined. */
export function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

const tracked = new Set<LoggedProcess>();
const clients = new Set<number>();
const tempDirs: string[] = [];

/**
 * Kills what the tests started: each tracked process's group, every worker
 * pid its log announced (our workers lead their own groups), and stray
 * cgi-fcgi clients. Call from after().
 */
export function cleanup(): void {
  for (const p of tracked) {
    const pids = p.startedPids();
    if (p.child.pid !== undefined) {
      killQuietly(-p.child.pid);
      killQuietly(p.child.pid);
    }
    for (const pid of pids) {
      if (isGone(pid)) continue;
      killQuietly(-pid);
      killQuietly(pid);
    }
  }
  tracked.clear();
  for (const pid of clients) killQuietly(pid);
  clients.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
