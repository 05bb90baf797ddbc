// Interop with real FastCGI peers: our client against php-cgi, and our server
// behind cgi-fcgi and nginx. Peers run in their own process groups and are
// killed by group in after() hooks; every wait is on an event, bounded.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ProtocolStatus } from '../../src/fastcgi/constants.js';
import type { FcgiServerRequest, ParamList } from '../../src/fastcgi/contract.js';
import type { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import { cgiFcgi, fixture, httpRequest, splitCgi, startNginx, startPhpCgi, tmpDir, type Nginx, type Peer } from '../helpers/peers.js';
import { collect, connectClient, startServer, type TestServer } from './harness.js';
import { readAll, within } from '../helpers/wait.js';

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

// A per-suite timeout turns a hung peer into a failure, so after() still kills it.
describe('our client against php-cgi', { timeout: 60_000 }, () => {
  let php: Peer;
  const clients: FastCgiClientConnection[] = [];
  const script = fixture('php', 'echo.php');

  before(async () => {
    // A unix socket in a temp dir: no port to race for.
    php = await startPhpCgi({ path: join(tmpDir('gh-php-'), 'php.sock') });
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await php.stop();
  });

  /**
   * A fresh connection per test. Requests keep the connection by default, and a
   * single php-cgi process serves one connection at a time, so the previous
   * test's connection is closed first or php would never accept this one.
   */
  async function client(): Promise<FastCgiClientConnection> {
    for (const old of clients.splice(0)) old.destroy();
    const c = await connectClient(php.address as { path: string });
    clients.push(c);
    return c;
  }

  function params(query: string, body = '', extra: ParamList = []): ParamList {
    return [
      ['GATEWAY_INTERFACE', 'CGI/1.1'],
      ['SERVER_PROTOCOL', 'HTTP/1.1'],
      ['REQUEST_METHOD', body ? 'POST' : 'GET'],
      ['SCRIPT_FILENAME', script],
      ['SCRIPT_NAME', '/echo.php'],
      ['QUERY_STRING', query],
      ['CONTENT_TYPE', body ? 'application/x-www-form-urlencoded' : ''],
      ['CONTENT_LENGTH', String(Buffer.byteLength(body))],
      // php-cgi refuses to run without it (cgi.force_redirect), as nginx's fastcgi_params knows.
      ['REDIRECT_STATUS', '200'],
      ...extra,
    ];
  }

  test('echo of $_SERVER vars and a POST body', async () => {
    const c = await client();
    const body = 'a=1&b=two+words&c=%C3%A9';
    const req = c.request(params('mode=echo&x=1', body, [['HTTP_X_CUSTOM', 'custom-value']]));
    req.stdin.end(body);
    const res = await collect(req, 15000);
    const { headers, body: out } = splitCgi(res.stdout);
    assert.match(headers['content-type'] ?? '', /application\/json/);
    const json = JSON.parse(out.toString()) as { server: Record<string, string>; body: string; post: Record<string, string> };
    assert.deepEqual(json.server, {
      REQUEST_METHOD: 'POST',
      QUERY_STRING: 'mode=echo&x=1',
      CONTENT_TYPE: 'application/x-www-form-urlencoded',
      CONTENT_LENGTH: String(body.length),
      SCRIPT_NAME: '/echo.php',
      HTTP_X_CUSTOM: 'custom-value',
      GATEWAY_INTERFACE: 'CGI/1.1',
    });
    assert.equal(json.body, body);
    assert.deepEqual(json.post, { a: '1', b: 'two words', c: 'é' });
    assert.equal(res.end.protocolStatus, ProtocolStatus.REQUEST_COMPLETE);
  });

  test('a 1 MiB response arrives whole', async () => {
    const c = await client();
    const req = c.request(params('mode=big'));
    req.stdin.end();
    const res = await collect(req, 15000);
    const { body } = splitCgi(res.stdout);
    assert.equal(body.length, 1024 * 1024);
    assert.equal(sha256(body), sha256('0123456789abcdef'.repeat(65536)));
  });

  test('a Status header, and stderr from error_log()', async () => {
    const c = await client();
    const req = c.request(params('mode=status'));
    req.stdin.end();
    const res = await collect(req, 15000);
    const { status, headers, body } = splitCgi(res.stdout);
    assert.equal(status, 418);
    assert.equal(headers['status'], '418 I am a teapot');
    assert.equal(headers['x-fixture'], 'status');
    assert.equal(body.toString(), 'teapot\n');
    assert.match(res.stderr.toString(), /fixture: status mode/);
  });

  test('KEEP_CONN: two requests in turn on one connection', async () => {
    const c = await client();
    for (const q of ['mode=echo&n=1', 'mode=echo&n=2']) {
      const req = c.request(params(q), { keepConn: true });
      req.stdin.end();
      const res = await collect(req, 15000);
      const json = JSON.parse(splitCgi(res.stdout).body.toString()) as { server: { QUERY_STRING: string } };
      assert.equal(json.server.QUERY_STRING, q);
      assert.equal(c.idle, true);
    }
  });

  test('GET_VALUES: php-cgi does not multiplex', async () => {
    const c = await client();
    const values = await within(c.getValues(['FCGI_MPXS_CONNS', 'FCGI_MAX_REQS', 'FCGI_MAX_CONNS']), 10000, 'GET_VALUES_RESULT');
    assert.equal(values.get('FCGI_MPXS_CONNS'), '0');
    assert.match(values.get('FCGI_MAX_REQS') ?? '', /^\d+$/);
  });
});

/** Our application: "Status: 201", the params as "NAME=value" lines, then the body's length and sha256. */
async function app(req: FcgiServerRequest): Promise<void> {
  const body = await readAll(req.stdin);
  req.stderr.write('app: hello on stderr\n');
  req.stdout.write('Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n');
  req.stdout.write(`keepConn=${req.keepConn}\n`);
  for (const [n, v] of req.params) req.stdout.write(`${n}=${v}\n`);
  req.stdout.write(`body-length=${body.length}\nbody-sha256=${sha256(body)}\n`);
  const big = req.params.find(([n]) => n === 'QUERY_STRING')?.[1].match(/big=(\d+)/);
  if (big) req.stdout.write(Buffer.alloc(Number(big[1]), 0x61));
  req.end(0);
}

/** The "NAME=value" lines of our app's answer, up to body-sha256 (a big tail may follow). */
function lines(body: Buffer): Map<string, string> {
  const text = body.toString('latin1');
  const head = text.slice(0, text.indexOf('\n', text.indexOf('body-sha256=')));
  return new Map(head.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
}

describe('cgi-fcgi against our server', { timeout: 60_000 }, () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({}, (req) => void app(req));
  });
  after(() => srv.close());

  test('a POST through cgi-fcgi: params from the environment, stdin as the body', async () => {
    const body = Buffer.from('x'.repeat(100_000));
    const res = await cgiFcgi(
      { port: (srv.address as { port: number }).port },
      { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length), QUERY_STRING: 'q=1', HTTP_X_CUSTOM: 'yes' },
      body,
    );
    assert.equal(res.code, 0, res.stderr);
    const { status, body: out } = splitCgi(res.stdout);
    assert.equal(status, 201);
    const got = lines(out);
    assert.equal(got.get('REQUEST_METHOD'), 'POST');
    assert.equal(got.get('QUERY_STRING'), 'q=1');
    assert.equal(got.get('HTTP_X_CUSTOM'), 'yes');
    assert.equal(got.get('body-length'), String(body.length));
    assert.equal(got.get('body-sha256'), sha256(body));
    assert.match(res.stderr, /app: hello on stderr/);
  });
});

