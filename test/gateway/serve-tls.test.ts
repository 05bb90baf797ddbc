/**
 * `gatehouse serve --tls-cert FILE --tls-key FILE`: HTTPS in front of
 * php-cgi, checked with curl (a real TLS client) and node:tls; what the
 * application sees (HTTPS=on, REQUEST_SCHEME=https), a plain-HTTP client
 * on the HTTPS port, SIGHUP loading a renewed certificate for new
 * connections (single process and --workers), and the flag errors.
 * Certificates are made by openssl for each test run.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { output, serve } from './serve-process.js';
import { fixture, freePort, stopProcess, tmpDir, waitForExit } from '../helpers/peers.js';

interface Pair {
  cert: string;
  key: string;
  /** SHA-256 fingerprint as node:tls reports it (AA:BB:…). */
  fingerprint: string;
}

/** A self-signed certificate for 127.0.0.1 / localhost, made by openssl. */
function makePair(dir: string, name: string): Pair {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const fingerprint = new X509Certificate(readFileSync(cert)).fingerprint256;
  return { cert, key, fingerprint };
}

/** curl -k: status line fields and body, or curl's exit code when it failed. */
function curl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, out: code === 0 ? stdout : stderr });
    });
  });
}

/** The fingerprint of the certificate a new TLS connection is shown. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.setTimeout(10_000, () => s.destroy(new Error('TLS handshake timed out')));
    s.on('error', (e) => reject(new Error(`servedFingerprint: ${String(e)}`)));
  });
}

/** SIGTERM and a clean exit: the anonymous php-cgi stopped and its private socket directory removed (a SIGKILL in after() would leave both). */
async function stopServe(c: ChildProcess): Promise<void> {
  const exited = waitForExit(c, 20_000);
  c.kill('SIGTERM');
  assert.equal((await exited).code, 0);
}

/** Polls (bounded) until new connections are shown `fingerprint`: with --workers, each worker reloads on its own HUP. */
async function untilServed(port: number, fingerprint: string, tries = 20): Promise<void> {
  for (let i = 0; i < tries; i++) if ((await servedFingerprint(port)) === fingerprint) return;
  throw new Error(`new connections are not shown ${fingerprint} after ${tries} handshakes`);
}

