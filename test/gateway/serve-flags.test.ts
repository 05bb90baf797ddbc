/**
 * `gatehouse serve --access-log / --max-body-size / --trust-proxy`: parsing
 * (bad values are usage errors naming the flag, the flags survive the JSON
 * trip to --workers workers), and real processes in front of the hello
 * example (and the backend fixture app, which echoes its CGI params):
 * combined-format lines for 200/404/499/400, written by SIGTERM at the
 * latest, SIGUSR1 reopening the file; 413 for bodies over the size, both
 * Content-Length and chunked; REMOTE_ADDR from a trusted X-Forwarded-For.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseServeArgs, SERVE_USAGE, type ServeFlags, type WorkerFlags } from '../../src/cli/serve.js';
import { combinedLine, logField, timeLocal } from '../../src/gateway/access-log.js';
import { output, serve } from './serve-process.js';
import { fixture, freePort, httpRequest, stopProcess, tmpDir, waitForExit } from '../helpers/peers.js';
import { waitUntil, within } from '../helpers/wait.js';

const HELLO = ['--', 'node', 'dist/examples/hello.js'];
const FIXTURE_APP = ['--', process.execPath, fixture('backend', 'fastcgi-app.mjs')];
/** $remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" */
const COMBINED = /^(\S+) - - \[(\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"\\]*(?:\\.[^"\\]*)*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$/;

interface LogLine {
  addr: string;
  request: string;
  status: number;
  bytes: number;
  referer: string;
  agent: string;
}

function parseLog(text: string): LogLine[] {
  const lines = text.split('\n');
  assert.equal(lines.pop(), '', 'the log ends with a newline');
  return lines.map((line) => {
    const m = COMBINED.exec(line);
    assert.ok(m, `not a combined-format line: ${JSON.stringify(line)}`);
    return { addr: m[1]!, request: m[3]!, status: Number(m[4]), bytes: Number(m[5]), referer: m[6]!, agent: m[7]! };
  });
}

function run(argv: string[]): ServeFlags {
  const p = parseServeArgs(argv);
  if (p.kind !== 'run') assert.fail(`${argv.join(' ')}: ${p.kind === 'error' ? p.message : p.kind}`);
  return p.options;
}

