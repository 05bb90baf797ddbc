/**
 * callscgi/callfcgi command lines: getopt "+" parsing (PROGRAM's own
 * options are never ours), -h, bad flags and conflicting addresses, as
 * parsed and as exit codes of the real executables.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseCallArgs, usage } from '../../src/cli/callhandler.js';
import { collect, spawnTracked, stopProcess, waitForExit } from '../helpers/peers.js';
import { cliPath } from '../backend/ashd-driver.js';

const spawned: Array<ReturnType<typeof spawnTracked>> = [];
after(async () => {
  for (const c of spawned) await stopProcess(c);
});

async function run(cli: 'callscgi' | 'callfcgi', args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnTracked(process.execPath, [cliPath(cli), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(child);
  const logs = collect(child);
  // 'close' comes after the exit and after stdout/stderr are drained.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const { code } = await waitForExit(child, 10000);
  await closed;
  return { code, stdout: logs.stdout(), stderr: logs.stderr() };
}

test('options stop at the first non-option; PROGRAM keeps its own flags', () => {
  const r = parseCallArgs(['-N', '3', '-u', '/tmp/s', 'uwsgi', '-N', '9', '--scgi-socket', '/tmp/s']);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.equal(r.options.retries, 3);
  assert.deepEqual(r.options.address, { kind: 'unix', path: '/tmp/s' });
  assert.deepEqual(r.options.program, ['uwsgi', '-N', '9', '--scgi-socket', '/tmp/s']);
});

test('clustered and attached option arguments, --, -n and --http', () => {
  const r = parseCallArgs(['-N2', '-t', '[::1]:9000', '-n', '4', '--http', '8080', '--', '-prog', 'x']);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') return;
  assert.equal(r.options.retries, 2);
  assert.deepEqual(r.options.address, { kind: 'tcp', host: '::1', port: '9000' });
  assert.equal(r.options.processes, 4);
  assert.deepEqual(r.options.http, { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(r.options.program, ['-prog', 'x']);
  const s = parseCallArgs(['-ttcphost:scgi', '--http=0.0.0.0:81']);
  assert.equal(s.kind, 'run');
  if (s.kind === 'run') {
    assert.deepEqual(s.options.address, { kind: 'tcp', host: 'tcphost', port: 'scgi' });
    assert.deepEqual(s.options.http, { host: '0.0.0.0', port: 81 });
  }
  assert.deepEqual(parseCallArgs(['-i', 'app', 'prog']).kind, 'run');
});

test('errors: unknown flag, missing argument, bad -N, two addresses, nothing to do', () => {
  assert.equal(parseCallArgs(['-h', '-x']).kind, 'help');
  assert.deepEqual(parseCallArgs(['-x']), { kind: 'error', message: "unknown option '-x'" });
  assert.deepEqual(parseCallArgs(['-u']), { kind: 'error', message: "option '-u' needs an argument" });
  assert.equal(parseCallArgs(['-N', 'abc', 'prog']).kind, 'error');
  assert.equal(parseCallArgs(['-n', '0', 'prog']).kind, 'error');
  assert.deepEqual(parseCallArgs(['-u', '/a', '-t', '80']), { kind: 'error', message: 'at most one of -i, -u or -t may be given' });
  assert.equal(parseCallArgs(['-u', '/a', '-u', '/b']).kind, 'run', 'a repeated option: the last wins');
  assert.equal(parseCallArgs([]).kind, 'error');
  assert.equal(parseCallArgs(['--bogus']).kind, 'error');
});

test('callscgi -h prints usage on stdout and exits 0', async () => {
  const r = await run('callscgi', ['-h']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, usage('callscgi'));
  assert.match(r.stdout, /^usage: callscgi \[-h\] \[-N RETRIES\] \[-i ID\] \[-u UNIXPATH\] \[-t \[HOST:\]TCPPORT\]/);
  assert.equal(r.stderr, '');
});

test('a bad flag prints usage on stderr and exits 2 (ashd: 1)', async () => {
  const r = await run('callfcgi', ['-q', 'prog']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /unknown option '-q'\nusage: callfcgi /);
});

test('more than one of -i/-u/-t exits 2', async () => {
  const r = await run('callscgi', ['-i', 'x', '-t', '9000']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /at most one of -i, -u or -t may be given/);
});

test('-n outside anonymous mode exits 2', async () => {
  const r = await run('callscgi', ['-n', '3', '-t', '9000']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /-n needs anonymous mode/);
});

test('the executables start with a node shebang', () => {
  for (const cli of ['callscgi', 'callfcgi'] as const) {
    assert.match(readFileSync(cliPath(cli), 'utf8'), /^#!\/usr\/bin\/env node\n/);
  }
});
