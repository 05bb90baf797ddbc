/**
 * Plain, Express, Fastify and Koa apps, unmodified, served by gatehouse and
 * reached through real peers: nginx fastcgi_pass (with and without
 * keep-alive connections), nginx scgi_pass, and cgi-fcgi -bind -connect.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { cgiFcgi, httpRequest, startNginx, tmpDir, type Nginx } from '../helpers/peers.js';
import { APP_NAMES, buildApp, type AppName, type Built } from './apps.js';
import { parseCgi } from './local.js';

type Mode = 'fastcgi-keepalive' | 'fastcgi' | 'scgi';
const MODES: Mode[] = ['fastcgi-keepalive', 'fastcgi', 'scgi'];

const dir = tmpDir('gh-fw-');
const sock = (name: AppName, proto: 'fastcgi' | 'scgi'): string => join(dir, `${name}-${proto}.sock`);
const apps: Built[] = [];
const connections = new Map<string, number>();
const nginx = new Map<Mode, Nginx>();

before(async () => {
  for (const name of APP_NAMES) {
    for (const proto of ['fastcgi', 'scgi'] as const) {
      const built = buildApp(name, proto);
      const key = `${name}-${proto}`;
      connections.set(key, 0);
      built.server.on('connection', () => connections.set(key, connections.get(key)! + 1));
      await built.listen(sock(name, proto));
      apps.push(built);
    }
  }
  const locations = (mode: Mode): string =>
    APP_NAMES.map((name) => {
      if (mode === 'scgi') return `location /${name}/ { scgi_pass unix:${sock(name, 'scgi')}; include /etc/nginx/scgi_params; }`;
      if (mode === 'fastcgi') return `location /${name}/ { fastcgi_pass unix:${sock(name, 'fastcgi')}; include /etc/nginx/fastcgi_params; }`;
      return `location /${name}/ { fastcgi_pass up_${name}; fastcgi_keep_conn on; include /etc/nginx/fastcgi_params; }`;
    }).join('\n');
  const upstreams = APP_NAMES.map((name) => `upstream up_${name} { server unix:${sock(name, 'fastcgi')}; keepalive 4; }`).join('\n');
  for (const mode of MODES) {
    nginx.set(mode, await startNginx(locations(mode), mode === 'fastcgi-keepalive' ? { httpExtra: upstreams } : {}));
  }
});

after(async () => {
  for (const n of nginx.values()) await n.stop();
  for (const a of apps) await a.close();
});

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

for (const mode of MODES) {
  for (const name of APP_NAMES) {
    test(`${name} behind nginx ${mode}`, async () => {
      const base = `${nginx.get(mode)!.url}/${name}`;
      const context = (): string => `${name}/${mode}\n${nginx.get(mode)!.errorLog().slice(-2000)}`;

      const q = await httpRequest(`${base}/query?x=1&y=two%20words`, { headers: { 'User-Agent': 'gatehouse-test' } });
      assert.equal(q.status, 200, context());
      assert.deepEqual(JSON.parse(q.body.toString()), {
        x: '1',
        y: 'two words',
        method: 'GET',
        ua: 'gatehouse-test',
        host: '127.0.0.1',
        ip: '127.0.0.1',
        // Own-property bookkeeping survives Express's prototype swap (and Koa/Fastify wrappers).
        doc: `/${name}/query`,
      });

      const h = await httpRequest(`${base}/headers`, { headers: { 'X-Custom': 'sent by client' } });
      assert.equal(h.status, 200, context());
      assert.equal(h.headers['x-app'], name);
      assert.equal(h.headers['x-echo'], 'sent by client');
      const cookies = h.headers['set-cookie'] ?? [];
      assert.equal(cookies.length, 2, JSON.stringify(cookies));
      assert.match(cookies[0]!, /^k=v/);
      assert.equal(h.body.toString(), 'headers\n');

      const head = await httpRequest(`${base}/headers`, { method: 'HEAD' });
      assert.equal(head.status, 200, context());
      assert.equal(head.headers['x-app'], name);
      assert.equal(head.body.length, 0);

      const body = randomBytes(1024 * 1024);
      const e = await httpRequest(`${base}/echo`, { method: 'POST', body, headers: { 'Content-Type': 'application/x-test' } });
      assert.equal(e.status, 200, context());
      assert.match(String(e.headers['content-type']), /^application\/x-test/);
      assert.equal(e.body.length, body.length);
      assert.equal(sha(e.body), sha(body));

      for (const code of [201, 404, 418]) {
        const s = await httpRequest(`${base}/status/${code}`);
        assert.equal(s.status, code, context());
        assert.equal(s.body.toString(), `status ${code}\n`);
      }

      const r = await httpRequest(`${base}/redirect`);
      assert.equal(r.status, 302, context());
      assert.match(String(r.headers.location), new RegExp(`/${name}/target$`));

      const st = await httpRequest(`${base}/stream`);
      assert.equal(st.status, 200, context());
      assert.equal(st.body.toString(), 'one\ntwo\nthree\n');

      const t = await httpRequest(`${base}/throw`);
      assert.equal(t.status, 500, context());
      const again = await httpRequest(`${base}/query?x=after`);
      assert.equal(again.status, 200, context());
      assert.equal(JSON.parse(again.body.toString()).x, 'after');
    });
  }
}

test('nginx keep-alive upstreams reuse FastCGI connections (KEEP_CONN)', () => {
  // The keep-alive nginx ran ~12 requests per app over at most a few connections;
  // the plain fastcgi nginx opened one per request. Both hit the same servers.
  for (const name of APP_NAMES) {
    const n = connections.get(`${name}-fastcgi`)!;
    assert.ok(n < 24, `${name}: ${n} connections for ~24 FastCGI requests`);
  }
});

for (const name of APP_NAMES) {
  test(`${name} through cgi-fcgi -bind -connect`, async () => {
    const addr = { path: sock(name, 'fastcgi') };
    const env = (method: string, uri: string, extra: Record<string, string> = {}): Record<string, string> => ({
      REQUEST_METHOD: method,
      REQUEST_URI: uri,
      QUERY_STRING: uri.includes('?') ? uri.slice(uri.indexOf('?') + 1) : '',
      SERVER_PROTOCOL: 'HTTP/1.1',
      REMOTE_ADDR: '127.0.0.1',
      HTTP_HOST: 'localhost',
      HTTP_USER_AGENT: 'cgi-fcgi',
      ...extra,
    });
    const q = await cgiFcgi(addr, env('GET', `/${name}/query?x=cgi&y=2`));
    assert.equal(q.code, 0, q.stderr);
    const qr = parseCgi(q.stdout);
    assert.equal(qr.status, 200);
    const json = JSON.parse(qr.body.toString());
    assert.equal(json.x, 'cgi');
    assert.equal(json.ua, 'cgi-fcgi');

    const body = randomBytes(200 * 1024);
    const e = await cgiFcgi(addr, env('POST', `/${name}/pipe`, { CONTENT_LENGTH: String(body.length), CONTENT_TYPE: 'application/x-cgi' }), body);
    assert.equal(e.code, 0, e.stderr);
    const er = parseCgi(e.stdout);
    assert.equal(er.status, 200);
    assert.equal(sha(er.body), sha(body));

    const t = await cgiFcgi(addr, env('GET', `/${name}/throw`));
    assert.equal(parseCgi(t.stdout).status, 500);
    if (name === 'plain') assert.match(t.stderr, /plain handler failed/, 'the error went to FCGI_STDERR');
    const again = await cgiFcgi(addr, env('GET', `/${name}/status/201`));
    assert.equal(parseCgi(again.stdout).status, 201);
  });
}
