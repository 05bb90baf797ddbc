/**
 * Http1Server end to end, over real loopback sockets: node:http's client,
 * raw net sockets (byte-exact framing, pipelining, half-close, aborts) and
 * curl. Every wait is on an event (a 'request', a response, a socket
 * closing) and bounded by within()/waitUntil(); every server and socket is
 * closed after the test that opened it. Timeout tests use timeouts of
 * 100–200 ms and wait for what the timeout causes.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { once } from 'node:events';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { Http1Server, Http1ServerError, type Exchange, type Http1ServerOptions } from '../../src/http1/server.js';
import { Http1ParseError, Http1ResponseError } from '../../src/http1/errors.js';
import { deferred, readAll, waitUntil, within } from '../helpers/wait.js';

// ---------------------------------------------------------------- helpers

type Handler = (ex: Exchange) => unknown;

interface Served {
  server: Http1Server;
  port: number;
  /** Every exchange the server emitted, in order. */
  exchanges: Exchange[];
  /** The 'exchangeClose' events, in order. */
  closes: Exchange[];
}

/**
 * An Http1Server on 127.0.0.1:0 calling `handler` for each 'request'. Cut and
 * closed after the test; a handler that throws or rejects fails the test.
 */
async function serve(t: TestContext, handler: Handler, options: Http1ServerOptions = {}): Promise<Served> {
  const server = new Http1Server(options);
  const exchanges: Exchange[] = [];
  const closes: Exchange[] = [];
  const failures: unknown[] = [];
  const fail = (ex: Exchange, err: unknown): void => {
    failures.push(err);
    ex.destroy();
  };
  server.on('request', (ex: Exchange) => {
    exchanges.push(ex);
    try {
      const r = handler(ex);
      if (r instanceof Promise) r.catch((err: unknown) => fail(ex, err));
    } catch (err) {
      fail(ex, err);
    }
  });
  server.on('exchangeClose', (ex: Exchange) => closes.push(ex));
  server.listen(0, '127.0.0.1');
  await within(once(server, 'listening'), 5000, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    if (server.listening) await within(new Promise<void>((resolve) => server.close(() => resolve())), 5000, 'server close');
    assert.deepEqual(failures, [], 'the handler failed');
  });
  return { server, port: (server.address() as net.AddressInfo).port, exchanges, closes };
}

