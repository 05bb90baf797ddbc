// The client side on the wire: our client against a fake application that
// checks the exact records it receives and answers with hand-made ones.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import {
  decodeBeginRequestBody,
  decodeGetValues,
  decodePairs,
  encodeEndRequestBody,
  encodeGetValuesResult,
  encodeUnknownTypeBody,
} from '../../src/fastcgi/codec.js';
import { ProtocolStatus, RecordType } from '../../src/fastcgi/constants.js';
import { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import { FastCgiConnectionError, FastCgiProtocolError } from '../../src/fastcgi/errors.js';
import { RawPeer, collect } from './harness.js';
import { within } from '../helpers/wait.js';

const { BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, GET_VALUES, UNKNOWN_TYPE } = RecordType;

/** A fake application: each accepted socket becomes a RawPeer the test drives. */
async function fakeApp(): Promise<{ client: FastCgiClientConnection; app: RawPeer; close: () => void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await within(once(server, 'listening'), 5000, 'listen');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [appSocket] = await within(accepted, 5000, 'accept');
  await within(once(socket, 'connect'), 5000, 'connect');
  const app = new RawPeer(appSocket);
  const client = new FastCgiClientConnection(socket);
  fakes.push(() => {
    socket.destroy();
    appSocket.destroy();
    server.close();
  });
  return { client, app, close: () => appSocket.destroy() };
}
const fakes: Array<() => void> = [];
after(() => fakes.forEach((f) => f()));

function endRequest(app: RawPeer, id: number, appStatus = 0, protocolStatus: number = ProtocolStatus.REQUEST_COMPLETE): void {
  app.record(END_REQUEST, id, encodeEndRequestBody(appStatus, protocolStatus));
}

function errorOf(req: { once(e: 'error', l: (err: unknown) => void): unknown }): Promise<FastCgiConnectionError> {
  return within(
    new Promise((resolve) => req.once('error', (e) => resolve(e as FastCgiConnectionError))),
    5000,
    "request 'error'",
  );
}

test('sends BEGIN_REQUEST, PARAMS split at 65535 with the empty terminator, STDIN; reads STDOUT, STDERR, END_REQUEST', async () => {
  const { client, app } = await fakeApp();
  const params: Array<[string, string]> = [
    ['REQUEST_METHOD', 'POST'],
    ['HTTP_X_BIG', 'b'.repeat(70000)],
  ];
  const req = client.request(params, { keepConn: true });
  assert.equal(req.requestId, 1);
  req.stdin.write('abc');
  req.stdin.end();
  await app.until((p) => p.records.filter((r) => r.type === STDIN).length === 2, 'STDIN and its empty record');
  const recs = app.records;
  assert.equal(recs[0]!.type, BEGIN_REQUEST);
  assert.deepEqual([...recs[0]!.content], [0, 1, 1, 0, 0, 0, 0, 0], 'RESPONDER, KEEP_CONN');
  const paramRecs = recs.filter((r) => r.type === PARAMS);
  assert.deepEqual(
    paramRecs.map((r) => r.content.length),
    [65535, encodeParamsLength(params) - 65535, 0],
  );
  assert.deepEqual(decodePairs(app.stream(PARAMS, 1)), params);
  assert.deepEqual(
    recs.filter((r) => r.type === STDIN).map((r) => r.content.toString()),
    ['abc', ''],
  );
  const done = collect(req);
  app.record(STDOUT, 1, Buffer.from('Status: 201\r\n\r\n'));
  app.record(STDERR, 1, Buffer.from('oops'));
  app.record(STDOUT, 1, Buffer.from('hi'));
  app.record(STDOUT, 1);
  endRequest(app, 1, 5);
  const res = await done;
  assert.equal(res.stdout.toString(), 'Status: 201\r\n\r\nhi');
  assert.equal(res.stderr.toString(), 'oops');
  assert.deepEqual(res.end, { appStatus: 5, protocolStatus: 0 });
  assert.equal(req.responseStarted, true);
});

function encodeParamsLength(params: Array<[string, string]>): number {
  return params.reduce((n, [k, v]) => n + k.length + v.length + (k.length > 127 ? 4 : 1) + (v.length > 127 ? 4 : 1), 0);
}

test('request ids: lowest free first, reused once released; busy/idle and the idle event', async () => {
  const { client, app } = await fakeApp();
  assert.equal(client.idle, true);
  const a = client.request([]);
  const b = client.request([]);
  assert.deepEqual([a.requestId, b.requestId], [1, 2]);
  assert.equal(client.busy, true);
  assert.equal(client.idle, false);
  const aDone = collect(a);
  app.record(STDOUT, 1);
  endRequest(app, 1);
  await aDone;
  const c = client.request([]);
  assert.equal(c.requestId, 1, 'id 1 is free again');
  const idle = once(client, 'idle');
  for (const r of [b, c]) {
    const done = collect(r);
    endRequest(app, r.requestId);
    await done;
  }
  await within(idle, 5000, "'idle'");
  assert.equal(client.idle, true);
  assert.equal(client.activeRequests, 0);
});

test('a request without KEEP_CONN makes the connection not reusable', async () => {
  const { client, app } = await fakeApp();
  const req = client.request([], { keepConn: false });
  await app.waitFor(BEGIN_REQUEST, 1);
  assert.equal(decodeBeginRequestBody(app.records[0]!.content).keepConn, false);
  const done = collect(req);
  endRequest(app, 1);
  await done;
  assert.equal(client.idle, false);
});

test('abort() sends ABORT_REQUEST and stops the body; end follows the answer', async () => {
  const { client, app } = await fakeApp();
  const req = client.request([]);
  req.stdin.write('before');
  await app.waitFor(STDIN, 1);
  req.abort();
  req.abort();
  req.stdin.write('after abort');
  await app.waitFor(ABORT_REQUEST, 1);
  const done = collect(req);
  endRequest(app, 1, 0);
  const res = await done;
  assert.deepEqual(res.end, { appStatus: 0, protocolStatus: 0 });
  assert.equal(app.records.filter((r) => r.type === ABORT_REQUEST).length, 1, 'abort() is idempotent');
  assert.equal(app.stream(STDIN, 1).toString(), 'before');
});

test('after END_REQUEST the body is dropped, so a reused id gets no stray STDIN', async () => {
  const { client, app } = await fakeApp();
  const first = client.request([]);
  const done = collect(first);
  endRequest(app, 1, 0); // an application may answer before reading the body
  await done;
  first.stdin.end('late body');
  const second = client.request([['N', '2']]);
  assert.equal(second.requestId, 1);
  await app.until((p) => p.records.filter((r) => r.type === PARAMS).length === 3, 'second PARAMS');
  // No params is just the empty PARAMS record; then the second request, and no STDIN at all.
  assert.deepEqual(
    app.records.map((r) => r.type),
    [BEGIN_REQUEST, PARAMS, BEGIN_REQUEST, PARAMS, PARAMS],
  );
  const secondDone = collect(second);
  endRequest(app, 1);
  await secondDone;
});

test('getValues() resolves from GET_VALUES_RESULT and rejects on UNKNOWN_TYPE', async () => {
  const { client, app } = await fakeApp();
  const values = client.getValues(['FCGI_MAX_REQS', 'FCGI_MPXS_CONNS']);
  const rec = await app.waitFor(GET_VALUES, 0);
  assert.deepEqual(decodeGetValues(rec.content), ['FCGI_MAX_REQS', 'FCGI_MPXS_CONNS']);
  app.send(encodeGetValuesResult([['FCGI_MPXS_CONNS', '0']]));
  assert.deepEqual(await within(values, 5000, 'values'), new Map([['FCGI_MPXS_CONNS', '0']]));
  const refused = client.getValues(['FCGI_MAX_CONNS']);
  app.record(UNKNOWN_TYPE, 0, encodeUnknownTypeBody(GET_VALUES));
  await assert.rejects(within(refused, 5000, 'UNKNOWN_TYPE answer'), (e: unknown) => e instanceof FastCgiConnectionError && e.code === 'ERR_FCGI_UNKNOWN_TYPE');
});

test('connection closed before END_REQUEST: each request errors, responseStarted tells who got bytes', async () => {
  const { client, app, close } = await fakeApp();
  const started = client.request([]);
  const silent = client.request([]);
  const pendingValues = client.getValues(['FCGI_MAX_REQS']);
  const startedErr = errorOf(started);
  const silentErr = errorOf(silent);
  app.record(STDOUT, 1, Buffer.from('Status: 200\r\n'));
  await app.waitFor(BEGIN_REQUEST, 2);
  // Let the STDOUT record arrive before the reset.
  started.stdout.once('data', () => close());
  const [e1, e2] = await Promise.all([startedErr, silentErr]);
  assert.equal(e1.code, 'ERR_FCGI_CONN_CLOSED');
  assert.equal(e1.responseStarted, true);
  assert.equal(e2.code, 'ERR_FCGI_CONN_CLOSED');
  assert.equal(e2.responseStarted, false);
  await assert.rejects(within(pendingValues, 5000, 'GET_VALUES rejection'), (e: unknown) => e instanceof FastCgiConnectionError && e.code === 'ERR_FCGI_CONN_CLOSED');
  const late = client.request([]);
  const lateErr = await errorOf(late);
  assert.equal(lateErr.code, 'ERR_FCGI_CONN_CLOSED');
  assert.equal(client.idle, false);
});

test('garbage from the application: protocolError, then the requests error with the cause', async () => {
  const { client, app } = await fakeApp();
  const req = client.request([]);
  const err = errorOf(req);
  const protocolErrors: FastCgiProtocolError[] = [];
  client.on('protocolError', (e: FastCgiProtocolError) => protocolErrors.push(e));
  await app.waitFor(BEGIN_REQUEST, 1);
  app.send(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'));
  const e = await err;
  assert.equal(e.code, 'ERR_FCGI_CONN_CLOSED');
  assert.ok(e.cause instanceof FastCgiProtocolError && e.cause.code === 'ERR_FCGI_BAD_VERSION');
  assert.deepEqual(
    protocolErrors.map((p) => p.code),
    ['ERR_FCGI_BAD_VERSION'],
  );
});

test('an END_REQUEST body that is not 8 bytes is a protocol error', async () => {
  const { client, app } = await fakeApp();
  const req = client.request([]);
  const err = errorOf(req);
  await app.waitFor(BEGIN_REQUEST, 1);
  app.record(END_REQUEST, 1, Buffer.alloc(9));
  const e = await err;
  assert.ok(e.cause instanceof FastCgiProtocolError && e.cause.code === 'ERR_FCGI_BAD_RECORD');
});

test('records for ids not in flight are ignored', async () => {
  const { client, app } = await fakeApp();
  const req = client.request([]);
  const done = collect(req);
  app.record(STDOUT, 7, Buffer.from('not yours'));
  endRequest(app, 7);
  app.record(STDOUT, 1, Buffer.from('yours'));
  app.record(STDOUT, 1);
  endRequest(app, 1, 0, ProtocolStatus.REQUEST_COMPLETE);
  const res = await done;
  assert.equal(res.stdout.toString(), 'yours');
});
