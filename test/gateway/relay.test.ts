/**
 * The gateway's callback path (forward.ts's Forwarding as the ResponseSink
 * of Backend.call()) where a mistake would go unnoticed by a plain GET:
 * clients that leave mid-response or while queued for a slot, bodies the
 * client must not see (HEAD, 204), Content-Length lies on a kept-alive
 * connection, backpressure through data() → false → resume(), and calls
 * that fail or never answer. Through the real src/backend in front of small
 * FastCGI applications, and through fake backends that implement call()
 * themselves. Every wait is bounded and event-driven.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import type { Backend, BackendCall, BackendRequest, ResponseSink } from '../../src/backend/contract.js';
import { BackendError } from '../../src/backend/contract.js';
import { BackendSlots, type SlotWaiter } from '../../src/gateway/backend-slots.js';
import { httpRequest } from '../helpers/peers.js';
import { Harness, once, param, rawHttp, type Running } from './support.js';

const TIMEOUT_MS = 1500;

interface Status {
  'client aborts': number;
  'broken responses': number;
  backend: Record<string, number>;
}

async function statusOf(gw: Running): Promise<Status> {
  return JSON.parse((await httpRequest(`${gw.url}/gatehouse-status?json`)).body.toString()) as Status;
}

describe('gateway relay through the real backend', () => {
  const h = new Harness();
  const events = new EventEmitter();
  let streaming: Running;
  let heads: Running;
  let liars: Running;
  let headsApp: { connections: () => number };
  const BIG = 256 * 1024;

  before(async () => {
    // /stream: a head and a first chunk, then nothing until the request is aborted.
    const streamApp = await h.fastcgiApp((req) => {
      if (param(req.params, 'REQUEST_URI') === '/stream') {
        req.stdout.write('Content-Type: text/plain\r\n\r\n' + 'x'.repeat(1000));
        events.emit('streaming');
        req.once('abort', () => {
          events.emit('aborted');
          req.end();
        });
        return;
      }
      req.stdout.write('Content-Type: text/plain\r\n\r\nnext\n');
      req.end();
    });
    const streamBackend = h.backend({ protocol: 'fastcgi', address: { kind: 'unix', path: streamApp.path } });
    streaming = await h.gateway(streamBackend, { maxConns: 1, backendTimeout: 5000, statusPath: '/gatehouse-status' });

    // Answers every request with a body, HEAD included; /nocontent is a 204 with a stray body.
    const headApp = await h.fastcgiApp((req) => {
      if (param(req.params, 'REQUEST_URI') === '/nocontent') req.stdout.write('Status: 204 No Content\r\n\r\nstray bytes');
      else req.stdout.write(`Content-Type: application/octet-stream\r\nContent-Length: ${BIG}\r\n\r\n`);
      if (param(req.params, 'REQUEST_URI') !== '/nocontent') req.stdout.write(Buffer.alloc(BIG, 7));
      req.end();
    });
    headsApp = headApp;
    const headBackend = h.backend({ protocol: 'fastcgi', address: { kind: 'unix', path: headApp.path } });
    heads = await h.gateway(headBackend, { maxConns: 1, backendTimeout: TIMEOUT_MS, statusPath: '/gatehouse-status' });

    // Content-Length lies, the extra or the missing bytes in a later STDOUT record.
    const liarApp = await h.fastcgiApp((req) => {
      const uri = param(req.params, 'REQUEST_URI');
      if (uri === '/longer') {
        req.stdout.write('Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc');
        // The extra bytes come well before the end: they must be stopped on arrival, not at END_REQUEST.
        setTimeout(() => req.stdout.write('HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled'), 20);
        setTimeout(() => req.end(), 300);
      } else if (uri === '/shorter') {
        req.stdout.write('Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc');
        setTimeout(() => req.end(), 20);
      } else {
        req.stdout.write('Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nyes');
        req.end();
      }
    });
    const liarBackend = h.backend({ protocol: 'fastcgi', address: { kind: 'unix', path: liarApp.path } });
    liars = await h.gateway(liarBackend, { maxConns: 1, backendTimeout: TIMEOUT_MS, statusPath: '/gatehouse-status' });
  });
  after(() => h.closeAll());

  it('a client that leaves mid-response aborts the backend request and frees the only slot', async () => {
    const streamingNow = once(events, 'streaming');
    const aborted = once(events, 'aborted');
    const abortsBefore = (await statusOf(streaming))['client aborts'];
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${streaming.url}/stream`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.setTimeout(5000, () => reject(new Error('no response body within 5 s')));
    });
    await streamingNow;
    await aborted;
    // maxConns 1: this only gets through if the aborted request gave its slot back.
    const next = await httpRequest(`${streaming.url}/next`, { timeoutMs: 4000 });
    assert.equal(next.status, 200);
    assert.equal(next.body.toString(), 'next\n');
    const status = await statusOf(streaming);
    assert.ok(status['client aborts'] > abortsBefore, 'the abort is counted');
    assert.equal(status['broken responses'], 0, 'a client abort is not a broken response');
    assert.equal(status.backend['slots busy'], 0);
  });

  it('HEAD and 204 answered with a body: nothing reaches the client, the slot and the backend connection are reused', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const head = await httpRequest(`${heads.url}/file`, { method: 'HEAD', agent, timeoutMs: 4000 });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(BIG));
      assert.equal(head.body.length, 0);
      const empty = await httpRequest(`${heads.url}/nocontent`, { agent, timeoutMs: 4000 });
      assert.equal(empty.status, 204);
      assert.equal(empty.body.length, 0);
      // Same client connection: had the dropped bytes leaked, this response would be garbage.
      const get = await httpRequest(`${heads.url}/file`, { agent, timeoutMs: 4000 });
      assert.equal(get.status, 200);
      assert.equal(get.body.length, BIG);
      assert.ok(get.body.every((b) => b === 7));
    } finally {
      agent.destroy();
    }
    assert.equal(headsApp.connections(), 1, 'one FastCGI connection carried all three requests');
    const status = await statusOf(heads);
    assert.equal(status.backend['slots busy'], 0);
    assert.equal(status['broken responses'], 0);
  });

  for (const path of ['/longer', '/shorter']) {
    it(`cuts a kept-alive client connection when the body is ${path.slice(1)} than its Content-Length`, async () => {
      const brokenBefore = (await statusOf(liars))['broken responses'];
      // No "Connection: close": only the gateway can end this connection. rawHttp rejects if it hangs.
      const got = await rawHttp(liars.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, { timeoutMs: TIMEOUT_MS + 3000 });
      assert.doesNotMatch(got, /smuggled/, 'bytes past the Content-Length never reach the client');
      assert.ok((got.match(/HTTP\/1.1 /g) ?? []).length <= 1, got);
      const status = await statusOf(liars);
      assert.equal(status['broken responses'], brokenBefore + 1);
      assert.equal(status.backend['slots busy'], 0, 'the slot is free again');
      assert.match(liars.logs.join('\n'), new RegExp(`GET ${path}: response cut after \\d+ ms: .*Content-Length`));
      const ok = await httpRequest(`${liars.url}/fine`, { timeoutMs: 4000 });
      assert.equal(ok.body.toString(), 'yes');
    });
  }
});

/** A Backend with call() only (dispatch() must not be used), scripted per request by `onCall`. */
function callBackend(onCall: (req: BackendRequest, sink: ResponseSink, call: FakeCall) => void): Backend & { calls: FakeCall[] } {
  const calls: FakeCall[] = [];
  return {
    protocol: 'fastcgi',
    mode: 'client',
    calls,
    start: async () => {},
    dispatch: () => Promise.reject(new Error('the gateway must use call()')),
    call(req, sink) {
      const call = new FakeCall(req, sink);
      calls.push(call);
      onCall(req, sink, call);
      return call;
    },
    close: async () => {},
  };
}