/** A raw client socket that keeps every byte it receives. */
class Raw {
  readonly socket: net.Socket;
  #chunks: Buffer[] = [];
  #wake = new Set<() => void>();
  /** The server's FIN arrived. */
  ended = false;
  closed = false;
  error: Error | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.#chunks.push(c);
      this.#notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.#notify();
    });
    socket.on('error', (err) => (this.error = err));
    socket.on('close', () => {
      this.closed = true;
      this.#notify();
    });
  }

  static async open(t: TestContext, port: number, options: { allowHalfOpen?: boolean } = {}): Promise<Raw> {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
    t.after(() => {
      socket.destroy();
    });
    const raw = new Raw(socket);
    await within(once(socket, 'connect'), 5000, 'connect');
    return raw;
  }

  get data(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  get text(): string {
    return this.data.toString('latin1');
  }

  write(s: string | Buffer): void {
    this.socket.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  /** The bytes so far, once `pred` holds for them; rejects if the socket closes first or after `ms`. */
  until(pred: (data: Buffer) => boolean, what: string, ms = 5000): Promise<Buffer> {
    return within(
      new Promise<Buffer>((resolve, reject) => {
        const check = (): void => {
          if (pred(this.data)) {
            this.#wake.delete(check);
            resolve(this.data);
          } else if (this.closed) {
            this.#wake.delete(check);
            reject(new Error(`socket closed before ${what}; got ${JSON.stringify(this.text.slice(0, 600))}`));
          }
        };
        this.#wake.add(check);
        check();
      }),
      ms,
      what,
    );
  }

  /** Every byte, once the socket closed. */
  untilClosed(what = 'the connection to close', ms = 5000): Promise<Buffer> {
    return within(
      new Promise<Buffer>((resolve) => {
        const check = (): void => {
          if (!this.closed) return;
          this.#wake.delete(check);
          resolve(this.data);
        };
        this.#wake.add(check);
        check();
      }),
      ms,
      what,
    );
  }

  #notify(): void {
    for (const f of [...this.#wake]) f();
  }
}

interface Res {
  status: number;
  reason: string;
  /** Lowercase names; a repeated name keeps its last value. */
  headers: Record<string, string>;
  /** The head's field lines as sent. */
  lines: string[];
  body: Buffer;
  /** The chunk sizes of a chunked body, the final 0 included. */
  chunkSizes?: number[];
  /** The whole response as it came off the wire. */
  raw: Buffer;
}

/**
 * Parses one response at `off`: null if incomplete. `method` is the
 * request's (HEAD: no body); a close-delimited body counts only once `closed`.
 */
function parseOne(buf: Buffer, off: number, method: string, closed: boolean): [Res, number] | null {
  const end = buf.indexOf('\r\n\r\n', off, 'latin1');
  if (end === -1) return null;
  const [statusLine, ...lines] = buf.toString('latin1', off, end).split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(statusLine!);
  if (m === null) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
  const status = Number(m[1]);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  let p = end + 4;
  let body: Buffer = Buffer.alloc(0);
  let chunkSizes: number[] | undefined;
  if (status < 200 || status === 204 || status === 304 || method === 'HEAD') {
    // no body
  } else if (headers['transfer-encoding'] === 'chunked') {
    const parts: Buffer[] = [];
    chunkSizes = [];
    for (;;) {
      const le = buf.indexOf('\r\n', p, 'latin1');
      if (le === -1) return null;
      const size = parseInt(buf.toString('latin1', p, le), 16);
      assert.ok(Number.isInteger(size), `bad chunk size line ${JSON.stringify(buf.toString('latin1', p, le))}`);
      chunkSizes.push(size);
      if (size === 0) {
        if (buf.length < le + 4) return null;
        assert.equal(buf.toString('latin1', le + 2, le + 4), '\r\n', 'no trailers, then CRLF');
        p = le + 4;
        break;
      }
      if (buf.length < le + 2 + size + 2) return null;
      parts.push(buf.subarray(le + 2, le + 2 + size));
      assert.equal(buf.toString('latin1', le + 2 + size, le + 4 + size), '\r\n', 'CRLF after chunk data');
      p = le + 4 + size;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (buf.length < p + n) return null;
    body = buf.subarray(p, p + n);
    p += n;
  } else {
    if (!closed) return null;
    body = buf.subarray(p);
    p = buf.length;
  }
  const res: Res = { status, reason: m[2]!, headers, lines, body, raw: buf.subarray(off, p) };
  if (chunkSizes !== undefined) res.chunkSizes = chunkSizes;
  return [res, p];
}

/**
 * The complete responses at the start of `buf`, interim (1xx) ones included;
 * `methods[i]` is the method of the request the i-th final response answers.
 */
function parseResponses(buf: Buffer, methods: string[] = [], closed = false): Res[] {
  const out: Res[] = [];
  let off = 0;
  let finals = 0;
  while (off < buf.length) {
    const r = parseOne(buf, off, methods[finals] ?? 'GET', closed);
    if (r === null) break;
    out.push(r[0]);
    if (r[0].status >= 200) finals++;
    off = r[1];
  }
  return out;
}

/** The final responses, once `n` of them are complete. */
function finals(buf: Buffer, methods: string[] = [], closed = false): Res[] {
  return parseResponses(buf, methods, closed).filter((r) => r.status >= 200);
}

const hasFinals =
  (n: number, methods: string[] = []) =>
  (buf: Buffer): boolean =>
    finals(buf, methods).length >= n;

/** A request head (latin1). */
function req(method: string, path: string, extra: string[] = [], version = '1.1'): string {
  return `${method} ${path} HTTP/${version}\r\nHost: t\r\n${extra.map((l) => `${l}\r\n`).join('')}\r\n`;
}

/** A node:http request; resolves with the response and its whole body. */
async function fetch(
  port: number,
  options: http.RequestOptions & { body?: Buffer | string | Array<Buffer | string> },
): Promise<{ res: http.IncomingMessage; body: Buffer; localPort: number }> {
  const { body, ...rest } = options;
  const r = http.request({ host: '127.0.0.1', port, ...rest });
  let localPort = 0;
  r.on('socket', (s: net.Socket) => {
    if (s.localPort !== undefined) localPort = s.localPort;
    else s.once('connect', () => (localPort = s.localPort!));
  });
  const response = within(once(r, 'response') as Promise<[http.IncomingMessage]>, 5000, `response to ${rest.method ?? 'GET'} ${rest.path}`);
  if (Array.isArray(body)) for (const b of body) r.write(b);
  r.end(Array.isArray(body) ? undefined : body);
  const [res] = await response;
  const data = await within(readAll(res), 5000, 'response body');
  return { res, body: data, localPort };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `n` bytes of a pattern that shows a lost, repeated or reordered piece. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n + 3);
  for (let i = 0; i < n; i += 4) b.writeUInt32BE(i >>> 2, i);
  return b.subarray(0, n);
}

/** Answers `status` with `body` and a Content-Length. */
function send(ex: Exchange, status: number, body: string | Buffer, headers: string[] = []): void {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  ex.writeHead(status, undefined, headers, b.length);
  ex.end(b);
}

const IMF_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/;

/** Runs curl (bounded); resolves with its exit code, stdout and stderr. */
async function curl(t: TestContext, args: string[], stdin?: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('curl', ['--silent', '--show-error', '--max-time', '20', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const closed = once(child, 'close') as Promise<[number | null]>;
  child.stdin.end(stdin);
  const [code] = await within(closed, 10_000, `curl ${args.join(' ')}`);
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

// ---------------------------------------------------------------- keep-alive and framing

test('keep-alive: two GETs share one connection; Content-Length body, Date header, exchangeClose finished', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, `hello ${ex.url}`, ['Content-Type', 'text/plain']));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const a = await fetch(s.port, { path: '/a', agent });
  const b = await fetch(s.port, { path: '/b', agent });
  for (const [r, path] of [[a, '/a'], [b, '/b']] as const) {
    assert.equal(r.res.statusCode, 200);
    assert.equal(r.body.toString(), `hello ${path}`);
    assert.equal(r.res.headers['content-length'], String(`hello ${path}`.length));
    assert.equal(r.res.headers['transfer-encoding'], undefined);
    assert.equal(r.res.headers['content-type'], 'text/plain');
    assert.match(r.res.headers.date ?? '', IMF_DATE);
    assert.equal(r.res.headers.connection, undefined, 'HTTP/1.1 keep-alive is the default: no Connection field');
  }
  assert.equal(s.exchanges.length, 2);
  assert.equal(s.exchanges[0]!.socket, s.exchanges[1]!.socket, 'the server saw one connection');
  assert.equal(a.localPort, b.localPort, 'the client used one connection');
  assert.equal(s.server.connectionCount, 1);
  assert.deepEqual(
    s.closes.map((ex) => [ex.url, ex.finished, ex.statusCode, ex.bodyBytesSent]),
    [
      ['/a', true, 200, 8],
      ['/b', true, 200, 8],
    ],
  );
});

test('unknown length on HTTP/1.1: Transfer-Encoding: chunked on the wire, one chunk per write, ended by 0 CRLF CRLF', async (t) => {
  const s = await serve(t, (ex) => {
    ex.writeHead(200, undefined, [], undefined);
    ex.write('hello');
    ex.write(Buffer.from(' chunked world!'));
    setImmediate(() => ex.end('!'));
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/chunked'));
  const [r] = finals(await c.until(hasFinals(1), 'chunked response'));
  const wire = r!.raw.toString('latin1');
  assert.match(wire, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(wire, /\r\nTransfer-Encoding: chunked\r\n/);
  assert.doesNotMatch(wire, /Content-Length/i);
  assert.match(wire, /\r\nDate: [^\r]+ GMT\r\n/);
  assert.ok(wire.endsWith('\r\n\r\n5\r\nhello\r\nf\r\n chunked world!\r\n1\r\n!\r\n0\r\n\r\n'), JSON.stringify(wire));
  assert.deepEqual(r!.chunkSizes, [5, 15, 1, 0]);
  assert.equal(c.data.length, r!.raw.length, 'nothing after the last chunk');
  // Still open: a second request on it is answered.
  c.write(req('GET', '/again'));
  const both = finals(await c.until(hasFinals(2), 'second response'));
  assert.equal(both[1]!.body.toString(), 'hello chunked world!!');
  assert.equal(s.server.connectionCount, 1);
});

test('HTTP/1.0 with Connection: keep-alive: answered with Connection: keep-alive and the connection stays open', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, `v${ex.httpVersion}`));
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/one', ['Connection: keep-alive'], '1.0'));
  const [r1] = finals(await c.until(hasFinals(1), 'first response'));
  assert.equal(r1!.headers.connection, 'keep-alive');
  assert.equal(r1!.headers['content-length'], '4');
  assert.equal(r1!.body.toString(), 'v1.0');
  c.write(req('GET', '/two', ['Connection: keep-alive'], '1.0'));
  const rs = finals(await c.until(hasFinals(2), 'second response on the same connection'));
  assert.equal(rs[1]!.headers.connection, 'keep-alive');
  assert.equal(c.ended, false);
  assert.equal(s.exchanges[0]!.socket, s.exchanges[1]!.socket);
});

test('HTTP/1.0 without keep-alive: Connection: close, then the server closes', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, 'bye'));
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/', [], '1.0'));
  const all = await c.untilClosed('the server to close the HTTP/1.0 connection');
  const rs = finals(all, [], true);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.headers.connection, 'close');
  assert.equal(rs[0]!.body.toString(), 'bye');
  assert.equal(c.ended, true, 'a FIN, not a reset');
  assert.equal(c.error, null);
  assert.equal(all.length, rs[0]!.raw.length);
});

