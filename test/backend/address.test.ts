/**
 * Address options: -t splitting (IPv6 in brackets), service names from a
 * services(5) file, -u length checks, -i paths, and mode selection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import {
  ensurePrivateDir,
  lookupService,
  parseTcpSpec,
  parseUnixSpec,
  resolvePort,
  sanitiseId,
  socketIdPath,
} from '../../src/backend/address.js';
import { decideMode } from '../../src/backend/modes.js';
import { tmpDir } from '../helpers/peers.js';

test('-t splits HOST:PORT, defaults HOST to localhost and wants IPv6 in brackets', () => {
  assert.deepEqual(parseTcpSpec('9000'), { kind: 'tcp', host: 'localhost', port: '9000' });
  assert.deepEqual(parseTcpSpec('127.0.0.1:9000'), { kind: 'tcp', host: '127.0.0.1', port: '9000' });
  assert.deepEqual(parseTcpSpec('app.example:scgi'), { kind: 'tcp', host: 'app.example', port: 'scgi' });
  assert.deepEqual(parseTcpSpec('[::1]:9000'), { kind: 'tcp', host: '::1', port: '9000' });
  // ashd split at the first ':' and made this "host '' service ':1:9000'".
  assert.throws(() => parseTcpSpec('::1:9000'), /brackets/);
  assert.throws(() => parseTcpSpec('[::1]9000'), SyntaxError);
  assert.throws(() => parseTcpSpec('[nothost]:1'), /not an IPv6/);
  assert.throws(() => parseTcpSpec('host:'), /empty port/);
  assert.throws(() => parseTcpSpec(':80'), /empty host/);
});

test('service names come from the services file (name or alias, tcp only)', async () => {
  const text = `# comment\nhttp\t\t80/tcp\t\twww\t# WorldWideWeb\nfoo 1234/udp\nfoo 4321/tcp foo-alt\nbad notaport/tcp\n`;
  assert.equal(lookupService(text, 'http'), 80);
  assert.equal(lookupService(text, 'www'), 80);
  assert.equal(lookupService(text, 'foo'), 4321);
  assert.equal(lookupService(text, 'foo-alt'), 4321);
  assert.equal(lookupService(text, 'nope'), undefined);
  const dir = tmpDir();
  const file = join(dir, 'services');
  writeFileSync(file, 'scgi-test 12345/tcp\n');
  assert.equal(await resolvePort('scgi-test', file), 12345);
  assert.equal(await resolvePort('8080', file), 8080);
  assert.equal(await resolvePort(8081, file), 8081);
  await assert.rejects(resolvePort('missing', file), (e: NodeJS.ErrnoException) => e.code === 'ENOTFOUND');
  await assert.rejects(resolvePort('70000', file), RangeError);
});

test('-u rejects paths longer than sun_path (ashd overflowed it)', () => {
  assert.deepEqual(parseUnixSpec('/tmp/x.sock'), { kind: 'unix', path: '/tmp/x.sock' });
  assert.throws(() => parseUnixSpec(`/tmp/${'x'.repeat(120)}`), RangeError);
  assert.throws(() => parseUnixSpec(''), SyntaxError);
});

test('-i ID maps to a private per-user directory and cannot escape it', () => {
  const uid = process.getuid!();
  assert.equal(socketIdPath('myapp', {}), `/tmp/gatehouse-${uid}/myapp.sock`);
  assert.equal(socketIdPath('myapp', { XDG_RUNTIME_DIR: '/run/user/7' }), '/run/user/7/gatehouse/myapp.sock');
  assert.equal(socketIdPath('../../etc/passwd', {}), `/tmp/gatehouse-${uid}/.._.._etc_passwd.sock`);
  assert.equal(sanitiseId('..'), '_..');
  assert.equal(sanitiseId('a b/c'), 'a_b_c');
});

test('the private directory must be ours and closed to others', async () => {
  const base = tmpDir();
  const fresh = join(base, 'fresh');
  await ensurePrivateDir(fresh);
  const open = join(base, 'open');
  mkdirSync(open);
  chmodSync(open, 0o755);
  await assert.rejects(ensurePrivateDir(open), (e: NodeJS.ErrnoException) => e.code === 'EPERM');
  const file = join(base, 'file');
  writeFileSync(file, '');
  await assert.rejects(ensurePrivateDir(file));
});

test('the mode follows the man page: address, PROGRAM and -N', () => {
  const address = { kind: 'unix', path: '/tmp/x' } as const;
  assert.equal(decideMode({ address }), 'client');
  assert.equal(decideMode({ address, retries: 3 }), 'client');
  assert.equal(decideMode({ program: ['app'] }), 'anonymous');
  // ashd's "PROGRAM and -N, no address" failed on the first request; the man page says anonymous.
  assert.equal(decideMode({ program: ['app'], retries: 3 }), 'anonymous');
  assert.equal(decideMode({ address, program: ['app'] }), 'launching');
  assert.equal(decideMode({ address, program: ['app'], retries: 0 }), 'launching');
  assert.equal(decideMode({ address, program: ['app'], retries: 2 }), 'mixed');
  assert.throws(() => decideMode({}), TypeError);
  assert.throws(() => decideMode({ program: [] }), TypeError);
});
