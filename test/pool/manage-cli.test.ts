/**
 * `gatehouse manage` flags and start-up failures: usage errors exit 2 with
 * one line + usage on stderr, runtime failures exit 1 with one line and
 * leave no socket file and no pid file behind; pid-file and Unix-socket
 * rules (refuse live, replace stale, never delete a non-socket).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadNative } from '../../src/pool/native.js';
import { cleanup, fcgiRequest, MANAGE_MAIN, PERL_APP, startGatehouse, tempDir, waitForService } from './harness.js';

function manageSync(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [MANAGE_MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 20_000,
  });
}

/** One error line naming the problem, then the usage text. */
function assertUsageError(args: string[], problem: RegExp): void {
  const r = manageSync(args);
  assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  const [first, ...rest] = r.stderr.split('\n');
  assert.match(first ?? '', /^gatehouse manage: /);
  assert.match(first ?? '', problem);
  assert.match(rest.join('\n'), /^Usage: gatehouse manage /m);
  assert.equal(r.stdout, '');
}

describe('gatehouse manage: usage', () => {
  after(cleanup);

  it('-h and --help print the usage on stdout and exit 0', () => {
    for (const flag of ['-h', '--help']) {
      const r = manageSync([flag]);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: gatehouse manage \[options\] -- PROGRAM/);
      assert.equal(r.stderr, '');
    }
  });

  it('bad flags, bad numbers and a missing program exit 2', () => {
    const dir = tempDir();
    const s = join(dir, 'x.sock');
    assertUsageError(['--bogus', '-s', s, '--', 'true'], /bogus/);
    assertUsageError(['-n', 'two', '-s', s, '--', 'true'], /-n needs a whole number/);
    assertUsageError(['-n', '0', '-s', s, '--', 'true'], /-n must be between 1/);
    assertUsageError(['--die-timeout', 'soon', '-s', s, '--', 'true'], /--die-timeout/);
    assertUsageError(['--die-timeout', '0', '-s', s, '--', 'true'], /--die-timeout/);
    assertUsageError(['--backlog', '-5', '-s', s, '--', 'true'], /backlog/);
    assertUsageError(['-s', s], /missing program/);
    assertUsageError(['-s', s, '--'], /missing program/);
    assertUsageError(['-s', s, 'php-cgi'], /after --/);
    assertUsageError(['-s', s, '-t', '9000', '--', 'true'], /at most one of -s, -t and --inherit/);
    assertUsageError(['-t', '9000', '--socket-mode', '660', '--', 'true'], /--socket-mode needs -s/);
    assertUsageError(['-s', s, '--socket-mode', '999', '--', 'true'], /octal/);
    assertUsageError(['-t', 'localhost:http', '--', 'true'], /-t needs \[HOST:\]PORT/);
    assertUsageError(['-t', '70000', '--', 'true'], /between 0 and 65535/);
    assertUsageError(['--', 'true'], /no address/);
    assert.equal(existsSync(s), false, 'no usage error may create the socket');
  });
});

describe('gatehouse manage: start-up failures leave nothing behind', () => {
  after(cleanup);

  it('an unbindable Unix path: exit 1, one line, no pid file', () => {
    const dir = tempDir();
    const pidFile = join(dir, 'pm.pid');
    const r = manageSync(['-s', join(dir, 'missing-dir', 'x.sock'), '--pidfile', pidFile, '--', 'perl', PERL_APP]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^gatehouse manage: cannot listen on unix:.*x\.sock: bind .*No such file or directory\n$/);
    assert.equal(existsSync(pidFile), false);
  });

  it('a TCP port in use: exit 1, one line, no pid file', () => {
    const native = loadNative();
    const fd = native.listenTcp('127.0.0.1', 0, 4);
    try {
      const dir = tempDir();
      const pidFile = join(dir, 'pm.pid');
      const r = manageSync(['-t', `127.0.0.1:${native.localPort(fd)}`, '--pidfile', pidFile, '--', 'perl', PERL_APP]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^gatehouse manage: cannot listen on tcp:127\.0\.0\.1:\d+: .*Address already in use\n$/);
      assert.equal(existsSync(pidFile), false);
    } finally {
      native.closeFd(fd);
    }
  });

  it('a program that does not exist: exit 1 before the socket is created', () => {
    const dir = tempDir();
    const sock = join(dir, 'x.sock');
    const r = manageSync(['-s', sock, '--pidfile', join(dir, 'pm.pid'), '--', 'no-such-program-gh']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^gatehouse manage: no-such-program-gh: no such executable in PATH\n$/);
    assert.equal(existsSync(sock), false);
    assert.equal(existsSync(join(dir, 'pm.pid')), false);
  });

  it('an existing file that is not a socket is refused and left intact', () => {
    const dir = tempDir();
    const path = join(dir, 'data.txt');
    writeFileSync(path, 'precious\n');
    const r = manageSync(['-s', path, '--', 'perl', PERL_APP]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is not a socket/);
    assert.equal(readFileSync(path, 'utf8'), 'precious\n');
  });
});