test('HTTP/1.0 with an unknown length: close-delimited body (no chunked coding), even when keep-alive was asked for', async (t) => {
  const s = await serve(t, (ex) => {
    ex.writeHead(200, undefined, [], undefined);
    ex.write('part one, ');
    setImmediate(() => ex.end('part two'));
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/', ['Connection: keep-alive'], '1.0'));
  const all = await c.untilClosed();
  const text = all.toString('latin1');
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text, /\r\nConnection: close\r\n/);
  assert.doesNotMatch(text, /Transfer-Encoding|Content-Length/i);
  assert.ok(text.endsWith('\r\n\r\npart one, part two'), JSON.stringify(text));
  assert.equal(c.ended, true);
  assert.equal(s.closes[0]!.finished, true);
});

// ---------------------------------------------------------------- pipelining

test('pipelining: three requests in one write are answered in order; the next request waits for the previous response', async (t) => {
  const events: string[] = [];
  const firstGate = deferred<void>();
  const first = deferred<Exchange>();
  const s = await serve(t, async (ex) => {
    events.push(`request ${ex.url}`);
    if (ex.url === '/1') {
      first.resolve(ex);
      await firstGate.promise; // the first is answered last in time, if the others were let in
    }
    send(ex, 200, `body of ${ex.url}`);
    events.push(`ended ${ex.url}`);
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/1') + req('GET', '/2') + req('GET', '/3'));
  const ex1 = await within(first.promise, 5000, 'first request');
  // Give a server that let /2 and /3 in a few turns to show it.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(events, ['request /1'], 'no second request before the first response ended');
  assert.equal(ex1.socket.isPaused(), true, 'the socket is not read meanwhile');
  firstGate.resolve();
  const rs = finals(await c.until(hasFinals(3), 'three responses'));
  assert.deepEqual(
    rs.map((r) => r.body.toString()),
    ['body of /1', 'body of /2', 'body of /3'],
  );
  assert.deepEqual(events, ['request /1', 'ended /1', 'request /2', 'ended /2', 'request /3', 'ended /3']);
  assert.equal(c.data.length, rs.reduce((n, r) => n + r.raw.length, 0), 'nothing else on the wire');
  assert.equal(new Set(s.exchanges.map((ex) => ex.socket)).size, 1);
});

// ---------------------------------------------------------------- bodiless responses

test('HEAD: the head only (with the length a GET would have), body writes dropped; the connection is reused', async (t) => {
  const writes: boolean[] = [];
  const s = await serve(t, (ex) => {
    ex.writeHead(200, undefined, ['Content-Type', 'text/plain'], 11);
    writes.push(ex.write('hello '));
    ex.end('world');
  });
  const c = await Raw.open(t, s.port);
  c.write(req('HEAD', '/'));
  const [h] = finals(await c.until(hasFinals(1, ['HEAD']), 'HEAD response'), ['HEAD']);
  assert.equal(h!.headers['content-length'], '11');
  assert.equal(h!.body.length, 0);
  c.write(req('GET', '/'));
  const rs = finals(await c.until(hasFinals(2, ['HEAD', 'GET']), 'GET after HEAD'), ['HEAD', 'GET']);
  // Byte-exact: had the HEAD body gone out, the GET's status line would not follow the HEAD's head.
  assert.ok(rs[1]!.raw.toString('latin1').startsWith('HTTP/1.1 200 OK\r\n'));
  assert.equal(rs[1]!.body.toString(), 'hello world');
  assert.equal(c.data.length, rs[0]!.raw.length + rs[1]!.raw.length);
  assert.deepEqual(writes, [true, true], 'a dropped write does not push back');
  assert.equal(s.exchanges[0]!.bodyBytesSent, 0);
});

test('204 and 304: no body bytes even when the handler writes one; the connection is reused', async (t) => {
  const s = await serve(t, (ex) => {
    if (ex.url === '/204') ex.writeHead(204, undefined, [], undefined);
    else if (ex.url === '/304') ex.writeHead(304, undefined, ['ETag', '"x"'], 10);
    else return send(ex, 200, 'after');
    ex.write('not sent');
    ex.end('not sent either');
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/204'));
  await c.until(hasFinals(1), '204');
  c.write(req('GET', '/304'));
  await c.until(hasFinals(2), '304');
  c.write(req('GET', '/next'));
  const rs = finals(await c.until(hasFinals(3), 'a request after them'));
  assert.deepEqual(
    rs.map((r) => r.status),
    [204, 304, 200],
  );
  assert.equal(rs[0]!.headers['content-length'], undefined, '204 carries no Content-Length');
  assert.equal(rs[0]!.headers['transfer-encoding'], undefined);
  assert.equal(rs[1]!.headers['content-length'], '10', '304 keeps the length of the representation');
  assert.equal(rs[1]!.headers['transfer-encoding'], undefined);
  assert.equal(rs[2]!.body.toString(), 'after');
  assert.equal(c.text.split('not sent').length, 1, 'no body bytes on the wire');
  assert.equal(c.data.length, rs.reduce((n, r) => n + r.raw.length, 0));
});

// ---------------------------------------------------------------- request bodies

test('request body with Content-Length streams to ex.body', async (t) => {
  const s = await serve(t, async (ex) => {
    assert.equal(ex.contentLength, 300_000);
    assert.equal(ex.chunked, false);
    assert.equal(ex.complete, false);
    const body = await readAll(ex.body!);
    assert.equal(ex.complete, true);
    send(ex, 200, `${body.length} ${sha(body)}`);
  });
  const payload = pattern(300_000);
  const r = await fetch(s.port, { method: 'POST', path: '/', body: payload, headers: { 'Content-Length': payload.length } });
  assert.equal(r.body.toString(), `300000 ${sha(payload)}`);
});

test('chunked request body streams to ex.body; a request without a body has ex.body null', async (t) => {
  const s = await serve(t, async (ex) => {
    if (ex.method === 'GET') {
      assert.equal(ex.body, null);
      assert.equal(ex.complete, true);
      return send(ex, 200, 'no body');
    }
    assert.equal(ex.chunked, true);
    assert.equal(ex.contentLength, undefined);
    const body = await readAll(ex.body!);
    send(ex, 200, `${body.length} ${sha(body)}`);
  });
  const parts = [pattern(70_000), Buffer.from('x'), pattern(200_001)];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const r = await fetch(s.port, { method: 'POST', path: '/', agent, body: parts });
  assert.equal(r.body.toString(), `270002 ${sha(Buffer.concat(parts))}`);
  const g = await fetch(s.port, { path: '/', agent });
  assert.equal(g.body.toString(), 'no body');
  assert.equal(s.exchanges[0]!.socket, s.exchanges[1]!.socket);
});

test('upload backpressure: an unread 8 MiB body stops the socket being read; reading it later gets every byte', async (t) => {
  const hwm = 64 * 1024;
  const got = deferred<Exchange>();
  const s = await serve(t, (ex) => got.resolve(ex), { bodyHighWaterMark: hwm });
  const payload = pattern(8 * 1024 * 1024);
  const c = await Raw.open(t, s.port);
  let uploaded = false;
  c.socket.write(Buffer.from(req('POST', '/up', [`Content-Length: ${payload.length}`]), 'latin1'));
  c.socket.write(payload, () => (uploaded = true));
  const ex = await within(got.promise, 5000, 'request');
  await waitUntil(() => ex.socket.isPaused(), 5000, 'the server to stop reading the socket');
  const read = ex.socket.bytesRead;
  assert.ok(read < 1024 * 1024, `the server read ${read} bytes of an unread body`);
  assert.ok(ex.body!.readableLength <= 2 * hwm, `body buffer ${ex.body!.readableLength}`);
  assert.equal(uploaded, false, "the client's upload backs up");
  const body = await within(readAll(ex.body!), 10_000, 'the whole body');
  assert.equal(body.length, payload.length);
  assert.ok(body.equals(payload), 'every byte, in order');
  send(ex, 200, 'ok');
  await c.until(hasFinals(1), 'response');
  assert.equal(uploaded, true);
});

// ---------------------------------------------------------------- 100-continue

test('Expect: 100-continue: 100 Continue goes out only when the handler starts reading ex.body', async (t) => {
  const startRead = deferred<void>();
  let reading = false;
  const seen = deferred<{ atRequest: number; later: number }>();
  const s = await serve(t, async (ex) => {
    assert.equal(ex.expectContinue, true);
    const atRequest = ex.socket.bytesWritten;
    await new Promise((r) => setImmediate(r));
    seen.resolve({ atRequest, later: ex.socket.bytesWritten });
    await startRead.promise;
    reading = true;
    const body = await readAll(ex.body!);
    send(ex, 200, `got ${body.toString()}`);
  });
  const c = await Raw.open(t, s.port);
  c.write(req('POST', '/', ['Content-Length: 5', 'Expect: 100-continue']));
  const written = await within(seen.promise, 5000, 'request');
  assert.deepEqual(written, { atRequest: 0, later: 0 }, 'nothing written before the handler reads');
  assert.equal(c.data.length, 0);
  startRead.resolve();
  const interim = await c.until((d) => d.length >= 25, '100 Continue');
  assert.equal(reading, true);
  assert.equal(interim.toString('latin1'), 'HTTP/1.1 100 Continue\r\n\r\n');
  c.write('hello');
  const rs = parseResponses(await c.until(hasFinals(1), 'final response'));
  assert.deepEqual(
    rs.map((r) => r.status),
    [100, 200],
  );
  assert.equal(rs[1]!.body.toString(), 'got hello');
});

test('Expect: 100-continue: a handler that answers 413 without reading never sends 100', async (t) => {
  const s = await serve(t, (ex) => send(ex, 413, 'too large\n'));
  const c = await Raw.open(t, s.port);
  c.write(req('POST', '/', ['Content-Length: 100000', 'Expect: 100-continue']));
  const data = await c.until(hasFinals(1), '413');
  const rs = parseResponses(data);
  assert.deepEqual(
    rs.map((r) => r.status),
    [413],
  );
  assert.doesNotMatch(data.toString('latin1'), /100 Continue/);
  assert.equal(s.closes[0]!.finished, true);
});

test('Expect: 100-continue answered without a 100: that response closes the connection (the unsent body cannot be told from a next request)', async (t) => {
  const s = await serve(t, (ex) => send(ex, 404, 'no\n'));
  const c = await Raw.open(t, s.port);
  // RFC 9110 §10.1.1 lets the client skip the body after a final status: its next bytes may be a new request.
  c.write(req('POST', '/', ['Content-Length: 10', 'Expect: 100-continue']));
  const data = await c.untilClosed('the connection to close after the 404');
  const rs = parseResponses(data);
  assert.deepEqual(rs.map((r) => r.status), [404]);
  assert.equal(rs[0]!.headers.connection, 'close');
  assert.doesNotMatch(data.toString('latin1'), /100 Continue/);
});

test('a response that ends before its request body was read: the rest is dropped, the next request is served', async (t) => {
  const hwm = 16 * 1024;
  const got = deferred<Exchange>();
  const answer = deferred<void>();
  const s = await serve(
    t,
    async (ex) => {
      if (ex.method === 'GET') return send(ex, 200, 'next');
      got.resolve(ex);
      await answer.promise;
      send(ex, 200, 'early');
    },
    { bodyHighWaterMark: hwm },
  );
  const c = await Raw.open(t, s.port);
  const body = pattern(1024 * 1024);
  c.write(req('POST', '/', [`Content-Length: ${body.length}`]));
  c.write(body.subarray(0, 512 * 1024));
  const ex = await within(got.promise, 5000, 'POST');
  // The body's buffer is full and the socket paused before the handler answers.
  await waitUntil(() => ex.socket.isPaused(), 5000, 'the server to stop reading');
  answer.resolve();
  await c.until(hasFinals(1), 'early response');
  c.write(body.subarray(512 * 1024));
  c.write(req('GET', '/after'));
  const rs = finals(await c.until(hasFinals(2), 'the next request on the same connection'));
  assert.deepEqual(
    rs.map((r) => [r.status, r.body.toString()]),
    [
      [200, 'early'],
      [200, 'next'],
    ],
  );
  assert.equal(rs[0]!.headers.connection, undefined, 'kept alive');
  assert.equal(s.exchanges.length, 2);
  assert.equal(s.exchanges[1]!.url, '/after', 'the dropped body was not taken for a request');
});

test('a last response (close) that ends before its request body arrived closes at once, without waiting for the body', async (t) => {
  const s = await serve(t, (ex) => {
    ex.writeHead(413, undefined, [], 4, true);
    ex.end('no\r\n');
  });
  const c = await Raw.open(t, s.port);
  // Head and the first body bytes in one write: the server has them all before it answers.
  c.write(req('POST', '/', ['Content-Length: 1000000']) + 'x'.repeat(1000));
  const all = await c.untilClosed('the server to close without the rest of the body');
  const rs = finals(all, [], true);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.status, 413);
  assert.equal(rs[0]!.headers.connection, 'close');
  assert.equal(c.ended, true, 'a FIN after the response');
  assert.equal(s.closes[0]!.finished, true);
});

// ---------------------------------------------------------------- bad requests

interface BadRequest {
  status: number;
  socket: net.Socket;
  bodyBytes: number;
  cause: Error;
}

function onBadRequest(server: Http1Server): BadRequest[] {
  const seen: BadRequest[] = [];
  server.on('badRequest', (status: number, socket: net.Socket, bodyBytes: number, cause: Error) => seen.push({ status, socket, bodyBytes, cause }));
  return seen;
}

test('malformed requests (bad request line, bare LF, Content-Length with Transfer-Encoding): 400, Connection: close, closed, badRequest', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, 'should not be called'));
  const bad = onBadRequest(s.server);
  const cases: Array<[string, string, string]> = [
    ['bad request line', 'GARBAGE\r\nHost: t\r\n\r\n', 'ERR_HTTP1_BAD_REQUEST_LINE'],
    ['bare LF', 'GET / HTTP/1.1\nHost: t\n\n', 'ERR_HTTP1_BARE_LF'],
    ['CL + TE', 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'ERR_HTTP1_CONFLICTING_FRAMING'],
  ];
  for (const [name, bytes, code] of cases) {
    const c = await Raw.open(t, s.port);
    c.write(bytes);
    const all = await c.untilClosed(`${name}: the connection to close`);
    const rs = finals(all, [], true);
    assert.equal(rs.length, 1, name);
    assert.equal(rs[0]!.status, 400, name);
    assert.equal(rs[0]!.headers.connection, 'close', name);
    assert.equal(rs[0]!.body.toString(), '400 Bad Request\n', name);
    assert.equal(c.ended, true, `${name}: FIN after the answer`);
    const ev = bad.at(-1)!;
    assert.equal(ev.status, 400, name);
    assert.ok(ev.socket instanceof net.Socket, name);
    assert.equal(ev.socket.remotePort, c.socket.localPort, `${name}: the client's socket`);
    assert.equal(ev.bodyBytes, rs[0]!.body.length, name);
    assert.ok(ev.cause instanceof Http1ParseError, name);
    assert.equal((ev.cause as Http1ParseError).code, code, name);
  }
  assert.equal(bad.length, cases.length);
  assert.equal(s.exchanges.length, 0, 'no exchange for a bad request');
});

test('a malformed chunk in the middle of a body cuts the connection: no response; the body errors with the parse error', async (t) => {
  const errored = deferred<Error>();
  const s = await serve(t, (ex) => {
    ex.body!.on('error', (err) => errored.resolve(err));
    ex.body!.resume();
  });
  const bad = onBadRequest(s.server);
  const c = await Raw.open(t, s.port);
  c.write(req('POST', '/', ['Transfer-Encoding: chunked']) + '5\r\nhello\r\nZZ\r\n');
  const err = await within(errored.promise, 5000, 'body error');
  assert.ok(err instanceof Http1ParseError);
  assert.equal(err.code, 'ERR_HTTP1_BAD_CHUNK');
  assert.equal((await c.untilClosed()).length, 0, 'nothing can be answered mid-exchange');
  assert.equal(bad.length, 0);
  await waitUntil(() => s.closes.length === 1, 5000, 'exchangeClose');
  assert.equal(s.closes[0]!.finished, false);
});

test('a head over maxHeaderBytes gets 431; HTTP/2.0 gets 505; both close', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, 'no'), { maxHeaderBytes: 256 });
  const bad = onBadRequest(s.server);
  const cases: Array<[string, string, number, string]> = [
    ['oversized head', req('GET', '/', [`X-Big: ${'a'.repeat(400)}`]), 431, 'ERR_HTTP1_HEADERS_TOO_LARGE'],
    ['HTTP/2.0', req('GET', '/', [], '2.0'), 505, 'ERR_HTTP1_UNSUPPORTED_VERSION'],
  ];
  for (const [name, bytes, status, code] of cases) {
    const c = await Raw.open(t, s.port);
    c.write(bytes);
    const rs = finals(await c.untilClosed(`${name}: close`), [], true);
    assert.equal(rs.length, 1, name);
    assert.equal(rs[0]!.status, status, name);
    assert.equal(rs[0]!.headers.connection, 'close', name);
    assert.equal(bad.at(-1)!.status, status, name);
    assert.equal((bad.at(-1)!.cause as Http1ParseError).code, code, name);
  }
  assert.equal(s.exchanges.length, 0);
});

