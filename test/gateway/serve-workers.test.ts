/**
 * `gatehouse serve --workers N`: N gateway processes on one HTTP listening
 * socket in front of one application the primary runs. Real processes:
 * which worker answered is read from each worker's own status page (its
 * pid), the application's pid from hello's answer. SIGTERM drains, kill -9
 * of the primary takes the workers along, bad values are usage errors.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseServeArgs, splitMaxConns } from '../../src/cli/serve.js';
import { echoAcrossSignal, output, serve } from './serve-process.js';
import { fixture, freePort, httpRequest, stopProcess, waitForExit, waitForPidGone } from '../helpers/peers.js';
import { waitUntil } from '../helpers/wait.js';

const STATUS = '/gatehouse-status';

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/**
 * The path of the listening Unix socket a process holds, from /proc/net/unix
 * (state 01 = listening). Not necessarily on fd 0: our app runtime moves it
 * off fd 0 (so Node's exit does not reset its O_NONBLOCK).
 */
function listeningPathOf(pid: number): string | undefined {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      } catch {
        return undefined;
      }
    }),
  );
  const line = readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[5] === '01' && inodes.has(f[6]) && f[7] !== undefined);
  return line?.[7];
}

/** The pids of the two workers the primary's log says it started. */
async function workerPids(o: ReturnType<typeof output>): Promise<number[]> {
  const m = await o.waitFor(/workers: server \(pid (\d+)\) started[\s\S]*workers: server \(pid (\d+)\) started/);
  return [Number(m[1]), Number(m[2])];
}

/**
 * Each worker's status page. Which worker accepts a connection is the
 * kernel's choice (an idle one may win every time), so each is asked with
 * the others stopped (SIGSTOP): the only process left to accept is the one
 * asked. The others are continued before returning, whatever happens.
 */
async function pagesOfEach(url: string, pids: readonly number[]): Promise<Map<number, Record<string, unknown>>> {
  const pages = new Map<number, Record<string, unknown>>();
  for (const pid of pids) {
    const others = pids.filter((p) => p !== pid);
    for (const o of others) process.kill(o, 'SIGSTOP');
    try {
      const a = await httpRequest(`${url}${STATUS}?json`, { timeoutMs: 5000 });
      const page = JSON.parse(a.body.toString()) as Record<string, unknown>;
      assert.equal(page.pid, pid, 'the one worker left running answers');
      pages.set(pid, page);
    } finally {
      for (const o of others) process.kill(o, 'SIGCONT');
    }
  }
  return pages;
}

/** Until some worker's status page shows a request at the application (bounded: 5 s). */
async function requestAtTheApplication(url: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const answers = await Promise.all(Array.from({ length: 4 }, () => httpRequest(`${url}${STATUS}?json`)));
    const busy = answers.some((a) => (JSON.parse(a.body.toString()).backend as Record<string, number>)['requests in flight']! > 0);
    if (busy) return;
    if (Date.now() > deadline) throw new Error('no worker reports a request in flight within 5000 ms');
  }
}

describe('gatehouse serve --workers: flags', () => {
  it('rejects a worker count below 1 or not a number, and fewer --max-conns than workers', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--workers', '0', 'app'], /--workers needs an integer ≥ 1, not '0'/],
      [['--workers', 'x', 'app'], /--workers needs an integer ≥ 1, not 'x'/],
      [['--max-conns', '1', '--workers', '2', 'app'], /--max-conns 1 is less than --workers 2/],
      [['--root', '/srv', '--workers', '2'], /--root runs php-cgi with -n 1, fewer processes than --workers 2/],
    ];
    for (const [argv, message] of bad) {
      const p = parseServeArgs(argv);
      assert.equal(p.kind, 'error', argv.join(' '));
      if (p.kind === 'error') assert.match(p.message, message);
    }
    const ok = parseServeArgs(['--workers', '2', '--root', '/srv', '-n', '2']);
    assert.equal(ok.kind === 'run' && ok.options.workers, 2);
  });

  it('splits --max-conns: the floor each, the remainder to the first workers', () => {
    assert.deepEqual(splitMaxConns(4, 2), [2, 2]);
    assert.deepEqual(splitMaxConns(5, 3), [2, 2, 1]);
    assert.deepEqual(splitMaxConns(2, 2), [1, 1]);
  });
});

