// Response framing and heads against literal tables (RFC 9112 §6.3, §9.3;
// RFC 9110 §6.4.1, §8.6), and the refusals that stop response splitting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chunkHeader,
  encodeResponseHead,
  httpDate,
  LAST_CHUNK,
  responseFraming,
  responseHasNoBody,
  type RequestFacts,
  type ResponseFraming,
} from '../../src/http1/response-head.js';
import { Http1ResponseError, type Http1ResponseErrorCode } from '../../src/http1/errors.js';

const DATE = 'Tue, 24 Nov 2026 00:00:00 GMT';
const get11: RequestFacts = { method: 'GET', versionMinor: 1, keepAlive: true };
const get10: RequestFacts = { method: 'GET', versionMinor: 0, keepAlive: false };
const get10ka: RequestFacts = { method: 'GET', versionMinor: 0, keepAlive: true };
const head11: RequestFacts = { method: 'HEAD', versionMinor: 1, keepAlive: true };
const close11: RequestFacts = { method: 'GET', versionMinor: 1, keepAlive: false };

test('framing: by request version, method, status and whether the length is known', () => {
  const cases: Array<[string, RequestFacts, number, number | undefined, boolean, ResponseFraming]> = [
    ['1.1 known length', get11, 200, 5, false, { body: 'length', keepAlive: true }],
    ['1.1 unknown length → chunked', get11, 200, undefined, false, { body: 'chunked', keepAlive: true }],
    ['1.1 client asked to close', close11, 200, undefined, false, { body: 'chunked', keepAlive: false }],
    ['1.1 server closes (shutting down)', get11, 200, 5, true, { body: 'length', keepAlive: false }],
    ['1.0 unknown length → close-delimited', get10ka, 200, undefined, false, { body: 'close', keepAlive: false }],
    ['1.0 keep-alive with a length', get10ka, 200, 5, false, { body: 'length', keepAlive: true }],
    ['1.0 without keep-alive', get10, 200, 5, false, { body: 'length', keepAlive: false }],
    ['HEAD never has a body', head11, 200, undefined, false, { body: 'none', keepAlive: true }],
    ['204', get11, 204, undefined, false, { body: 'none', keepAlive: true }],
    ['304', get11, 304, 10, false, { body: 'none', keepAlive: true }],
    ['1xx', get11, 103, undefined, false, { body: 'none', keepAlive: true }],
  ];
  for (const [name, req, status, length, close, expected] of cases) assert.deepEqual(responseFraming(req, status, length, close), expected, name);
  assert.equal(responseHasNoBody('GET', 205), false);
  assert.equal(responseHasNoBody('HEAD', 500), true);
});

test('heads: status line, fields in order, Date, then the framing fields', () => {
  const cases: Array<[string, Parameters<typeof encodeResponseHead>, string]> = [
    [
      'length, kept alive',
      [200, undefined, ['Content-Type', 'text/plain', 'X-A', 'b'], { body: 'length', keepAlive: true }, 5, DATE],
      `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\nDate: ${DATE}\r\nContent-Length: 5\r\n\r\n`,
    ],
    ['chunked', [200, undefined, [], { body: 'chunked', keepAlive: true }, undefined, DATE], `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nTransfer-Encoding: chunked\r\n\r\n`],
    ['chunked, last response', [201, 'Made', [], { body: 'chunked', keepAlive: false }, undefined, DATE], `HTTP/1.1 201 Made\r\nDate: ${DATE}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`],
    ['close-delimited', [200, undefined, [], { body: 'close', keepAlive: false }, undefined, DATE], `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nConnection: close\r\n\r\n`],
    ['HEAD keeps the length a GET would have', [200, undefined, [], { body: 'none', keepAlive: true }, 1234, DATE], `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nContent-Length: 1234\r\n\r\n`],
    ['204 never carries a length', [204, undefined, [], { body: 'none', keepAlive: true }, 0, DATE], `HTTP/1.1 204 No Content\r\nDate: ${DATE}\r\n\r\n`],
    ['unknown status code gets a generic reason', [599, undefined, [], { body: 'length', keepAlive: true }, 0, DATE], `HTTP/1.1 599 Unknown\r\nDate: ${DATE}\r\nContent-Length: 0\r\n\r\n`],
    ['obs-text and tabs in values pass as latin1', [200, undefined, ['X-L', 'caf\xe9\tok'], { body: 'length', keepAlive: true }, 0, DATE], `HTTP/1.1 200 OK\r\nX-L: caf\xe9\tok\r\nDate: ${DATE}\r\nContent-Length: 0\r\n\r\n`],
  ];
  for (const [name, args, expected] of cases) assert.equal(encodeResponseHead(...args), expected, name);
});