describe('gatehouse manage: live and stale sockets and pid files', () => {
  after(cleanup);

  it('refuses a live socket and a live pid file; the running manager is untouched', async () => {
    const dir = tempDir();
    const sock = join(dir, 'a.sock');
    const pidFile = join(dir, 'a.pid');
    const first = startGatehouse(['-n', '1', '-s', sock, '--pidfile', pidFile, '--', 'perl', PERL_APP]);
    await first.waitFor(/initialized/);
    await waitForService(sock);

    const otherPid = join(dir, 'b.pid');
    const sameSocket = manageSync(['-s', sock, '--pidfile', otherPid, '--', 'perl', PERL_APP]);
    assert.equal(sameSocket.status, 1);
    assert.match(sameSocket.stderr, /^gatehouse manage: .*a\.sock is in use by a running server\n$/);
    assert.equal(existsSync(otherPid), false);

    const otherSock = join(dir, 'b.sock');
    const samePidFile = manageSync(['-s', otherSock, '--pidfile', pidFile, '--', 'perl', PERL_APP]);
    assert.equal(samePidFile.status, 1);
    assert.match(samePidFile.stderr, new RegExp(`^gatehouse manage: pid file .* names a running process \\(pid ${first.pid}\\)\\n$`));
    assert.equal(existsSync(otherSock), false, 'the refused manager removed the socket it had bound');

    assert.equal(readFileSync(pidFile, 'utf8'), `${first.pid}\n`);
    assert.equal((await fcgiRequest(sock)).code, 0, 'the first manager still serves');
    process.kill(first.pid, 'SIGTERM');
    assert.equal((await first.exited).code, 0);
  });

  it('replaces a stale socket file and a stale pid file', async () => {
    const dir = tempDir();
    const sock = join(dir, 'stale.sock');
    const native = loadNative();
    native.closeFd(native.listenUnix(sock, 4)); // a socket file nobody listens on
    const pidFile = join(dir, 'stale.pid');
    const dead = spawnSync('true');
    writeFileSync(pidFile, `${dead.pid}\n`);

    const pm = startGatehouse(['-n', '1', '-s', sock, '--pidfile', pidFile, '--', 'perl', PERL_APP]);
    await pm.waitFor(/initialized/);
    assert.equal(readFileSync(pidFile, 'utf8'), `${pm.pid}\n`);
    const reply = await waitForService(sock);
    await pm.waitForStarted(reply.pid);
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
    assert.equal(existsSync(sock), false, 'socket unlinked on clean exit');
    assert.equal(existsSync(pidFile), false, 'pid file removed on clean exit');
  });

  it('--socket-mode is applied; a backlog above net.core.somaxconn is warned about, not refused', async () => {
    const dir = tempDir();
    const sock = join(dir, 'mode.sock');
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    const pm = startGatehouse(['-s', sock, '--socket-mode', '600', '--backlog', String(somaxconn + 1), '--', 'perl', PERL_APP]);
    await pm.waitFor(/initialized/);
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.match(pm.text(), new RegExp(`backlog ${somaxconn + 1} exceeds net\\.core\\.somaxconn \\(${somaxconn}\\)`));
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });
});
