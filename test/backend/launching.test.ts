/**
 * Launching mode with real programs: connect first and launch only if that
 * fails; the program outlives close(); a TCP relaunch with the old port in
 * TIME_WAIT (ashd §7.2); a Unix path is probed, never unlinked before a
 * connect (ashd §7.1); no duplicate while our program lives (ashd §7.3).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BackendError, type BackendProtocol } from '../../src/backend/contract.js';
import type { LaunchingConnector } from '../../src/backend/launching-mode.js';
import { loadNative } from '../../src/pool/native.js';
import { collect, freePort, spawnTracked, stopProcess, tmpDir, waitForConnectable, waitForPidGone } from '../helpers/peers.js';
import { appProgram, ask, childReaped, Cleanup, pidAlive, recordingLog } from './support.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

for (const protocol of ['scgi', 'fastcgi'] as BackendProtocol[]) {
  test(`${protocol}: launching mode on TCP starts the program once and leaves it running on close`, async () => {
    const port = await freePort();
    const state = cleanup.stateDir();
    const { log } = recordingLog();
    const backend = cleanup.launching(protocol, { kind: 'tcp', host: '127.0.0.1', port }, log, state);
    assert.equal(backend.mode, 'launching');
    const a = await ask(backend);
    cleanup.pid(a.json.pid);
    const b = await ask(backend);
    assert.equal(a.json.pid, b.json.pid);
    assert.equal(readFileSync(join(state, 'starts'), 'utf8'), '1');
    await backend.close();
    assert.ok(pidAlive(a.json.pid), 'the launched program outlives the backend');
    // And a new backend just connects to it.
    const again = cleanup.launching(protocol, { kind: 'tcp', host: '127.0.0.1', port }, log, state);
    assert.equal((await ask(again)).json.pid, a.json.pid);
    assert.equal(readFileSync(join(state, 'starts'), 'utf8'), '1');
    await again.close();
  });
}

test('scgi: launching relaunches on the same TCP port while the old one is in TIME_WAIT (SO_REUSEADDR)', async () => {
  const port = await freePort();
  const { log } = recordingLog();
  const backend = cleanup.launching('scgi', { kind: 'tcp', host: '127.0.0.1', port }, log);
  // Several requests: the server closes each connection first, leaving TIME_WAIT entries on its port.
  let first;
  for (let i = 0; i < 3; i++) first = await ask(backend);
  const pid = first!.json.pid;
  cleanup.pid(pid);
  process.kill(pid, 'SIGKILL');
  await childReaped(backend);
  const second = await ask(backend);
  cleanup.pid(second.json.pid);
  assert.notEqual(second.json.pid, pid);
  assert.equal(second.status, 200);
  await backend.close();
});

test('scgi: launching with -u connects to a server already there and never unlinks its socket (ashd §7.1)', async () => {
  const dir = tmpDir();
  const path = join(dir, 'app.sock');
  const server = spawnTracked(appProgram('scgi')[0]!, [appProgram('scgi')[1]!], { env: { ...process.env, FIXTURE_LISTEN: `unix:${path}` } });
  collect(server);
  await waitForConnectable({ path }, 10000, server);
  const { log, text } = recordingLog();
  const backend = cleanup.launching('scgi', { kind: 'unix', path }, log);
  const answer = await ask(backend);
  assert.equal(answer.json.pid, server.pid);
  assert.ok(existsSync(path), 'the socket file is still there');
  assert.doesNotMatch(text(), /started/);
  await backend.close();
  await stopProcess(server);
});

test('scgi: launching with -u replaces a stale socket file after a refused probe', async () => {
  const dir = tmpDir();
  const path = join(dir, 'stale.sock');
  // A socket file nobody listens on any more (bound, then closed without unlink).
  const native = loadNative();
  native.closeFd(native.listenUnix(path, 1));
  assert.ok(existsSync(path));
  const { log } = recordingLog();
  const backend = cleanup.launching('scgi', { kind: 'unix', path }, log);
  const answer = await ask(backend);
  cleanup.pid(answer.json.pid);
  assert.equal(answer.status, 200);
  await backend.close();
  assert.ok(pidAlive(answer.json.pid));
});

test('scgi: launching never starts a duplicate while its program still runs (ashd §7.3)', async () => {
  const dir = tmpDir();
  const path = join(dir, 'app.sock');
  const state = cleanup.stateDir();
  const { log } = recordingLog();
  const backend = cleanup.launching('scgi', { kind: 'unix', path }, log, state);
  const answer = await ask(backend);
  cleanup.pid(answer.json.pid);
  // The program lives on but its address stops answering (someone removed the socket file).
  unlinkSync(path);
  await assert.rejects(ask(backend), (e: BackendError) => e.code === 'ERR_BACKEND_UNAVAILABLE' && /still runs/.test(e.message));
  assert.equal(readFileSync(join(state, 'starts'), 'utf8'), '1', 'no second program');
  // Once it is gone, the next request launches a new one.
  process.kill(answer.json.pid, 'SIGKILL');
  await waitForPidGone(answer.json.pid, 5000);
  // (a bounded wait: the launched child is unref'd and holds no event-loop reference)
  assert.ok(await (backend.connector as LaunchingConnector).child!.waitExit(5000));
  const next = await ask(backend);
  cleanup.pid(next.json.pid);
  assert.notEqual(next.json.pid, answer.json.pid);
  assert.equal(readFileSync(join(state, 'starts'), 'utf8'), '2');
  await backend.close();
});

test('scgi: launching with -i ID listens in the private per-user directory', async () => {
  const runtime = tmpDir();
  const id = `t${process.pid}`;
  const previous = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = runtime;
  try {
    const { log } = recordingLog();
    const backend = cleanup.launching('scgi', { kind: 'id', id }, log);
    const answer = await ask(backend);
    cleanup.pid(answer.json.pid);
    assert.ok(existsSync(join(runtime, 'gatehouse', `${id}.sock`)));
    await backend.close();
  } finally {
    if (previous === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = previous;
  }
});
