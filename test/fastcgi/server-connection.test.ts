// The server side on the wire: hand-made records in, exact records out.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { encodeBeginRequestBody, encodeGetValues, encodePairs, encodeRecord, decodeEndRequestBody, decodeGetValuesResult } from '../../src/fastcgi/codec.js';
import { ProtocolStatus, RecordType, Role } from '../../src/fastcgi/constants.js';
import type { FcgiServerRequest } from '../../src/fastcgi/contract.js';
import type { FastCgiProtocolError } from '../../src/fastcgi/errors.js';
import { RawPeer, startServer, type TestServer } from './harness.js';
import { deferred, readAll, within } from '../helpers/wait.js';

const { BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE } = RecordType;

/** The records a web server sends for one request: BEGIN, PARAMS, STDIN (each ended). */
function requestRecords(id: number, params: Array<[string, string]>, body: string | null, keepConn = false, role: number = Role.RESPONDER): Buffer {
  const recs = [encodeRecord(BEGIN_REQUEST, id, encodeBeginRequestBody(role, keepConn)), encodeRecord(PARAMS, id, encodePairs(params)), encodeRecord(PARAMS, id)];
  if (body !== null) recs.push(encodeRecord(STDIN, id, Buffer.from(body)), encodeRecord(STDIN, id));
  return Buffer.concat(recs);
}

function endOf(peer: RawPeer, id: number): { appStatus: number; protocolStatus: number } {
  return decodeEndRequestBody(peer.records.find((r) => r.type === END_REQUEST && r.requestId === id)!.content);
}

/** Echoes "NAME=value" lines for the params, then the body; stderr gets one line; appStatus 7. */
async function echoHandler(req: FcgiServerRequest): Promise<void> {
  // An aborted request's stdin closes early; that is the abort, not a test failure.
  const body = await readAll(req.stdin).catch((err: unknown) => {
    if (req.aborted) return null;
    throw err;
  });
  if (body === null) return;
  req.stderr.write('warn\n');
  req.stdout.write(`Content-Type: text/plain\r\n\r\n${req.params.map(([n, v]) => `${n}=${v}`).join('\n')}\n`);
  req.stdout.write(body);
  req.end(7);
}

const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});
async function server(...args: Parameters<typeof startServer>): Promise<TestServer> {
  const s = await startServer(...args);
  servers.push(s);
  return s;
}

test('a responder request: STDOUT, STDERR, their empty records, then END_REQUEST; no KEEP_CONN closes', async () => {
  const srv = await server({}, (req) => void echoHandler(req));
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [['REQUEST_METHOD', 'POST'], ['X', 'y'.repeat(300)]], 'hello'));
  await peer.until((p) => p.ended, 'server closes after END_REQUEST');
  assert.equal(peer.stream(STDOUT, 1).toString(), `Content-Type: text/plain\r\n\r\nREQUEST_METHOD=POST\nX=${'y'.repeat(300)}\nhello`);
  assert.equal(peer.stream(STDERR, 1).toString(), 'warn\n');
  const types = peer.records.map((r) => [r.type, r.content.length === 0]);
  // END_REQUEST is last and comes after both empty stream records.
  assert.deepEqual(types.slice(-3).sort(), [[END_REQUEST, false], [STDERR, true], [STDOUT, true]].sort());
  assert.equal(peer.records.at(-1)!.type, END_REQUEST);
  assert.deepEqual(endOf(peer, 1), { appStatus: 7, protocolStatus: ProtocolStatus.REQUEST_COMPLETE });
});

test('KEEP_CONN: two requests in turn on one connection, which stays open', async () => {
  const srv = await server({}, (req) => void echoHandler(req));
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [['N', '1']], 'a', true));
  await peer.waitFor(END_REQUEST, 1);
  peer.send(requestRecords(1, [['N', '2']], 'b', true));
  await peer.until((p) => p.records.filter((r) => r.type === END_REQUEST).length === 2, 'second END_REQUEST');
  assert.ok(peer.stream(STDOUT, 1).toString().endsWith('N=2\nb'));
  assert.equal(peer.ended, false, 'the connection is still open');
  assert.equal(srv.conns.length, 1);
});