test('refusals: response splitting, bad names, framing fields from the caller, bad statuses', () => {
  const ok: ResponseFraming = { body: 'length', keepAlive: true };
  const cases: Array<[string, () => unknown, Http1ResponseErrorCode]> = [
    ['CRLF in a value', () => encodeResponseHead(200, undefined, ['X-A', 'a\r\nSet-Cookie: evil=1'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['bare LF in a value', () => encodeResponseHead(200, undefined, ['X-A', 'a\nb'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['NUL in a value', () => encodeResponseHead(200, undefined, ['X-A', 'a\0'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['CRLF in the reason', () => encodeResponseHead(200, 'OK\r\nX: y', [], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['space in a name', () => encodeResponseHead(200, undefined, ['X A', 'b'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['colon in a name', () => encodeResponseHead(200, undefined, ['X:A', 'b'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['a name without a value', () => encodeResponseHead(200, undefined, ['X-A'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['Content-Length from the caller', () => encodeResponseHead(200, undefined, ['content-length', '9'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['Transfer-Encoding from the caller', () => encodeResponseHead(200, undefined, ['Transfer-Encoding', 'chunked'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['Connection from the caller', () => encodeResponseHead(200, undefined, ['CONNECTION', 'keep-alive'], ok, 0, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['length framing without a length', () => encodeResponseHead(200, undefined, [], ok, undefined, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['a negative length', () => encodeResponseHead(200, undefined, [], ok, -1, DATE), 'ERR_HTTP1_BAD_RESPONSE_FIELD'],
    ['status 99', () => encodeResponseHead(99, undefined, [], ok, 0, DATE), 'ERR_HTTP1_BAD_STATUS'],
    ['status 1000', () => encodeResponseHead(1000, undefined, [], ok, 0, DATE), 'ERR_HTTP1_BAD_STATUS'],
    ['status 200.5', () => encodeResponseHead(200.5, undefined, [], ok, 0, DATE), 'ERR_HTTP1_BAD_STATUS'],
  ];
  for (const [name, fn, code] of cases) {
    assert.throws(fn, (err: unknown) => err instanceof Http1ResponseError && err.code === code && err.message.startsWith('http1: '), name);
  }
});

test('chunked coding pieces: hex sizes, no empty chunk but the last', () => {
  assert.equal(chunkHeader(1), '1\r\n');
  assert.equal(chunkHeader(255), 'ff\r\n');
  assert.equal(chunkHeader(65536), '10000\r\n');
  assert.equal(LAST_CHUNK, '0\r\n\r\n');
  assert.throws(() => chunkHeader(0), RangeError);
  assert.throws(() => chunkHeader(1.5), RangeError);
});

test('httpDate: IMF-fixdate, the same string within a second', () => {
  assert.equal(httpDate(Date.UTC(2026, 10, 24, 0, 0, 0, 10)), DATE);
  assert.equal(httpDate(Date.UTC(2026, 10, 24, 0, 0, 0, 990)), DATE);
  assert.equal(httpDate(Date.UTC(2026, 10, 24, 0, 0, 1)), 'Tue, 24 Nov 2026 00:00:01 GMT');
});

test('a real client (node:http) reads what the encoder writes: length, chunked, HEAD, close-delimited', async () => {
  const net = await import('node:net');
  const http = await import('node:http');
  type Answer = { head: string; body: string[] };
  // One canned answer per request path; the server writes it raw.
  const answers: Record<string, Answer> = {
    '/length': { head: encodeResponseHead(200, undefined, ['X-A', '1'], { body: 'length', keepAlive: true }, 5, DATE), body: ['hello'] },
    '/chunked': {
      head: encodeResponseHead(200, undefined, [], { body: 'chunked', keepAlive: true }, undefined, DATE),
      body: [chunkHeader(3), 'abc', '\r\n', chunkHeader(16), 'x'.repeat(16), '\r\n', LAST_CHUNK],
    },
    '/head': { head: encodeResponseHead(200, undefined, [], { body: 'none', keepAlive: true }, 42, DATE), body: [] },
    '/close': { head: encodeResponseHead(200, undefined, [], { body: 'close', keepAlive: false }, undefined, DATE), body: ['until', ' close'] },
  };
  const server = net.createServer((socket) => {
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const path = got.split(' ')[1]!;
      got = got.slice(end + 4);
      const a = answers[path]!;
      socket.write(a.head + a.body.join(''), 'latin1');
      if (path === '/close') socket.end();
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const fetchOne = (path: string, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, agent }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.setTimeout(5000, () => req.destroy(new Error(`${path} timed out`)));
      req.on('error', reject);
      req.end();
    });
  try {
    const length = await fetchOne('/length');
    assert.deepEqual([length.status, length.headers['x-a'], length.headers['content-length'], length.body], [200, '1', '5', 'hello']);
    // Same kept-alive connection: the framing left nothing behind.
    const chunked = await fetchOne('/chunked');
    assert.deepEqual([chunked.headers['transfer-encoding'], chunked.body], ['chunked', `abc${'x'.repeat(16)}`]);
    const head = await fetchOne('/head', 'HEAD');
    assert.deepEqual([head.headers['content-length'], head.body], ['42', '']);
    const close = await fetchOne('/close');
    assert.deepEqual([close.headers.connection, close.body], ['close', 'until close']);
  } finally {
    agent.destroy();
    server.close();
  }
});