describe('gatehouse serve --tls-cert/--tls-key', () => {
  const children: ChildProcess[] = [];
  const track = (c: ChildProcess): ChildProcess => (children.push(c), c);
  let dir: string;
  let first: Pair;
  let second: Pair;
  before(() => {
    dir = tmpDir('gh-tls-');
    first = makePair(dir, 'first');
    second = makePair(dir, 'second');
  });
  after(async () => {
    for (const c of children) await stopProcess(c);
  });

  /** Live copies of `first` that a test may overwrite with `second`. */
  function livePair(name: string): { cert: string; key: string } {
    const cert = join(dir, `${name}.live.crt`);
    const key = join(dir, `${name}.live.key`);
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    return { cert, key };
  }

  it('serves the PHP app over HTTPS: the application sees HTTPS=on and REQUEST_SCHEME=https; static files too', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', `127.0.0.1:${port}`, '--tls-cert', first.cert, '--tls-key', first.key, '--root', fixture('php-app'), '-n', '2']));
    await output(c).waitFor(new RegExp(`listening on https://127\\.0\\.0\\.1:${port}/ \\(fastcgi, anonymous: php-cgi\\)`));
    const info = await curl(['-k', `https://127.0.0.1:${port}/info.php/x`]);
    assert.equal(info.code, 0, info.out);
    const env = JSON.parse(info.out) as Record<string, string | null>;
    assert.equal(env.HTTPS, 'on');
    assert.equal(env.REQUEST_SCHEME, 'https');
    assert.equal(env.SERVER_PORT, String(port));
    assert.equal(env.PATH_INFO, '/x');
    // Two URLs in one curl run: the second reuses the kept-alive TLS connection (num_connects 0).
    const both = await curl(['-k', '-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null', '-o', '/dev/null', `https://127.0.0.1:${port}/style.css`, `https://127.0.0.1:${port}/hello/tls`]);
    assert.deepEqual(both.out.trim().split('\n'), ['200 1', '200 0'], 'the second request reused the TLS connection');
    await stopServe(c);
  });

  it('a plain-HTTP client on the HTTPS port is dropped; the gateway keeps serving', async () => {
    const port = await freePort();
    const c = track(serve(['--listen', `127.0.0.1:${port}`, '--tls-cert', first.cert, '--tls-key', first.key, '--root', fixture('php-app')]));
    await output(c).waitFor(/listening on https:/);
    const plain = net.connect({ host: '127.0.0.1', port });
    plain.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const closed = await new Promise<boolean>((resolve) => {
      plain.on('error', () => {});
      plain.on('close', () => resolve(true));
      plain.setTimeout(10_000, () => resolve(false));
    });
    plain.destroy();
    assert.equal(closed, true, 'the plain connection was closed');
    const r = await curl(['-k', `https://127.0.0.1:${port}/hello/after`]);
    assert.equal(r.out, 'Hello, after!\n');
    await stopServe(c);
  });

  it('SIGHUP loads the certificate files again for new connections; a pair that does not load keeps the old one', async () => {
    const live = livePair('single');
    const port = await freePort();
    const c = track(serve(['--listen', `127.0.0.1:${port}`, '--tls-cert', live.cert, '--tls-key', live.key, '--root', fixture('php-app')]));
    const o = output(c);
    await o.waitFor(/listening on https:/);
    assert.equal(await servedFingerprint(port), first.fingerprint);
    // A broken pair first (the certificate renewed, its key not yet): logged, the old pair stays.
    copyFileSync(second.cert, live.cert);
    c.kill('SIGHUP');
    await o.waitFor(/SIGHUP: cannot use --tls-cert .*; keeping the certificate loaded before/);
    assert.equal(await servedFingerprint(port), first.fingerprint);
    copyFileSync(second.key, live.key);
    c.kill('SIGHUP');
    await o.waitFor(/SIGHUP: TLS certificate .* loaded again, for new connections/);
    assert.equal(await servedFingerprint(port), second.fingerprint);
    const r = await curl(['-k', `https://127.0.0.1:${port}/hello/renewed`]);
    assert.equal(r.out, 'Hello, renewed!\n');
    assert.equal(c.exitCode, null, 'HUP did not stop the gateway');
    await stopServe(c);
  });

  it('--workers 2: each worker serves HTTPS; HUP to the primary checks the new pair, then replaces the workers, which load it', async () => {
    const live = livePair('workers');
    const port = await freePort();
    const c = track(serve(['--listen', `127.0.0.1:${port}`, '--workers', '2', '-n', '2', '--tls-cert', live.cert, '--tls-key', live.key, '--root', fixture('php-app')]));
    const o = output(c);
    await o.waitFor(new RegExp(`listening on https://127\\.0\\.0\\.1:${port}/ .*2 workers`));
    const r = await curl(['-k', `https://127.0.0.1:${port}/hello/w`]);
    assert.equal(r.out, 'Hello, w!\n');
    // Half a renewal: the primary refuses it and the workers keep serving the first certificate.
    copyFileSync(second.cert, live.cert);
    c.kill('SIGHUP');
    await o.waitFor(/SIGHUP: cannot use --tls-cert .*; the workers keep running with the certificate loaded before/);
    assert.equal(await servedFingerprint(port), first.fingerprint);
    copyFileSync(second.key, live.key);
    c.kill('SIGHUP');
    await o.waitFor(/SIGHUP: replacing the workers/);
    await untilServed(port, second.fingerprint);
    assert.equal((await curl(['-k', `https://127.0.0.1:${port}/hello/again`])).out, 'Hello, again!\n');
    assert.equal(c.exitCode, null);
    await stopServe(c);
  });

  it('flag errors: one of the pair alone is a usage error (exit 2); files that do not load are a runtime failure (exit 1, one line)', async () => {
    const alone = track(serve(['--tls-cert', first.cert, '--root', fixture('php-app')]));
    const ao = output(alone);
    assert.equal((await waitForExit(alone)).code, 2);
    assert.match(ao.stderr(), /--tls-cert and --tls-key go together/);
    const bad = join(dir, 'not-a-cert.pem');
    writeFileSync(bad, 'not PEM\n');
    const port = await freePort();
    const broken = track(serve(['--listen', String(port), '--tls-cert', bad, '--tls-key', first.key, '--root', fixture('php-app')]));
    const bo = output(broken);
    assert.equal((await waitForExit(broken)).code, 1);
    assert.match(bo.stderr(), /^gatehouse: cannot use --tls-cert .*not-a-cert\.pem --tls-key .*: /m);
    assert.doesNotMatch(bo.stderr(), /usage:/);
  });
});