test('multiplexed requests on one connection, answered in any order', async () => {
  const held = new Map<string, FcgiServerRequest>();
  const srv = await server({ mpxsConns: true }, (req) => held.set(req.params[0]![1], req));
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [['NAME', 'one']], '', true), requestRecords(2, [['NAME', 'two']], '', true));
  await within(
    (async () => {
      while (held.size < 2) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'two requests',
  );
  held.get('two')!.stdout.write('second');
  held.get('two')!.end(2);
  held.get('one')!.stdout.write('first');
  held.get('one')!.end(1);
  await peer.waitFor(END_REQUEST, 1);
  assert.equal(peer.stream(STDOUT, 1).toString(), 'first');
  assert.equal(peer.stream(STDOUT, 2).toString(), 'second');
  assert.equal(endOf(peer, 2).appStatus, 2);
  assert.ok(peer.records.findIndex((r) => r.type === END_REQUEST && r.requestId === 2) < peer.records.findIndex((r) => r.type === END_REQUEST && r.requestId === 1));
});

test('without mpxsConns a second concurrent BEGIN_REQUEST gets CANT_MPX_CONN; the first completes', async () => {
  let first: FcgiServerRequest | undefined;
  const srv = await server({ mpxsConns: false }, (req) => (first = req));
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [], '', true), requestRecords(2, [], 'ignored', true));
  await peer.waitFor(END_REQUEST, 2);
  assert.deepEqual(endOf(peer, 2), { appStatus: 0, protocolStatus: ProtocolStatus.CANT_MPX_CONN });
  assert.ok(first);
  first.stdout.end('ok');
  first.end();
  await peer.waitFor(END_REQUEST, 1);
  assert.equal(peer.stream(STDOUT, 1).toString(), 'ok');
  assert.equal(peer.stream(STDOUT, 2).length, 0, 'nothing for the refused id');
});

test('maxReqs: a request beyond the limit gets OVERLOADED', async () => {
  const srv = await server({ maxReqs: 1 }, () => {});
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [], '', true), requestRecords(2, [], '', true));
  await peer.waitFor(END_REQUEST, 2);
  assert.equal(endOf(peer, 2).protocolStatus, ProtocolStatus.OVERLOADED);
});

test('GET_VALUES is answered with the names asked that the server knows', async () => {
  const srv = await server({ maxConns: 12, maxReqs: 34, mpxsConns: false }, () => {});
  const peer = await RawPeer.connect(srv.address);
  peer.send(encodeGetValues(['FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS', 'NOT_A_VARIABLE']));
  const rec = await peer.waitFor(GET_VALUES_RESULT, 0);
  assert.deepEqual(
    decodeGetValuesResult(rec.content),
    new Map([
      ['FCGI_MAX_CONNS', '12'],
      ['FCGI_MAX_REQS', '34'],
      ['FCGI_MPXS_CONNS', '0'],
    ]),
  );
});

test('an unknown management record type gets UNKNOWN_TYPE; an UNKNOWN_TYPE gets no answer', async () => {
  const srv = await server({}, () => {});
  const peer = await RawPeer.connect(srv.address);
  peer.record(UNKNOWN_TYPE, 0, [99, 0, 0, 0, 0, 0, 0, 0]);
  peer.record(200, 0, [1, 2, 3]);
  const rec = await peer.waitFor(UNKNOWN_TYPE, 0);
  assert.deepEqual([...rec.content], [200, 0, 0, 0, 0, 0, 0, 0]);
  peer.send(encodeGetValues([]));
  await peer.waitFor(GET_VALUES_RESULT, 0);
  assert.equal(peer.records.filter((r) => r.type === UNKNOWN_TYPE).length, 1);
});

