/**
 * Anonymous mode with real children (both protocols, and php-cgi): the
 * private socket, restart of a crashed child, the restarted child's own
 * error reaching the caller (ashd 6f761f0), and cleanup on close.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { BackendError, type BackendProtocol } from '../../src/backend/contract.js';
import { ChildExitedError } from '../../src/backend/errors.js';
import type { AnonymousConnector } from '../../src/backend/anonymous-mode.js';
import { fixture, tmpDir, waitForPidGone } from '../helpers/peers.js';
import { appProgram, ask, childReaped, Cleanup, pidAlive, recordingLog } from './support.js';
import { readAll } from '../helpers/wait.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: unknown = err; e !== undefined && out.length < 10; e = e instanceof Error ? e.cause : undefined) out.push(e);
  return out;
}

for (const protocol of ['scgi', 'fastcgi'] as BackendProtocol[]) {
  test(`${protocol}: anonymous mode serves from a private socket and cleans up on close`, async () => {
    const { log } = recordingLog();
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log });
    assert.equal(backend.mode, 'anonymous');
    await backend.start();
    const connector = backend.connector as AnonymousConnector;
    const path = connector.socketPath!;
    const dir = connector.socketDir!;
    assert.equal(dirname(path), dir);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.ok(statSync(path).isSocket());

    const a = await ask(backend, 'x=1');
    const b = await ask(backend, 'x=2', { body: 'hello body' });
    assert.equal(a.status, 200);
    assert.equal(a.json.pid, b.json.pid);
    assert.equal(b.json.body, 'hello body');
    const pid = a.json.pid;
    assert.equal(connector.child?.pid, pid);

    await backend.close();
    await waitForPidGone(pid, 5000);
    assert.equal(existsSync(path), false, 'socket removed');
    assert.equal(existsSync(dir), false, 'directory removed');
    await assert.rejects(ask(backend), (e: BackendError) => e.code === 'ERR_BACKEND_UNAVAILABLE');
  });

  test(`${protocol}: a crashed child is restarted and the next request is served`, async () => {
    const { log, text } = recordingLog();
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), env: { ...process.env, FIXTURE_CRASH_AFTER: '1' }, log });
    const first = await ask(backend);
    assert.equal(first.status, 200);
    await childReaped(backend);
    const second = await ask(backend);
    assert.equal(second.status, 200);
    assert.notEqual(second.json.pid, first.json.pid);
    assert.match(text(), /refused a connection .*restarting/);
    await backend.close();
  });

  test(`${protocol}: concurrent requests after a crash restart the child once`, async () => {
    const state = tmpDir();
    const { log } = recordingLog();
    const backend = cleanup.backend({
      protocol,
      program: appProgram(protocol),
      env: { ...process.env, FIXTURE_CRASH_AFTER: '1', FIXTURE_STATE_DIR: state },
      log,
    });
    await ask(backend);
    await childReaped(backend);
    // The second child serves the first of these and crashes too, so allow its own restart: 3 starts at most.
    const answers = await Promise.allSettled([ask(backend), ask(backend), ask(backend)]);
    const starts = Number(readFileSync(`${state}/starts`, 'utf8'));
    assert.ok(answers.some((a) => a.status === 'fulfilled'), 'at least one served');
    assert.ok(starts <= 3, `started ${starts} times`);
    await backend.close();
  });

  test(`${protocol}: when the restarted child fails too, the caller gets ITS error (ashd 6f761f0)`, async () => {
    const state = tmpDir();
    const { log, text } = recordingLog();
    const backend = cleanup.backend({
      protocol,
      program: appProgram(protocol),
      env: { ...process.env, FIXTURE_CRASH_AFTER: '1', FIXTURE_STATE_DIR: state, FIXTURE_BROKEN_FROM_START: '2', FIXTURE_BROKEN_EXIT: '42' },
      log,
    });
    const first = await ask(backend);
    await childReaped(backend);
    const err = await ask(backend).then(
      () => assert.fail('the broken child answered'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof BackendError, String(err));
    assert.ok(['ERR_BACKEND_UNAVAILABLE', 'ERR_BACKEND_CLOSED_EARLY'].includes(err.code), err.code);
    const exits = causes(err).filter((e): e is ChildExitedError => e instanceof ChildExitedError);
    assert.equal(exits.length, 1, `one child exit in ${String(err)}`);
    assert.equal(exits[0]!.exitCode, 42, 'the second child status, not the first (3)');
    assert.notEqual(exits[0]!.pid, first.json.pid);
    assert.match(err.message, /status 42/);
    assert.match(text(), /failed.*status 42/);
    assert.equal(readFileSync(`${state}/starts`, 'utf8'), '2', 'one restart for the request, not more');
    await backend.close();
  });
}

test('fastcgi: php-cgi in anonymous mode (PHP_FCGI_CHILDREN=0 accepts on fd 0), restarted after PHP_FCGI_MAX_REQUESTS', async (t) => {
  const { log } = recordingLog();
  const backend = cleanup.backend({
    protocol: 'fastcgi',
    program: ['php-cgi'],
    env: { ...process.env, PHP_FCGI_CHILDREN: '0', PHP_FCGI_MAX_REQUESTS: '2' },
    log,
  });
  const script = fixture('backend', 'hello.php');
  const { Readable } = await import('node:stream');
  const php = async (body: string | null): Promise<{ out: string; pid: string }> => {
    const buf = body === null ? null : Buffer.from(body);
    const res = await backend.dispatch({
      params: [
        ['SCRIPT_FILENAME', script],
        ['REQUEST_METHOD', buf ? 'POST' : 'GET'],
        ['GATEWAY_INTERFACE', 'CGI/1.1'],
        ['REDIRECT_STATUS', '200'],
        ...(buf
          ? ([
              ['CONTENT_TYPE', 'application/x-www-form-urlencoded'],
              ['CONTENT_LENGTH', String(buf.length)],
            ] as Array<[string, string]>)
          : []),
      ],
      body: buf ? Readable.from([buf]) : null,
      contentLength: buf?.length ?? 0,
    });
    const out = (await readAll(res.body)).toString();
    assert.equal(res.status, 200, out);
    return { out, pid: res.headers.find(([n]) => n === 'X-Php-Pid')![1] };
  };
  const first = await php('n=1');
  assert.match(first.out, /^hello from php\nmethod=POST\nbody=n=1\n$/);
  // php-cgi exits after two requests; bodyless requests survive that (restart, or resend on a
  // fresh connection). A request with a body racing php's exit is not resent (see the docs).
  const pids = new Set([first.pid]);
  for (let i = 0; i < 5; i++) {
    const r = await php(null);
    assert.match(r.out, /method=GET/);
    pids.add(r.pid);
  }
  t.diagnostic(`php-cgi pids: ${[...pids].join(' ')}`);
  assert.ok(pids.size >= 3, 'php-cgi was restarted after its max requests');
  const lastPid = Number([...pids].at(-1));
  await backend.close();
  await waitForPidGone(lastPid, 5000);
  assert.equal(pidAlive(lastPid), false);
});

test('scgi: anonymous mode with processes > 1 runs a pool on the socket and stops it on close', async () => {
  const { log } = recordingLog();
  const backend = cleanup.backend({ protocol: 'scgi', program: appProgram('scgi'), processes: 3, log });
  await backend.start();
  const connector = backend.connector as AnonymousConnector;
  const dir = connector.socketDir!;
  // Requests that block their worker, in parallel. Which workers take them is the kernel's and
  // Node's choice (the first worker listening may accept all six before the others listen).
  const answers = await Promise.all(Array.from({ length: 6 }, () => ask(backend, 'busy=300')));
  const pids = new Set(answers.map((a) => a.json.pid));
  // A worker that dies is replaced by the pool; the socket stays open meanwhile.
  const victim = [...pids][0]!;
  process.kill(victim, 'SIGKILL');
  await waitForPidGone(victim, 5000);
  for (let i = 0; i < 4; i++) assert.equal((await ask(backend)).status, 200);
  const all = new Set([...pids, ...(await Promise.all(Array.from({ length: 4 }, () => ask(backend, 'busy=100')))).map((a) => a.json.pid)]);
  // With the victim gone, others answered: more than one process served the one socket.
  assert.ok(all.size >= 2, `served by ${all.size} worker(s)`);
  await backend.close();
  for (const pid of all) await waitForPidGone(pid, 8000);
  assert.equal(existsSync(dir), false);
});
