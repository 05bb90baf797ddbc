/**
 * The signal contract with a Perl FCGI worker (test/fixtures/perl/app.pl):
 * HUP replaces workers under the same manager; TERM drains busy requests
 * and exits 0; die-timeout expiry kills, reaps and exits 1; a second TERM
 * hurries; HUP during shutdown is ignored; crash loops back off; the pid
 * file goes last; the manager's SIGKILL takes the workers with it.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cleanup, fcgiRequest, isAlive, isGone, PERL_APP, procState, startGatehouse, tempDir, waitAccepting, waitForService, type LoggedProcess } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

const STARTED = /server \(pid (\d+)\) started/;

async function perlPool(n: number, extra: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const dir = tempDir();
  const sock = join(dir, 'app.sock');
  const pidFile = join(dir, 'pm.pid');
  const pm = startGatehouse(['-n', String(n), '-s', sock, '--pidfile', pidFile, ...extra, '--', 'perl', PERL_APP], env);
  await pm.waitFor(/app \(pid \d+\): ready/, { count: n });
  // The manager's "started" and the worker's "ready" lines can come in either order.
  await pm.waitFor(/server \(pid \d+\) started/, { count: n });
  const workers = pm.startedPids();
  await waitAccepting(workers);
  return { pm, sock, pidFile, workers };
}

/** Starts a busy request and resolves once the worker logged that it is running it. */
async function busyRequest(pm: LoggedProcess, sock: string, seconds: number) {
  const from = pm.lines.length;
  const reply = fcgiRequest(sock, { QUERY_STRING: `busy=${seconds}` });
  const { match } = await pm.waitFor(new RegExp(`app \\(pid (\\d+)\\): request n=\\d+ busy=${seconds}`), { from });
  return { reply, pid: Number(match[1]) };
}

