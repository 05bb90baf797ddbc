/**
 * Where a worker listens: address parsing, systemd's variables, and telling
 * a listening socket from a connected one without disturbing either.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { openSync, closeSync } from 'node:fs';
import { findListenSource, isListeningFd, parseListenAddress, systemdListenFd } from '../../src/app/index.js';
import { tmpDir } from '../helpers/peers.js';

test('listen addresses: paths, host:port, [v6]:port, :port, port', () => {
  assert.deepEqual(parseListenAddress('/run/app.sock'), { path: '/run/app.sock' });
  assert.deepEqual(parseListenAddress('unix:/run/app.sock'), { path: '/run/app.sock' });
  assert.deepEqual(parseListenAddress('./app.sock'), { path: './app.sock' });
  assert.deepEqual(parseListenAddress('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
  assert.deepEqual(parseListenAddress('localhost:9000'), { host: 'localhost', port: 9000 });
  assert.deepEqual(parseListenAddress('[::1]:9000'), { host: '::1', port: 9000 });
  assert.deepEqual(parseListenAddress(':9000'), { port: 9000 });
  assert.deepEqual(parseListenAddress('*:9000'), { port: 9000 });
  assert.deepEqual(parseListenAddress('9000'), { port: 9000 });
  for (const bad of ['host', 'host:99999', '::1:80', 'a:b']) {
    assert.throws(() => parseListenAddress(bad), { code: 'ERR_APP_BAD_LISTEN_ADDRESS' }, bad);
  }
});

test('LISTEN_FDS is taken only when LISTEN_PID is absent or ours', () => {
  assert.deepEqual(systemdListenFd({ LISTEN_FDS: '1' }), { fd: 3, name: undefined });
  assert.deepEqual(systemdListenFd({ LISTEN_FDS: '2', LISTEN_PID: String(process.pid), LISTEN_FDNAMES: 'web:admin' }), { fd: 3, name: 'web' });
  assert.equal(systemdListenFd({ LISTEN_FDS: '1', LISTEN_PID: '1' }), null);
  assert.equal(systemdListenFd({ LISTEN_FDS: '0' }), null);
  assert.equal(systemdListenFd({}), null);
});

test('an explicit address wins over the environment', async () => {
  assert.deepEqual(await findListenSource({ address: ':7000', env: { LISTEN_FDS: '1' } }), { kind: 'address', options: { port: 7000 } });
  assert.deepEqual(await findListenSource({ env: { LISTEN_FDS: '1' } }), { kind: 'systemd', fd: 3, name: undefined });
});

test('isListeningFd: listening unix and TCP sockets yes; connected sockets and files no', async () => {
  const dir = tmpDir('gh-ls-');
  const unix = net.createServer();
  unix.listen(join(dir, 'l.sock'));
  await once(unix, 'listening');
  const tcp = net.createServer();
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  // _handle.fd: the only way to name a net.Server's descriptor; fine for a test.
  const fdOf = (h: unknown): number => (h as { _handle: { fd: number } })._handle.fd;
  try {
    assert.equal(await isListeningFd(fdOf(unix)), true);
    assert.equal(await isListeningFd(fdOf(tcp)), true);
    const client = net.connect((tcp.address() as net.AddressInfo).port, '127.0.0.1');
    await once(client, 'connect');
    assert.equal(await isListeningFd(fdOf(client)), false);
    client.destroy();
    const file = openSync(join(dir, 'f'), 'w');
    assert.equal(await isListeningFd(file), false);
    closeSync(file);
  } finally {
    unix.close();
    tcp.close();
  }
});