test('unknown roles get END_REQUEST(UNKNOWN_ROLE); AUTHORIZER is served when configured', async () => {
  const roles: string[] = [];
  const srv = await server({ roles: ['RESPONDER', 'AUTHORIZER'] }, (req) => {
    roles.push(req.role);
    req.end();
  });
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [], '', true, 9), requestRecords(2, [], '', true, Role.FILTER), requestRecords(3, [], '', true, Role.AUTHORIZER));
  await peer.waitFor(END_REQUEST, 3);
  await peer.waitFor(END_REQUEST, 2);
  assert.equal(endOf(peer, 1).protocolStatus, ProtocolStatus.UNKNOWN_ROLE);
  assert.equal(endOf(peer, 2).protocolStatus, ProtocolStatus.UNKNOWN_ROLE);
  assert.equal(endOf(peer, 3).protocolStatus, ProtocolStatus.REQUEST_COMPLETE);
  assert.deepEqual(roles, ['AUTHORIZER']);
});

test('records for request ids not in flight are ignored', async () => {
  const srv = await server({}, (req) => void echoHandler(req));
  const peer = await RawPeer.connect(srv.address);
  peer.record(STDIN, 9, Buffer.from('stray'));
  peer.record(PARAMS, 9, encodePairs([['A', 'B']]));
  peer.record(ABORT_REQUEST, 9);
  peer.send(requestRecords(1, [['N', 'v']], 'body', true));
  await peer.waitFor(END_REQUEST, 1);
  assert.ok(peer.stream(STDOUT, 1).toString().endsWith('N=v\nbody'));
  assert.deepEqual(
    peer.records.map((r) => r.requestId),
    peer.records.map(() => 1),
    'nothing was sent for id 9',
  );
});

test('ABORT_REQUEST: the request sees abort, END_REQUEST follows at once, later writes are dropped', async () => {
  const got = deferred<FcgiServerRequest>();
  const srv = await server({}, got.resolve);
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [], null, true));
  const req: FcgiServerRequest | undefined = await within(got.promise, 5000, 'request');
  req.stdout.write('partial');
  const aborted = once(req, 'abort');
  const closed = once(req, 'close');
  peer.record(ABORT_REQUEST, 1);
  await within(aborted, 5000, "'abort'");
  await within(closed, 5000, "'close'");
  assert.equal(req.aborted, true);
  await peer.waitFor(END_REQUEST, 1);
  assert.deepEqual(endOf(peer, 1), { appStatus: 0, protocolStatus: ProtocolStatus.REQUEST_COMPLETE });
  req.stdout.write('after abort', () => {});
  req.end(3);
  // A GET_VALUES round trip proves everything the server wrote so far has arrived.
  peer.send(encodeGetValues([]));
  await peer.waitFor(GET_VALUES_RESULT, 0);
  assert.equal(peer.stream(STDOUT, 1).toString(), 'partial');
  assert.equal(peer.records.filter((r) => r.type === END_REQUEST).length, 1);
});

test('FILTER: stdin then data, each its own stream', async () => {
  const srv = await server({ roles: ['FILTER'] }, async (req) => {
    const [stdin, data] = await Promise.all([readAll(req.stdin), readAll(req.data)]);
    req.stdout.end(`${stdin.toString()}|${data.toString()}`);
    req.end();
  });
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [], 'in', false, Role.FILTER));
  peer.record(RecordType.DATA, 1, Buffer.from('file'));
  peer.record(RecordType.DATA, 1);
  await peer.waitFor(END_REQUEST, 1);
  assert.equal(peer.stream(STDOUT, 1).toString(), 'in|file');
});

