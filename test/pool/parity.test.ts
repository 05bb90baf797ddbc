/**
 * Side by side with the Perl original: the same scenarios run against
 * FCGI::ProcManager (test/fixtures/perl/pm_app.pl, which forks workers
 * itself) and against `gatehouse manage -- perl app.pl`, both serving the
 * same PoolTestApp and logging in the same format. Where we deliberately
 * differ (the pid file during shutdown, reaping), each flavour states its
 * own expectation.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cleanup, fcgiRequest, isAlive, isGone, PERL_APP, startGatehouse, startPerlOriginal, tempDir, waitAccepting, type LoggedProcess } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

interface PoolOptions {
  n: number;
  dieTimeout: number;
  ignoreTerm?: boolean;
}

interface Flavor {
  name: string;
  start(sock: string, pidFile: string, o: PoolOptions): LoggedProcess;
  /** The original unlinks its pid file when shutdown starts; we keep it until the last worker is gone. */
  pidFileKeptDuringShutdown: boolean;
}

const flavors: Flavor[] = [
  {
    name: 'FCGI::ProcManager 0.28 (the Perl original)',
    start: (sock, pidFile, o) =>
      startPerlOriginal(sock, {
        NPROC: String(o.n),
        DIE_TIMEOUT: String(o.dieTimeout),
        PIDF: pidFile,
        ...(o.ignoreTerm ? { IGNORE_TERM: '1' } : {}),
      }),
    pidFileKeptDuringShutdown: false,
  },
  {
    name: 'gatehouse manage',
    start: (sock, pidFile, o) =>
      startGatehouse(
        ['-n', String(o.n), '--die-timeout', String(o.dieTimeout), '--pidfile', pidFile, '-s', sock, '--', 'perl', PERL_APP],
        o.ignoreTerm ? { IGNORE_TERM: '1' } : {},
      ),
    pidFileKeptDuringShutdown: true,
  },
];

async function startPool(flavor: Flavor, o: PoolOptions) {
  const dir = tempDir();
  const sock = join(dir, 'p.sock');
  const pidFile = join(dir, 'p.pid');
  const pm = flavor.start(sock, pidFile, o);
  await pm.waitFor(/app \(pid \d+\): ready/, { count: o.n });
  // The manager's "started" and the worker's "ready" lines can come in either order.
  await pm.waitFor(/server \(pid \d+\) started/, { count: o.n });
  const workers = pm.startedPids();
  await waitAccepting(workers);
  return { pm, sock, pidFile, workers };
}

for (const flavor of flavors) {
  describe(`parity: ${flavor.name}`, () => {
    after(cleanup);

    it('HUP keeps the manager pid and pid file and replaces the idle workers', async () => {
      const { pm, sock, pidFile, workers } = await startPool(flavor, { n: 2, dieTimeout: 60 });
      assert.equal(readFileSync(pidFile, 'utf8'), `${pm.pid}\n`);
      const mark = pm.lines.length;
      process.kill(pm.pid, 'SIGHUP');
      await pm.waitFor(/server \(pid \d+\) started/, { from: mark, count: 2 });
      await waitUntil(() => workers.every(isGone), 2000, `old workers ${workers} gone`);
      const fresh = pm.startedPids(mark);
      assert.equal(fresh.filter((p) => workers.includes(p)).length, 0);
      const reply = await fcgiRequest(sock);
      assert.equal(reply.code, 0);
      assert.ok(fresh.includes(reply.pid ?? -1), `served by a new worker (${reply.pid} in ${fresh})`);
      assert.ok(isAlive(pm.pid));
      assert.equal(readFileSync(pidFile, 'utf8'), `${pm.pid}\n`);
      await waitAccepting(fresh).catch((e: Error) => assert.fail(`${e.message}\n${pm.text()}`)); // a TERM before accept() would wait for a request (see harness)
      process.kill(pm.pid, 'SIGTERM');
      assert.equal((await pm.exited).code, 0);
    });

    it('TERM: the busy request completes, then exit 0', async () => {
      const { pm, sock, pidFile } = await startPool(flavor, { n: 2, dieTimeout: 60 });
      const from = pm.lines.length;
      const reply = fcgiRequest(sock, { QUERY_STRING: 'busy=1' });
      await pm.waitFor(/app \(pid \d+\): request n=1 busy=1/, { from });
      process.kill(pm.pid, 'SIGTERM');
      await pm.waitFor(/sending TERM to PIDs/);
      assert.equal(existsSync(pidFile), flavor.pidFileKeptDuringShutdown);
      const r = await reply;
      assert.equal(r.code, 0);
      assert.match(r.stdout, /n=1 took=1\.\d\d/);
      const exit = await pm.exited;
      assert.equal(exit.code, 0);
      assert.match(pm.text(), /dying: safe exit from signal TERM/);
      assert.equal(existsSync(pidFile), false);
    });

    it('die-timeout expiry: workers ignoring TERM are killed, exit 1 after ~die-timeout', async () => {
      const { pm, workers } = await startPool(flavor, { n: 2, dieTimeout: 1, ignoreTerm: true });
      const t0 = Date.now();
      process.kill(pm.pid, 'SIGTERM');
      const exit = await pm.exited;
      assert.equal(exit.code, 1);
      const took = exit.at - t0;
      assert.ok(took >= 950 && took < 2500, `exit after ${took} ms`);
      assert.match(pm.text(), /wait timeout/);
      await waitUntil(() => workers.every(isGone), 1000, `workers ${workers} gone`);
    });
  });
}
