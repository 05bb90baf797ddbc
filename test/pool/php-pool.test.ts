/**
 * php-cgi (PHP_FCGI_CHILDREN=0: one process per worker, FastCGI on fd 0)
 * under `gatehouse manage`, reached with cgi-fcgi. Each reply carries the
 * pid of the process that served it (getmypid()).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cleanup, fcgiRequest, isGone, parentOf, startGatehouse, tempDir, waitAccepting, waitForService } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

const PHP_ENV = { PHP_FCGI_CHILDREN: '0' };

function phpSite(): { dir: string; sock: string; params: Record<string, string> } {
  const dir = tempDir();
  writeFileSync(join(dir, 'pid.php'), '<?php usleep((int)($_GET["sleep_ms"] ?? 0) * 1000); echo "pid=" . getmypid() . "\\n";\n');
  return { dir, sock: join(dir, 'php.sock'), params: { SCRIPT_FILENAME: join(dir, 'pid.php') } };
}

/** fd number → link target, for /proc/PID/fd. */
function fdTable(pid: number): Map<number, string> {
  const dir = `/proc/${pid}/fd`;
  return new Map(readdirSync(dir).map((fd) => [Number(fd), readlinkSync(join(dir, fd))]));
}

describe('gatehouse manage -- php-cgi', () => {
  after(cleanup);

  it('N workers serve; the manager never does; each worker holds only the socket on fd 0 and stdio', async () => {
    const { sock, params } = phpSite();
    const pm = startGatehouse(['-n', '2', '-s', sock, '--title', 'php', '--', 'php-cgi'], PHP_ENV);
    await pm.waitFor(/server \(pid \d+\) started/, { count: 2 });
    const workers = pm.startedPids();
    await waitForService(sock, params);

    const served: number[] = [];
    for (let i = 0; i < 6; i++) served.push((await fcgiRequest(sock, params)).pid ?? -1);
    // Two 300 ms requests at once: single-threaded workers must split them.
    const together = await Promise.all([0, 1].map(() => fcgiRequest(sock, { ...params, QUERY_STRING: 'sleep_ms=300' })));
    served.push(...together.map((r) => r.pid ?? -1));

    assert.ok(!served.includes(pm.pid), 'the manager never serves');
    for (const pid of served) assert.ok(workers.includes(pid), `pid ${pid} is one of the workers ${workers}`);
    assert.equal(new Set(together.map((r) => r.pid)).size, 2, 'two distinct workers served the concurrent pair');
    assert.deepEqual(pm.startedPids(), workers, 'no respawns while serving');

    assert.match(readFileSync(`/proc/${pm.pid}/cmdline`, 'utf8'), /^gatehouse-pm \[php\]/);
    const managerFds = fdTable(pm.pid);
    const listenTarget = fdTable(workers[0] ?? -1).get(0);
    assert.match(listenTarget ?? '', /^socket:/);
    assert.ok([...managerFds.values()].includes(listenTarget ?? ''), 'the manager holds the same socket');
    for (const pid of workers) {
      assert.equal(parentOf(pid), pm.pid);
      const fds = fdTable(pid);
      assert.equal(fds.get(0), listenTarget, 'every worker has the one listening socket on fd 0');
      // php-cgi opens its own files (a semaphore); none of the manager's pipes/sockets may leak in.
      const shared = [...fds].filter(([fd, t]) => fd > 2 && /^(pipe|socket):/.test(t) && [...managerFds.values()].includes(t));
      assert.deepEqual(shared, []);
    }
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });

  it('-t 127.0.0.1:0: TCP works the same, the bound port is logged', async () => {
    const { params } = phpSite();
    const pm = startGatehouse(['-n', '2', '-t', '127.0.0.1:0', '--', 'php-cgi'], PHP_ENV);
    const { match } = await pm.waitFor(/listening on tcp:127\.0\.0\.1:(\d+)/);
    const address = `127.0.0.1:${match[1]}`;
    const reply = await waitForService(address, params);
    await pm.waitForStarted(reply.pid);
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });

  it('TERM on an idle pool of 8: exit 0 quickly, every worker reaped, socket file gone', async (t) => {
    const { sock } = phpSite();
    const t0 = Date.now();
    const pm = startGatehouse(['-n', '8', '-s', sock, '--', 'php-cgi'], PHP_ENV);
    await pm.waitFor(/server \(pid \d+\) started/, { count: 8 });
    const workers = pm.startedPids();
    const readyMs = await waitAccepting(workers);
    t.diagnostic(`start → 8 workers in accept(): ${Date.now() - t0} ms (${readyMs} ms after the 8th "started")`);

    const killedAt = Date.now();
    process.kill(pm.pid, 'SIGTERM');
    const exit = await pm.exited;
    t.diagnostic(`TERM → manager exit: ${exit.at - killedAt} ms`);
    assert.equal(exit.code, 0);
    assert.ok(exit.at - killedAt < 2000, `exit took ${exit.at - killedAt} ms`);
    assert.equal(pm.exitedPids().length, 8);
    for (const pid of workers) assert.ok(isGone(pid), `worker ${pid} gone`);
    assert.equal(existsSync(sock), false, 'socket unlinked before exit');
  });

  it('kill -9 of the manager takes every php-cgi worker down within 1 s', async () => {
    const { sock, params } = phpSite();
    const pm = startGatehouse(['-n', '3', '-s', sock, '--', 'php-cgi'], PHP_ENV);
    await pm.waitFor(/server \(pid \d+\) started/, { count: 3 });
    await waitForService(sock, params);
    const workers = pm.startedPids();
    process.kill(pm.pid, 'SIGKILL');
    await waitUntil(() => workers.every(isGone), 1000, `workers ${workers} gone after the manager's SIGKILL`);
  });
});