/** Bad input for a fresh connection, the code it must raise. */
const malformed: Array<[string, Buffer, string]> = [
  ['bad version', Buffer.from('GET / HTTP/1.0\r\n\r\n'), 'ERR_FCGI_BAD_VERSION'],
  ['BEGIN_REQUEST body of 7 bytes', encodeRecord(BEGIN_REQUEST, 1, Buffer.alloc(7)), 'ERR_FCGI_BAD_RECORD'],
  ['BEGIN_REQUEST on id 0', encodeRecord(BEGIN_REQUEST, 0, encodeBeginRequestBody(1, true)), 'ERR_FCGI_BAD_RECORD'],
  ['GET_VALUES on id 1', encodeRecord(GET_VALUES, 1, encodePairs([['FCGI_MAX_REQS', '']])), 'ERR_FCGI_BAD_RECORD'],
  ['a truncated name-value pair', Buffer.concat([encodeRecord(BEGIN_REQUEST, 1, encodeBeginRequestBody(1, true)), encodeRecord(PARAMS, 1, Buffer.from([5, 1, 0x41])), encodeRecord(PARAMS, 1)]), 'ERR_FCGI_BAD_NAME_VALUE'],
  ['PARAMS over maxParamsBytes', Buffer.concat([encodeRecord(BEGIN_REQUEST, 1, encodeBeginRequestBody(1, true)), encodeRecord(PARAMS, 1, encodePairs([['BIG', 'x'.repeat(2000)]]))]), 'ERR_FCGI_PARAMS_TOO_LARGE'],
  ['a second BEGIN_REQUEST for an id in flight', Buffer.concat([requestRecords(1, [], null, true), encodeRecord(BEGIN_REQUEST, 1, encodeBeginRequestBody(1, true))]), 'ERR_FCGI_BAD_RECORD'],
];

for (const [what, bytes, code] of malformed) {
  test(`malformed input (${what}) emits protocolError ${code} and closes only that connection`, async () => {
    const srv = await server({ maxParamsBytes: 1024 }, (req) => void echoHandler(req));
    const good = await RawPeer.connect(srv.address);
    const goodConn = await srv.nextConnection();
    const bad = await RawPeer.connect(srv.address);
    const badConn = await srv.nextConnection();
    const errors: FastCgiProtocolError[] = [];
    badConn.on('protocolError', (e: FastCgiProtocolError) => errors.push(e));
    // The good connection has a request half-way through when the bad one breaks.
    good.send(requestRecords(1, [['N', 'v']], null, true));
    good.record(STDIN, 1, Buffer.from('part1-'));
    bad.send(bytes);
    await bad.until((p) => p.closed, 'bad connection closed');
    assert.deepEqual(
      errors.map((e) => e.code),
      [code],
    );
    assert.equal(goodConn.closed, false);
    good.record(STDIN, 1, Buffer.from('part2'));
    good.record(STDIN, 1);
    await good.waitFor(END_REQUEST, 1);
    assert.ok(good.stream(STDOUT, 1).toString().endsWith('part1-part2'));
  });
}

test('a peer that half-closes after its request still gets the whole response', async () => {
  const srv = await server({}, (req) => void echoHandler(req));
  const peer = await RawPeer.connect(srv.address);
  peer.socket.end(requestRecords(1, [['N', 'v']], 'body', true));
  await peer.until((p) => p.ended, 'server ends its side too');
  assert.ok(peer.stream(STDOUT, 1).toString().endsWith('N=v\nbody'));
  assert.equal(endOf(peer, 1).appStatus, 7);
});

test('connection loss aborts the requests in flight', async () => {
  const got = deferred<FcgiServerRequest>();
  const srv = await server({}, got.resolve);
  const peer = await RawPeer.connect(srv.address);
  peer.send(requestRecords(1, [], null, true));
  const req: FcgiServerRequest | undefined = await within(got.promise, 5000, 'request');
  const aborted = once(req, 'abort');
  peer.socket.destroy();
  await within(aborted, 5000, "'abort'");
  assert.equal(req.aborted, true);
  // Writing to an aborted request must not throw or emit 'error'.
  req.stdout.write('x', () => {});
  req.end();
});

test('maxConns: createFastCgiServer closes connections beyond the limit at once', async () => {
  const srv = await server({ maxConns: 1 }, (req) => void echoHandler(req));
  assert.equal(srv.server.maxConnections, 1);
  const first = await RawPeer.connect(srv.address);
  await srv.nextConnection();
  const second = await RawPeer.connect(srv.address);
  await second.until((p) => p.closed, 'the second connection is closed');
  first.send(requestRecords(1, [['N', 'v']], 'ok', true));
  await first.waitFor(END_REQUEST, 1);
  assert.ok(first.stream(STDOUT, 1).toString().endsWith('N=v\nok'));
});