describe('signals (gatehouse manage -- perl app.pl)', () => {
  after(cleanup);

  it('HUP: same manager and pid file, new workers, the busy request completes', async () => {
    const { pm, sock, pidFile, workers } = await perlPool(2);
    const busy = await busyRequest(pm, sock, 1.5);
    const mark = pm.lines.length;
    process.kill(pm.pid, 'SIGHUP');
    await pm.waitFor(STARTED, { from: mark, count: 2 });
    const fresh = pm.startedPids(mark);
    assert.equal(fresh.filter((p) => workers.includes(p)).length, 0);

    const idle = workers.find((p) => p !== busy.pid) ?? -1;
    await waitUntil(() => isGone(idle), 2000, 'the idle old worker exits at once');
    assert.ok(isAlive(busy.pid), 'the busy old worker is still finishing');
    const reply = await busy.reply;
    assert.equal(reply.code, 0);
    assert.match(reply.stdout, new RegExp(`pid=${busy.pid} n=1 took=1\\.[5-9]`));
    await waitUntil(() => isGone(busy.pid), 2000, 'the busy old worker exits after its reply');

    const after = await fcgiRequest(sock);
    assert.ok(fresh.includes(after.pid ?? -1), 'new requests go to new workers');
    assert.ok(isAlive(pm.pid));
    assert.equal(readFileSync(pidFile, 'utf8'), `${pm.pid}\n`);
    await waitAccepting(fresh);
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });

  it('TERM on an idle pool: exit 0 at once, workers reaped, socket and pid file gone', async () => {
    const { pm, sock, pidFile, workers } = await perlPool(3);
    const t0 = Date.now();
    process.kill(pm.pid, 'SIGTERM');
    const exit = await pm.exited;
    assert.equal(exit.code, 0);
    assert.ok(exit.at - t0 < 1500, `exit after ${exit.at - t0} ms`);
    for (const pid of workers) assert.equal(procState(pid), undefined, `worker ${pid} reaped, not a zombie`);
    assert.equal(existsSync(sock), false);
    assert.equal(existsSync(pidFile), false);
    assert.match(pm.text(), /dying: safe exit from signal TERM$/);
  });

  it('TERM with a busy request: it completes, the pid file stays until the last worker is gone, exit 0', async () => {
    const { pm, sock, pidFile } = await perlPool(2);
    const busy = await busyRequest(pm, sock, 1);
    process.kill(pm.pid, 'SIGTERM');
    await pm.waitFor(/sending TERM to PIDs/);
    assert.ok(existsSync(pidFile), 'pid file kept while a worker runs (the original removes it first)');
    const reply = await busy.reply;
    assert.equal(reply.code, 0);
    assert.match(reply.stdout, /took=1\.\d\d/);
    assert.equal((await pm.exited).code, 0);
    assert.equal(existsSync(pidFile), false);
  });

  it('HUP during shutdown is ignored', async () => {
    const { pm, sock } = await perlPool(1);
    const busy = await busyRequest(pm, sock, 1);
    process.kill(pm.pid, 'SIGTERM');
    await pm.waitFor(/sending TERM to PIDs/);
    process.kill(pm.pid, 'SIGHUP');
    await pm.waitFor(/received signal HUP during shutdown: ignored/);
    assert.equal((await busy.reply).code, 0);
    assert.equal((await pm.exited).code, 0);
    assert.equal(pm.startedPids().length, 1, 'nothing was spawned after TERM');
  });

  it('die-timeout expiry: a worker ignoring TERM is SIGKILLed and reaped, exit 1', async () => {
    const { pm, workers } = await perlPool(2, ['--die-timeout', '1'], { IGNORE_TERM: '1' });
    const t0 = Date.now();
    process.kill(pm.pid, 'SIGTERM');
    const exit = await pm.exited;
    assert.equal(exit.code, 1);
    const took = exit.at - t0;
    assert.ok(took >= 950 && took < 2500, `exit after ${took} ms`);
    assert.match(pm.text(), /wait timeout: sending KILL to PIDs/);
    for (const pid of workers) assert.equal(procState(pid), undefined, `worker ${pid} killed and reaped`);
  });

  it('a second TERM during shutdown kills the rest at once, exit 1', async () => {
    const { pm, workers } = await perlPool(2, ['--die-timeout', '30'], { IGNORE_TERM: '1' });
    process.kill(pm.pid, 'SIGTERM');
    await pm.waitFor(/sending TERM to PIDs/);
    const t0 = Date.now();
    process.kill(pm.pid, 'SIGINT');
    const exit = await pm.exited;
    assert.equal(exit.code, 1);
    assert.ok(exit.at - t0 < 1500, `hurried exit took ${exit.at - t0} ms`);
    assert.match(pm.text(), /received signal INT again: hurrying/);
    for (const pid of workers) assert.equal(procState(pid), undefined);
  });

  it('HUP and TERM back to back: each handled exactly once, nothing spawned after TERM, exit 0', async () => {
    // Two different signals from another process have no delivery order (Node's threads may
    // take them in either order), so only "never lost, never twice" is asserted.
    const { pm } = await perlPool(2);
    process.kill(pm.pid, 'SIGHUP');
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
    const text = pm.text();
    assert.equal(pm.matches(/received signal HUP/).length, 1, text);
    assert.equal(pm.matches(/received signal TERM/).length, 1, text);
    const term = pm.matches(/received signal TERM/)[0]?.index ?? 0;
    assert.equal(pm.startedPids(term).length, 0, `nothing spawned after TERM:\n${text}`);
  });

  it('USR1 is ignored (as by the original), not Node\'s inspector trigger', async () => {
    const { pm, sock, workers } = await perlPool(1);
    process.kill(pm.pid, 'SIGUSR1');
    await pm.waitFor(/received signal USR1: ignored/);
    const reply = await fcgiRequest(sock);
    assert.equal(reply.pid, workers[0]);
    assert.doesNotMatch(pm.text(), /Debugger listening/);
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });

  it('a worker recycling itself with status 0 under 1 s is replaced at once, without backoff (php-cgi max requests)', async () => {
    const dir = tempDir();
    const pm = startGatehouse(['-n', '1', '-s', join(dir, 'r.sock'), '--', 'sh', '-c', 'sleep 0.1; exit 0']);
    await pm.waitFor(STARTED, { count: 8, timeoutMs: 10_000 });
    assert.doesNotMatch(pm.text(), /respawning too fast/);
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });

  it('a program exiting 0 at once in a loop still ends up throttled (no respawn storm)', async () => {
    const dir = tempDir();
    const pm = startGatehouse(['-n', '1', '-s', join(dir, 'z.sock'), '--', 'sh', '-c', 'exit 0']);
    await pm.waitFor(/respawning too fast: waiting/, { timeoutMs: 10_000 });
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });

  it('a worker crashing at start: spawn gaps grow, the manager stays up and answers TERM', async () => {
    const dir = tempDir();
    const pm = startGatehouse(['-n', '1', '-s', join(dir, 'c.sock'), '--', 'sh', '-c', 'exit 3']);
    await pm.waitFor(STARTED, { count: 7, timeoutMs: 10_000 });
    const starts = pm.matches(STARTED).map((m) => m.line.at);
    const gaps = starts.slice(1).map((t, i) => t - (starts[i] ?? t));
    // 0, 100, 200, 400, 800, 1600 ms nominal: each later gap clearly longer than the one before.
    for (let i = 2; i < gaps.length; i++) {
      assert.ok((gaps[i] ?? 0) > 1.5 * (gaps[i - 1] ?? 0), `gaps ${gaps} grow`);
    }
    assert.ok((gaps.at(-1) ?? 0) >= 1400, `gaps ${gaps}`);
    assert.match(pm.text(), /exited with status 768 \(exit code 3, uptime/);
    assert.match(pm.text(), /respawning too fast: waiting 1\.6 s \(6 quick exits in a row\)/);
    assert.ok(isAlive(pm.pid));
    const t0 = Date.now();
    process.kill(pm.pid, 'SIGTERM');
    const exit = await pm.exited;
    assert.equal(exit.code, 0);
    assert.ok(exit.at - t0 < 1000);
  });

  it('kill -9 of the manager: every Perl worker is gone within 1 s', async () => {
    const { pm, sock, workers } = await perlPool(3);
    await waitForService(sock);
    process.kill(pm.pid, 'SIGKILL');
    await waitUntil(() => workers.every(isGone), 1000, `workers ${workers} gone`);
  });
});