// ---------------------------------------------------------------- timeouts

test('headersTimeout: a head left partial gets 408, then the connection closes', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, 'no'), { headersTimeout: 200, keepAliveTimeout: 5000 });
  const bad = onBadRequest(s.server);
  const c = await Raw.open(t, s.port);
  c.write('GET / HTTP/1.1\r\nHost: t\r\n');
  const rs = finals(await c.untilClosed('408 and close'), [], true);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.status, 408);
  assert.equal(rs[0]!.headers.connection, 'close');
  assert.equal(bad.length, 1);
  assert.equal(bad[0]!.status, 408);
  assert.ok(bad[0]!.cause instanceof Http1ServerError);
  assert.equal((bad[0]!.cause as Http1ServerError).code, 'ERR_HTTP1_HEADERS_TIMEOUT');
  assert.equal(s.exchanges.length, 0);
});

test('keepAliveTimeout: an idle connection is closed, after a response or without any request', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, 'ok'), { keepAliveTimeout: 100, headersTimeout: 5000 });
  const used = await Raw.open(t, s.port);
  used.write(req('GET', '/'));
  await used.until(hasFinals(1), 'response');
  const unused = await Raw.open(t, s.port);
  await used.untilClosed('the idle connection to be closed after a response');
  await unused.untilClosed('a connection that never sent a request to be closed');
  assert.equal(unused.data.length, 0, 'closed without a response');
  await waitUntil(() => s.server.connectionCount === 0, 5000, 'the server to forget both connections');
});

