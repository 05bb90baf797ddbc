/**
 * The listening socket a pool's workers share keeps O_NONBLOCK while
 * workers come and go. The flag belongs to the open file description, so
 * one process changing it changes it for all; Node workers that find it
 * cleared block in accept() after a wakeup another worker won, frozen with
 * the connections they accepted but had not read yet (a request with no
 * answer until the next connection arrives). Two ways it used to be cleared:
 * - libuv's spawn clears O_NONBLOCK on a child's fds 0-2, so each respawn
 *   cleared it for the running workers (the pool now hands the socket over
 *   at fd 3 and gatehouse-exec moves it to fd 0);
 * - Node restores fd 0's flag to its startup value when it exits, so a
 *   worker that started while the socket was blocking reset it on a normal
 *   exit (our app runtime now moves the socket off fd 0 first).
 * Observed through the manager's own copy of the socket (same description),
 * at the moment the manager learns of the respawn or the exit.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { ProcManager } from '../../src/pool/manager.js';
import { ROOT, tempDir, cleanup } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

after(cleanup);

const O_NONBLOCK = 0o4000;

/** The inode of the listening Unix socket bound at `path` (/proc/net/unix). */
function socketInode(path: string): string {
  const line = readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[7] === path);
  if (line === undefined) throw new Error(`no socket bound at ${path}`);
  return line[6]!;
}

/** The fd of `pid` that is the socket `inode`, if it holds one. */
function fdOf(pid: number | 'self', inode: string): string | undefined {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return fd;
    } catch {
      // closed meanwhile
    }
  }
  return undefined;
}

/** O_NONBLOCK of the socket's open file description, read through our (the manager's) copy. */
function nonBlocking(inode: string): boolean {
  const fd = fdOf('self', inode);
  if (fd === undefined) throw new Error('the manager holds no copy of the socket');
  return (parseInt(/^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8) & O_NONBLOCK) !== 0;
}

