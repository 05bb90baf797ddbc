/**
 * Library mode: one Node script is both manager and workers (`manage()`,
 * like pm_manage / cluster.isPrimary). The script is written to a temp dir
 * and imports the compiled pool from dist.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cleanup, isGone, LoggedProcess, parentOf, ROOT, tempDir } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

const SCRIPT = `
import { createServer } from 'node:net';
import { manage } from ${JSON.stringify(join(ROOT, 'dist/src/pool/index.js'))};

const role = await manage({
  nProcesses: 2,
  dieTimeout: 5,
  processTitle: 'lib',
  listen: { kind: 'unix', path: process.argv[2] },
  serverInit: () => console.error('serverInit in pid ' + process.pid),
});
// Only workers get here.
createServer((s) => s.end('pid=' + process.pid + ' manager=' + role.managerPid + '\\n')).listen({ fd: role.listenFd });
process.on('SIGTERM', () => process.exit(0));
`;

function ask(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const s = createConnection({ path });
    s.setEncoding('utf8').on('data', (d: string) => (data += d));
    s.once('end', () => resolve(data));
    s.once('error', reject);
  });
}

describe('manage(): the script forks itself', () => {
  after(cleanup);

  it('runs serverInit in N workers that serve on fd 0; the manager returns only by exiting', async () => {
    const dir = tempDir();
    const script = join(dir, 'app.mjs');
    const sock = join(dir, 'lib.sock');
    writeFileSync(script, SCRIPT);
    const pm = new LoggedProcess(process.execPath, [script, sock]);
    await pm.waitFor(/serverInit in pid \d+/, { count: 2 });
    const workers = pm.startedPids();
    assert.equal(workers.length, 2);
    for (const pid of workers) {
      assert.equal(parentOf(pid), pm.pid);
      assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /^gatehouse-worker \[lib\]/);
    }
    assert.match(readFileSync(`/proc/${pm.pid}/cmdline`, 'utf8'), /^gatehouse-pm \[lib\]/);

    const replies = await Promise.all([1, 2, 3, 4].map(() => ask(sock)));
    for (const r of replies) {
      const m = /^pid=(\d+) manager=(\d+)$/.exec(r.trim());
      assert.ok(m, r);
      assert.ok(workers.includes(Number(m[1])), `${m[1]} is a worker`);
      assert.equal(Number(m[2]), pm.pid);
    }

    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
    await waitUntil(() => workers.every(isGone), 1000, 'workers gone');
  });
});