test('keepAliveTimeout spares a connection whose response is in progress', async (t) => {
  const release = deferred<void>();
  const started = deferred<Exchange>();
  const s = await serve(
    t,
    async (ex) => {
      ex.writeHead(200, undefined, [], 10);
      ex.write('first');
      started.resolve(ex);
      await release.promise;
      ex.end('-last');
    },
    { keepAliveTimeout: 100, headersTimeout: 5000 },
  );
  const busy = await Raw.open(t, s.port);
  busy.write(req('GET', '/slow'));
  const ex = await within(started.promise, 5000, 'request');
  // Opened later, so once the sweep closes it, the busy connection has been past the timeout too.
  const idle = await Raw.open(t, s.port);
  await idle.untilClosed('the idle connection to be closed');
  assert.equal(ex.socket.destroyed, false, 'the busy connection was not closed');
  release.resolve();
  const [r] = finals(await busy.until(hasFinals(1), 'the whole response'));
  assert.equal(r!.body.toString(), 'first-last');
  assert.equal(busy.closed, false);
});

test('keepAliveTimeout does not cut a finished response still being flushed to a slow reader', async (t) => {
  const payload = pattern(32 * 1024 * 1024);
  const ended = deferred<Exchange>();
  const s = await serve(
    t,
    (ex) => {
      ex.writeHead(200, undefined, [], payload.length);
      ex.end(payload);
      ended.resolve(ex);
    },
    { keepAliveTimeout: 100, headersTimeout: 5000 },
  );
  const slow = await Raw.open(t, s.port);
  slow.socket.pause();
  slow.write(req('GET', '/big'));
  const ex = await within(ended.promise, 5000, 'response ended');
  await new Promise((r) => setImmediate(r)); // past the head's cork
  assert.equal(ex.finished, true);
  assert.ok(ex.socket.writableLength > 0, 'the response is still being flushed');
  const idle = await Raw.open(t, s.port);
  await idle.untilClosed('the idle connection to be closed');
  assert.equal(ex.socket.destroyed, false, 'the slow reader was cut by keepAliveTimeout');
  slow.socket.resume();
  const [r] = finals(await slow.until(hasFinals(1), 'the whole response', 20_000));
  assert.equal(r!.body.length, payload.length);
  assert.ok(r!.body.equals(payload));
});

test('sendTimeout: a client that reads none of its response is cut, also when that response was the last one (Connection: close)', async (t) => {
  const payload = pattern(32 * 1024 * 1024);
  const ended: Exchange[] = [];
  const s = await serve(
    t,
    (ex) => {
      ex.writeHead(200, undefined, [], payload.length, ex.url === '/last');
      ex.end(payload);
      ended.push(ex);
    },
    { sendTimeout: 300, keepAliveTimeout: 60_000, headersTimeout: 60_000 },
  );
  for (const path of ['/kept', '/last']) {
    const stuck = await Raw.open(t, s.port);
    stuck.socket.pause();
    stuck.write(req('GET', path));
    await stuck.untilClosed(`the server to cut ${path}`, 10_000).catch(() => undefined);
    await waitUntil(() => ended.length > 0 && ended[ended.length - 1]!.socket.destroyed, 10_000, `${path}: the stuck connection cut`);
  }
  assert.equal(ended.length, 2);
});

test('requestTimeout: a body not complete in time cuts the connection; the body errors with ERR_HTTP1_REQUEST_TIMEOUT', async (t) => {
  const errored = deferred<Error>();
  const s = await serve(
    t,
    (ex) => {
      ex.body!.on('error', (err) => errored.resolve(err));
      ex.body!.resume();
    },
    { keepAliveTimeout: 100, headersTimeout: 100, requestTimeout: 200 },
  );
  const c = await Raw.open(t, s.port);
  c.write(req('POST', '/', ['Content-Length: 100']) + 'only part');
  const err = await within(errored.promise, 5000, 'body error');
  assert.ok(err instanceof Http1ServerError);
  assert.equal((err as Http1ServerError).code, 'ERR_HTTP1_REQUEST_TIMEOUT');
  assert.equal((await c.untilClosed()).length, 0, 'cut, no response');
  await waitUntil(() => s.closes.length === 1, 5000, 'exchangeClose');
  assert.equal(s.closes[0]!.finished, false);
});

// ---------------------------------------------------------------- client aborts

