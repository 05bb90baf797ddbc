/**
 * Graceful dispatch on real processes: the example app as a child, told to
 * stop with signals while idle and while busy, finding its listening socket
 * on fd 0 and in LISTEN_FDS, and noticing its manager is gone. Plus the
 * parts of installGracefulShutdown that need no signal (in-process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { renameSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import { installGracefulShutdown } from '../../src/app/index.js';
import { collect, distPath, spawnTracked, stopProcess, tmpDir, waitForConnectable, waitForExit, waitForPidGone } from '../helpers/peers.js';
import { cgiEnv, connectUnix, fcgi, fcgiOn, fcgiStart, startApp } from './local.js';
import { within } from '../helpers/wait.js';

const HELLO = distPath('examples', 'hello.js');

interface Child {
  child: ChildProcess;
  path: string;
  logs: ReturnType<typeof collect>;
}

async function startHello(args: string[] = []): Promise<Child> {
  const path = join(tmpDir('gh-graceful-'), 'hello.sock');
  const child = spawnTracked(process.execPath, [HELLO, '--listen', path, ...args]);
  const logs = collect(child);
  await waitForConnectable({ path }, 10000, child);
  return { child, path, logs };
}

test('hello answers over FastCGI and SCGI', async () => {
  const f = await startHello();
  const s = await startHello(['--scgi']);
  try {
    const r = await fcgi(f.path, cgiEnv('GET', '/'));
    assert.equal(r.body.toString(), `Hello from gatehouse (pid ${f.child.pid})\n`);
    const { scgi } = await import('./local.js');
    const e = await scgi(s.path, cgiEnv('POST', '/echo', { CONTENT_TYPE: 'text/x-y' }), 'echo me');
    assert.equal(e.body.toString(), 'echo me');
    assert.equal(e.headers['content-type'], 'text/x-y');
  } finally {
    await stopProcess(f.child);
    await stopProcess(s.child);
  }
});

for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
  test(`${signal} while idle: exit 0 at once`, async () => {
    const { child, logs } = await startHello();
    const t0 = Date.now();
    const exited = waitForExit(child, 5000);
    child.kill(signal);
    const { code } = await exited;
    assert.equal(code, 0, logs.stderr());
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
  });

  test(`${signal} during /slow?ms=1500: the request completes with 200, then exit 0`, async () => {
    const { child, path, logs } = await startHello();
    const conn = new FastCgiClientConnection(await connectUnix(path));
    const { sent, response } = fcgiStart(conn, cgiEnv('GET', '/slow?ms=1500'), undefined, { keepConn: false });
    // Signal once the whole request is on the wire. Should the signal be handled before
    // the worker reads it, the fresh-connection grace still lets the request in.
    await sent;
    const exited = waitForExit(child, 10000);
    const signalledAt = Date.now();
    child.kill(signal);
    const res = await response;
    const answeredAt = Date.now();
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), `slept 1500 ms (pid ${child.pid})\n`);
    const { code } = await exited;
    assert.equal(code, 0, logs.stderr());
    assert.ok(answeredAt - signalledAt > 800, 'the slow request was not cut short');
    assert.match(logs.stderr(), new RegExp(`safe exit: after ${signal}`));
  });
}

test('SIGTERM with an idle kept-alive FastCGI connection: it is closed and the worker exits at once', async () => {
  const { child, path, logs } = await startHello();
  const conn = new FastCgiClientConnection(await connectUnix(path));
  assert.equal((await fcgiOn(conn, cgiEnv('GET', '/'))).status, 200);
  const connClosed = once(conn.socket, 'close');
  const exited = waitForExit(child, 5000);
  const t0 = Date.now();
  child.kill('SIGTERM');
  await within(connClosed, 2000, 'kept-alive connection closed');
  assert.equal((await exited).code, 0, logs.stderr());
  assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
});

test('fd 0 as the listening socket (FCGI_LISTENSOCK_FILENO)', async () => {
  const dir = tmpDir('gh-fd0-');
  const tmpPath = join(dir, 'binding.sock');
  const path = join(dir, 'fd0.sock');
  const holder = net.createServer();
  holder.listen(tmpPath);
  await once(holder, 'listening');
  // The handle's fd is not public API; it is the documented-in-practice way to pass a listener to a child's stdio.
  const fd = (holder as unknown as { _handle: { fd: number } })._handle.fd;
  const child = spawnTracked(process.execPath, [HELLO], { stdio: [fd, 'pipe', 'pipe'] });
  const logs = collect(child);
  // Closing a unix net.Server unlinks its path: move the socket out of the way first.
  renameSync(tmpPath, path);
  holder.close();
  try {
    await waitForConnectable({ path }, 10000, child);
    const r = await fcgi(path, cgiEnv('GET', '/'));
    assert.equal(r.body.toString(), `Hello from gatehouse (pid ${child.pid})\n`);
    assert.match(logs.stderr(), /on fd 0/);
    const exited = waitForExit(child, 5000);
    child.kill('SIGTERM');
    assert.equal((await exited).code, 0);
  } finally {
    await stopProcess(child);
  }
});

test('LISTEN_FDS (systemd socket activation): fd 3', async () => {
  const dir = tmpDir('gh-sd-');
  const tmpPath = join(dir, 'binding.sock');
  const path = join(dir, 'sd.sock');
  const holder = net.createServer();
  holder.listen(tmpPath);
  await once(holder, 'listening');
  const fd = (holder as unknown as { _handle: { fd: number } })._handle.fd;
  const child = spawnTracked(process.execPath, [HELLO], {
    stdio: ['ignore', 'pipe', 'pipe', fd],
    env: { ...process.env, LISTEN_FDS: '1', LISTEN_FDNAMES: 'hello' },
  });
  const logs = collect(child);
  renameSync(tmpPath, path);
  holder.close();
  try {
    await waitForConnectable({ path }, 10000, child);
    const r = await fcgi(path, cgiEnv('GET', '/'));
    assert.equal(r.status, 200);
    assert.match(logs.stderr(), /fd 3 \(LISTEN_FDS\)/);
  } finally {
    await stopProcess(child);
  }
});

test('no listening socket anywhere: a clear error and exit 1', async () => {
  const child = spawnTracked(process.execPath, [HELLO], { stdio: ['pipe', 'pipe', 'pipe'] });
  const logs = collect(child);
  const { code } = await waitForExit(child, 10000);
  assert.equal(code, 1);
  assert.match(logs.stderr(), /no listening socket/);
});

test('orphan check: when the manager (GATEHOUSE_MANAGER_PID) dies, an idle worker exits by itself', async () => {
  const path = join(tmpDir('gh-orphan-'), 'o.sock');
  // A stand-in manager: a shell that starts the worker, reports its pid, and dies 0.5 s later.
  const manager = spawnTracked('/bin/sh', ['-c', `GATEHOUSE_MANAGER_PID=$$ "${process.execPath}" "${HELLO}" --listen "${path}" & echo $!; sleep 0.5`]);
  const out = collect(manager);
  await waitForExit(manager, 5000);
  const workerPid = Number(out.stdout().trim());
  assert.ok(workerPid > 0);
  await waitForConnectable({ path }, 5000).catch(() => undefined);
  const gone = await waitForPidGone(workerPid, 5000);
  assert.ok(gone < 3000, `worker lived ${gone} ms after its manager`);
});

test('in-process: shutdown() with a hard cap aborts what is still running; maxRequests closes after N', async () => {
  let release: (() => void) | null = null;
  const app = await startApp((req, res) => {
    if (req.url === '/forever') {
      release = () => res.end('never');
      return;
    }
    res.end('ok');
  });
  const g = installGracefulShutdown(app.server, { exit: false, signals: [], managerPid: false, timeoutMs: 200, log: false });
  const conn = new FastCgiClientConnection(await connectUnix(app.path));
  const stuck = fcgiOn(conn, cgiEnv('GET', '/forever')).then(
    () => 'answered',
    () => 'aborted',
  );
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  await within(g.shutdown('test'), 3000, 'shutdown');
  assert.ok(Date.now() - t0 >= 150, 'waited for the cap');
  assert.equal(await stuck, 'aborted');
  assert.ok(release !== null);

  const app2 = await startApp((_req, res) => res.end('ok'));
  const g2 = installGracefulShutdown(app2.server, { exit: false, signals: [], managerPid: false, maxRequests: 2, log: false });
  const closed = once(app2.server, 'close');
  assert.equal((await fcgi(app2.path, cgiEnv('GET', '/'))).status, 200);
  assert.equal(g2.shuttingDown, false);
  assert.equal((await fcgi(app2.path, cgiEnv('GET', '/'))).status, 200);
  await within(closed, 3000, 'close after max requests');
  assert.equal(g2.shuttingDown, true);
});

test("in-process: the pool's dispatch hooks get {served, managerPid}; postDispatch 'exit' recycles the worker", async () => {
  const app = await startApp((_req, res) => res.end('ok'));
  const seen: string[] = [];
  const g = installGracefulShutdown(app.server, {
    exit: false,
    signals: [],
    managerPid: 4242,
    orphanCheckIntervalMs: 60_000,
    log: false,
    hooks: {
      preDispatch: (ctx) => void seen.push(`pre ${ctx.served} ${ctx.managerPid}`),
      postDispatch: (ctx) => {
        seen.push(`post ${ctx.served}`);
        return ctx.served === 2 ? 'exit' : undefined;
      },
    },
  });
  const closed = once(app.server, 'close');
  await fcgi(app.path, cgiEnv('GET', '/'));
  await fcgi(app.path, cgiEnv('GET', '/'));
  await within(closed, 3000, 'close after exit hook');
  assert.deepEqual(seen, ['pre 0 4242', 'post 1', 'pre 1 4242', 'post 2']);
  assert.equal(g.shuttingDown, true);
});
