/**
 * Inherited listening sockets: fd 0 (FCGI_LISTENSOCK_FILENO, as spawn-fcgi
 * or a parent manager would hand it over) and systemd socket activation
 * (LISTEN_FDS/LISTEN_PID, via systemd-socket-activate). An inherited socket
 * is not ours to unlink.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadNative } from '../../src/pool/native.js';
import { cleanup, fcgiRequest, LoggedProcess, MANAGE_MAIN, PERL_APP, tempDir, waitForService } from './harness.js';

describe('inherited sockets', () => {
  after(cleanup);

  for (const flags of [['--inherit'], []]) {
    it(`fd 0 is a listening socket (${flags.length ? '--inherit' : 'no address flag'}): workers get it, the file is left alone`, async () => {
      const native = loadNative();
      const dir = tempDir();
      const sock = join(dir, 'fd0.sock');
      const fd = native.listenUnix(sock, 64);
      let pm: LoggedProcess;
      try {
        pm = new LoggedProcess(process.execPath, [MANAGE_MAIN, '-n', '2', ...flags, '--', 'perl', PERL_APP], { stdin: fd });
      } finally {
        native.closeFd(fd); // the manager has its copy now
      }
      await pm.waitFor(/listening on inherited fd 0 \(fd 0\)/);
      const reply = await waitForService(sock);
      await pm.waitForStarted(reply.pid);
      process.kill(pm.pid, 'SIGTERM');
      assert.equal((await pm.exited).code, 0);
      assert.ok(existsSync(sock), 'an inherited socket file is not unlinked');
    });
  }

  it('systemd socket activation (LISTEN_FDS on fd 3)', async () => {
    const dir = tempDir();
    const sock = join(dir, 'sd.sock');
    // systemd-socket-activate binds, waits for the first connection, then execs the manager in place.
    const pm = new LoggedProcess('systemd-socket-activate', ['-l', sock, process.execPath, MANAGE_MAIN, '-n', '2', '--', 'perl', PERL_APP]);
    await pm.waitFor(/Listening on .*sd\.sock as 3/);
    const first = await fcgiRequest(sock);
    assert.equal(first.code, 0);
    await pm.waitFor(/listening on inherited fd 3 \(systemd\)/);
    await pm.waitForStarted(first.pid);
    const workerEnv = readFileSync(`/proc/${first.pid}/environ`, 'utf8').split('\0');
    assert.deepEqual(workerEnv.filter((v) => /^LISTEN_(PID|FDS|FDNAMES)=/.test(v)), [], 'activation variables are not passed on');
    process.kill(pm.pid, 'SIGTERM');
    assert.equal((await pm.exited).code, 0);
  });
});