test('the client goes away before the response: onabort, then exchangeClose with finished false', async (t) => {
  const aborted = deferred<void>();
  const got = deferred<Exchange>();
  const s = await serve(t, (ex) => {
    ex.onabort = () => aborted.resolve();
    got.resolve(ex);
  });
  const closed = deferred<Exchange>();
  s.server.on('exchangeClose', (ex: Exchange) => closed.resolve(ex));
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/'));
  const ex = await within(got.promise, 5000, 'request');
  c.socket.destroy();
  await within(aborted.promise, 5000, 'onabort');
  const ev = await within(closed.promise, 5000, 'exchangeClose');
  assert.equal(ev, ex);
  assert.equal(ex.finished, false);
  assert.equal(ex.headersSent, false);
  assert.equal(ex.destroyed, true);
  assert.equal(s.closes.length, 1, 'exchangeClose once');
});

test('the client leaves mid-upload (FIN): the body errors with ERR_HTTP1_ABORTED when it has an error listener', async (t) => {
  const got = deferred<Exchange>();
  const firstData = deferred<void>();
  const errored = deferred<Error>();
  const aborted = deferred<void>();
  const s = await serve(t, (ex) => {
    ex.onabort = () => aborted.resolve();
    ex.body!.on('error', (err) => errored.resolve(err));
    ex.body!.once('data', () => firstData.resolve());
    got.resolve(ex);
  });
  const c = await Raw.open(t, s.port);
  c.write(req('POST', '/', ['Content-Length: 100000']));
  c.write(pattern(1000));
  const ex = await within(got.promise, 5000, 'request');
  await within(firstData.promise, 5000, 'first body bytes');
  c.socket.end();
  const err = await within(errored.promise, 5000, 'body error');
  assert.ok(err instanceof Http1ServerError);
  assert.equal((err as Http1ServerError).code, 'ERR_HTTP1_ABORTED');
  await within(aborted.promise, 5000, 'onabort');
  await c.untilClosed();
  assert.equal(ex.finished, false);
  assert.equal(s.closes.length, 1);
  assert.equal(s.closes[0], ex);
});

test('the client resets mid-upload: a body without an error listener just closes (nothing thrown)', async (t) => {
  const got = deferred<Exchange>();
  const firstData = deferred<void>();
  const bodyClosed = deferred<void>();
  const s = await serve(t, (ex) => {
    ex.body!.on('data', () => firstData.resolve());
    ex.body!.on('close', () => bodyClosed.resolve());
    got.resolve(ex);
  });
  const closed = deferred<Exchange>();
  s.server.on('exchangeClose', (ex: Exchange) => closed.resolve(ex));
  const c = await Raw.open(t, s.port);
  c.write(req('POST', '/', ['Content-Length: 100000']));
  c.write(pattern(1000));
  const ex = await within(got.promise, 5000, 'request');
  await within(firstData.promise, 5000, 'first body bytes');
  c.socket.resetAndDestroy();
  await within(bodyClosed.promise, 5000, 'the body to close');
  assert.equal(ex.body!.errored, null);
  assert.equal(ex.body!.readableEnded, false, 'not mistaken for a complete body');
  const ev = await within(closed.promise, 5000, 'exchangeClose');
  assert.equal(ev.finished, false);
});

test('a FIN while the request is under way aborts the exchange (as nginx does): no response, onabort, exchangeClose, closed', async (t) => {
  const got = deferred<Exchange>();
  const aborted = deferred<void>();
  const s = await serve(t, (ex) => {
    ex.onabort = () => aborted.resolve();
    got.resolve(ex);
  });
  const c = await Raw.open(t, s.port, { allowHalfOpen: true });
  c.write(req('GET', '/'));
  const ex = await within(got.promise, 5000, 'request');
  assert.equal(ex.complete, true, 'the request itself is whole');
  c.socket.end();
  await within(aborted.promise, 5000, 'onabort');
  assert.equal(ex.destroyed, true);
  assert.deepEqual(s.closes, [ex]);
  assert.equal(ex.finished, false);
  // Answering now sends nothing.
  ex.writeHead(200, undefined, [], 2);
  ex.end('no');
  assert.equal(ex.finished, false);
  const all = await c.untilClosed();
  assert.equal(all.length, 0, 'no bytes reach the client');
});

test('a FIN between requests: the server ends its side after the last response', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, 'one'));
  const c = await Raw.open(t, s.port, { allowHalfOpen: true });
  c.write(req('GET', '/'));
  await c.until(hasFinals(1), 'response');
  c.socket.end();
  const all = await c.untilClosed('the server to end its side');
  assert.equal(c.ended, true, 'a FIN from the server');
  assert.equal(c.error, null);
  assert.equal(finals(all).length, 1);
  assert.deepEqual(
    s.closes.map((ex) => ex.finished),
    [true],
  );
});

// ---------------------------------------------------------------- response framing guards

