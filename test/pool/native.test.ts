/**
 * The addon and gatehouse-exec on their own: raw listening fds, errno-coded
 * errors, SOCK_SEQPACKET + SCM_RIGHTS reception, parent-death signals, and
 * the wrapper's clean exec (signals reset, no inherited fds, ppid check).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { execWrapperPath, loadNative } from '../../src/pool/native.js';
import { cleanup, isGone, tempDir } from './harness.js';
import { waitUntil } from '../helpers/wait.js';

const native = loadNative();
const ADDON_PATH = join(execWrapperPath(), '..', 'gatehouse_native.node');

function errnoOf(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  assert.fail('expected a throw');
}

describe('gatehouse_native listening sockets', () => {
  after(cleanup);

  it('listenTcp binds, listens without accepting, reports its port and EADDRINUSE by code', async () => {
    const fd = native.listenTcp('127.0.0.1', 0, 16);
    try {
      assert.ok(fd > 2);
      const port = native.localPort(fd);
      assert.ok(port > 0);
      assert.equal(native.isListeningSocket(fd), true);
      // The kernel completes the handshake into the backlog although nobody accepts.
      await new Promise<void>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve()));
        s.once('error', reject);
      });
      const e = errnoOf(() => native.listenTcp('127.0.0.1', port, 16));
      assert.equal(e.code, 'EADDRINUSE');
      assert.match(e.message, /^bind 127\.0\.0\.1:\d+: /);
    } finally {
      native.closeFd(fd);
    }
    assert.equal(native.isListeningSocket(fd), false);
    assert.equal(errnoOf(() => native.closeFd(fd)).code, 'EBADF');
  });

  it('listenUnix applies the mode before listening, never unlinks, and checks the path length', () => {
    const dir = tempDir();
    const path = join(dir, 's.sock');
    const fd = native.listenUnix(path, 16, 0o600);
    try {
      const st = statSync(path);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(errnoOf(() => native.listenUnix(path, 16)).code, 'EADDRINUSE');
    } finally {
      native.closeFd(fd);
    }
    assert.ok(existsSync(path), 'closing the fd leaves the file: unlinking is policy');
    assert.equal(errnoOf(() => native.listenUnix(join(dir, 'x'.repeat(120)), 16)).code, 'ENAMETOOLONG');
  });

  it('isListeningSocket is false for non-sockets and connected sockets', () => {
    assert.equal(native.isListeningSocket(1), false);
    assert.equal(native.isListeningSocket(9999), false);
  });
});

describe('gatehouse_native SOCK_SEQPACKET receiver', () => {
  it('delivers each datagram with its passed fd (CLOEXEC), reports truncation, then EOF', () => {
    // Python makes the SEQPACKET pair and sends; a Node child receives and prints JSON lines.
    const receiver = `
      const a = require(${JSON.stringify(ADDON_PATH)});
      const fs = require('fs');
      const out = [];
      const h = a.startSeqpacketReceiver(Number(process.argv[1]), (err, payload, fd) => {
        if (err) { out.push({ err: err.code }); return; }
        if (payload === null) { out.push({ eof: true }); h.stop(); h.stop(); console.log(JSON.stringify(out)); return; }
        const rec = { len: payload.length, head: payload.subarray(0, 8).toString(), fd: fd >= 0 };
        if (fd >= 0) {
          const flags = parseInt(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8').match(/flags:\\s+(\\d+)/)[1], 8);
          rec.cloexec = (flags & 0o2000000) !== 0;
          rec.data = fs.readFileSync(fd, 'utf8');
          fs.closeSync(fd);
        }
        out.push(rec);
      });`;
    const sender = `
import socket, os, array, subprocess, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
p = subprocess.Popen([sys.argv[1], '-e', sys.argv[2], str(b.fileno())], pass_fds=[b.fileno()])
b.close()
def passing(text):
    r, w = os.pipe(); os.write(w, text); os.close(w)
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [r]))]
a.sendmsg([b'request1'], passing(b'through-fd'))
a.sendmsg([b'plain'])
a.sendmsg([b'z' * 70000])
a.sendmsg([b'after-big'], passing(b'second'))
a.close()
sys.exit(p.wait())
`;
    const r = spawnSync('python3', ['-c', sender, process.execPath, receiver], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [
      { len: 8, head: 'request1', fd: true, cloexec: true, data: 'through-fd' },
      { len: 5, head: 'plain', fd: false },
      { err: 'EMSGSIZE' },
      { len: 9, head: 'after-bi', fd: true, cloexec: true, data: 'second' },
      { eof: true },
    ]);
  });
});

describe('parent-death signal', () => {
  after(killStrays);

  it('setPdeathsig: a Node process dies when its parent is SIGKILLed', async () => {
    const child = `require(${JSON.stringify(ADDON_PATH)}).setPdeathsig(15); console.log('ready'); setInterval(() => {}, 1000);`;
    const parent = spawn('sh', ['-c', `"$0" -e "$1" & echo $!; wait`, process.execPath, child], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = await firstLines(parent.stdout, 2);
    const grandchild = Number(lines[0]);
    strays.push(grandchild);
    assert.equal(lines[1], 'ready');
    parent.kill('SIGKILL');
    await waitUntil(() => isGone(grandchild), 1000, `node ${grandchild} to die with its parent`);
  });

  it('gatehouse-exec: a foreign program dies when the process that spawned it is SIGKILLed', async () => {
    const parent = spawn('sh', ['-c', `"$0" $$ KILL -- sleep 60 & echo $!; wait`, execWrapperPath()], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [pidLine] = await firstLines(parent.stdout, 1);
    const sleeper = Number(pidLine);
    strays.push(sleeper);
    await waitUntil(() => readComm(sleeper) === 'sleep', 2000, 'the wrapper to exec sleep');
    parent.kill('SIGKILL');
    await waitUntil(() => isGone(sleeper), 1000, `sleep ${sleeper} to die with its parent`);
  });
});

describe('gatehouse-exec', () => {
  it('refuses to run the program when its parent is not the expected one', () => {
    const r = spawnSync(execWrapperPath(), ['999999', 'KILL', '--', 'sh', '-c', 'echo ran'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /manager \(pid 999999\) died/);
  });

  it('resets ignored signals, unblocks all, and passes on no fd above 2', () => {
    // The launcher ignores PIPE and HUP, blocks USR1 and holds an extra pipe on fd 3, then execs
    // the wrapper; the program must see none of it. No shell in between: a shell blocks signals
    // while it waits for a child, which would blur the mask being checked.
    const launcher = `
import os, signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
w = sys.argv[1]
os.execv(w, [w, str(os.getppid()), 'KILL', '--'] + sys.argv[2:])
`;
    const run = (...program: string[]) =>
      spawnSync('python3', ['-c', launcher, execWrapperPath(), ...program], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      });
    const status = run('grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status');
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /SigIgn:\s+0+\n/);
    assert.match(status.stdout, /SigBlk:\s+0+\n/);
    const fdList = run('ls', '-l', '/proc/self/fd');
    assert.equal(fdList.status, 0, fdList.stderr);
    const fds = [...fdList.stdout.matchAll(/ (\d+) -> (\S+)/g)].map((m) => ({ fd: Number(m[1]), target: m[2] ?? '' }));
    assert.ok(fds.some((f) => f.fd === 2), fdList.stdout);
    const leaked = fds.filter((f) => f.fd > 2 && !f.target.startsWith('/proc/')); // ls's own directory fd is fine
    assert.deepEqual(leaked, [], fdList.stdout);
  });

  it('exits 127 and names the program when it cannot be found', () => {
    const r = spawnSync(execWrapperPath(), [String(process.pid), 'TERM', '--', 'no-such-program-gh'], { encoding: 'utf8' });
    assert.equal(r.status, 127);
    assert.match(r.stderr, /no-such-program-gh: No such file or directory/);
  });

  it('rejects a malformed command line with status 2', () => {
    assert.equal(spawnSync(execWrapperPath(), [String(process.pid), 'NOPE', '--', 'true']).status, 2);
    assert.equal(spawnSync(execWrapperPath(), [String(process.pid), 'KILL', 'true']).status, 2);
  });
});

function readComm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Grandchildren these tests start outside the harness; killed in after() if a test failed. */
const strays: number[] = [];
function killStrays(): void {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
}

function firstLines(stream: NodeJS.ReadableStream | null, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    if (!stream) return reject(new Error('no stream'));
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} lines, got ${JSON.stringify(buf)}`)), 5000);
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n');
      if (lines.length > n) {
        clearTimeout(timer);
        resolve(lines.slice(0, n));
      }
    });
  });
}
