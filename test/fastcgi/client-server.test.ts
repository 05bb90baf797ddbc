// Our client against our server over real sockets: multiplexing, keep-conn,
// abort, GET_VALUES, refusals and the stall guard.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { ProtocolStatus } from '../../src/fastcgi/constants.js';
import type { FcgiServerRequest } from '../../src/fastcgi/contract.js';
import type { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import { collect, connectClient, startServer, type TestServer } from './harness.js';
import { deferred, readAll, within } from '../helpers/wait.js';

const servers: TestServer[] = [];
const clients: FastCgiClientConnection[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) await s.close();
});
async function setup(
  options: Parameters<typeof startServer>[0],
  onRequest: (req: FcgiServerRequest) => void,
): Promise<{ srv: TestServer; client: FastCgiClientConnection }> {
  const srv = await startServer(options, onRequest);
  servers.push(srv);
  const client = await connectClient(srv.address);
  clients.push(client);
  return { srv, client };
}

/** Answers "<ID param>:" then the body it read, after a delay that varies per request so answers interleave. */
async function echo(req: FcgiServerRequest): Promise<void> {
  const body = await readAll(req.stdin);
  const id = req.params.find(([n]) => n === 'ID')?.[1] ?? '?';
  await new Promise((r) => setTimeout(r, Number(id) % 5));
  req.stdout.write(`${id}:`);
  req.stdout.end(body);
  req.end(Number(id));
}

test('20 multiplexed requests on one connection, each with its own body', async () => {
  const { srv, client } = await setup({ mpxsConns: true }, (req) => void echo(req));
  const bodies = Array.from({ length: 20 }, (_, i) => randomBytes(i * 7919));
  const results = bodies.map((body, i) => {
    const req = client.request([['ID', String(i)]]);
    req.stdin.end(body);
    return collect(req);
  });
  const done = await Promise.all(results);
  done.forEach((res, i) => {
    assert.ok(res.stdout.equals(Buffer.concat([Buffer.from(`${i}:`), bodies[i]!])), `body of request ${i}`);
    assert.equal(res.end.appStatus, i);
  });
  assert.equal(srv.conns.length, 1);
});

test('keep-conn: requests in turn reuse one connection, which goes idle between them', async () => {
  const { srv, client } = await setup({}, (req) => void echo(req));
  for (let i = 0; i < 3; i++) {
    const req = client.request([['ID', String(i)]], { keepConn: true });
    req.stdin.end(`body${i}`);
    const res = await collect(req);
    assert.equal(res.stdout.toString(), `${i}:body${i}`);
    assert.equal(client.idle, true);
  }
  assert.equal(srv.conns.length, 1);
  assert.equal(srv.conns[0]!.closed, false);
});

test('without keep-conn the server closes the connection after the request, with no error', async () => {
  const { srv, client } = await setup({}, (req) => void echo(req));
  const closed = once(client, 'close');
  const req = client.request([['ID', '1']], { keepConn: false });
  req.stdin.end('x');
  const res = await collect(req);
  assert.equal(res.stdout.toString(), '1:x');
  await within(closed, 5000, 'client close');
  if (!srv.conns[0]!.closed) await within(once(srv.conns[0]!, 'close'), 5000, 'server close');
});

test('abort(): the server request sees abort and the client gets END_REQUEST', async () => {
  const got = deferred<FcgiServerRequest>();
  const { client } = await setup({}, got.resolve);
  const req = client.request([]);
  const serverReq = await within(got.promise, 5000, 'server request');
  const aborted = once(serverReq, 'abort');
  const done = collect(req);
  req.abort();
  await within(aborted, 5000, 'server abort');
  const res = await done;
  assert.deepEqual(res.end, { appStatus: 0, protocolStatus: ProtocolStatus.REQUEST_COMPLETE });
  assert.equal(serverReq.aborted, true);
  assert.equal(client.idle, true, 'an aborted request frees its id and the connection');
});

test('getValues() against our server', async () => {
  const { client } = await setup({ maxConns: 5, maxReqs: 7, mpxsConns: true }, () => {});
  const values = await within(client.getValues(['FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS']), 5000, 'values');
  assert.deepEqual(
    Object.fromEntries(values),
    { FCGI_MAX_CONNS: '5', FCGI_MAX_REQS: '7', FCGI_MPXS_CONNS: '1' },
  );
});

test('an unaccepted role ends with UNKNOWN_ROLE; a second request on a non-multiplexing server with CANT_MPX_CONN', async () => {
  const held = deferred<FcgiServerRequest>();
  const { client } = await setup({ mpxsConns: false }, held.resolve);
  const role = await collect(client.request([], { role: 'AUTHORIZER' }));
  assert.equal(role.end.protocolStatus, ProtocolStatus.UNKNOWN_ROLE);
  const first = client.request([]);
  const firstDone = collect(first);
  const serverReq = await within(held.promise, 5000, 'first request');
  const second = await collect(client.request([]));
  assert.equal(second.end.protocolStatus, ProtocolStatus.CANT_MPX_CONN);
  serverReq.stdout.end('first');
  serverReq.end();
  assert.equal((await firstDone).stdout.toString(), 'first');
});

test('a request whose stdin is never read is aborted (OVERLOADED) after the stall timeout so others go on', async () => {
  const got = new Map<string, FcgiServerRequest>();
  const both = deferred<void>();
  const { client } = await setup({ stallTimeoutMs: 300, highWaterMark: 16 * 1024 }, (req) => {
    got.set(req.params[0]![1], req);
    if (req.params[0]![1] === 'other') void echo(req);
    if (got.size === 2) both.resolve();
  });
  // "other" begins first and its body is not complete yet ...
  const other = client.request([['ID', 'other']]);
  other.stdin.write('start-');
  const otherDone = collect(other);
  // ... then "stuck" sends far more stdin than the buffers hold, and nobody reads it.
  const stuck = client.request([['ID', 'stuck']]);
  const stuckDone = collect(stuck);
  await within(both.promise, 5000, 'both requests');
  const big = Buffer.alloc(4 * 1024 * 1024, 1);
  stuck.stdin.write(big);
  // The rest of "other"'s body queues behind "stuck"'s bytes on the socket.
  other.stdin.end('end');
  const stuckRes = await stuckDone;
  assert.equal(stuckRes.end.protocolStatus, ProtocolStatus.OVERLOADED);
  assert.equal(got.get('stuck')!.aborted, true);
  const otherRes = await otherDone;
  assert.equal(otherRes.stdout.toString(), 'other:start-end');
});