describe('nginx fastcgi_pass against our server', { timeout: 60_000 }, () => {
  let plain: TestServer;
  let kept: TestServer;
  let nginx: Nginx;

  before(async () => {
    plain = await startServer({}, (req) => void app(req));
    kept = await startServer({}, (req) => void app(req));
    const plainPort = (plain.address as { port: number }).port;
    const keptPort = (kept.address as { port: number }).port;
    nginx = await startNginx(
      `
    client_max_body_size 16m;
    location /keep/ {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass kept;
      fastcgi_keep_conn on;
    }
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass 127.0.0.1:${plainPort};
    }`,
      { httpExtra: `upstream kept { server 127.0.0.1:${keptPort}; keepalive 8; }` },
    );
  });
  after(async () => {
    await nginx.stop();
    await plain.close();
    await kept.close();
  });

  test('GET: status, headers and CGI params come through', async () => {
    const res = await httpRequest(`${nginx.url}/some/path?a=1&b=2`, { headers: { 'X-Custom': 'from-http' } });
    assert.equal(res.status, 201, nginx.errorLog());
    assert.equal(res.headers['content-type'], 'text/plain');
    const got = lines(res.body);
    assert.equal(got.get('REQUEST_METHOD'), 'GET');
    assert.equal(got.get('QUERY_STRING'), 'a=1&b=2');
    assert.equal(got.get('REQUEST_URI'), '/some/path?a=1&b=2');
    assert.equal(got.get('HTTP_X_CUSTOM'), 'from-http');
    assert.equal(got.get('keepConn'), 'false');
  });

  test('POST of 1 MiB and a 2 MiB response', async () => {
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const res = await httpRequest(`${nginx.url}/upload?big=${2 * 1024 * 1024}`, { method: 'POST', body, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(res.status, 201, nginx.errorLog());
    const got = lines(res.body);
    assert.equal(got.get('CONTENT_LENGTH'), String(body.length));
    assert.equal(got.get('body-sha256'), sha256(body));
    assert.ok(res.body.subarray(res.body.length - 2 * 1024 * 1024).equals(Buffer.alloc(2 * 1024 * 1024, 0x61)));
  });

  test('fastcgi_keep_conn with an upstream keepalive pool: one connection for many requests', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await httpRequest(`${nginx.url}/keep/n${i}`);
      assert.equal(res.status, 201, nginx.errorLog());
      const got = lines(res.body);
      assert.equal(got.get('keepConn'), 'true');
      assert.equal(got.get('REQUEST_URI'), `/keep/n${i}`);
    }
    assert.equal(kept.conns.length, 1, 'nginx reused its kept-alive connection');
    assert.equal(kept.conns[0]!.closed, false);
  });
});