class FakeCall extends EventEmitter implements BackendCall {
  aborts = 0;
  resumes = 0;
  constructor(
    readonly req: BackendRequest,
    readonly sink: ResponseSink,
  ) {
    super();
  }
  get path(): string | undefined {
    return param(this.req.params, 'REQUEST_URI');
  }
  abort(): void {
    this.aborts++;
    this.emit('abort');
  }
  resume(): void {
    this.resumes++;
    this.emit('resume');
  }
}

describe('gateway against a backend with call()', () => {
  const h = new Harness();
  after(() => h.closeAll());

  it('data() returning false pauses the body until resume(), and the body arrives whole', async () => {
    const CHUNK = 64 * 1024;
    const COUNT = 64; // 4 MiB: well past the socket buffers of a client that does not read
    let pauses = 0;
    const pausedNow = new EventEmitter();
    const expected = createHash('sha256');
    for (let i = 0; i < COUNT; i++) expected.update(Buffer.alloc(CHUNK, i));
    const backend = callBackend((_req, sink, call) => {
      setImmediate(() => {
        sink.head({ status: 200, statusText: 'OK', headers: [['Content-Type', 'application/octet-stream']] });
        let i = 0;
        let aborted = false;
        call.on('abort', () => (aborted = true));
        const pump = (): void => {
          while (i < COUNT && !aborted) {
            if (!sink.data(Buffer.alloc(CHUNK, i++))) {
              pauses++;
              pausedNow.emit('paused');
              call.once('resume', () => setImmediate(pump));
              return;
            }
          }
          if (!aborted) sink.end();
        };
        pump();
      });
    });
    const gw = await h.gateway(backend, { maxConns: 1, statusPath: '/gatehouse-status' });
    const paused = once(pausedNow, 'paused');
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.get(`${gw.url}/big`, { agent: false }, resolve);
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    });
    res.pause();
    await paused; // the gateway pushed back while nobody read
    const got = createHash('sha256');
    let length = 0;
    res.on('data', (d: Buffer) => {
      length += d.length;
      got.update(d);
    });
    res.resume();
    await once(res, 'end', 10_000);
    assert.equal(length, CHUNK * COUNT);
    assert.equal(got.digest('hex'), expected.digest('hex'));
    assert.ok(pauses >= 1);
    assert.ok(backend.calls[0]!.resumes >= pauses, `${backend.calls[0]!.resumes} resumes for ${pauses} pauses`);
    assert.equal(backend.calls[0]!.aborts, 0);
    const status = await statusOf(gw);
    assert.equal(status.backend['slots busy'], 0);
  });

  it('a queued request whose client leaves never reaches the backend, and the slot passes to the next', async () => {
    const called = new EventEmitter();
    const backend = callBackend((_req, _sink, call) => called.emit('call', call));
    const gw = await h.gateway(backend, { maxConns: 1, backendTimeout: 10_000, statusPath: '/gatehouse-status' });
    const first = once<FakeCall>(called, 'call');
    const a = httpRequest(`${gw.url}/a`, { timeoutMs: 8000 });
    const callA = await first;
    const queued = once<http.IncomingMessage>(gw.gateway.server, 'request');
    const b = http.get(`${gw.url}/b`, { agent: false });
    b.on('error', () => {});
    const serverSide = (await queued).socket;
    assert.equal((await statusOf(gw)).backend['requests waiting'], 1);
    // The gateway hears the close first (its listener was there before ours).
    const bGone = once(serverSide, 'close');
    b.destroy();
    await bGone;
    assert.equal((await statusOf(gw)).backend['requests waiting'], 0, 'the waiter left the queue');
    const nextCall = once<FakeCall>(called, 'call');
    const arrivedC = once(gw.gateway.server, 'request');
    const c = httpRequest(`${gw.url}/c`, { timeoutMs: 8000 });
    await arrivedC;
    // A's response lets C in; B never gets a call.
    finish(callA, 'a\n');
    assert.equal((await a).body.toString(), 'a\n');
    const callC = await nextCall;
    assert.equal(callC.path, '/c');
    finish(callC, 'c\n');
    assert.equal((await c).body.toString(), 'c\n');
    assert.deepEqual(backend.calls.map((x) => x.path), ['/a', '/c']);
    assert.equal((await statusOf(gw)).backend['slots busy'], 0);
  });

  it('504 and abort() when no head comes within backendTimeout; abort() when the client leaves first', async () => {
    const backend = callBackend(() => {});
    const gw = await h.gateway(backend, { backendTimeout: 200, maxConns: 1, statusPath: '/gatehouse-status' });
    const r = await httpRequest(`${gw.url}/slow`, { timeoutMs: 3000 });
    assert.equal(r.status, 504);
    assert.equal(backend.calls[0]!.aborts, 1);
    assert.match(gw.logs.join('\n'), /^504 GET \/slow after \d+ ms: gateway: no response head from the backend within 200 ms/m);

    const gw2 = await h.gateway(callBackend(() => {}), { backendTimeout: 10_000 });
    const calls = (gw2.backend as Backend & { calls: FakeCall[] }).calls;
    const req = http.get(`${gw2.url}/gone`, { agent: false });
    req.on('error', () => {});
    await once(gw2.gateway.server, 'request');
    const aborted = once(calls[0]!, 'abort');
    req.destroy();
    await aborted;
    assert.equal(calls[0]!.aborts, 1);
  });

  it('an error from call() — reported at once, or thrown — maps to 503/502 and frees the slot every time', async () => {
    let mode = 0;
    const backend = callBackend((_req, sink) => {
      if (mode++ % 2 === 0) sink.error(new BackendError('ERR_BACKEND_UNAVAILABLE', 'backend: nobody home'));
      else throw new Error('a bug in the backend');
    });
    const gw = await h.gateway(backend, { maxConns: 1, backendTimeout: 500, retryAfter: 7 });
    for (let i = 0; i < 4; i++) {
      const r = await httpRequest(`${gw.url}/x${i}`, { timeoutMs: 3000 });
      if (i % 2 === 0) {
        assert.equal(r.status, 503);
        assert.equal(r.headers['retry-after'], '7');
      } else {
        assert.equal(r.status, 502);
      }
    }
    assert.match(gw.logs.join('\n'), /^503 GET \/x0 after \d+ ms: backend: nobody home/m);
    assert.match(gw.logs.join('\n'), /^502 GET \/x1 after \d+ ms: a bug in the backend/m);
  });

  it('a body that breaks off after the head cuts the connection and counts a broken response', async () => {
    const backend = callBackend((_req, sink) => {
      setImmediate(() => {
        sink.head({ status: 200, statusText: 'OK', headers: [['Content-Length', '10']] });
        sink.data(Buffer.from('01234'));
        setImmediate(() => sink.error(new BackendError('ERR_BACKEND_CLOSED_EARLY', 'backend: gone mid-body')));
      });
    });
    const gw = await h.gateway(backend, { statusPath: '/gatehouse-status' });
    const got = await rawHttp(gw.port, 'GET /x HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 3000 });
    assert.match(got, /^HTTP\/1.1 200 OK/);
    assert.match(got, /01234$/);
    assert.equal((await statusOf(gw))['broken responses'], 1);
    assert.match(gw.logs.join('\n'), /^GET \/x: response cut after \d+ ms: backend: gone mid-body/m);
  });
});

