/**
 * The transports against real fixture apps: FastCGI keep-alive reuse and
 * the safe retry when a kept connection was closed by the server (and the
 * cases that must not be retried), STDERR, response heads and streaming,
 * timeouts (connect, response head) and abort.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { BackendError, type BackendProtocol } from '../../src/backend/contract.js';
import { loadNative } from '../../src/pool/native.js';
import { freePort } from '../helpers/peers.js';
import { appProgram, ask, Cleanup, recordingLog } from './support.js';
import { readAll } from '../helpers/wait.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

test('fastcgi: kept-alive connections are reused (FCGI_KEEP_CONN)', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), log: recordingLog().log });
  for (let i = 1; i <= 4; i++) {
    const a = await ask(backend);
    assert.equal(a.header('X-Connection'), '1');
    assert.equal(a.header('X-On-Connection'), String(i));
  }
  assert.equal(backend.fastcgiPool!.openConnections, 1);
  assert.equal(backend.fastcgiPool!.idleConnections, 1);
  // Concurrent requests each get a connection of their own (no multiplexing).
  const many = await Promise.all([ask(backend, 'sleep=50'), ask(backend, 'sleep=50'), ask(backend, 'sleep=50')]);
  assert.equal(new Set(many.map((a) => a.header('X-Connection'))).size, 3);
  assert.equal(backend.fastcgiPool!.idleConnections, 3);
  await backend.close();
});

test('fastcgi: keepConn false opens a connection per request', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), keepConn: false, log: recordingLog().log });
  const conns = [];
  for (let i = 0; i < 3; i++) conns.push((await ask(backend)).header('X-Connection'));
  assert.deepEqual(conns, ['1', '2', '3']);
  await backend.close();
});

test('fastcgi: a kept connection the server closed is retried once on a fresh one (no body)', async () => {
  const { log, text } = recordingLog();
  const backend = cleanup.closingOnReuse(log);
  assert.equal((await ask(backend)).header('X-Connection'), '1');
  const second = await ask(backend);
  assert.equal(second.status, 200);
  assert.equal(second.header('X-Connection'), '2', 'served on a new connection');
  assert.match(text(), /reused connection closed before answering.*retrying/);
  await backend.close();
});

test('fastcgi: a request whose body was already sent is not retried', async () => {
  const { log, text } = recordingLog();
  const backend = cleanup.closingOnReuse(log);
  await ask(backend);
  await assert.rejects(ask(backend, '', { body: 'do not send twice' }), (e: BackendError) => e.code === 'ERR_BACKEND_CLOSED_EARLY');
  assert.doesNotMatch(text(), /retrying/);
  // The pool recovers: the next request works.
  assert.equal((await ask(backend)).status, 200);
  await backend.close();
});

test('fastcgi: a server that closes every connection after answering keeps working', async () => {
  const backend = cleanup.backend({
    protocol: 'fastcgi',
    program: appProgram('fastcgi'),
    env: { ...process.env, FIXTURE_CLOSE_AFTER_EACH: '1' },
    log: recordingLog().log,
  });
  for (let i = 0; i < 5; i++) assert.equal((await ask(backend)).status, 200);
  await backend.close();
});

test('fastcgi: STDERR arrives on response.stderr', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), log: recordingLog().log });
  const a = await ask(backend, 'stderr=oops');
  assert.equal((await readAll(a.raw.stderr!)).toString(), 'oops');
  await backend.close();
});

for (const protocol of ['scgi', 'fastcgi'] as BackendProtocol[]) {
  test(`${protocol}: status, Location and large bodies pass through`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log: recordingLog().log });
    const made = await ask(backend, 'status=201+Made');
    assert.equal(made.status, 201);
    assert.equal(made.statusText, 'Made');
    assert.ok(!made.raw.headers.some(([n]) => n.toLowerCase() === 'status'), 'Status removed');
    const big = await ask(backend, 'big=3000000');
    assert.equal(big.json.body.length, 3000000);
    await backend.close();
  });

  test(`${protocol}: no response head in time → ERR_BACKEND_TIMEOUT, and the backend still works`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), headerTimeoutMs: 300, log: recordingLog().log });
    const started = Date.now();
    await assert.rejects(ask(backend, 'sleep=5000'), (e: BackendError) => e.code === 'ERR_BACKEND_TIMEOUT');
    assert.ok(Date.now() - started < 3000);
    assert.equal((await ask(backend)).status, 200);
    await backend.close();
  });

  test(`${protocol}: abort via signal ends the request at once`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log: recordingLog().log });
    const ac = new AbortController();
    const reason = new Error('client went away');
    setTimeout(() => ac.abort(reason), 100);
    const started = Date.now();
    await assert.rejects(ask(backend, 'sleep=3000', { signal: ac.signal }), (e: unknown) => e === reason);
    assert.ok(Date.now() - started < 2000);
    assert.equal((await ask(backend)).status, 200);
    await backend.close();
  });
}

test('scgi: a connect that gets no answer → ERR_BACKEND_TIMEOUT', async () => {
  // A listening socket nobody accepts on, with its queue full: further SYNs are dropped.
  const port = await freePort();
  const native = loadNative();
  const fd = native.listenTcp('127.0.0.1', port, 0);
  const fillers: net.Socket[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 50).unref());
    const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'tcp', host: '127.0.0.1', port }, connectTimeoutMs: 300, log: recordingLog().log });
    const started = Date.now();
    await assert.rejects(ask(backend), (e: BackendError) => e.code === 'ERR_BACKEND_TIMEOUT');
    assert.ok(Date.now() - started < 3000);
    await backend.close();
  } finally {
    for (const s of fillers) s.destroy();
    native.closeFd(fd);
  }
});

test('scgi: a bad CGI head → ERR_BACKEND_PROTOCOL; silence → ERR_BACKEND_CLOSED_EARLY', async () => {
  const server = net.createServer((s) => {
    s.once('data', () => {
      if (s.localPort === undefined) return;
      s.end(count++ === 0 ? 'no colon here\r\n\r\n' : '');
    });
  });
  let count = 0;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const backend = cleanup.backend({ protocol: 'scgi', address: { kind: 'tcp', host: '127.0.0.1', port }, log: recordingLog().log });
    await assert.rejects(ask(backend), (e: BackendError) => e.code === 'ERR_BACKEND_PROTOCOL');
    await assert.rejects(ask(backend), (e: BackendError) => e.code === 'ERR_BACKEND_CLOSED_EARLY');
    await backend.close();
  } finally {
    server.close();
  }
});
