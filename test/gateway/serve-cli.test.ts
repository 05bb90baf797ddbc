/**
 * `gatehouse serve` as a process: usage and exit codes, the start line,
 * serving through an anonymous child (our hello example, php-cgi with
 * --root), and SIGTERM: in-flight requests finish, the child is stopped,
 * exit 0.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { parseServeArgs } from '../../src/cli/serve.js';
import { echoAcrossSignal, output, serve } from './serve-process.js';
import { join } from 'node:path';
import { cgiFcgi, fixture, freePort, httpRequest, startPhpCgi, stopProcess, tmpDir, waitForExit, waitForPidGone } from '../helpers/peers.js';

describe('gatehouse serve: flags', () => {
  it('stops at the first non-option, like callscgi (PROGRAM keeps its own flags)', () => {
    const p = parseServeArgs(['--listen', '0.0.0.0:9000', '--scgi', '-N3', '-t', '[::1]:4000', 'app', '-n', '2', '--root', 'x']);
    assert.equal(p.kind, 'run');
    if (p.kind !== 'run') return;
    assert.deepEqual(p.options.listen, { host: '0.0.0.0', port: 9000 });
    assert.equal(p.options.protocol, 'scgi');
    assert.equal(p.options.retries, 3);
    assert.deepEqual(p.options.address, { kind: 'tcp', host: '::1', port: '4000' });
    assert.deepEqual(p.options.program, ['app', '-n', '2', '--root', 'x']);
    assert.equal(p.options.maxConns, undefined);
  });

  it('--root without PROGRAM runs php-cgi with --max-conns defaulting to -n', () => {
    const p = parseServeArgs(['--root', '/srv/www', '-n', '4', '--timeout', '2.5', '--status-path', '/s']);
    assert.equal(p.kind, 'run');
    if (p.kind !== 'run') return;
    assert.deepEqual(p.options.program, ['php-cgi']);
    assert.equal(p.options.maxConns, 4);
    assert.equal(p.options.timeoutMs, 2500);
    assert.equal(p.options.statusPath, '/s');
    assert.equal(p.options.keepaliveMs, undefined);
  });

  it('--keepalive-timeout takes seconds; 0 means a connection per request', () => {
    for (const [value, ms] of [['0', 0], ['1.5', 1500], ['30', 30_000]] as const) {
      const p = parseServeArgs(['--keepalive-timeout', value, 'app']);
      assert.equal(p.kind, 'run');
      if (p.kind === 'run') assert.equal(p.options.keepaliveMs, ms);
    }
  });

  it('rejects bad values with a message naming the flag', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--max-conns', '0', 'app'], /--max-conns needs an integer ≥ 1/],
      [['-n', 'x', 'app'], /-n needs an integer ≥ 1/],
      [['--timeout', '-1', 'app'], /--timeout needs a positive number/],
      [['--timeout', '0', 'app'], /--timeout needs a positive number/],
      [['--keepalive-timeout', 'x', 'app'], /--keepalive-timeout needs a non-negative number/],
      [['--listen', 'host:http', 'app'], /--listen needs a numeric port/],
      [['--status-path', 'status', 'app'], /must start with '\/'/],
      [['-u', '/a', '-t', '1', 'app'], /at most one of -i, -u or -t/],
      [['--scgi=1', 'app'], /takes no argument/],
      [['-x', 'app'], /unknown option '-x'/],
    ];
    for (const [argv, message] of bad) {
      const p = parseServeArgs(argv);
      assert.equal(p.kind, 'error', argv.join(' '));
      if (p.kind === 'error') assert.match(p.message, message);
    }
  });
});

describe('gatehouse serve (CLI)', () => {
  const children: ChildProcess[] = [];
  const track = (c: ChildProcess): ChildProcess => (children.push(c), c);
  after(async () => {
    for (const c of children) await stopProcess(c);
  });

  it('-h prints usage on stdout and exits 0', async () => {
    const c = track(serve(['-h']));
    const o = output(c);
    assert.equal((await waitForExit(c)).code, 0);
    assert.match(o.stdout(), /^usage: gatehouse serve /);
    assert.equal(o.stderr(), '');
  });

  it('a bad flag gives one line plus usage on stderr and exit 2', async () => {
    const c = track(serve(['--bogus']));
    const o = output(c);
    assert.equal((await waitForExit(c)).code, 2);
    assert.match(o.stderr(), /^gatehouse serve: unknown option '--bogus'\nusage: gatehouse serve /);
    const none = track(serve(['--listen', '9']));
    const no = output(none);
    assert.equal((await waitForExit(none)).code, 2);
    assert.match(no.stderr(), /need an address .* or a PROGRAM/);
  });

  it('a port already in use is a runtime failure: one line, exit 1', async () => {
    const blocker = net.createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const c = track(serve(['--listen', String(port), '--', 'node', 'dist/examples/hello.js']));
      const o = output(c);
      assert.equal((await waitForExit(c)).code, 1);
      assert.match(o.stderr(), new RegExp(`gatehouse: cannot listen on 127.0.0.1:${port}: .*EADDRINUSE`));
    } finally {
      blocker.close();
    }
  });

  it('serves through an anonymous child; SIGTERM finishes in-flight requests, stops the child, exits 0', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', String(port), '--status-path', '/gatehouse-status', '--', 'node', 'dist/examples/hello.js']));
    const o = output(c);
    await o.waitFor(new RegExp(`^gatehouse: listening on http://127\\.0\\.0\\.1:${port}/ \\(fastcgi, anonymous: node dist/examples/hello\\.js\\)$`, 'm'));
    const url = `http://127.0.0.1:${port}`;
    const hello = await httpRequest(`${url}/`);
    assert.equal(hello.status, 200);
    const childPid = Number(/\(pid (\d+)\)/.exec(hello.body.toString())?.[1]);
    assert.ok(childPid > 0);
    const status = await httpRequest(`${url}/gatehouse-status?json`);
    assert.equal(JSON.parse(status.body.toString()).backend.mode, 'anonymous');

    const exited = waitForExit(c, 15_000);
    const echoed = await echoAcrossSignal(url, c, 'SIGTERM');
    assert.equal(echoed, 'helloworld');
    assert.equal((await exited).code, 0);
    await waitForPidGone(childPid, 5000);
  });

  it('--root runs php-cgi by default and serves the PHP app', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', `127.0.0.1:${port}`, '--root', fixture('php-app')]));
    const o = output(c);
    await o.waitFor(/listening on .* \(fastcgi, anonymous: php-cgi\)/);
    const r = await httpRequest(`http://127.0.0.1:${port}/hello/cli`);
    assert.equal(r.body.toString(), 'Hello, cli!\n');
    const css = await httpRequest(`http://127.0.0.1:${port}/style.css`);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    const exited = waitForExit(c, 15_000);
    c.kill('SIGINT');
    assert.equal((await exited).code, 0);
  });

  it('--keepalive-timeout 0: an idle gateway leaves a one-process php-cgi free for other clients', async () => {
    const sock = join(tmpDir('gh-ka-'), 'php.sock');
    const php = await startPhpCgi({ path: sock }, { children: 0 });
    try {
      const port = await freePort();
      const root = fixture('php-app');
      const c = track(serve(['--listen', String(port), '-u', sock, '--keepalive-timeout', '0', '--root', root]));
      await output(c).waitFor(/listening on /);
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/hello/gw`)).body.toString(), 'Hello, gw!\n');
      // With a kept connection the only php-cgi process would sit on it and this would hang.
      const direct = await cgiFcgi({ path: sock }, { REQUEST_METHOD: 'GET', SCRIPT_FILENAME: join(root, 'index.php'), SCRIPT_NAME: '/index.php', REQUEST_URI: '/hello/direct', REDIRECT_STATUS: '200' }, '', 10_000);
      assert.match(direct.stdout.toString(), /Hello, direct!/);
      assert.equal((await httpRequest(`http://127.0.0.1:${port}/hello/again`)).body.toString(), 'Hello, again!\n');
    } finally {
      await php.stop();
    }
  });
});