describe('serve flags: --access-log, --max-body-size, --trust-proxy (parsing)', () => {
  it('--access-log takes a path or -; off by default', () => {
    assert.equal(run(['app']).accessLog, undefined);
    assert.equal(run(['--access-log', '/var/log/gh.log', 'app']).accessLog, '/var/log/gh.log');
    assert.equal(run(['--access-log=-', 'app']).accessLog, '-');
    assert.equal(run(['--access-log', '-', '--workers', '2', 'app']).accessLog, '-');
  });

  it('--max-body-size takes nginx sizes; 0 = no limit; default left to the gateway', () => {
    assert.equal(run(['app']).maxBodySize, undefined);
    for (const [value, bytes] of [['0', 0], ['512', 512], ['512k', 512 * 1024], ['10m', 10 * 1024 * 1024], ['10M', 10 * 1024 * 1024], ['1g', 1024 ** 3], ['2G', 2 * 1024 ** 3]] as const) {
      assert.equal(run(['--max-body-size', value, 'app']).maxBodySize, bytes, value);
    }
  });

  it('--trust-proxy takes addresses, comma-separated or repeated, in the form node reports peers', () => {
    assert.equal(run(['app']).trustProxy, undefined);
    assert.deepEqual(run(['--trust-proxy', '127.0.0.1, ::1', '--trust-proxy=10.0.0.7', 'app']).trustProxy, ['127.0.0.1', '::1', '10.0.0.7']);
    assert.deepEqual(run(['--trust-proxy', '0:0:0:0:0:0:0:1,::FFFF:192.0.2.1,2001:DB8::0:1', 'app']).trustProxy, ['::1', '192.0.2.1', '2001:db8::1']);
    assert.deepEqual(run(['--trust-proxy', '10.0.0.0/8,FD00::/8', 'app']).trustProxy, ['10.0.0.0/8', 'fd00::/8']);
  });

  it('bad values are usage errors naming the flag', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--access-log', '', 'app'], /--access-log needs a file or -/],
      [['--max-body-size', '10mb', 'app'], /--max-body-size needs a size in bytes/],
      [['--max-body-size', '-1', 'app'], /--max-body-size needs a size/],
      [['--max-body-size', '1.5m', 'app'], /--max-body-size needs a size/],
      [['--max-body-size', 'k', 'app'], /--max-body-size needs a size/],
      [['--max-body-size', '', 'app'], /--max-body-size needs a size/],
      [['--max-body-size', '99999999999999999g', 'app'], /--max-body-size needs a size/],
      [['--trust-proxy', '10.0.0.0/33', 'app'], /--trust-proxy needs IP addresses or CIDR ranges .*not '10\.0\.0\.0\/33'/],
      [['--trust-proxy', '::1/129', 'app'], /--trust-proxy needs IP addresses or CIDR ranges/],
      [['--trust-proxy', '10.0.0.0/', 'app'], /--trust-proxy needs IP addresses or CIDR ranges/],
      [['--trust-proxy', 'localhost', 'app'], /--trust-proxy needs IP addresses/],
      [['--trust-proxy', '127.0.0.1,', 'app'], /--trust-proxy needs IP addresses/],
      [['--trust-proxy', '', 'app'], /--trust-proxy needs IP addresses/],
    ];
    for (const [argv, message] of bad) {
      const p = parseServeArgs(argv);
      assert.equal(p.kind, 'error', argv.join(' '));
      if (p.kind === 'error') assert.match(p.message, message);
    }
  });

  it('the flags survive the JSON trip to --workers workers, and the usage names them', () => {
    const o = run(['--workers', '2', '--access-log', '/tmp/a.log', '--max-body-size', '0', '--trust-proxy', '::1', 'app']);
    const { listen: _, ...flags } = o;
    const back = JSON.parse(JSON.stringify(flags)) as WorkerFlags;
    const pick = (f: WorkerFlags): unknown => ({ accessLog: f.accessLog, maxBodySize: f.maxBodySize, trustProxy: f.trustProxy });
    assert.deepEqual(pick(back), { accessLog: '/tmp/a.log', maxBodySize: 0, trustProxy: ['::1'] });
    assert.deepEqual(pick(back), pick(flags));
    for (const flag of ['--access-log PATH|-', '--max-body-size SIZE', '--trust-proxy ADDR[,ADDR...]']) {
      assert.ok(SERVE_USAGE.includes(`[${flag}]`), `synopsis has [${flag}]`);
      assert.match(SERVE_USAGE, new RegExp(`^  ${flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
    }
    for (const line of SERVE_USAGE.split('\n')) assert.ok(line.length <= 90, `usage line too long: ${line}`);
  });
});

describe('access log format', () => {
  it('escapes like nginx and writes - for what is absent', () => {
    assert.equal(logField(undefined), '-');
    assert.equal(logField(''), '-');
    assert.equal(logField('Mozilla/5.0 (X11)'), 'Mozilla/5.0 (X11)');
    assert.equal(logField('a"b\\c\x01\xe9'), 'a\\x22b\\x5Cc\\x01\\xE9');
    assert.match(timeLocal(Date.UTC(2000, 9, 10, 13, 55, 36)), /^\d\d\/Oct\/2000:\d\d:\d\d:36 [+-]\d{4}$/);
    const req = { method: 'GET', url: '/a b"', httpVersion: '1.1', header: (name: string) => (name === 'user-agent' ? 'ua' : undefined) };
    const line = combinedLine('192.0.2.1', req, 200, 5);
    assert.match(line, /^192\.0\.2\.1 - - \[[^\]]+\] "GET \/a b\\x22 HTTP\/1\.1" 200 5 "-" "ua"\n$/);
    assert.match(combinedLine('', undefined, 400, 16), /^- - - \[[^\]]+\] "-" 400 16 "-" "-"\n$/);
  });
});

/** Sends `raw` on a fresh connection and resolves with everything the server sent back until it closed. */
function rawExchange(port: number, raw: string): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end(raw));
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    }),
    10_000,
    'a raw HTTP exchange',
  );
}

/** A POST to /echo whose client goes away once the first echoed bytes arrived (mid-response). */
function abandonMidResponse(url: string): Promise<number> {
  return within(
    new Promise<number>((resolve, reject) => {
      const req = http.request(`${url}/echo`, { method: 'POST', agent: false, headers: { 'Content-Length': 10, 'User-Agent': 'leaver' } }, (res) => {
        res.once('data', (d: Buffer) => {
          req.destroy();
          resolve(d.length);
        });
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
      req.write('hello');
    }),
    10_000,
    'the echo to start',
  );
}

describe('serve --access-log / --max-body-size / --trust-proxy (processes)', () => {
  const children: ChildProcess[] = [];
  const track = (c: ChildProcess): ChildProcess => (children.push(c), c);
  after(async () => {
    for (const c of children) await stopProcess(c);
  });

  async function start(argv: string[]): Promise<{ c: ChildProcess; o: ReturnType<typeof output>; url: string; port: number }> {
    const port = await freePort();
    const c = track(serve(['--listen', String(port), ...argv]));
    const o = output(c);
    await o.waitFor(/listening on /);
    return { c, o, url: `http://127.0.0.1:${port}`, port };
  }

  it('--access-log FILE: 200, 404, 499 (client left mid-response) and 400 lines; all written by SIGTERM', async () => {
    const path = join(tmpDir('gh-alog-'), 'access.log');
    // --root: the PHP preset's own 404 for a missing script; everything else goes to hello.
    const { c, o, url, port } = await start(['--access-log', path, '--root', fixture('php-app'), ...HELLO]);
    const hello = await httpRequest(`${url}/`, { headers: { Referer: 'http://example.test/"x"', 'User-Agent': 'test-agent/1.0' } });
    assert.equal(hello.status, 200);
    const missing = await httpRequest(`${url}/missing.php?q=1`);
    assert.equal(missing.status, 404);
    const firstBytes = await abandonMidResponse(url);
    assert.ok(firstBytes > 0);
    assert.match(await rawExchange(port, 'GET / HTTP/1.1\r\nBad Header\r\n\r\n'), /^HTTP\/1\.1 400 /);
    // The 499 is logged when the gateway notices; the line must be there by the time it exits.
    const exited = waitForExit(c, 15_000);
    c.kill('SIGTERM');
    assert.equal((await exited).code, 0, o.stderr());
    assert.equal(o.stdout(), '', 'nothing but the log file gets the lines');

    const lines = parseLog(readFileSync(path, 'utf8'));
    assert.equal(lines.length, 4, JSON.stringify(lines));
    const byStatus = new Map(lines.map((l) => [l.status, l]));
    const ok = byStatus.get(200)!;
    assert.deepEqual(
      { ...ok, bytes: undefined },
      { addr: '127.0.0.1', request: 'GET / HTTP/1.1', status: 200, bytes: undefined, referer: 'http://example.test/\\x22x\\x22', agent: 'test-agent/1.0' },
    );
    assert.equal(ok.bytes, hello.body.length, '$body_bytes_sent is the body, without the head');
    const notFound = byStatus.get(404)!;
    assert.equal(notFound.request, 'GET /missing.php?q=1 HTTP/1.1');
    assert.equal(notFound.bytes, missing.body.length);
    const gone = byStatus.get(499);
    assert.ok(gone, `a 499 line: ${JSON.stringify(lines)}`);
    assert.equal(gone.request, 'POST /echo HTTP/1.1');
    assert.equal(gone.agent, 'leaver');
    assert.ok(gone.bytes > 0, 'the bytes that did go out are counted');
    const bad = byStatus.get(400)!;
    assert.equal(bad.request, '-');
  });

  it('--access-log: SIGUSR1 reopens the file (logrotate: rename, then USR1)', async () => {
    const dir = tmpDir('gh-alog-');
    const path = join(dir, 'access.log');
    const { c, url } = await start(['--access-log', path, ...HELLO]);
    assert.equal((await httpRequest(`${url}/before`)).status, 200);
    renameSync(path, `${path}.1`);
    c.kill('SIGUSR1');
    await waitUntil(() => existsSync(path), 5000, 'the reopened access log');
    assert.equal((await httpRequest(`${url}/after`)).status, 200);
    const exited = waitForExit(c, 15_000);
    c.kill('SIGTERM');
    assert.equal((await exited).code, 0);
    const old = parseLog(readFileSync(`${path}.1`, 'utf8')).map((l) => l.request);
    assert.deepEqual(old, ['GET /before HTTP/1.1']);
    assert.deepEqual(parseLog(readFileSync(path, 'utf8')).map((l) => l.request), ['GET /after HTTP/1.1']);
  });

  it('SIGUSR1 without --access-log does nothing: Node’s default (opening the inspector) must not happen', async () => {
    const { c, o, url } = await start(HELLO);
    c.kill('SIGUSR1');
    // A full request after the signal: the loop has run the signal handlers by then.
    assert.equal((await httpRequest(`${url}/`)).status, 200);
    const exited = waitForExit(c, 15_000);
    c.kill('SIGTERM');
    assert.equal((await exited).code, 0);
    assert.doesNotMatch(o.stderr(), /Debugger listening/);
  });

  it('--access-log - with --workers 2: every worker writes whole lines to the inherited stdout', async () => {
    const { c, o, url } = await start(['--workers', '2', '--access-log', '-', ...HELLO]);
    const n = 20;
    await Promise.all(Array.from({ length: n }, (_, i) => httpRequest(`${url}/?n=${i}`)));
    const exited = waitForExit(c, 20_000);
    c.kill('SIGTERM');
    assert.equal((await exited).code, 0, o.stderr());
    const requests = parseLog(o.stdout()).map((l) => l.request).sort();
    assert.deepEqual(requests, Array.from({ length: n }, (_, i) => `GET /?n=${i} HTTP/1.1`).sort());
  });

  it('--access-log to a path that cannot be opened is a runtime failure (exit 1), also with --workers', async () => {
    for (const extra of [[], ['--workers', '2']]) {
      const c = track(serve(['--listen', String(await freePort()), ...extra, '--access-log', '/nonexistent-dir/x.log', ...HELLO]));
      const o = output(c);
      assert.equal((await waitForExit(c, 15_000)).code, 1);
      assert.match(o.stderr(), /cannot open --access-log \/nonexistent-dir\/x\.log: .*ENOENT/);
    }
  });

  it('--max-body-size 1k: 2 KiB with Content-Length → 413 unread, 2 KiB chunked → 413, 512 bytes echoed', async () => {
    const { c, url } = await start(['--max-body-size', '1k', ...HELLO]);
    const big = Buffer.alloc(2048, 'a');
    const small = Buffer.alloc(512, 'b');
    assert.equal((await httpRequest(`${url}/echo`, { method: 'POST', body: big })).status, 413);
    const chunked = await httpRequest(`${url}/echo`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' }, body: big });
    assert.equal(chunked.status, 413);
    const ok = await httpRequest(`${url}/echo`, { method: 'POST', body: small });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, small);
    const okChunked = await httpRequest(`${url}/echo`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' }, body: small });
    assert.deepEqual(okChunked.body, small);
    await stopProcess(c, 'SIGTERM');
  });

  it('--max-body-size 0 lifts the limit (a body over the 64 MiB default passes the Content-Length check)', async () => {
    const { c, url } = await start(['--max-body-size', '0', ...HELLO]);
    // Only the head is sent: the gateway would answer 413 at once if it checked the size.
    const status = await within(
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${url}/slow?ms=0`, { method: 'POST', agent: false, headers: { 'Content-Length': 100 * 1024 * 1024 } }, (res) => {
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
        req.flushHeaders();
      }),
      10_000,
      'an answer to a 100 MiB upload head',
    );
    assert.equal(status, 200);
    await stopProcess(c, 'SIGTERM');
  });

  it('--trust-proxy 127.0.0.1: the trusted proxy’s X-Forwarded-For becomes REMOTE_ADDR (and the log’s address)', async () => {
    const path = join(tmpDir('gh-alog-'), 'access.log');
    const remoteAddr = async (url: string, headers: http.OutgoingHttpHeaders): Promise<string | undefined> => {
      const r = await httpRequest(`${url}/`, { headers });
      const params = (JSON.parse(r.body.toString()) as { params: Array<[string, string]> }).params;
      return params.find(([k]) => k === 'REMOTE_ADDR')?.[1];
    };
    const trusted = await start(['--trust-proxy', '192.0.2.9,127.0.0.1', '--access-log', path, ...FIXTURE_APP]);
    assert.equal(await remoteAddr(trusted.url, { 'X-Forwarded-For': '203.0.113.5, 198.51.100.7' }), '198.51.100.7');
    assert.equal(await remoteAddr(trusted.url, { Forwarded: 'for="[2001:db8::5]:4711"' }), '2001:db8::5');
    assert.equal(await remoteAddr(trusted.url, {}), '127.0.0.1');
    const exited = waitForExit(trusted.c, 15_000);
    trusted.c.kill('SIGTERM');
    assert.equal((await exited).code, 0);
    assert.deepEqual(parseLog(readFileSync(path, 'utf8')).map((l) => l.addr), ['198.51.100.7', '2001:db8::5', '127.0.0.1']);

    // Another proxy's word is not taken.
    const other = await start(['--trust-proxy', '192.0.2.9', ...FIXTURE_APP]);
    assert.equal(await remoteAddr(other.url, { 'X-Forwarded-For': '198.51.100.7' }), '127.0.0.1');
    await stopProcess(other.c, 'SIGTERM');
  });
});
