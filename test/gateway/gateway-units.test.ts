/**
 * The gateway's own decisions against a fake Backend (no processes): pure
 * helpers (paths, ranges, client address, response heads), trustProxy,
 * abort propagation, a crash-proof request path, the status page and a
 * bounded close().
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import type { BackendRequest, BackendResponse } from '../../src/backend/contract.js';
import { BackendError } from '../../src/backend/contract.js';
import { clientAddress } from '../../src/gateway/client-address.js';
import { parseRequestPath } from '../../src/gateway/request-path.js';
import { responseHead } from '../../src/gateway/response-relay.js';
import { parseRange } from '../../src/gateway/static.js';
import { contentTypeFor } from '../../src/gateway/mime.js';
import { httpRequest } from '../helpers/peers.js';
import { fakeBackend, Harness, once, param, rawHttp } from './support.js';

function ok(body = 'ok\n', headers: Array<[string, string]> = [['Content-Type', 'text/plain']]): BackendResponse {
  return { status: 200, statusText: 'OK', headers, body: Readable.from([Buffer.from(body)]) };
}

describe('gateway helpers', () => {
  it('parseRequestPath drops . and empty segments and refuses .., NUL and dotfiles', () => {
    assert.deepEqual(parseRequestPath('/a//./b/?q=..'), { segments: ['a', 'b'], trailingSlash: true });
    assert.deepEqual(parseRequestPath('/'), { segments: [], trailingSlash: true });
    assert.equal((parseRequestPath('/a/../b') as { refused: number }).refused, 403);
    assert.equal((parseRequestPath('/a/%2E%2e/b') as { refused: number }).refused, 403);
    assert.equal((parseRequestPath('/a%00.php') as { refused: number }).refused, 400);
    assert.equal((parseRequestPath('/.htaccess') as { refused: number }).refused, 403);
    assert.equal((parseRequestPath('/.well-known/.x') as { refused: number }).refused, 403);
    assert.deepEqual(parseRequestPath('/.well-known/acme'), { segments: ['.well-known', 'acme'], trailingSlash: false });
    assert.equal((parseRequestPath('http://x/a') as { refused: number }).refused, 400);
  });

  it('parseRange reads one bytes= range and knows when it cannot be satisfied', () => {
    assert.deepEqual(parseRange('bytes=0-0', 10), [0, 0]);
    assert.deepEqual(parseRange('bytes=5-', 10), [5, 9]);
    assert.deepEqual(parseRange('bytes=-3', 10), [7, 9]);
    assert.deepEqual(parseRange('bytes=-30', 10), [0, 9]);
    assert.deepEqual(parseRange('bytes=8-100', 10), [8, 9]);
    assert.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=-0', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=5-2', 10), null);
    assert.equal(parseRange('bytes=0-1,3-4', 10), null);
    assert.equal(parseRange('items=0-1', 10), null);
  });

  it('clientAddress believes forwarding headers only from a trusted peer, and only the last hop', () => {
    const headers = { 'x-forwarded-for': '6.6.6.6, 203.0.113.7' };
    assert.equal(clientAddress('127.0.0.1', headers, false), '127.0.0.1');
    assert.equal(clientAddress('127.0.0.1', headers, true), '203.0.113.7');
    assert.equal(clientAddress('127.0.0.1', headers, ['10.0.0.1']), '127.0.0.1');
    assert.equal(clientAddress('::ffff:10.0.0.1', headers, ['10.0.0.1']), '203.0.113.7');
    assert.equal(clientAddress('127.0.0.1', { forwarded: 'for=1.2.3.4, for="[2001:db8::1]:4711";proto=https' }, true), '2001:db8::1');
    assert.equal(clientAddress('127.0.0.1', { 'x-forwarded-for': 'not-an-ip' }, true), '127.0.0.1');
  });

  it('clientAddress: trusted proxies as CIDR ranges, IPv4 and IPv6, mapped peers included', () => {
    const headers = { 'x-forwarded-for': '203.0.113.7' };
    const trust = ['10.0.0.0/8', 'fd00::/8', '192.0.2.1'];
    assert.equal(clientAddress('10.200.3.4', headers, trust), '203.0.113.7');
    assert.equal(clientAddress('::ffff:10.0.0.9', headers, trust), '203.0.113.7');
    assert.equal(clientAddress('fd12:3456::1', headers, trust), '203.0.113.7');
    assert.equal(clientAddress('192.0.2.1', headers, trust), '203.0.113.7');
    assert.equal(clientAddress('11.0.0.1', headers, trust), '11.0.0.1', 'outside the range');
    assert.equal(clientAddress('fe80::1', headers, trust), 'fe80::1', 'outside the IPv6 range');
    assert.equal(clientAddress('192.0.2.2', headers, trust), '192.0.2.2', 'a single address is not a range');
  });

  it('responseHead drops hop-by-hop fields and takes Content-Length out of the list (the server frames the body)', () => {
    const head = responseHead({
      ...ok(),
      headers: [
        ['Connection', 'close, X-Private'],
        ['Keep-Alive', 'timeout=1'],
        ['Transfer-Encoding', 'chunked'],
        ['X-Private', 'secret'],
        ['Set-Cookie', 'a=1'],
        ['Set-Cookie', 'b=2'],
        ['Content-Length', '12'],
      ],
    });
    assert.deepEqual(head.flat, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
    assert.equal(head.contentLength, 12);
    assert.throws(() => responseHead({ ...ok(), headers: [['Content-Length', '1x']] }), /bad Content-Length/);
    assert.throws(() => responseHead({ ...ok(), headers: [['Content-Length', '1'], ['Content-Length', '2']] }), /bad Content-Length/);
    assert.throws(() => responseHead({ ...ok(), status: 101 }), /status 101/);
  });

  it('contentTypeFor knows the common web types and falls back to octet-stream', () => {
    assert.equal(contentTypeFor('/a/B.PNG'), 'image/png');
    assert.equal(contentTypeFor('x.js'), 'text/javascript; charset=utf-8');
    assert.equal(contentTypeFor('x.woff2'), 'font/woff2');
    assert.equal(contentTypeFor('Makefile'), 'application/octet-stream');
  });
});

describe('gateway against a fake backend', () => {
  const h = new Harness();
  after(() => h.closeAll());

  it('sets REMOTE_ADDR from X-Forwarded-For only when trustProxy is on', async () => {
    const plain = fakeBackend(() => ok());
    const trusting = fakeBackend(() => ok());
    const a = await h.gateway(plain);
    const b = await h.gateway(trusting, { trustProxy: ['127.0.0.1'] });
    const headers = { 'X-Forwarded-For': '198.51.100.4' };
    await httpRequest(`${a.url}/`, { headers });
    await httpRequest(`${b.url}/`, { headers });
    assert.equal(param(plain.requests[0]!.params, 'REMOTE_ADDR'), '127.0.0.1');
    assert.equal(param(trusting.requests[0]!.params, 'REMOTE_ADDR'), '198.51.100.4');
    // The header itself still reaches the application.
    assert.equal(param(plain.requests[0]!.params, 'HTTP_X_FORWARDED_FOR'), '198.51.100.4');
  });

  it('forwards an empty chunked body without CONTENT_LENGTH and with no body stream', async () => {
    const backend = fakeBackend(() => ok());
    const gw = await h.gateway(backend);
    const answer = await rawHttp(gw.port, 'POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    assert.match(answer, /^HTTP\/1.1 200 /);
    assert.equal(param(backend.requests[0]!.params, 'CONTENT_LENGTH'), undefined);
    assert.equal(backend.requests[0]!.body, null);
  });

  it('aborts the backend request when the client goes away while waiting', async () => {
    const seen = new PassThrough();
    const backend = fakeBackend(
      (req: BackendRequest) =>
        new Promise<BackendResponse>((_, reject) => {
          seen.emit('dispatched');
          req.signal!.addEventListener('abort', () => {
            seen.emit('aborted');
            reject(req.signal!.reason);
          });
        }),
    );
    const gw = await h.gateway(backend);
    const dispatched = once(seen, 'dispatched');
    const aborted = once(seen, 'aborted');
    const req = http.get(`${gw.url}/wait`, { agent: false });
    req.on('error', () => {});
    await dispatched;
    req.destroy();
    await aborted;
  });

  it('survives a backend that throws anything, a broken body and an unsendable head', async () => {
    let mode = 0;
    const backend = fakeBackend(() => {
      switch (mode++) {
        case 0:
          throw 'not even an Error';
        case 1: {
          const body = new PassThrough();
          body.write('partial');
          setImmediate(() => body.destroy(new BackendError('ERR_BACKEND_CLOSED_EARLY', 'backend: gone mid-body')));
          return { ...ok(), body };
        }
        case 2:
          return ok('x', [['X-Bad', 'line\nbreak']]);
        default:
          return ok('still here\n');
      }
    });
    const gw = await h.gateway(backend);
    assert.equal((await httpRequest(`${gw.url}/`)).status, 502);
    await assert.rejects(httpRequest(`${gw.url}/`), /aborted|hang up|ECONNRESET|terminated/i);
    assert.equal((await httpRequest(`${gw.url}/`)).status, 502);
    const last = await httpRequest(`${gw.url}/`);
    assert.equal(last.status, 200);
    assert.equal(last.body.toString(), 'still here\n');
    assert.match(gw.logs.join('\n'), /response cut .*gone mid-body/);
  });

  it('shows the status page only at statusPath, as text or JSON', async () => {
    const backend = fakeBackend(() => ok());
    const gw = await h.gateway(backend, { statusPath: '/gatehouse-status' });
    await httpRequest(`${gw.url}/`);
    const text = await httpRequest(`${gw.url}/gatehouse-status`);
    assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
    assert.match(text.body.toString(), /^requests served: 1$/m);
    assert.match(text.body.toString(), /^ {2}mode: client$/m);
    const json = await httpRequest(`${gw.url}/gatehouse-status`, { headers: { Accept: 'application/json' } });
    assert.equal(JSON.parse(json.body.toString())['requests in flight'], 1);
    assert.equal(backend.requests.length, 1, 'the status page never reaches the backend');
    const other = await h.gateway(fakeBackend(() => ok('app\n')));
    assert.equal((await httpRequest(`${other.url}/gatehouse-status`)).body.toString(), 'app\n');
  });

  it('maxConns queues requests beyond the limit and hands the slot on in order', async () => {
    const bodies: PassThrough[] = [];
    const dispatched = new PassThrough();
    const backend = fakeBackend(() => {
      const body = new PassThrough();
      bodies.push(body);
      dispatched.emit('dispatch');
      return { ...ok(), body };
    });
    const gw = await h.gateway(backend, { maxConns: 1, statusPath: '/gatehouse-status' });
    const first = httpRequest(`${gw.url}/one`);
    await once(dispatched, 'dispatch');
    const second = httpRequest(`${gw.url}/two`);
    await once(gw.gateway.server, 'request');
    const status = JSON.parse((await httpRequest(`${gw.url}/gatehouse-status?json`)).body.toString()) as { backend: Record<string, number> };
    assert.deepEqual([status.backend['slots busy'], status.backend['requests waiting']], [1, 1]);
    assert.equal(backend.requests.length, 1, 'the second request waits for the only slot');
    const secondDispatched = once(dispatched, 'dispatch');
    bodies[0]!.end('first\n');
    assert.equal((await first).body.toString(), 'first\n');
    await secondDispatched;
    bodies[1]!.end('second\n');
    assert.equal((await second).body.toString(), 'second\n');
  });

  it('maxConns answers 503 with Retry-After when no slot frees within backendTimeout', async () => {
    // The first request holds the only slot for as long as its upload lasts: until the test ends it.
    const backend = fakeBackend(async (req) => {
      for await (const chunk of req.body ?? []) void chunk;
      return ok();
    });
    const gw = await h.gateway(backend, { maxConns: 1, backendTimeout: 300, retryAfter: 2 });
    const upload = http.request(`${gw.url}/upload`, { method: 'POST', agent: false, headers: { 'Content-Length': 4 } });
    const uploaded = new Promise<number>((resolve, reject) => {
      upload.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      upload.on('error', reject);
    });
    upload.write('ab');
    await once(gw.gateway.server, 'request');
    const t0 = Date.now();
    const late = await httpRequest(`${gw.url}/late`);
    assert.equal(late.status, 503);
    assert.equal(late.headers['retry-after'], '2');
    assert.ok(Date.now() - t0 < 1300);
    assert.match(gw.logs.join('\n'), /503 GET \/late .*no free backend slot within 300 ms \(1 of 1 busy, 0 more waiting\)/);
    upload.end('cd');
    assert.equal(await uploaded, 200);
  });

  it('answers 504 even when the backend ignores the abort signal', async () => {
    const backend = fakeBackend(() => new Promise<BackendResponse>(() => {}));
    const gw = await h.gateway(backend, { backendTimeout: 200 });
    const r = await httpRequest(`${gw.url}/`, { timeoutMs: 3000 });
    assert.equal(r.status, 504);
  });

  it('close() lets an in-flight request finish, then resolves', async () => {
    const body = new PassThrough();
    const backend = fakeBackend(() => ({ ...ok(), body }));
    const gw = await h.gateway(backend, { closeTimeout: 5000 });
    const pending = httpRequest(`${gw.url}/slow`);
    await once(body, 'resume');
    const closed = gw.gateway.close();
    body.end('done\n');
    const r = await pending;
    assert.equal(r.body.toString(), 'done\n');
    await closed;
    assert.equal(gw.gateway.server.listening, false);
  });

  it('close() cuts a request that outlives closeTimeout', async () => {
    const backend = fakeBackend(() => new Promise<BackendResponse>(() => {}));
    const gw = await h.gateway(backend, { closeTimeout: 200 });
    const pending = httpRequest(`${gw.url}/forever`).catch((err: Error) => err);
    await once(gw.gateway.server, 'request');
    const t0 = Date.now();
    await gw.gateway.close();
    assert.ok(Date.now() - t0 < 1500);
    assert.ok((await pending) instanceof Error);
  });
});
