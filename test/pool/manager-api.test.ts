/**
 * ProcManager as a library, in this very process: hooks run in order and
 * can shape the spawn, notify gets structured events, signal() drives the
 * same loop as real signals, workers() reflects the table.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ProcManager, type ManagerLogEvent, type WorkerInfo } from '../../src/pool/index.js';
import { cleanup, fcgiRequest, isGone, PERL_APP, procState, tempDir, waitAccepting, waitForService } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

describe('ProcManager API', () => {
  const spawned: number[] = [];
  after(() => {
    for (const pid of spawned) if (!isGone(pid)) process.kill(pid, 'SIGKILL');
    cleanup();
  });

  it('runs managerInit before any spawn, lets beforeSpawn edit the plan, reports through notify', async () => {
    const dir = tempDir();
    const sock = join(dir, 'api.sock');
    const calls: string[] = [];
    const events: ManagerLogEvent[] = [];
    const lines: string[] = [];
    let afterSpawned: WorkerInfo[] = [];
    const pm = new ProcManager({
      nProcesses: 2,
      dieTimeout: 5,
      listen: { kind: 'unix', path: sock },
      command: { program: 'perl', args: [PERL_APP], env: { FROM_COMMAND: 'yes' } },
      hooks: {
        managerInit: (m) => {
          calls.push(`managerInit:${m.address}:${m.workers().length}`);
        },
        beforeSpawn: (plan) => {
          calls.push('beforeSpawn');
          plan.env.FROM_HOOK = 'hooked';
        },
        afterSpawn: (w) => {
          calls.push('afterSpawn');
          afterSpawned.push(w);
          spawned.push(w.pid);
        },
        notify: (line, event) => {
          lines.push(line);
          events.push(event);
        },
      },
    });
    const done = pm.run();
    await waitUntil(() => afterSpawned.length === 2, 5000, 'two workers spawned');
    assert.deepEqual(calls, [`managerInit:unix:${sock}:0`, 'beforeSpawn', 'afterSpawn', 'beforeSpawn', 'afterSpawn']);
    assert.deepEqual(
      pm.workers().map((w) => w.pid).sort(),
      afterSpawned.map((w) => w.pid).sort(),
    );
    const reply = await waitForService(sock);
    const env = readFileSync(`/proc/${reply.pid}/environ`, 'utf8').split('\0');
    assert.ok(env.includes('FROM_COMMAND=yes'));
    assert.ok(env.includes('FROM_HOOK=hooked'));
    assert.ok(env.includes(`GATEHOUSE_PM_MANAGER_PID=${process.pid}`));
    assert.equal(lines[0], `FastCGI: manager (pid ${process.pid}): listening on unix:${sock}`);

    const before = afterSpawned.map((w) => w.pid);
    afterSpawned = [];
    pm.signal('SIGHUP');
    await waitUntil(() => afterSpawned.length === 2 && before.every(isGone), 5000, 'HUP replaced both workers');
    assert.equal((await fcgiRequest(sock)).code, 0);
    await waitAccepting(afterSpawned.map((w) => w.pid));

    pm.signal('SIGTERM');
    assert.equal(await done, 0);
    for (const pid of [...before, ...afterSpawned.map((w) => w.pid)]) assert.equal(procState(pid), undefined, `${pid} reaped`);
    const types = events.map((e) => e.type);
    assert.equal(types.filter((t) => t === 'started').length, 4);
    assert.equal(types.filter((t) => t === 'exited').length, 4);
    assert.equal(types.at(-1), 'dying');
    assert.equal(process.listenerCount('SIGTERM'), 0, 'signal handlers removed after run()');
  });

  it('rejects bad options with ERR_PM_BAD_OPTION', () => {
    const base = { listen: { kind: 'inherit' as const }, command: { program: 'true' } };
    assert.throws(() => new ProcManager({ ...base, nProcesses: 0 }), { code: 'ERR_PM_BAD_OPTION' });
    assert.throws(() => new ProcManager({ ...base, nProcesses: 1.5 }), { code: 'ERR_PM_BAD_OPTION' });
    assert.throws(() => new ProcManager({ ...base, nProcesses: 1, dieTimeout: 0 }), { code: 'ERR_PM_BAD_OPTION' });
  });
});