/** Answers a FakeCall's request in one go. */
function finish(call: FakeCall, body: string): void {
  call.sink.head({ status: 200, statusText: 'OK', headers: [['Content-Type', 'text/plain']] });
  call.sink.data(Buffer.from(body));
  call.sink.end();
}

describe('BackendSlots', () => {
  it('grants at once while free, then first come first served; a cancelled waiter is skipped', () => {
    const slots = new BackendSlots(2);
    const order: string[] = [];
    const waiter = (name: string): SlotWaiter => ({ slotGranted: () => order.push(name) });
    assert.equal(slots.acquire(waiter('a')), true);
    assert.equal(slots.acquire(waiter('b')), true);
    const c = waiter('c');
    const d = waiter('d');
    assert.equal(slots.acquire(c), false);
    assert.equal(slots.acquire(d), false);
    assert.equal(slots.acquire(waiter('e')), false);
    assert.deepEqual([slots.busy, slots.waiting], [2, 3]);
    slots.cancel(d);
    slots.cancel(d); // twice: a no-op
    assert.equal(slots.waiting, 2);
    slots.release();
    slots.release();
    assert.deepEqual(order, ['c', 'e']);
    assert.deepEqual([slots.busy, slots.waiting], [2, 0]);
    slots.release();
    slots.release();
    assert.equal(slots.busy, 0);
    // Free again, and nobody queued: granted at once.
    assert.equal(slots.acquire(waiter('f')), true);
  });

  it('a waiter that gives its slot back from inside slotGranted() does not nest the hand-over', () => {
    const slots = new BackendSlots(1);
    assert.equal(slots.acquire({ slotGranted: () => {} }), true);
    let depth = 0;
    let maxDepth = 0;
    let granted = 0;
    // Each waiter fails at once (as a request whose backend refuses it synchronously) and releases.
    const failing: SlotWaiter = {
      slotGranted() {
        granted++;
        depth++;
        maxDepth = Math.max(maxDepth, depth);
        slots.release();
        depth--;
      },
    };
    for (let i = 0; i < 10_000; i++) assert.equal(slots.acquire(failing), false);
    slots.release();
    assert.equal(granted, 10_000);
    assert.equal(maxDepth, 1);
    assert.deepEqual([slots.busy, slots.waiting], [0, 0]);
  });
});
