/**
 * End to end: HTTP client → gateway (--root preset) → src/backend in
 * anonymous mode → a real php-cgi accepting on fd 0 → the PHP app in
 * test/fixtures/php-app. Covers routing, bodies (form, chunked spool, 413),
 * header limits (431, 400), 100-continue, HEAD, httpoxy, and a client abort
 * in the middle of a response.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, httpRequest } from '../helpers/peers.js';
import { Harness, once, rawHttp, type Running } from './support.js';

const ROOT = realpathSync(fixture('php-app'));

describe('gateway in front of php-cgi (anonymous mode)', () => {
  const h = new Harness();
  let gw: Running;

  before(async () => {
    const backend = h.backend({
      protocol: 'fastcgi',
      program: ['php-cgi'],
      // One php-cgi process that never recycles itself: the test owns its lifetime.
      env: { ...process.env, PHP_FCGI_CHILDREN: '0', PHP_FCGI_MAX_REQUESTS: '0' },
    });
    await backend.start();
    gw = await h.gateway(backend, { root: ROOT, maxBodySize: 1024 * 1024, maxBodySpool: 512 * 1024, statusPath: '/gatehouse-status' });
  });
  after(() => h.closeAll());

  it('routes /hello/NAME through the front controller', async () => {
    const r = await httpRequest(`${gw.url}/hello/World`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'Hello, World!\n');
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  });

  it('splits /info.php/extra/path into SCRIPT_NAME and PATH_INFO', async () => {
    const r = await httpRequest(`${gw.url}/info.php/extra/path?x=1`);
    assert.equal(r.status, 200);
    const info = JSON.parse(r.body.toString()) as Record<string, string | null>;
    assert.equal(info.SCRIPT_NAME, '/info.php');
    assert.equal(info.PATH_INFO, '/extra/path');
    assert.equal(info.SCRIPT_FILENAME, join(ROOT, 'info.php'));
    assert.equal(info.DOCUMENT_ROOT, ROOT);
    assert.equal(info.REQUEST_URI, '/info.php/extra/path?x=1');
    assert.equal(info.QUERY_STRING, 'x=1');
  });

  it('echoes a POSTed form', async () => {
    const r = await httpRequest(`${gw.url}/form?via=test`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'name=Ada+Lovelace&lang=php',
    });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body.toString()), { method: 'POST', post: { name: 'Ada Lovelace', lang: 'php' }, query: { via: 'test' } });
  });

  for (const size of [3000, 300 * 1024]) {
    it(`spools a chunked upload of ${size} bytes and forwards it with CONTENT_LENGTH`, async () => {
      const body = randomBytes(size);
      const r = await chunkedPost(`${gw.url}/upload`, body);
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body.toString()), {
        content_length: String(size),
        received: size,
        md5: createHash('md5').update(body).digest('hex'),
      });
    });
  }

  it('answers 413 to a chunked upload over maxBodySpool', async () => {
    const r = await chunkedPost(`${gw.url}/upload`, randomBytes(600 * 1024)).catch((err: Error) => err);
    // The gateway may close before the client finished sending; either way no 2xx.
    if (r instanceof Error) assert.match(r.message, /EPIPE|ECONNRESET|socket hang up/);
    else assert.equal(r.status, 413);
  });

  it('answers 413 to a Content-Length over maxBodySize before reading the body', async () => {
    const answer = await rawHttp(gw.port, 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n');
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.match(answer, /\r\nConnection: close\r\n/i);
  });

  it('answers 431 to headers over maxHeaderSize', async () => {
    const answer = await rawHttp(gw.port, `GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(answer, /^HTTP\/1.1 431 /);
  });

  it('answers 400 to a header with a bare CR (header injection)', async () => {
    const answer = await rawHttp(gw.port, 'GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Evil: a\rInjected: 1\r\n\r\n');
    assert.match(answer, /^HTTP\/1.1 400 /);
  });

  it('never passes a Proxy header on as HTTP_PROXY (httpoxy)', async () => {
    const r = await httpRequest(`${gw.url}/info.php`, { headers: { Proxy: 'http://evil.example:8080' } });
    assert.equal(JSON.parse(r.body.toString()).HTTP_PROXY, null);
  });

  it('answers HEAD without a body', async () => {
    const r = await httpRequest(`${gw.url}/hello/head`, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
  });

  it('sends 100 Continue when the request is forwarded, and not when it is refused', async () => {
    const body = 'name=continued';
    const socket = net.connect(gw.port, '127.0.0.1');
    let seen = '';
    const got100 = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no 100 Continue; got ${JSON.stringify(seen)}`)), 5000);
      socket.on('data', (d: Buffer) => {
        seen += d.toString();
        if (seen.includes('100 Continue\r\n\r\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    socket.write(
      `POST /form HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    await got100;
    assert.doesNotMatch(seen, /200 OK/, 'the final answer must wait for the body');
    socket.write(body);
    await once(socket, 'end');
    socket.destroy();
    assert.match(seen, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK/);
    assert.match(seen, /"name":"continued"/);

    const refused = await rawHttp(gw.port, 'POST /form HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9999999\r\n\r\n');
    assert.match(refused, /^HTTP\/1.1 413 /);
  });

  it('survives a client that goes away mid-response; the next request is served', async () => {
    const before = gw.gateway.stats.clientAborts;
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${gw.url}/big?kib=16384`, { agent: false }, (res) => {
        res.once('data', () => {
          // Read one chunk of 16 MiB, then hang up.
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => (err.message.includes('socket hang up') || (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
      req.setTimeout(5000, () => reject(new Error('no response body within 5 s')));
    });
    const next = await httpRequest(`${gw.url}/hello/again`, { timeoutMs: 10_000 });
    assert.equal(next.status, 200);
    assert.equal(next.body.toString(), 'Hello, again!\n');
    const status = await httpRequest(`${gw.url}/gatehouse-status?json`);
    const snap = JSON.parse(status.body.toString()) as { 'client aborts': number; backend: { mode: string } };
    assert.ok(snap['client aborts'] > before, 'the abort is counted');
    assert.equal(snap.backend.mode, 'anonymous');
  });

  it('keeps client connections alive across requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const ports = new Set<number>();
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((resolve, reject) => {
          http
            .get(`${gw.url}/hello/k${i}`, { agent }, (res) => {
              ports.add(res.socket.localPort ?? -1);
              res.resume();
              res.on('end', resolve);
            })
            .on('error', reject);
        });
      }
      assert.equal(ports.size, 1, 'one connection carried all three requests');
    } finally {
      agent.destroy();
    }
  });
});

/** POSTs `body` with Transfer-Encoding: chunked (no Content-Length), in several writes. */
function chunkedPost(url: string, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'Transfer-Encoding': 'chunked', 'Content-Type': 'application/octet-stream' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('chunked upload timed out')));
    req.on('error', reject);
    for (let off = 0; off < body.length; off += 16 * 1024) req.write(body.subarray(off, off + 16 * 1024));
    req.end();
  });
}