describe('gatehouse serve --workers (CLI)', () => {
  const children: ChildProcess[] = [];
  const track = (c: ChildProcess): ChildProcess => (children.push(c), c);
  after(async () => {
    for (const c of children) await stopProcess(c);
  });

  it('bad values: one line plus usage on stderr, exit 2', async () => {
    for (const [argv, message] of [
      [['--workers', '0', 'app'], /^gatehouse serve: --workers needs an integer ≥ 1, not '0'\nusage: gatehouse serve /],
      [['--max-conns', '1', '--workers', '2', 'app'], /^gatehouse serve: --max-conns 1 is less than --workers 2: .*\nusage: gatehouse serve /],
    ] as const) {
      const c = track(serve([...argv]));
      const o = output(c);
      assert.equal((await waitForExit(c)).code, 2);
      assert.match(o.stderr(), message);
    }
  });

  it('-h documents --workers', async () => {
    const c = track(serve(['-h']));
    const o = output(c);
    assert.equal((await waitForExit(c)).code, 0);
    assert.match(o.stdout(), /--workers N +run the gateway as N processes/);
  });

  it('two workers serve one anonymous application; --max-conns is split; SIGTERM drains, then nothing survives', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', String(port), '--workers', '2', '--max-conns', '3', '--status-path', STATUS, '--', 'node', 'dist/examples/hello.js']));
    const o = output(c);
    const workers = await workerPids(o);
    await o.waitFor(new RegExp(`^gatehouse: listening on http://127\\.0\\.0\\.1:${port}/ \\(fastcgi, anonymous: node dist/examples/hello\\.js, 2 workers\\)$`, 'm'));
    const url = `http://127.0.0.1:${port}`;

    const pages = await pagesOfEach(url, workers);
    const backends = [...pages.values()].map((p) => p.backend as Record<string, unknown>);
    assert.deepEqual(backends.map((b) => b.mode), ['client', 'client']);
    assert.deepEqual(backends.map((b) => b['max conns']).sort(), [1, 2]);
    for (const pid of workers) assert.equal(parentOf(pid), c.pid, 'a worker is the primary\'s child');

    // Whichever worker answers, one application serves: the primary's child.
    const hellos = await Promise.all(Array.from({ length: 8 }, () => httpRequest(`${url}/`)));
    const appPids = new Set(hellos.map((h) => Number(/\(pid (\d+)\)/.exec(h.body.toString())?.[1])));
    assert.equal(appPids.size, 1);
    const [appPid] = appPids as Set<number> & [number];
    assert.ok(!workers.includes(appPid!));
    assert.equal(parentOf(appPid!), c.pid);

    const exited = waitForExit(c, 20_000);
    assert.equal(await echoAcrossSignal(url, c, 'SIGTERM'), 'helloworld');
    assert.equal((await exited).code, 0);
    for (const pid of [...workers, appPid!]) await waitForPidGone(pid, 5000);
  });

  /** `serve --workers 2 [args]` in front of the hello example, with a 1.5 s request at the application. */
  async function withSlowRequest(args: string[] = []) {
    const port = await freePort();
    const c = track(serve(['--listen', String(port), '--workers', '2', ...args, '--status-path', STATUS, '--', 'node', 'dist/examples/hello.js']));
    const o = output(c);
    const workers = await workerPids(o);
    await o.waitFor(/listening on /);
    const url = `http://127.0.0.1:${port}`;
    const app = Number(/\(pid (\d+)\)/.exec((await httpRequest(`${url}/`)).body.toString())?.[1]);
    const slow = httpRequest(`${url}/slow?ms=1500`);
    await requestAtTheApplication(url);
    return { c, o, workers, url, app, slow };
  }

  it('a slow request in flight at SIGTERM completes with 200', async () => {
    const { c, workers, app, slow } = await withSlowRequest();
    const exited = waitForExit(c, 20_000);
    c.kill('SIGTERM');
    const answer = await slow;
    assert.equal(answer.status, 200);
    assert.match(answer.body.toString(), /^slept 1500 ms/);
    assert.equal((await exited).code, 0);
    for (const pid of [...workers, app]) await waitForPidGone(pid, 5000);
  });

  it('SIGHUP replaces the workers: a request in flight completes, the new ones take the old ones\' --max-conns shares, the application stays', async () => {
    const { c, o, workers: old, url, app, slow } = await withSlowRequest(['--max-conns', '3']);
    const logged = o.stderr().length;
    c.kill('SIGHUP');
    await o.waitFor(/SIGHUP: replacing the workers/);
    let fresh: number[] = [];
    await waitUntil(
      () => {
        fresh = [...o.stderr().slice(logged).matchAll(/workers: server \(pid (\d+)\) started/g)].map((m) => Number(m[1]));
        return fresh.length >= 2;
      },
      10_000,
      'two new workers started',
    );
    assert.equal(fresh.filter((p) => old.includes(p)).length, 0);
    const answer = await slow;
    assert.equal(answer.status, 200, 'the request in flight at HUP completed');
    for (const pid of old) await waitForPidGone(pid, 10_000);
    const pages = await pagesOfEach(url, fresh);
    assert.deepEqual([...pages.values()].map((p) => (p.backend as Record<string, unknown>)['max conns']).sort(), [1, 2]);
    assert.equal(Number(/\(pid (\d+)\)/.exec((await httpRequest(`${url}/`)).body.toString())?.[1]), app, 'the same application serves');
    assert.equal(c.exitCode, null);
    const exited = waitForExit(c, 20_000);
    c.kill('SIGTERM');
    assert.equal((await exited).code, 0);
  });

  it('kill -9 of the primary takes the workers and the application along', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', String(port), '--workers', '2', '--', 'node', 'dist/examples/hello.js']));
    const o = output(c);
    const workers = await workerPids(o);
    await o.waitFor(/listening on /);
    const app = Number(/\(pid (\d+)\)/.exec((await httpRequest(`http://127.0.0.1:${port}/`)).body.toString())?.[1]);
    // A SIGKILLed primary cannot remove its private socket directory: the test does.
    const socketPath = listeningPathOf(app);
    assert.match(socketPath ?? '', /\/gatehouse-anon-[^/]+\/[^/]+$/);
    const exited = waitForExit(c, 5000);
    process.kill(c.pid!, 'SIGKILL');
    await exited;
    for (const pid of [...workers, app]) await waitForPidGone(pid, 5000);
    rmSync(dirname(socketPath!), { recursive: true, force: true });
  });

  it('--root with php-cgi: two workers in front of php-cgi -n 2', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', String(port), '--workers', '2', '--root', fixture('php-app'), '-n', '2', '--status-path', STATUS]));
    const o = output(c);
    const workers = await workerPids(o);
    await o.waitFor(/listening on .* \(fastcgi, anonymous: php-cgi, 2 workers\)/);
    const url = `http://127.0.0.1:${port}`;
    const r = await httpRequest(`${url}/hello/workers`);
    assert.equal(r.body.toString(), 'Hello, workers!\n');
    const pages = await pagesOfEach(url, workers);
    assert.deepEqual([...pages.values()].map((p) => (p.backend as Record<string, unknown>)['max conns']), [1, 1]);
    const exited = waitForExit(c, 20_000);
    c.kill('SIGINT');
    assert.equal((await exited).code, 0);
    for (const pid of workers) await waitForPidGone(pid, 5000);
  });
});