/** Whether `pid` polls the socket: one of its epoll instances watches the fd it holds the socket at. */
function polling(pid: number, inode: string): boolean {
  const fd = fdOf(pid, inode);
  if (fd === undefined) return false;
  const watched = new RegExp(`^tfd:\\s+${fd}\\s`, 'm');
  for (const f of readdirSync(`/proc/${pid}/fdinfo`)) {
    try {
      if (watched.test(readFileSync(`/proc/${pid}/fdinfo/${f}`, 'utf8'))) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

interface Pool {
  pm: ProcManager;
  running: Promise<number>;
  inode: string;
  path: string;
  pids: () => number[];
  /** Resolves with the pid of the next worker spawned / the next exit, as the manager learns of it, and the flag at that moment. */
  nextSpawn: () => Promise<{ pid: number; nonBlocking: boolean }>;
  nextExit: () => Promise<{ pid: number; code: number | null; nonBlocking: boolean }>;
}

/** Two workers running node `args` on a fresh Unix socket, both polling it. `nonBlocking`: the manager option (default: on, the workers being Node). */
async function startPool(args: string[], nonBlockingOption?: boolean): Promise<Pool> {
  const path = join(tempDir(), 'pool.sock');
  const live = new Set<number>();
  let onSpawn: ((pid: number) => void) | undefined;
  let onExit: ((pid: number, code: number | null) => void) | undefined;
  let inode = '';
  const pm = new ProcManager({
    nProcesses: 2,
    command: { program: process.execPath, args },
    listen: { kind: 'unix', path },
    noSignals: true,
    ...(nonBlockingOption !== undefined && { nonBlocking: nonBlockingOption }),
    hooks: {
      afterSpawn: (w) => {
        live.add(w.pid);
        onSpawn?.(w.pid);
      },
      notify: (_line, event) => {
        if (event.type !== 'exited') return;
        live.delete(event.pid);
        onExit?.(event.pid, event.code);
      },
    },
  });
  const running = pm.run();
  await waitUntil(() => live.size === 2, 10_000, 'two workers spawned');
  inode = socketInode(path);
  await waitUntil(() => [...live].every((pid) => polling(pid, inode)), 10_000, 'both workers polling the socket');
  return {
    pm,
    running,
    inode,
    path,
    pids: () => [...live],
    nextSpawn: () => new Promise((resolve) => (onSpawn = (pid) => ((onSpawn = undefined), resolve({ pid, nonBlocking: nonBlocking(inode) })))),
    nextExit: () => new Promise((resolve) => (onExit = (pid, code) => ((onExit = undefined), resolve({ pid, code, nonBlocking: nonBlocking(inode) })))),
  };
}

async function stopPool(pool: Pool): Promise<void> {
  pool.pm.signal('SIGTERM');
  assert.equal(await pool.running, 0);
}

test('a respawn leaves O_NONBLOCK set on the socket the running workers share (libuv clears it on a child\'s fds 0-2)', async () => {
  // Workers that listen on fd 0 themselves; the socket starts blocking, so only their listen() makes it non-blocking.
  const pool = await startPool([join(ROOT, 'test/fixtures/backend/scgi-app.mjs')], false);
  try {
    assert.equal(nonBlocking(pool.inode), true, 'the workers made it non-blocking when they listened');
    const [victim] = pool.pids();
    const spawned = pool.nextSpawn();
    process.kill(victim!, 'SIGKILL');
    // afterSpawn runs once spawn() returned: the replacement has exec'd, past libuv's child setup.
    const replacement = await spawned;
    assert.equal(replacement.nonBlocking, true, 'the replacement\'s spawn left the shared flag alone');
    await waitUntil(() => polling(replacement.pid, pool.inode), 10_000, 'the replacement polling');
  } finally {
    await stopPool(pool);
  }
});

test('a Node worker (our app runtime) exiting normally leaves O_NONBLOCK set for the others (Node restores fd 0 at exit)', async () => {
  // The socket was blocking when these workers started (as for a program the manager does not know to be Node).
  const pool = await startPool([join(ROOT, 'dist/examples/hello.js')], false);
  try {
    assert.equal(nonBlocking(pool.inode), true);
    const [leaving] = pool.pids();
    const exited = pool.nextExit();
    process.kill(leaving!, 'SIGTERM');
    const exit = await exited;
    assert.deepEqual([exit.pid, exit.code], [leaving, 0], 'a normal exit (Node runs its stdio reset)');
    assert.equal(exit.nonBlocking, true, 'the exit did not reset the shared flag');
  } finally {
    await stopPool(pool);
  }
});

test('nonBlocking: the manager sets O_NONBLOCK before the first worker starts (for Node pools); the default leaves it blocking (php-cgi needs that)', async () => {
  for (const nonBlockingOption of [true, false]) {
    const path = join(tempDir(), 'nb.sock');
    let first: boolean | undefined;
    // Workers that never touch the socket: what they see is what the manager set.
    const pm = new ProcManager({
      nProcesses: 1,
      command: { program: 'sleep', args: ['30'] },
      listen: { kind: 'unix', path },
      noSignals: true,
      dieTimeout: 5,
      ...(nonBlockingOption && { nonBlocking: true }),
      hooks: { afterSpawn: () => (first ??= nonBlocking(socketInode(path))) },
    });
    const running = pm.run();
    await waitUntil(() => first !== undefined, 10_000, 'the worker spawned');
    assert.equal(first, nonBlockingOption);
    pm.signal('SIGTERM');
    assert.equal(await running, 0);
  }
});

test('a pool of Node itself gets a non-blocking socket by default, so a program listening on fd 0 by itself exits without resetting it', async () => {
  // Not our runtime: the fixture calls listen({ fd: 0 }); `die=1` makes a worker exit(5), a normal exit (Node's stdio reset runs).
  const pool = await startPool([join(ROOT, 'test/fixtures/backend/scgi-app.mjs')]);
  try {
    assert.equal(nonBlocking(pool.inode), true);
    const exited = pool.nextExit();
    const body = '';
    const head = `CONTENT_LENGTH\0${body.length}\0SCGI\x001\0REQUEST_METHOD\0GET\0QUERY_STRING\0die=1\0REQUEST_URI\0/?die=1\0`;
    const sock = net.connect(pool.path);
    sock.on('error', () => {}); // the worker exits without answering
    sock.end(`${Buffer.byteLength(head)}:${head},${body}`);
    const exit = await exited;
    sock.destroy();
    assert.equal(exit.code, 5, 'the fixture exited on its own');
    assert.equal(exit.nonBlocking, true, 'the exit did not reset the shared flag');
  } finally {
    await stopPool(pool);
  }
});
