/**
 * Mixed and client mode with real programs: -N retries once a second (with
 * loose bounds for a loaded 2-core box), no duplicate programs, no unlink of
 * a Unix socket before connecting (ashd §7.1), TCP address order and caching.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { BackendError, type BackendProtocol } from '../../src/backend/contract.js';
import { ChildExitedError } from '../../src/backend/errors.js';
import { collect, freePort, spawnTracked, stopProcess, tmpDir, waitForConnectable } from '../helpers/peers.js';
import { appProgram, ask, Cleanup, pidAlive, recordingLog, type LogLine } from './support.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function gaps(lines: LogLine[], pattern: RegExp): number[] {
  const at = lines.filter((l) => pattern.test(l.line)).map((l) => l.at);
  return at.slice(1).map((t, i) => t - at[i]!);
}

for (const protocol of ['scgi', 'fastcgi'] as BackendProtocol[]) {
  test(`${protocol}: mixed mode starts the program and connects on retry 2 when it binds after ~1.5 s`, async (t) => {
    const port = await freePort();
    const state = cleanup.stateDir();
    const { log, lines } = recordingLog();
    const backend = cleanup.backend({
      protocol,
      address: { kind: 'tcp', host: '127.0.0.1', port },
      program: appProgram(protocol),
      retries: 4,
      env: { ...process.env, FIXTURE_LISTEN: `tcp:${port}`, FIXTURE_LISTEN_DELAY_MS: '1500', FIXTURE_STATE_DIR: state },
      log,
    });
    assert.equal(backend.mode, 'mixed');
    const started = Date.now();
    const answer = await ask(backend);
    const elapsed = Date.now() - started;
    cleanup.pid(answer.json.pid);
    t.diagnostic(`first answer after ${elapsed} ms; log:\n${lines.map((l) => `${l.at - started} ${l.line}`).join('\n')}`);
    const retries = lines.filter((l) => /retry \d of 4/.test(l.line));
    assert.ok(retries.length >= 2 && retries.length <= 3, `${retries.length} retries`);
    assert.match(retries[1]!.line, /retry 2 of 4/);
    for (const gap of gaps(lines, /retry \d of 4/)) assert.ok(gap >= 850 && gap <= 2500, `retries ${gap} ms apart`);
    assert.ok(elapsed >= 1400 && elapsed <= 6000, `answered after ${elapsed} ms`);
    // Later requests connect at once, and nothing more was started.
    await ask(backend);
    assert.equal(readFileSync(join(state, 'starts'), 'utf8'), '1');
    await backend.close();
    assert.ok(pidAlive(answer.json.pid), 'the program outlives the backend');
  });
}

test('scgi: mixed mode with -u: the program binds the path itself and it is never unlinked (ashd §7.1)', async () => {
  const dir = tmpDir();
  const path = join(dir, 'app.sock');
  const state = cleanup.stateDir();
  const { log } = recordingLog();
  const backend = cleanup.backend({
    protocol: 'scgi',
    address: { kind: 'unix', path },
    program: appProgram('scgi'),
    retries: 5,
    env: { ...process.env, FIXTURE_LISTEN: `unix:${path}`, FIXTURE_LISTEN_DELAY_MS: '300', FIXTURE_STATE_DIR: state },
    log,
  });
  const [a, b] = await Promise.all([ask(backend), ask(backend)]);
  cleanup.pid(a.json.pid);
  assert.equal(a.json.pid, b.json.pid, 'concurrent first requests share one program');
  assert.equal(readFileSync(join(state, 'starts'), 'utf8'), '1');
  assert.ok(existsSync(path));
  await backend.close();
});

test('scgi: mixed mode gives up early with the exit status when the program dies', async () => {
  const port = await freePort();
  const { log } = recordingLog();
  const backend = cleanup.backend({
    protocol: 'scgi',
    address: { kind: 'tcp', host: '127.0.0.1', port },
    program: [process.execPath, '-e', 'process.exit(9)'],
    retries: 10,
    log,
  });
  const started = Date.now();
  const err = await ask(backend).then(
    () => assert.fail('answered'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BackendError && err.code === 'ERR_BACKEND_UNAVAILABLE', String(err));
  assert.ok(err.cause instanceof ChildExitedError && err.cause.exitCode === 9, String(err.cause));
  assert.ok(Date.now() - started < 5000, 'did not wait for all 10 retries');
  await backend.close();
});

test('scgi: client mode with -u reaches a running server and leaves its socket alone (ashd §7.1)', async () => {
  const dir = tmpDir();
  const path = join(dir, 'app.sock');
  const server = spawnTracked(process.execPath, [appProgram('scgi')[1]!], { env: { ...process.env, FIXTURE_LISTEN: `unix:${path}` } });
  collect(server);
  await waitForConnectable({ path }, 10000, server);
  const { log } = recordingLog();
  const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'unix', path }, retries: 2, log });
  assert.equal(backend.mode, 'client');
  for (let i = 0; i < 3; i++) assert.equal((await ask(backend)).json.pid, server.pid);
  assert.ok(existsSync(path));
  await backend.close();
  await stopProcess(server);
});

test('fastcgi: client mode with -t and a service name from the services file', async () => {
  const port = await freePort();
  const services = join(tmpDir(), 'services');
  writeFileSync(services, `# test\nfcgi-test\t${port}/tcp\n`);
  const server = spawnTracked(process.execPath, [appProgram('fastcgi')[1]!], { env: { ...process.env, FIXTURE_LISTEN: `tcp:${port}` } });
  collect(server);
  await waitForConnectable({ port }, 10000, server);
  const { log } = recordingLog();
  const backend = cleanup.backend({ protocol: 'fastcgi', address: { kind: 'tcp', host: '127.0.0.1', port: 'fcgi-test' }, servicesFile: services, log });
  assert.equal((await ask(backend)).json.pid, server.pid);
  await backend.close();
  await stopProcess(server);
});

test('scgi: client mode tries each address of a name in order (localhost: ::1 then 127.0.0.1)', async () => {
  const port = await freePort();
  const server = spawnTracked(process.execPath, [appProgram('scgi')[1]!], { env: { ...process.env, FIXTURE_LISTEN: `tcp:${port}` } });
  collect(server);
  await waitForConnectable({ port }, 10000, server);
  const { log } = recordingLog();
  // The fixture listens on 127.0.0.1 only; if localhost also resolves to ::1, that try is refused first.
  const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'tcp', host: 'localhost', port }, log });
  assert.equal((await ask(backend)).json.pid, server.pid);
  assert.equal((await ask(backend)).json.pid, server.pid);
  await backend.close();
  await stopProcess(server);
});

test('scgi: client mode over IPv6 [::1]', async (t) => {
  const probe = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => resolve(true));
  });
  if (!ok) return t.skip('no IPv6 loopback here');
  const port = (probe.address() as net.AddressInfo).port;
  probe.close();
  // A tiny SCGI server on ::1 written inline: answer every request with a fixed head.
  const server = net.createServer((s) => {
    s.once('data', () => s.end('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nv6'));
  });
  await new Promise<void>((r) => server.listen(port, '::1', () => r()));
  try {
    const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'tcp', host: '::1', port }, log: recordingLog().log });
    const answer = await ask(backend);
    assert.equal(answer.json.body, 'v6');
    await backend.close();
  } finally {
    server.close();
  }
});

test('scgi: client mode retries -N times, once a second, then fails with ERR_BACKEND_UNAVAILABLE', async () => {
  const port = await freePort();
  const { log, lines } = recordingLog();
  const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'tcp', host: '127.0.0.1', port }, retries: 2, log });
  const started = Date.now();
  const err = await ask(backend).then(
    () => assert.fail('connected to nothing'),
    (e: unknown) => e,
  );
  const elapsed = Date.now() - started;
  assert.ok(err instanceof BackendError && err.code === 'ERR_BACKEND_UNAVAILABLE', String(err));
  assert.equal((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  assert.equal(lines.filter((l) => /try \d of 3/.test(l.line)).length, 2);
  assert.ok(elapsed >= 1800 && elapsed <= 5000, `gave up after ${elapsed} ms`);
  await backend.close();
});

test('scgi: client mode: a server that comes up during the retries is used', async () => {
  const port = await freePort();
  const server = spawnTracked(process.execPath, [appProgram('scgi')[1]!], {
    env: { ...process.env, FIXTURE_LISTEN: `tcp:${port}`, FIXTURE_LISTEN_DELAY_MS: '1200' },
  });
  collect(server);
  const { log } = recordingLog();
  const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'tcp', host: '127.0.0.1', port }, retries: 5, log });
  const answer = await ask(backend);
  assert.equal(answer.json.pid, server.pid);
  await backend.close();
  await stopProcess(server);
});
