/**
 * The runtime in-process, driven by our own FastCGI and SCGI clients:
 * node:http semantics on the app side (req/res are real node:http objects,
 * streaming both ways, HEAD, errors, aborts) and FastCGI semantics on the
 * wire (GET_VALUES, KEEP_CONN, multiplexing, unknown roles, bad bytes).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import { cgiParams, fastcgiRequest, logRequestError } from '../../src/app/index.js';
import { cgiEnv, connectUnix, fcgi, fcgiOn, scgi, startApp, type Started } from './local.js';
import { within } from '../helpers/wait.js';

type Route = (req: IncomingMessage, res: ServerResponse) => unknown;
const routes = new Map<string, Route>();
const seen: Array<{ req: IncomingMessage; res: ServerResponse }> = [];

function router(req: IncomingMessage, res: ServerResponse): unknown {
  seen.push({ req, res });
  const path = (req.url ?? '/').split('?')[0]!;
  const route = routes.get(path);
  if (!route) {
    res.statusCode = 404;
    return res.end('no route\n');
  }
  return route(req, res);
}

let app: Started;
let scgiApp: Started;

before(async () => {
  app = await startApp(router);
  scgiApp = await startApp(router, { protocol: 'scgi' });
});

after(async () => {
  await app.close();
  await scgiApp.close();
});

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

routes.set('/info', (req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Set-Cookie', ['a=1', 'b=2']);
  res.end(
    JSON.stringify({
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remoteAddress: req.socket.remoteAddress,
      remotePort: req.socket.remotePort,
      encrypted: (req.socket as { encrypted?: boolean }).encrypted ?? false,
      isIncoming: req instanceof http.IncomingMessage,
      isResponse: res instanceof http.ServerResponse,
      docUri: cgiParams(req).DOCUMENT_URI,
      role: fastcgiRequest(req)?.role ?? null,
    }),
  );
});

test('GET with query: request line, headers, addresses and CGI params reach the handler; headers come back', async () => {
  const r = await fcgi(app.path, cgiEnv('GET', '/info?x=1&y=%20', { HTTP_X_TRACE_ID: 'abc', HTTP_ACCEPT: 'text/html', HTTPS: 'on', REMOTE_ADDR: '10.1.2.3' }));
  assert.equal(r.status, 200);
  assert.equal(r.lines[0], 'Status: 200 OK');
  assert.deepEqual(
    r.lines.filter((l) => l.startsWith('Set-Cookie')),
    ['Set-Cookie: a=1', 'Set-Cookie: b=2'],
  );
  assert.ok(!r.lines.some((l) => /^(connection|transfer-encoding|date|keep-alive):/i.test(l)), r.lines.join('|'));
  assert.equal(r.headers['content-length'], String(r.body.length));
  const info = JSON.parse(r.body.toString());
  assert.equal(info.method, 'GET');
  assert.equal(info.url, '/info?x=1&y=%20');
  assert.equal(info.httpVersion, '1.1');
  assert.equal(info.headers['x-trace-id'], 'abc');
  assert.equal(info.headers.accept, 'text/html');
  assert.equal(info.headers.host, 'localhost');
  assert.equal(info.headers['content-length'], undefined);
  assert.equal(info.remoteAddress, '10.1.2.3');
  assert.equal(info.remotePort, 40000);
  assert.equal(info.encrypted, true);
  assert.equal(info.isIncoming, true);
  assert.equal(info.isResponse, true);
  assert.equal(info.docUri, '/info');
  assert.equal(info.role, 'RESPONDER');
});

routes.set('/echo', (req, res) => {
  res.setHeader('Content-Type', req.headers['content-type'] ?? 'application/octet-stream');
  res.setHeader('X-Request-Length', req.headers['content-length'] ?? '-');
  req.pipe(res);
});

test('POST 1 MB body is streamed in and echoed back intact (FastCGI and SCGI)', async () => {
  const body = randomBytes(1024 * 1024);
  for (const send of [fcgi, scgi]) {
    const target = send === fcgi ? app.path : scgiApp.path;
    const r = await send(target, cgiEnv('POST', '/echo', { CONTENT_TYPE: 'application/x-test', CONTENT_LENGTH: String(body.length) }), body);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/x-test');
    assert.equal(r.headers['x-request-length'], String(body.length));
    assert.equal(r.body.length, body.length);
    assert.equal(sha(r.body), sha(body));
  }
});

routes.set('/status', (req, res) => {
  const code = Number(new URL(req.url!, 'http://x').searchParams.get('code'));
  if (code === 302) {
    res.writeHead(302, { Location: '/elsewhere' });
    return res.end();
  }
  res.writeHead(code, { 'X-Code': String(code) });
  res.end(`code ${code}\n`);
});

test('status codes and redirects pass as Status:; 204/304 carry no body', async () => {
  for (const code of [201, 404, 418, 500, 503]) {
    const r = await fcgi(app.path, cgiEnv('GET', `/status?code=${code}`));
    assert.equal(r.status, code);
    assert.match(r.lines[0]!, new RegExp(`^Status: ${code} `));
    assert.equal(r.body.toString(), `code ${code}\n`);
  }
  const redirect = await fcgi(app.path, cgiEnv('GET', '/status?code=302'));
  assert.equal(redirect.status, 302);
  assert.equal(redirect.headers.location, '/elsewhere');
  for (const code of [204, 304]) {
    const r = await fcgi(app.path, cgiEnv('GET', `/status?code=${code}`));
    assert.equal(r.status, code);
    assert.equal(r.body.length, 0);
  }
});

routes.set('/write-end', (_req, res) => {
  res.write('a');
  res.end('b');
});
routes.set('/stream', (_req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  let i = 0;
  const tick = (): void => {
    if (i === 5) return void res.end('done\n');
    res.write(`part ${i++}\n`);
    setTimeout(tick, 5);
  };
  tick();
});
routes.set('/forced-chunked', (_req, res) => {
  // An app that insists on chunked framing and trailers: neither may reach the CGI body.
  res.writeHead(200, { 'Transfer-Encoding': 'chunked', Trailer: 'X-Sum' });
  res.write('hello ');
  res.write(Buffer.from('world'));
  res.addTrailers({ 'X-Sum': '42' });
  res.end();
});

test("res.write('a'); res.end('b') sends both; streaming writes arrive in order, unframed", async () => {
  const we = await fcgi(app.path, cgiEnv('GET', '/write-end'));
  assert.equal(we.body.toString(), 'ab');
  const s = await fcgi(app.path, cgiEnv('GET', '/stream'));
  assert.equal(s.body.toString(), 'part 0\npart 1\npart 2\npart 3\npart 4\ndone\n');
  assert.equal(s.headers['content-length'], undefined);
  assert.equal(s.headers['transfer-encoding'], undefined);
  const fc = await fcgi(app.path, cgiEnv('GET', '/forced-chunked'));
  assert.equal(fc.body.toString(), 'hello world');
  assert.equal(fc.headers['transfer-encoding'], undefined);
  assert.equal(fc.headers.trailer, 'X-Sum');
  const sc = await scgi(scgiApp.path, cgiEnv('GET', '/stream'));
  assert.equal(sc.body.toString(), 'part 0\npart 1\npart 2\npart 3\npart 4\ndone\n');
});

routes.set('/hello', (_req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end('hello there\n');
});

test('HEAD: headers (with Content-Length) and no body', async () => {
  const r = await fcgi(app.path, cgiEnv('HEAD', '/hello'));
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/plain');
  assert.equal(r.body.length, 0);
  const g = await fcgi(app.path, cgiEnv('GET', '/hello'));
  assert.equal(g.headers['content-length'], '12');
});

routes.set('/throw', () => {
  throw new Error('sync boom');
});
routes.set('/reject', async (_req, res) => {
  res.setHeader('X-Partial', 'yes');
  await new Promise((r) => setTimeout(r, 5));
  throw new Error('async boom');
});
routes.set('/throw-late', (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.write('partial');
  setTimeout(() => {
    try {
      throw new Error('late boom');
    } catch (err) {
      // What an app's own error path does once the head is out: give up on the response.
      logRequestError(_req, err);
      res.destroy(err as Error);
    }
  }, 5);
});

test('a throwing or rejecting handler gets a 500 for that request only, logged to FCGI_STDERR', async () => {
  const t = await fcgi(app.path, cgiEnv('GET', '/throw'));
  assert.equal(t.status, 500);
  assert.match(t.stderr, /sync boom/);
  const r = await fcgi(app.path, cgiEnv('GET', '/reject'));
  assert.equal(r.status, 500);
  assert.equal(r.headers['x-partial'], undefined, 'headers set before the failure are dropped');
  assert.match(r.stderr, /async boom/);
  const ok = await fcgi(app.path, cgiEnv('GET', '/hello'));
  assert.equal(ok.status, 200);
  const s = await scgi(scgiApp.path, cgiEnv('GET', '/throw'));
  assert.equal(s.status, 500);
});

test('destroying a response after its head went out breaks the connection (not a short "complete" reply)', async () => {
  await assert.rejects(fcgi(app.path, cgiEnv('GET', '/throw-late')), (err: Error & { code?: string }) => err.code === 'ERR_FCGI_CONN_CLOSED');
  assert.equal((await fcgi(app.path, cgiEnv('GET', '/hello'))).status, 200);
});

routes.set('/flush', (_req, res) => {
  res.setHeader('X-Early', '1');
  res.flushHeaders();
  routes.get('/flush-release')!(_req, res);
});
let releaseFlush: (() => void) | null = null;
routes.set('/flush-release', (_req, res) => {
  releaseFlush = () => res.end('late body');
});

test('flushHeaders sends the head before the body exists', async () => {
  const conn = new FastCgiClientConnection(await connectUnix(app.path));
  const req = conn.request(cgiEnv('GET', '/flush'), { keepConn: false });
  req.stdin.end();
  const [first] = (await within(once(req.stdout, 'data'), 5000, 'head')) as [Buffer];
  assert.match(first.toString(), /^Status: 200 OK\r\nX-Early: 1\r\n\r\n$/);
  releaseFlush!();
  const rest: Buffer[] = [];
  req.stdout.on('data', (d: Buffer) => rest.push(d));
  await within(once(req, 'end'), 5000, 'end');
  assert.equal(Buffer.concat(rest).toString(), 'late body');
  conn.destroy();
});

routes.set('/hints', (_req, res) => {
  res.writeEarlyHints({ link: '</style.css>; rel=preload' });
  res.writeContinue();
  res.end('after hints');
});

test('1xx interim responses (Early Hints, Continue) are dropped: one CGI head', async () => {
  const r = await fcgi(app.path, cgiEnv('GET', '/hints'));
  assert.equal(r.status, 200);
  assert.equal(r.lines[0], 'Status: 200 OK');
  assert.equal(r.body.toString(), 'after hints');
});

let abortSeen: Promise<string[]> | null = null;
routes.set('/hang', (req, res) => {
  const events: string[] = [];
  abortSeen = new Promise((resolve) => {
    req.on('aborted', () => events.push('req aborted'));
    req.on('close', () => events.push('req close'));
    res.on('close', () => {
      events.push(`res close (finished=${res.writableFinished})`);
      setImmediate(() => resolve(events));
    });
  });
  res.write('started');
});

test("ABORT_REQUEST: req 'aborted'/'close' and res 'close' fire; the connection keeps working", async () => {
  const conn = new FastCgiClientConnection(await connectUnix(app.path));
  const req = conn.request(cgiEnv('GET', '/hang'), { keepConn: true });
  req.stdin.end();
  await within(once(req.stdout, 'data'), 5000, 'first bytes');
  req.abort();
  const end = await within(new Promise((resolve) => req.once('end', resolve)), 5000, 'abort answer');
  assert.deepEqual(end, { appStatus: 0, protocolStatus: 0 });
  const events = await within(abortSeen!, 5000, 'abort events');
  assert.ok(events.includes('res close (finished=false)'), events.join());
  assert.ok(events.includes('req close'), events.join());
  assert.equal((await fcgiOn(conn, cgiEnv('GET', '/hello'))).status, 200);
  conn.destroy();
});

test("FastCGI connection lost mid-response: req 'aborted' and res 'close' fire", async () => {
  const conn = new FastCgiClientConnection(await connectUnix(app.path));
  const req = conn.request(cgiEnv('GET', '/hang'), { keepConn: true });
  req.on('error', () => {});
  req.stdin.end();
  await within(once(req.stdout, 'data'), 5000, 'first bytes');
  conn.destroy();
  const events = await within(abortSeen!, 5000, 'abort events');
  assert.ok(events.includes('req aborted'), events.join());
  assert.ok(events.includes('res close (finished=false)'), events.join());
});

let dripEvents: Promise<string> | null = null;
routes.set('/drip', (_req, res) => {
  const timer = setInterval(() => res.write('tick\n'), 10);
  dripEvents = new Promise((resolve) => {
    res.on('close', () => {
      clearInterval(timer);
      resolve(`res close (finished=${res.writableFinished})`);
    });
  });
});

test("client gone mid-response (SCGI): res 'close' fires with the response unfinished", async () => {
  // SCGI has no abort message and allows a client to half-close after its body,
  // so the disappearance shows when the next write fails.
  const socket = await connectUnix(scgiApp.path);
  const { scgiRequest } = await import('../../src/scgi/client.js');
  const ex = scgiRequest(socket, cgiEnv('GET', '/drip').filter(([n]) => n !== 'CONTENT_LENGTH'), 0);
  ex.body.end();
  await within(once(ex.response, 'data'), 5000, 'first bytes');
  ex.response.destroy();
  assert.equal(await within(dripEvents!, 5000, 'close event'), 'res close (finished=false)');
});

routes.set('/big', (_req, res) => {
  // 8 MB from a generator: pipeline() only moves on when res accepts more.
  let drains = 0;
  res.on('drain', () => drains++);
  res.setHeader('Content-Type', 'application/octet-stream');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  void pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < 128; i++) yield chunk;
      })(),
    ),
    res,
  ).then(() => bigDrains.push(drains));
});
const bigDrains: number[] = [];

test('a large response is paced by backpressure (res drains) and arrives whole to a slow reader', async () => {
  const conn = new FastCgiClientConnection(await connectUnix(app.path), { highWaterMark: 16 * 1024 });
  const req = conn.request(cgiEnv('GET', '/big'), { keepConn: false });
  req.stdin.end();
  let bytes = 0;
  // Read slowly at first so the app must wait on us.
  req.stdout.pause();
  await new Promise((r) => setTimeout(r, 200));
  req.stdout.on('data', (d: Buffer) => (bytes += d.length));
  req.stdout.resume();
  await within(once(req, 'end'), 20000, 'big response');
  const headLen = 'Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n'.length;
  assert.equal(bytes, 128 * 64 * 1024 + headLen);
  assert.ok(bigDrains[0]! > 0, `expected the app to see 'drain', saw ${bigDrains[0]}`);
  conn.destroy();
});

let uploadProgress: { received: number; maxBuffered: number } | null = null;
routes.set('/slow-upload', (req, res) => {
  const state = { received: 0, maxBuffered: 0 };
  uploadProgress = state;
  req.on('data', (d: Buffer) => {
    state.received += d.length;
    state.maxBuffered = Math.max(state.maxBuffered, req.readableLength);
    req.pause();
    setTimeout(() => req.resume(), 1);
  });
  req.on('end', () => res.end(`got ${state.received}`));
});

test('a request body is pushed with backpressure: a slow reader bounds what is buffered', async () => {
  const body = randomBytes(4 * 1024 * 1024);
  const r = await fcgi(app.path, cgiEnv('POST', '/slow-upload', { CONTENT_LENGTH: String(body.length) }), body);
  assert.equal(r.body.toString(), `got ${body.length}`);
  assert.ok(uploadProgress!.maxBuffered <= 256 * 1024, `req buffered ${uploadProgress!.maxBuffered} bytes`);
});

test('GET_VALUES answers the configured limits', async () => {
  const limited = await startApp(router, { maxConns: 7, maxReqs: 3, mpxsConns: false });
  try {
    const conn = new FastCgiClientConnection(await connectUnix(limited.path));
    const values = await within(conn.getValues(['FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS']), 5000, 'GET_VALUES');
    assert.deepEqual(Object.fromEntries(values), { FCGI_MAX_CONNS: '7', FCGI_MAX_REQS: '3', FCGI_MPXS_CONNS: '0' });
    conn.destroy();
  } finally {
    await limited.close();
  }
});

routes.set('/delay', (req, res) => {
  const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms'));
  setTimeout(() => res.end(`waited ${ms}`), ms);
});

test('multiplexed requests on one kept-alive connection complete independently', async () => {
  const conn = new FastCgiClientConnection(await connectUnix(app.path));
  const results = await Promise.all([
    fcgiOn(conn, cgiEnv('GET', '/delay?ms=60')),
    fcgiOn(conn, cgiEnv('GET', '/delay?ms=10')),
    fcgiOn(conn, cgiEnv('POST', '/echo', { CONTENT_LENGTH: '5' }), 'multi'),
  ]);
  assert.deepEqual(
    results.map((r) => r.body.toString()),
    ['waited 60', 'waited 10', 'multi'],
  );
  // KEEP_CONN: the same connection serves the next request too.
  assert.equal((await fcgiOn(conn, cgiEnv('GET', '/hello'))).status, 200);
  assert.equal(conn.closed, false);
  conn.destroy();
});

test('without KEEP_CONN the server closes the connection after the request', async () => {
  const socket = await connectUnix(app.path);
  const conn = new FastCgiClientConnection(socket);
  const closed = once(socket, 'close');
  await fcgiOn(conn, cgiEnv('GET', '/hello'), undefined, { keepConn: false });
  await within(closed, 5000, 'server close');
});

test('a role the server does not serve gets END_REQUEST(UNKNOWN_ROLE)', async () => {
  const conn = new FastCgiClientConnection(await connectUnix(app.path));
  const r = await fcgiOn(conn, cgiEnv('GET', '/hello'), undefined, { role: 'AUTHORIZER' });
  assert.equal(r.end?.protocolStatus, 3);
  conn.destroy();
});

test('malformed FastCGI bytes close that connection only; the next connection is served', async () => {
  const errors: Error[] = [];
  app.server.on('protocolError', (err: Error) => errors.push(err));
  try {
    const bad = await connectUnix(app.path);
    const closed = once(bad, 'close');
    bad.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await within(closed, 5000, 'bad connection closed');
    assert.equal((errors[0] as Error & { code?: string }).code, 'ERR_FCGI_BAD_VERSION');
    assert.equal((await fcgi(app.path, cgiEnv('GET', '/hello'))).status, 200);
  } finally {
    app.server.removeAllListeners('protocolError');
  }
});

test('close(): idle kept-alive connections close at once, in-flight requests finish, then close fires', async () => {
  const s = await startApp(router);
  const idle = new FastCgiClientConnection(await connectUnix(s.path));
  assert.equal((await fcgiOn(idle, cgiEnv('GET', '/hello'))).status, 200);
  const busy = new FastCgiClientConnection(await connectUnix(s.path));
  const slow = fcgiOn(busy, cgiEnv('GET', '/delay?ms=300'));
  await new Promise((r) => setTimeout(r, 50));
  const idleClosed = once(idle.socket, 'close');
  const serverClosed = new Promise<void>((r) => s.server.close(() => r()));
  const t0 = Date.now();
  await within(idleClosed, 1000, 'idle connection close');
  assert.ok(Date.now() - t0 < 200, 'idle connection closed promptly');
  assert.equal((await slow).body.toString(), 'waited 300');
  await within(serverClosed, 5000, 'server close');
});

test('createServer(options, handler) order; preDispatch/postDispatch run around each request', async () => {
  const calls: string[] = [];
  const { createServer } = await import('../../src/app/index.js');
  const server = createServer(
    {
      preDispatch: (req) => calls.push(`pre ${req.url}`),
      postDispatch: (req, res) => calls.push(`post ${req.url} ${res.statusCode}`),
    },
    (req, res) => {
      calls.push(`handle ${req.url}`);
      res.statusCode = 202;
      res.end();
    },
  );
  const { join } = await import('node:path');
  const { tmpDir } = await import('../helpers/peers.js');
  const path = join(tmpDir('gh-hooks-'), 'h.sock');
  server.listen(path);
  await once(server, 'listening');
  try {
    assert.equal((await fcgi(path, cgiEnv('GET', '/one'))).status, 202);
    assert.equal((await fcgi(path, cgiEnv('GET', '/two'))).status, 202);
    assert.deepEqual(calls, ['pre /one', 'handle /one', 'post /one 202', 'pre /two', 'handle /two', 'post /two 202']);
    assert.equal(server.requestsServed, 2);
  } finally {
    server.close();
  }
});
