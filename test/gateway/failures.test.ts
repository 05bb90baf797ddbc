/**
 * What the client sees when the application misbehaves, through the real
 * src/backend (client mode, Unix sockets) in front of small misbehaving
 * applications: 502 (closed early, bad head), 503 + Retry-After
 * (unreachable, cannot start), 504 (no answer in time), responses cut
 * rather than left hanging, and a gateway that keeps serving afterwards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { httpRequest, tmpDir } from '../helpers/peers.js';
import { Harness, type Running } from './support.js';

const TIMEOUT_MS = 1000;

describe('gateway error mapping against misbehaving applications', () => {
  const h = new Harness();
  /** One gateway per behaviour, all in front of real client-mode backends. */
  const gw: Record<string, Running> = {};

  before(async () => {
    const apps = {
      good: await h.fastcgiApp((req) => {
        req.stdout.write('Content-Type: text/plain\r\nConnection: close\r\nKeep-Alive: timeout=99\r\nX-Kept: yes\r\n\r\nfine\n');
        req.end();
      }),
      closesEarly: await h.rawApp((s) => s.once('data', () => s.destroy())),
      silent: await h.rawApp((s) => s.resume()),
      noHead: await h.fastcgiApp((req) => req.end()),
      badHead: await h.fastcgiApp((req) => {
        req.stdout.write('this is not a header\r\n\r\nbody');
        req.end();
      }),
      shortBody: await h.fastcgiApp((req) => {
        req.stdout.write('Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly this');
        req.end();
      }),
      longBody: await h.fastcgiApp((req) => {
        req.stdout.write('Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nfar more than three bytes');
        req.end();
      }),
      stallsMidBody: await h.fastcgiApp((req) => {
        req.stdout.write('Content-Type: text/plain\r\n\r\nfirst part, then nothing');
      }),
    };
    for (const [name, app] of Object.entries(apps)) {
      const backend = h.backend({ protocol: 'fastcgi', address: { kind: 'unix', path: app.path } });
      gw[name] = await h.gateway(backend, { backendTimeout: TIMEOUT_MS, retryAfter: 3, statusPath: '/gatehouse-status' });
    }
    const nowhere = h.backend({ protocol: 'fastcgi', address: { kind: 'unix', path: join(tmpDir('gh-gw-none-'), 'nobody.sock') } });
    gw.unreachable = await h.gateway(nowhere, { retryAfter: 3 });
    // A program that exits at once: it can never be reached.
    const dying = h.backend({ protocol: 'fastcgi', program: ['sh', '-c', 'exit 3'] });
    gw.cannotStart = await h.gateway(dying, { retryAfter: 3 });
  });
  after(() => h.closeAll());

  it('relays a good response without the application’s hop-by-hop headers', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const r = await httpRequest(`${gw.good!.url}/`, { agent }).finally(() => agent.destroy());
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'fine\n');
    assert.equal(r.headers['x-kept'], 'yes');
    // HTTP/1.1 keeps the connection unless told otherwise: the application's `Connection: close` must not be passed on.
    assert.equal(r.headers.connection, undefined, 'the application cannot close the client connection');
    assert.equal(r.headers['keep-alive'], undefined, "the application's Keep-Alive is hop-by-hop");
  });

  it('502 when the application closes the connection before answering', async () => {
    const r = await httpRequest(`${gw.closesEarly!.url}/`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(r.body.toString(), '502 Bad Gateway\n');
    assert.match(gw.closesEarly!.logs.join('\n'), /^502 GET \/ after \d+ ms: .*closed/m);
  });

  it('502 when the application ends the request without a head, or sends a bad one', async () => {
    assert.equal((await httpRequest(`${gw.noHead!.url}/`)).status, 502);
    assert.equal((await httpRequest(`${gw.badHead!.url}/`)).status, 502);
  });

  it('503 with Retry-After when the application cannot be reached', async () => {
    const r = await httpRequest(`${gw.unreachable!.url}/x`);
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '3');
    assert.match(gw.unreachable!.logs.join('\n'), /^503 GET \/x .*ENOENT/m);
  });

  it('5xx when the application cannot start, and the log names its exit status', async () => {
    const r = await httpRequest(`${gw.cannotStart!.url}/`, { timeoutMs: 10_000 });
    // src/backend reports a child that dies with our connection still in its backlog as CLOSED_EARLY
    // (502), one that was already gone as UNAVAILABLE (503); which one wins is a race of the exit.
    assert.ok(r.status === 502 || r.status === 503, `status ${r.status}`);
    if (r.status === 503) assert.equal(r.headers['retry-after'], '3');
    assert.match(gw.cannotStart!.logs.join('\n'), /^50[23] GET \/ .*exited with status 3/m);
  });

  it(`504 within backendTimeout + 1 s when the application never answers`, async () => {
    const t0 = Date.now();
    const r = await httpRequest(`${gw.silent!.url}/`, { timeoutMs: TIMEOUT_MS + 3000 });
    const elapsed = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.ok(elapsed >= TIMEOUT_MS - 50 && elapsed < TIMEOUT_MS + 1000, `answered after ${elapsed} ms`);
  });

  it('cuts the connection when the body is shorter or longer than the application’s Content-Length', async () => {
    for (const name of ['shortBody', 'longBody'] as const) {
      const outcome = await getOutcome(`${gw[name]!.url}/`, TIMEOUT_MS + 3000);
      assert.equal(outcome.kind, 'cut', `${name}: ${JSON.stringify(outcome)}`);
      assert.match(gw[name]!.logs.join('\n'), /response cut .*Content-Length/);
    }
  });

  it('cuts a response whose body stalls for backendTimeout', async () => {
    const t0 = Date.now();
    const outcome = await getOutcome(`${gw.stallsMidBody!.url}/`, TIMEOUT_MS + 3000);
    assert.equal(outcome.kind, 'cut');
    assert.ok(Date.now() - t0 < TIMEOUT_MS + 1000);
  });

  it('keeps serving after every failure, and counts them by class', async () => {
    for (const [name, g] of Object.entries(gw)) {
      // Every gateway still answers or cuts (whatever its backend does); none is wedged or gone.
      const outcome = await getOutcome(`${g.url}/again`, TIMEOUT_MS + 3000);
      if (outcome.kind === 'complete') assert.ok(outcome.status >= 200, `${name} answered ${outcome.status}`);
    }
    const status = await httpRequest(`${gw.closesEarly!.url}/gatehouse-status?json`);
    const snap = JSON.parse(status.body.toString()) as { errors: Record<string, number>; 'requests served': number };
    assert.ok((snap.errors['502'] ?? 0) >= 2);
    assert.ok(snap['requests served'] >= 2);
    assert.equal((await httpRequest(`${gw.good!.url}/`)).status, 200);
  });
});

type Outcome = { kind: 'complete'; status: number; body: string } | { kind: 'cut'; status: number; got: string };

/** A GET that tells a complete response from one whose connection was cut (never waits forever). */
function getOutcome(url: string, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let got = '';
      res.on('data', (d: Buffer) => (got += d.toString()));
      res.on('end', () => resolve({ kind: 'complete', status: res.statusCode ?? 0, body: got }));
      res.on('aborted', () => resolve({ kind: 'cut', status: res.statusCode ?? 0, got }));
      res.on('error', () => resolve({ kind: 'cut', status: res.statusCode ?? 0, got }));
    });
    let timedOut = false;
    // A connection closed before the head arrived ("socket hang up") is a cut too; a timeout is not.
    req.on('error', (err) => (timedOut ? reject(err) : resolve({ kind: 'cut', status: 0, got: '' })));
    req.setTimeout(timeoutMs, () => {
      timedOut = true;
      req.destroy(new Error(`still waiting after ${timeoutMs} ms`));
    });
  });
}