test('write() beyond the declared Content-Length cuts the connection: the client sees a short body', async (t) => {
  const wrote = deferred<boolean>();
  const s = await serve(t, async (ex) => {
    ex.writeHead(200, undefined, [], 5);
    ex.write('abc');
    await new Promise((r) => setImmediate(r)); // the head and "abc" are on the wire
    wrote.resolve(ex.write('defg'));
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/'));
  const all = await c.untilClosed('the cut');
  assert.equal(await wrote.promise, false);
  const text = all.toString('latin1');
  assert.match(text, /\r\nContent-Length: 5\r\n/);
  assert.ok(text.endsWith('\r\n\r\nabc'), JSON.stringify(text));
  assert.equal(finals(all, [], true).length, 0, 'no complete response');
  await waitUntil(() => s.closes.length === 1, 5000, 'exchangeClose');
  assert.equal(s.closes[0]!.finished, false);
  // node:http's client: an error, never a complete response.
  const r = http.get({ host: '127.0.0.1', port: s.port, path: '/', agent: false });
  const outcome = await within(
    new Promise<string>((resolve) => {
      r.on('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      r.on('response', (res) => {
        res.on('error', (e) => resolve(`response error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
        res.on('aborted', () => resolve('aborted'));
        res.on('end', () => resolve(`complete ${res.complete}`));
        res.resume();
      });
    }),
    5000,
    'client outcome',
  );
  assert.notEqual(outcome, 'complete true');
});

test('end() short of the declared Content-Length cuts the connection', async (t) => {
  const s = await serve(t, async (ex) => {
    ex.writeHead(200, undefined, [], 10);
    ex.write('12345');
    await new Promise((r) => setImmediate(r));
    ex.end();
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/'));
  const all = await c.untilClosed('the cut');
  assert.ok(all.toString('latin1').endsWith('\r\n\r\n12345'));
  assert.equal(finals(all, [], true).length, 0);
  assert.equal(s.exchanges[0]!.finished, false);
  await waitUntil(() => s.closes.length === 1, 5000, 'exchangeClose');
  assert.equal(s.closes[0]!.finished, false);
});

test('writeHead with CR/LF in a header value throws Http1ResponseError and sends nothing; a 500 can follow', async (t) => {
  const thrown = deferred<unknown>();
  const s = await serve(t, (ex) => {
    try {
      ex.writeHead(200, undefined, ['X-Evil', 'a\r\nSet-Cookie: pwned=1'], 2);
    } catch (err) {
      thrown.resolve(err);
    }
    assert.equal(ex.headersSent, false);
    send(ex, 500, 'internal error\n');
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/'));
  const data = await c.until(hasFinals(1), '500');
  const err = await thrown.promise;
  assert.ok(err instanceof Http1ResponseError);
  assert.equal(err.code, 'ERR_HTTP1_BAD_RESPONSE_FIELD');
  const rs = finals(data);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.status, 500);
  assert.doesNotMatch(data.toString('latin1'), /pwned|X-Evil/);
  assert.ok(data.toString('latin1').startsWith('HTTP/1.1 500 Internal Server Error\r\n'));
  assert.equal(data.length, rs[0]!.raw.length);
});

// ---------------------------------------------------------------- shutdown

test('close(): closing is set, a response in flight gets Connection: close and its connection ends', async (t) => {
  const release = deferred<void>();
  const got = deferred<Exchange>();
  const s = await serve(t, async (ex) => {
    got.resolve(ex);
    await release.promise;
    send(ex, 200, 'last');
  });
  const c = await Raw.open(t, s.port);
  c.write(req('GET', '/'));
  await within(got.promise, 5000, 'request');
  assert.equal(s.server.closing, false);
  const serverClosed = new Promise<void>((resolve) => s.server.close(() => resolve()));
  assert.equal(s.server.closing, true);
  release.resolve();
  const all = await c.untilClosed('the in-flight response, then close');
  const rs = finals(all, [], true);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.body.toString(), 'last');
  assert.equal(rs[0]!.headers.connection, 'close');
  await within(serverClosed, 5000, "the server's close callback");
});

test('closeIdleConnections closes idle keep-alive connections but not busy ones', async (t) => {
  const release = deferred<void>();
  const busyGot = deferred<Exchange>();
  const s = await serve(t, async (ex) => {
    if (ex.url === '/busy') {
      busyGot.resolve(ex);
      await release.promise;
    }
    send(ex, 200, `done ${ex.url}`);
  });
  const used = await Raw.open(t, s.port);
  used.write(req('GET', '/quick'));
  await used.until(hasFinals(1), 'quick response');
  const fresh = await Raw.open(t, s.port);
  const busy = await Raw.open(t, s.port);
  busy.write(req('GET', '/busy'));
  const busyEx = await within(busyGot.promise, 5000, 'busy request');
  await waitUntil(() => s.server.connectionCount === 3, 5000, 'three connections at the server');
  s.server.closeIdleConnections();
  await used.untilClosed('the used idle connection to close');
  await fresh.untilClosed('the fresh idle connection to close');
  assert.equal(busyEx.socket.destroyed, false);
  assert.equal(s.server.connectionCount, 1);
  release.resolve();
  const [r] = finals(await busy.until(hasFinals(1), 'busy response'));
  assert.equal(r!.body.toString(), 'done /busy');
  assert.equal(r!.headers.connection, undefined, 'still keep-alive: the server is not closing');
  assert.equal(busy.closed, false);
});

// ---------------------------------------------------------------- end-of-turn output

test('output of one turn: responses ended in the same turn on different connections are written together, after the turn', async (t) => {
  const parked: Exchange[] = [];
  const both = deferred<void>();
  const s = await serve(t, (ex) => {
    parked.push(ex);
    if (parked.length === 2) both.resolve();
  });
  const a = await Raw.open(t, s.port);
  const b = await Raw.open(t, s.port);
  a.write(req('GET', '/a'));
  b.write(req('GET', '/b'));
  await within(both.promise, 5000, 'two requests');
  for (const ex of parked) send(ex, 200, `body of ${ex.url}`);
  // Handed to the sockets only at the end of the turn, both in the same immediate.
  assert.deepEqual(parked.map((ex) => ex.socket.bytesWritten), [0, 0], 'nothing written inside the turn');
  await new Promise((r) => setImmediate(r));
  assert.ok(parked.every((ex) => ex.socket.bytesWritten > 0), 'both written by the end-of-turn flush');
  assert.equal(finals(await a.until(hasFinals(1), 'response a'))[0]!.body.toString(), 'body of /a');
  assert.equal(finals(await b.until(hasFinals(1), 'response b'))[0]!.body.toString(), 'body of /b');
});

test('output order: a queued response goes out before the 100 Continue of the pipelined request after it', async (t) => {
  const s = await serve(t, async (ex) => {
    if (ex.body === null) return send(ex, 200, 'first');
    const body = await readAll(ex.body);
    send(ex, 200, `got ${body.toString()}`);
  });
  const c = await Raw.open(t, s.port);
  // One write: the first response is still queued when the second request asks for 100 Continue.
  c.write(req('GET', '/1') + req('POST', '/2', ['Content-Length: 5', 'Expect: 100-continue']));
  await c.until((d) => d.includes('100 Continue'), '100 Continue');
  c.write('hello');
  const rs = parseResponses(await c.until(hasFinals(2), 'two final responses'), ['GET', 'POST']);
  assert.deepEqual(
    rs.map((r) => [r.status, r.body.toString()]),
    [
      [200, 'first'],
      [100, ''],
      [200, 'got hello'],
    ],
  );
});

test('a response ended just before closeIdleConnections() or closeAllConnections() still reaches its client', async (t) => {
  const s = await serve(t, (ex) => {
    send(ex, 200, `done ${ex.url}`);
    // Same turn as end() (a microtask: once the parser has seen the request's end, the connection is idle): the response is still queued.
    queueMicrotask(() => {
      if (ex.url === '/idle') s.server.closeIdleConnections();
      else s.server.closeAllConnections();
    });
  });
  const idle = await Raw.open(t, s.port);
  idle.write(req('GET', '/idle'));
  const [r1] = finals(await idle.untilClosed(), ['GET'], true);
  assert.equal(r1?.body.toString(), 'done /idle');
  const cut = await Raw.open(t, s.port);
  cut.write(req('GET', '/all'));
  const [r2] = finals(await cut.untilClosed(), ['GET'], true);
  assert.equal(r2?.body.toString(), 'done /all');
});

// ---------------------------------------------------------------- write backpressure

test('write backpressure: write() returns false to a client that does not read; ondrain fires once it reads; every byte arrives', async (t) => {
  const payload = pattern(32 * 1024 * 1024);
  let clientReading = false;
  const written = deferred<{ ok: boolean; ex: Exchange }>();
  const drained = deferred<boolean>();
  const s = await serve(t, async (ex) => {
    ex.writeHead(200, undefined, [], payload.length);
    const half = payload.length / 2;
    const ok1 = ex.write(payload.subarray(0, half));
    const ok2 = ex.write(payload.subarray(half));
    ex.ondrain = () => drained.resolve(clientReading);
    written.resolve({ ok: ok1 && ok2, ex });
    await drained.promise;
    ex.end();
  });
  const c = await Raw.open(t, s.port);
  c.socket.pause();
  c.write(req('GET', '/big'));
  const { ok, ex } = await within(written.promise, 5000, 'the writes');
  assert.equal(ok, false, 'write() pushed back');
  await new Promise((r) => setImmediate(r)); // past the head's cork
  assert.ok(ex.socket.writableLength > 0, 'the client is not reading: bytes wait at the server');
  clientReading = true;
  c.socket.resume();
  assert.equal(await within(drained.promise, 20_000, 'ondrain'), true, 'ondrain only after the client read');
  const [r] = finals(await c.until(hasFinals(1), 'the whole body', 20_000));
  assert.equal(r!.body.length, payload.length);
  assert.ok(r!.body.equals(payload), 'intact');
  assert.equal(ex.bodyBytesSent, payload.length);
});

test('write backpressure with small pieces: a writer that waits for ondrain is held back by a client that does not read, then gets every byte out in order', async (t) => {
  const payload = pattern(16 * 1024 * 1024);
  const piece = 4096;
  let waiting = false;
  let pushbacks = 0;
  const got = deferred<Exchange>();
  const s = await serve(t, async (ex) => {
    got.resolve(ex);
    ex.writeHead(200, undefined, [], payload.length);
    for (let off = 0; off < payload.length; off += piece) {
      if (!ex.write(payload.subarray(off, off + piece))) {
        pushbacks++;
        waiting = true;
        await new Promise<void>((resolve) => (ex.ondrain = resolve));
        waiting = false;
      }
    }
    ex.end();
  });
  const c = await Raw.open(t, s.port);
  c.socket.pause();
  c.write(req('GET', '/big'));
  const ex = await within(got.promise, 5000, 'request');
  await waitUntil(() => waiting && ex.socket.writableLength > 0, 10_000, 'the writer to be held back');
  assert.ok(ex.bodyBytesSent < payload.length, 'the writer could not get ahead of a client that does not read');
  c.socket.resume();
  const [r] = finals(await c.until(hasFinals(1), 'the whole body', 20_000));
  assert.equal(r!.body.length, payload.length);
  assert.ok(r!.body.equals(payload), 'intact, in order');
  assert.ok(pushbacks > 1, `write() returned false ${pushbacks} times`);
});

// ---------------------------------------------------------------- curl

test('curl: two URLs in one run share one keep-alive connection', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, `${ex.url}\n`));
  let connections = 0;
  s.server.on('connection', () => connections++);
  const base = `http://127.0.0.1:${s.port}`;
  const r = await curl(t, ['-w', '%{num_connects}\n', `${base}/a`, `${base}/b`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '/a\n1\n/b\n0\n');
  assert.equal(connections, 1);
});

test('curl: Expect: 100-continue upload goes ahead on our 100 (curl would otherwise wait 30 s)', async (t) => {
  const s = await serve(t, async (ex) => {
    const body = await readAll(ex.body!);
    send(ex, 200, `${ex.expectContinue} ${body.length} ${sha(body)}`);
  });
  const payload = pattern(200_000);
  const r = await curl(
    t,
    ['--expect100-timeout', '30', '-H', 'Expect: 100-continue', '-H', 'Content-Type: application/octet-stream', '--data-binary', '@-', `http://127.0.0.1:${s.port}/up`],
    payload,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `true ${payload.length} ${sha(payload)}`);
});

test('curl: chunked upload and HTTP/1.0 request', async (t) => {
  const s = await serve(t, async (ex) => {
    const body = ex.body === null ? Buffer.alloc(0) : await readAll(ex.body);
    send(ex, 200, `${ex.httpVersion} ${ex.chunked} ${body.length} ${sha(body)}`);
  });
  const payload = pattern(100_000);
  const up = await curl(t, ['-H', 'Transfer-Encoding: chunked', '--data-binary', '@-', `http://127.0.0.1:${s.port}/up`], payload);
  assert.equal(up.code, 0, up.stderr);
  assert.equal(up.stdout, `1.1 true ${payload.length} ${sha(payload)}`);
  const old = await curl(t, ['-0', '-i', `http://127.0.0.1:${s.port}/`]);
  assert.equal(old.code, 0, old.stderr);
  assert.match(old.stdout, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(old.stdout, /\r\nConnection: close\r\n/);
  assert.ok(old.stdout.endsWith(`\r\n\r\n1.0 false 0 ${sha(Buffer.alloc(0))}`));
});

// ---------------------------------------------------------------- TLS

test('TLS (secureContext): requests over one kept-alive TLS connection, ex.encrypted true; setSecureContext() changes the certificate of new connections only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-http1-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pair = (name: string): { cert: Buffer; key: Buffer } => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)) };
  };
  const a = pair('a');
  const b = pair('b');
  const s = await serve(t, (ex) => send(ex, 200, `encrypted=${ex.encrypted}`), { secureContext: tls.createSecureContext(a) });
  assert.equal(s.server.encrypted, true);
  const connect = (): Promise<tls.TLSSocket> =>
    within(
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port: s.port, rejectUnauthorized: false }, () => resolve(c));
        c.on('error', reject);
        t.after(() => c.destroy());
      }),
      5000,
      'TLS handshake',
    );
  const subject = (c: tls.TLSSocket): string => String(c.getPeerCertificate().subject.CN);
  const first = await connect();
  assert.equal(subject(first), 'a');
  assert.equal(first.alpnProtocol, false, 'no ALPN asked, none chosen');
  const got: Buffer[] = [];
  first.on('data', (d: Buffer) => got.push(d));
  first.write(req('GET', '/1') + req('GET', '/2'));
  const rs = finals(await within(
    new Promise<Buffer>((resolve) => {
      const check = (): void => {
        const all = Buffer.concat(got);
        if (hasFinals(2)(all)) resolve(all);
        else first.once('data', check);
      };
      check();
    }),
    5000,
    'two responses over TLS',
  ));
  assert.deepEqual(rs.map((r) => r.body.toString()), ['encrypted=true', 'encrypted=true']);
  assert.equal(new Set(s.exchanges.map((ex) => ex.socket)).size, 1, 'one kept-alive connection');
  s.server.setSecureContext(tls.createSecureContext(b));
  assert.equal(subject(await connect()), 'b');
  assert.equal(first.destroyed, false, 'the open connection is left alone');
  // A plain server has no context to replace.
  const plain = await serve(t, (ex) => send(ex, 200, `encrypted=${ex.encrypted}`));
  assert.equal(plain.server.encrypted, false);
  assert.throws(() => plain.server.setSecureContext(tls.createSecureContext(a)), /without TLS/);
  const c = await Raw.open(t, plain.port);
  c.write(req('GET', '/'));
  assert.equal(finals(await c.until(hasFinals(1), 'plain response'))[0]!.body.toString(), 'encrypted=false');
});

test('close() with closeIdleConnections({ spareFresh }): a connection accepted before close() that has not sent its request yet is served once (Connection: close); one that sends nothing is closed by the sweep after a second', async (t) => {
  const s = await serve(t, (ex) => send(ex, 200, `served ${ex.url}`), { keepAliveTimeout: 60_000 });
  const used = await Raw.open(t, s.port);
  used.write(req('GET', '/used'));
  await used.until(hasFinals(1), 'a first response');
  const late = await Raw.open(t, s.port);
  const silent = await Raw.open(t, s.port);
  await waitUntil(() => s.server.connectionCount === 3, 5000, 'three connections at the server');
  const closed = new Promise<void>((resolve) => s.server.close(() => resolve()));
  s.server.closeIdleConnections({ spareFresh: true });
  await used.untilClosed('the kept-alive connection to close');
  assert.equal(late.closed, false, 'the fresh connection is spared');
  late.write(req('GET', '/late'));
  const [r] = finals(await late.untilClosed('the late request to be answered and closed'), ['GET'], true);
  assert.equal(r?.body.toString(), 'served /late');
  assert.equal(r?.headers.connection, 'close');
  // The silent one: closed by the sweep FRESH_GRACE_MS (1 s) after close(), not at keepAliveTimeout (60 s).
  const since = Date.now();
  await silent.untilClosed('the silent fresh connection to close', 5000);
  assert.ok(Date.now() - since < 4000);
  await within(closed, 5000, 'server close callback');
  // Without spareFresh (node:http's behaviour) a fresh connection is closed at once: see 'closeIdleConnections closes idle keep-alive connections but not busy ones'.
});
