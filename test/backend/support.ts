/**
 * Shared pieces of the backend tests: the fixture apps, a log that records
 * when each line arrived, and cleanup of backends and of the detached
 * programs launching/mixed mode leave behind (killed by pid, never by name).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend, type GatehouseBackend } from '../../src/backend/create-backend.js';
import type { BackendAddress, BackendOptions, BackendProtocol, BackendResponse } from '../../src/backend/contract.js';
import { fixture, tmpDir, waitForPidGone } from '../helpers/peers.js';
import { readAll } from '../helpers/wait.js';

/** The fixture application speaking `protocol` (plain .mjs, run by this node). */
export function appProgram(protocol: BackendProtocol): string[] {
  return [process.execPath, fixture('backend', protocol === 'scgi' ? 'scgi-app.mjs' : 'fastcgi-app.mjs')];
}

export interface LogLine {
  at: number;
  line: string;
}

export function recordingLog(): { log: (line: string) => void; lines: LogLine[]; text: () => string } {
  const lines: LogLine[] = [];
  return {
    log: (line: string) => {
      lines.push({ at: Date.now(), line });
      if (process.env.GH_TEST_VERBOSE) process.stderr.write(`[backend] ${line}\n`);
    },
    lines,
    text: () => lines.map((l) => l.line).join('\n'),
  };
}


export interface AppAnswer {
  status: number;
  statusText: string;
  header: (name: string) => string | undefined;
  json: { pid: number; start: number; params: Array<[string, string]>; order: string[]; body: string };
  raw: BackendResponse;
}

/** A GET (or a POST with `body`) to the fixture app; `query` drives its knobs. */
export async function ask(
  backend: GatehouseBackend,
  query = '',
  opts: { body?: string; signal?: AbortSignal; extra?: Array<[string, string]> } = {},
): Promise<AppAnswer> {
  const body = opts.body !== undefined ? Buffer.from(opts.body) : null;
  const { Readable } = await import('node:stream');
  const raw = await backend.dispatch({
    params: [
      ['REQUEST_METHOD', body ? 'POST' : 'GET'],
      ['QUERY_STRING', query],
      ['REQUEST_URI', `/test?${query}`],
      ...(opts.extra ?? []),
      ...(body ? ([['CONTENT_LENGTH', String(body.length)]] as Array<[string, string]>) : []),
    ],
    body: body ? Readable.from([body]) : null,
    contentLength: body?.length ?? 0,
    ...(opts.signal && { signal: opts.signal }),
  });
  const text = (await readAll(raw.body)).toString('latin1');
  const header = (name: string): string | undefined => raw.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
  return { status: raw.status, statusText: raw.statusText, header, json: text.startsWith('{') ? JSON.parse(text) : { body: text }, raw };
}

/** Backends made through here are closed after the test, whatever happened. */
export class Cleanup {
  readonly #backends: GatehouseBackend[] = [];
  readonly #pids = new Set<number>();
  readonly #stateDirs: string[] = [];

  /**
   * A FIXTURE_STATE_DIR whose recorded pids are killed at the end, so a
   * launched program is cleaned up even when the test failed before it
   * learned the pid.
   */
  stateDir(): string {
    const dir = tmpDir('gh-state-');
    this.#stateDirs.push(dir);
    return dir;
  }

  backend(options: BackendOptions): GatehouseBackend {
    const b = createBackend(options);
    this.#backends.push(b);
    return b;
  }

  /**
   * The fixture app (appProgram) started at `address` when nothing answers
   * there: launching mode, its pids recorded in `stateDir` (a fresh one by
   * default) so it is killed at the end even if the test never learnt them.
   */
  launching(protocol: BackendProtocol, address: BackendAddress, log: (line: string) => void, stateDir = this.stateDir()): GatehouseBackend {
    return this.backend({ protocol, address, program: appProgram(protocol), env: { ...process.env, FIXTURE_STATE_DIR: stateDir }, log });
  }

  /** An anonymous FastCGI fixture app that closes a kept connection when it is reused (the safe-retry cases). */
  closingOnReuse(log: (line: string) => void): GatehouseBackend {
    return this.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), env: { ...process.env, FIXTURE_CLOSE_ON_REUSE: '1' }, log });
  }

  /** A detached program (launching/mixed mode) to SIGKILL at the end. */
  pid(pid: number | undefined): void {
    if (pid !== undefined) this.#pids.add(pid);
  }

  /** The pids a fixture recorded in FIXTURE_STATE_DIR/pids. */
  pidsFrom(stateDir: string): number[] {
    try {
      const pids = readFileSync(join(stateDir, 'pids'), 'utf8').split('\n').filter(Boolean).map(Number);
      for (const p of pids) this.#pids.add(p);
      return pids;
    } catch {
      return [];
    }
  }

  async run(): Promise<void> {
    for (const b of this.#backends.splice(0)) {
      await Promise.race([b.close(), new Promise((r) => setTimeout(r, 8000).unref())]);
    }
    for (const dir of this.#stateDirs.splice(0)) this.pidsFrom(dir);
    for (const pid of this.#pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        continue;
      }
      await waitForPidGone(pid, 5000).catch(() => {});
    }
    this.#pids.clear();
  }
}

/**
 * Waits until the child a backend started is reaped (the whole process,
 * every thread: a zombie thread-group leader may still hold its sockets).
 */
export async function childReaped(backend: GatehouseBackend): Promise<void> {
  const child = (backend.connector as { child?: { waitExit(ms: number): Promise<unknown> } }).child;
  if (!child) throw new Error('the backend has no child');
  if ((await child.waitExit(10000)) === undefined) throw new Error('the child was not reaped within 10 s');
}

/** True while `pid` runs (a zombie counts as gone). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

