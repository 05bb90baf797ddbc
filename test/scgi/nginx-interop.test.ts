/**
 * Real nginx (/usr/sbin/nginx, `scgi_pass` with the distribution's
 * scgi_params) in front of our SCGI server: what nginx sends must parse
 * under our default (strict) rules, and what we answer must reach the client.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { startNginx, httpRequest, type Nginx } from '../helpers/peers.js';
import { startEchoServer, largeBody, type EchoReply, type EchoServer } from './echo-server.js';

const NGINX = '/usr/sbin/nginx';
const skip = existsSync(NGINX) ? false : `${NGINX} is not installed`;

let echo: EchoServer;
let nginx: Nginx;

before(async () => {
  if (skip) return;
  echo = await startEchoServer();
  nginx = await startNginx(`
    client_max_body_size 16m;
    location / {
      include /etc/nginx/scgi_params;
      scgi_pass 127.0.0.1:${echo.port};
    }`);
});

after(async () => {
  await nginx?.stop();
  await echo?.close();
});

function param(reply: EchoReply, name: string): string | undefined {
  return reply.params.find(([n]) => n === name)?.[1];
}

async function echoed(path: string, opts: Parameters<typeof httpRequest>[1] = {}): Promise<EchoReply> {
  const res = await httpRequest(nginx.url + path, opts);
  assert.equal(res.status, 200, `status ${res.status}: ${res.body.toString()}\n${nginx.errorLog()}`);
  return JSON.parse(res.body.toString('utf8')) as EchoReply;
}

test('GET: method, raw URI, query string and CONTENT_LENGTH first', { skip }, async () => {
  const reply = await echoed('/some/path%20x?a=1&b=%20two');
  assert.deepEqual(reply.params[0], ['CONTENT_LENGTH', '0']);
  assert.equal(param(reply, 'SCGI'), '1');
  assert.equal(param(reply, 'REQUEST_METHOD'), 'GET');
  assert.equal(param(reply, 'REQUEST_URI'), '/some/path%20x?a=1&b=%20two');
  assert.equal(param(reply, 'QUERY_STRING'), 'a=1&b=%20two');
  assert.equal(param(reply, 'DOCUMENT_URI'), '/some/path x');
  assert.equal(param(reply, 'SERVER_PROTOCOL'), 'HTTP/1.1');
  assert.equal(param(reply, 'SERVER_PORT'), String(nginx.port));
  assert.equal(reply.bodyLength, 0);
  assert.deepEqual(echo.errors, []);
});

test('POST: the body and its CONTENT_LENGTH arrive intact', { skip }, async () => {
  const body = Buffer.alloc(300 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
  const reply = await echoed('/upload', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/octet-stream' },
  });
  assert.deepEqual(reply.params[0], ['CONTENT_LENGTH', String(body.length)]);
  assert.equal(param(reply, 'REQUEST_METHOD'), 'POST');
  assert.equal(param(reply, 'CONTENT_TYPE'), 'application/octet-stream');
  assert.equal(reply.bodyLength, body.length);
  assert.equal(reply.bodySha256, createHash('sha256').update(body).digest('hex'));
});

test('repeated request headers arrive as repeated HTTP_* pairs (kept by default)', { skip }, async () => {
  // nginx 1.22 sends one pair per header line; a spec-strict "no duplicates"
  // server would turn this ordinary request into a 502.
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(nginx.port, '127.0.0.1', () =>
      socket.write('GET /dup HTTP/1.0\r\nHost: localhost\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n'),
    );
    let out = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (out += d));
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
  });
  // HTTP/1.0, so the body is neither chunked nor kept alive.
  assert.match(raw, /^HTTP\/1\.1 200 /);
  const reply = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as EchoReply;
  assert.deepEqual(
    reply.params.filter(([n]) => n === 'HTTP_X_DUP'),
    [
      ['HTTP_X_DUP', 'a'],
      ['HTTP_X_DUP', 'b'],
    ],
  );
});

test('a response with Status: 201 reaches the client as 201 with its headers', { skip }, async () => {
  const res = await httpRequest(`${nginx.url}/created`, { method: 'POST', body: 'x' });
  assert.equal(res.status, 201);
  assert.equal(res.headers['x-made'], 'yes');
  assert.equal(res.headers['content-type'], 'text/plain');
  assert.equal(res.body.toString(), 'made it');
});

test('a large response streams through intact', { skip }, async () => {
  const SIZE = 6 * 1024 * 1024 + 123;
  const expected = createHash('sha256');
  for await (const chunk of largeBody(SIZE)) expected.update(chunk as Buffer);
  const res = await httpRequest(`${nginx.url}/large/${SIZE}`, { timeoutMs: 30000 });
  assert.equal(res.status, 200);
  assert.equal(res.body.length, SIZE);
  assert.equal(createHash('sha256').update(res.body).digest('hex'), expected.digest('hex'));
  assert.deepEqual(echo.errors, []);
});
