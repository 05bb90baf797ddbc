// Large bodies both ways with backpressure: the bytes in flight (produced but
// not yet consumed) stay bounded while the consumer is slow, and every byte
// arrives intact. A unix socket keeps the kernel's share of the buffering small.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { FcgiServerRequest } from '../../src/fastcgi/contract.js';
import type { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import { collect, connectClient, startServer, type TestServer } from './harness.js';
import { deferred, within } from '../helpers/wait.js';

const TOTAL = 6 * 1024 * 1024;
/** Far below TOTAL: without backpressure a fast producer runs megabytes ahead of a slow consumer. */
const MAX_IN_FLIGHT = 1536 * 1024;

const servers: TestServer[] = [];
const clients: FastCgiClientConnection[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) await s.close();
});

/** Deterministic bytes, so both ends can hash them. */
function patternChunk(offset: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = ((offset + i) * 31 + ((offset + i) >> 16)) & 0xff;
  return b;
}

function expectedHash(): string {
  const h = createHash('sha256');
  for (let off = 0; off < TOTAL; off += 65536) h.update(patternChunk(off, Math.min(65536, TOTAL - off)));
  return h.digest('hex');
}

/** Writes TOTAL bytes honouring write()'s return value; reports each chunk handed over. */
async function produce(w: Writable, onProduced: (n: number) => void): Promise<{ sawBackpressure: boolean }> {
  let sawBackpressure = false;
  for (let off = 0; off < TOTAL; off += 65536) {
    const chunk = patternChunk(off, Math.min(65536, TOTAL - off));
    onProduced(chunk.length);
    if (!w.write(chunk)) {
      sawBackpressure = true;
      await once(w, 'drain');
    }
  }
  w.end();
  return { sawBackpressure };
}

/** Reads slowly (a timer millisecond per 64 KiB) and checks the in-flight bound at every chunk. */
async function consumeSlowly(r: Readable, inFlight: (consumed: number) => number): Promise<{ hash: string; bytes: number; maxInFlight: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  let maxInFlight = 0;
  for await (const c of r) {
    const chunk = c as Buffer;
    // Sampled before counting this chunk: a read hands over everything
    // buffered at once, and that is exactly what must stay small.
    maxInFlight = Math.max(maxInFlight, inFlight(bytes));
    bytes += chunk.length;
    h.update(chunk);
    // About 64 MB/s however the bytes come: slower than a loopback producer.
    await new Promise((res) => setTimeout(res, Math.ceil(chunk.length / 65536)));
  }
  return { hash: h.digest('hex'), bytes, maxInFlight };
}

async function setup(onRequest: (req: FcgiServerRequest) => void): Promise<FastCgiClientConnection> {
  const srv = await startServer({}, onRequest, { unix: true });
  servers.push(srv);
  const client = await connectClient(srv.address);
  clients.push(client);
  return client;
}

test(`client → server: ${TOTAL} bytes of stdin to a slow reader stay bounded in flight`, async () => {
  let produced = 0;
  const result = deferred<{ hash: string; bytes: number; maxInFlight: number }>();
  const client = await setup((req) => {
    void consumeSlowly(req.stdin, (consumed) => produced - consumed).then((r) => {
      result.resolve(r);
      req.stdout.end('done');
      req.end();
    });
  });
  const req = client.request([]);
  const done = collect(req, 60000);
  const { sawBackpressure } = await within(produce(req.stdin, (n) => (produced += n)), 60000, 'produce');
  const r = await within(result.promise, 60000, 'consume');
  assert.equal((await done).stdout.toString(), 'done');
  assert.equal(r.bytes, TOTAL);
  assert.equal(r.hash, expectedHash());
  assert.ok(sawBackpressure, 'the client stdin reported a full pipe');
  assert.ok(r.maxInFlight <= MAX_IN_FLIGHT, `in flight peaked at ${r.maxInFlight} bytes`);
});

test(`server → client: ${TOTAL} bytes of stdout to a slow reader stay bounded in flight`, async () => {
  let produced = 0;
  const serverSaw = deferred<boolean>();
  const client = await setup((req) => {
    void produce(req.stdout, (n) => (produced += n)).then(({ sawBackpressure }) => {
      serverSaw.resolve(sawBackpressure);
      req.end();
    });
  });
  const req = client.request([]);
  req.stdin.end();
  const ended = once(req, 'end');
  const r = await within(consumeSlowly(req.stdout, (consumed) => produced - consumed), 60000, 'consume');
  await within(ended, 5000, "'end'");
  assert.equal(r.bytes, TOTAL);
  assert.equal(r.hash, expectedHash());
  assert.equal(await within(serverSaw.promise, 5000, 'server producer'), true, 'the server stdout reported a congested socket');
  assert.ok(r.maxInFlight <= MAX_IN_FLIGHT, `in flight peaked at ${r.maxInFlight} bytes`);
});

test(`echo: ${TOTAL} bytes through the server and back, piped with backpressure`, async () => {
  const client = await setup((req) => {
    req.stdin.pipe(req.stdout);
    req.stdout.on('finish', () => req.end());
  });
  const req = client.request([]);
  let produced = 0;
  const producing = produce(req.stdin, (n) => (produced += n));
  const r = await within(consumeSlowly(req.stdout, (consumed) => produced - consumed), 60000, 'consume');
  await within(producing, 5000, 'client producer');
  assert.equal(r.bytes, TOTAL);
  assert.equal(r.hash, expectedHash());
  // Two pipes' worth of buffers now sit between producer and consumer.
  assert.ok(r.maxInFlight <= 2 * MAX_IN_FLIGHT, `in flight peaked at ${r.maxInFlight} bytes`);
});
