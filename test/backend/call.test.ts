/**
 * Backend.call(): the response delivered to a ResponseSink, against the
 * real fixture apps. Pins the sink's order (head, data, end|error), that no
 * callback runs inside call(), that the FastCGI connection is back in the
 * pool when end() runs, abort (silence afterwards), backpressure through
 * data() → false / resume(), errors before the head, and the safe retry.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BackendError, type BackendCall, type BackendProtocol, type BackendRequest, type BackendResponseHead } from '../../src/backend/contract.js';
import type { GatehouseBackend } from '../../src/backend/create-backend.js';
import { tmpDir } from '../helpers/peers.js';
import { appProgram, Cleanup, recordingLog } from './support.js';
import { readAll, waitUntil } from '../helpers/wait.js';

const cleanup = new Cleanup();
after(() => cleanup.run());

function request(query: string, body?: string): BackendRequest {
  const bytes = body !== undefined ? Buffer.from(body) : null;
  return {
    params: [
      ['REQUEST_METHOD', bytes ? 'POST' : 'GET'],
      ['QUERY_STRING', query],
      ['REQUEST_URI', `/test?${query}`],
      ...(bytes ? ([['CONTENT_LENGTH', String(bytes.length)]] as Array<[string, string]>) : []),
    ],
    body: bytes ? Readable.from([bytes]) : null,
    contentLength: bytes?.length ?? 0,
  };
}

interface Recorded {
  call: BackendCall;
  /** 'head' | 'data' | 'end' | 'error' | 'stderr', in order. */
  events: string[];
  head: BackendResponseHead | undefined;
  chunks: Buffer[];
  stderr: Buffer[];
  error: unknown;
  /** Callbacks that ran before call() returned (must stay empty). */
  insideCall: string[];
  /** Settles at end() or error(). */
  done: Promise<void>;
  header(name: string): string | undefined;
  body(): Buffer;
}

interface Hooks {
  /** data()'s answer (default true). */
  onData?(chunk: Buffer, r: Recorded): boolean;
  onEnd?(r: Recorded): void;
}

/** Calls `backend` and records everything its sink hears. */
function record(backend: GatehouseBackend, req: BackendRequest, hooks: Hooks = {}): Recorded {
  let inCall = true;
  let settle!: () => void;
  const r: Recorded = {
    call: undefined as unknown as BackendCall,
    events: [],
    head: undefined,
    chunks: [],
    stderr: [],
    error: undefined,
    insideCall: [],
    done: new Promise<void>((resolve) => (settle = resolve)),
    header: (name) => r.head?.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1],
    body: () => Buffer.concat(r.chunks),
  };
  const note = (what: string): void => {
    r.events.push(what);
    if (inCall) r.insideCall.push(what);
  };
  r.call = backend.call(req, {
    head(head) {
      note('head');
      r.head = head;
    },
    data(chunk) {
      note('data');
      r.chunks.push(Buffer.from(chunk));
      return hooks.onData?.(chunk, r) ?? true;
    },
    end() {
      note('end');
      hooks.onEnd?.(r);
      settle();
    },
    error(err) {
      note('error');
      r.error = err;
      settle();
    },
    stderr(chunk) {
      note('stderr');
      r.stderr.push(chunk);
    },
  });
  inCall = false;
  return r;
}

/** `p`, or a rejection naming `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets pending I/O and timers of a few milliseconds run (a window for callbacks that must not come). */
function turns(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The sink heard head, any number of data, then end: nothing else, nothing twice. */
function assertCompleteOrder(r: Recorded): void {
  assert.equal(r.error, undefined, `no error (${String(r.error)})`);
  const shape = r.events.filter((e) => e !== 'stderr').join(' ').replace(/(data ?)+/, 'data* ').replace(/ +/g, ' ');
  assert.match(shape, /^head (data\* )?end$/, `order: ${r.events.join(',')}`);
  assert.deepEqual(r.insideCall, []);
}

for (const protocol of ['fastcgi', 'scgi'] as BackendProtocol[]) {
  test(`${protocol}: call() delivers head, then every byte of a large body, then end; never inside call()`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log: recordingLog().log });
    const r = record(backend, request('big=3000000&status=201+Made'));
    assert.equal(backend.inFlight, 1);
    await within(r.done, 10000, 'the response');
    assertCompleteOrder(r);
    assert.equal(r.head?.status, 201);
    assert.equal(r.head?.statusText, 'Made');
    assert.ok(!r.head?.headers.some(([n]) => n.toLowerCase() === 'status'), 'Status removed');
    const body = r.body();
    assert.equal(body.length, 3000000);
    assert.ok(body.every((b) => b === 0x78), 'all x');
    assert.equal(backend.inFlight, 0);
    await backend.close();
  });

  test(`${protocol}: abort() mid-body silences the sink, and the next request works`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log: recordingLog().log });
    const r = record(backend, request('big=3000000'), {
      onData(_chunk, rec) {
        if (rec.chunks.length === 1) rec.call.abort();
        return true;
      },
    });
    await waitUntil(() => r.chunks.length > 0, 10000, 'the first body chunk');
    assert.equal(backend.inFlight, 0, 'an aborted call is no longer in flight');
    const next = record(backend, request(''));
    await within(next.done, 10000, 'the next response');
    assertCompleteOrder(next);
    assert.equal(next.head?.status, 200);
    if (protocol === 'fastcgi') {
      assert.notEqual(next.header('X-Connection'), '1', 'the aborted connection is not reused');
      // The aborted connection is dropped once the application ends the request (or its grace runs out).
      await waitUntil(() => backend.fastcgiPool!.openConnections === 1, 8000, 'the aborted connection to close');
    }
    assert.deepEqual(r.events.filter((e) => e !== 'data'), ['head'], 'nothing after abort but the data already delivered');
    assert.equal(r.events.filter((e) => e === 'data').length, 1);
    r.call.abort(); // idempotent
    await backend.close();
  });

  test(`${protocol}: data() returning false holds the body until resume()`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log: recordingLog().log });
    let paused = false;
    let whilePaused = 0;
    const r = record(backend, request('big=1000000'), {
      onData(_chunk, rec) {
        if (paused) whilePaused++;
        paused = true;
        // A window in which nothing may arrive, then let the next chunk come.
        setTimeout(() => {
          paused = false;
          rec.call.resume();
        }, 15);
        return false;
      },
    });
    await within(r.done, 20000, 'the held response');
    assertCompleteOrder(r);
    assert.equal(whilePaused, 0, 'data() while paused');
    assert.equal(r.body().length, 1000000);
    assert.ok(r.chunks.length > 1, 'more than one chunk, so the pause was tested');
    await backend.close();
  });

  test(`${protocol}: client mode against a path nobody listens on → ERR_BACKEND_UNAVAILABLE, delivered after call() returned`, async () => {
    const path = join(tmpDir('gh-call-'), 'nobody.sock');
    const backend = cleanup.backend({ protocol, address: { kind: 'unix', path }, log: recordingLog().log });
    const r = record(backend, request(''));
    assert.deepEqual(r.events, [], 'nothing inside call()');
    await within(r.done, 5000, 'the error');
    assert.deepEqual(r.events, ['error']);
    assert.ok(r.error instanceof BackendError);
    assert.equal(r.error.code, 'ERR_BACKEND_UNAVAILABLE');
    assert.equal(backend.inFlight, 0);
    await backend.close();
  });

  test(`${protocol}: call() on a closing backend → ERR_BACKEND_UNAVAILABLE after call() returned; abort() first silences it`, async () => {
    const backend = cleanup.backend({ protocol, program: appProgram(protocol), log: recordingLog().log });
    const closed = backend.close();
    const r = record(backend, request(''));
    assert.deepEqual(r.events, []);
    const silenced = record(backend, request(''));
    silenced.call.abort();
    await within(r.done, 5000, 'the error');
    assert.ok(r.error instanceof BackendError);
    assert.equal(r.error.code, 'ERR_BACKEND_UNAVAILABLE');
    await turns(20);
    assert.deepEqual(silenced.events, [], 'aborted before the error was delivered');
    await closed;
  });
}

test('fastcgi: the connection is back in the pool, idle, when sink.end() runs; a request made there reuses it', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), log: recordingLog().log });
  const pool = backend.fastcgiPool!;
  let atEnd: { open: number; idle: number } | undefined;
  let second: Recorded | undefined;
  const first = record(backend, request('big=200000'), {
    onEnd() {
      atEnd = { open: pool.openConnections, idle: pool.idleConnections };
      second = record(backend, request(''));
    },
  });
  await within(first.done, 10000, 'the first response');
  assertCompleteOrder(first);
  assert.deepEqual(atEnd, { open: 1, idle: 1 });
  await within(second!.done, 10000, 'the second response');
  assertCompleteOrder(second!);
  assert.equal(second!.header('X-Connection'), '1');
  assert.equal(second!.header('X-On-Connection'), '2');
  await backend.close();
});

test('fastcgi: call() with an idle pooled connection takes it before returning (no await on the fast path)', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), log: recordingLog().log });
  const pool = backend.fastcgiPool!;
  await within(record(backend, request('')).done, 10000, 'the first response');
  assert.equal(pool.idleConnections, 1);
  const r = record(backend, request(''));
  assert.equal(pool.idleConnections, 0, 'taken synchronously');
  assert.equal(pool.openConnections, 1);
  await within(r.done, 10000, 'the second response');
  assertCompleteOrder(r);
  assert.equal(r.header('X-On-Connection'), '2');
  await backend.close();
});

test('fastcgi: STDERR written before the head reaches sink.stderr before head()', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), log: recordingLog().log });
  const r = record(backend, request('stderr=early+words'));
  await within(r.done, 10000, 'the response');
  assertCompleteOrder(r);
  assert.equal(Buffer.concat(r.stderr).toString(), 'early words');
  assert.ok(r.events.indexOf('stderr') < r.events.indexOf('head'), `order: ${r.events.join(',')}`);
  await backend.close();
});

test('fastcgi: the safe retry works through call() (a kept connection the server closed → a fresh one)', async () => {
  const { log, text } = recordingLog();
  const backend = cleanup.closingOnReuse(log);
  const first = record(backend, request(''));
  await within(first.done, 10000, 'the first response');
  assert.equal(first.header('X-Connection'), '1');
  const second = record(backend, request(''));
  await within(second.done, 10000, 'the retried response');
  assertCompleteOrder(second);
  assert.equal(second.head?.status, 200);
  assert.equal(second.header('X-Connection'), '2', 'served on a new connection');
  assert.match(text(), /reused connection closed before answering.*retrying/);
  // Its connection's second request, now with a body that was already taken: not sent twice.
  const third = record(backend, request('', 'only once'));
  await within(third.done, 10000, 'the post');
  assert.deepEqual(third.events, ['error']);
  assert.ok(third.error instanceof BackendError);
  assert.equal(third.error.code, 'ERR_BACKEND_CLOSED_EARLY');
  assert.equal(text().match(/retrying/g)?.length, 1, 'one retry in all');
  await backend.close();
});

test('fastcgi: dispatch() (on call()): destroying the body early drops the rest, and the connection is reused', async () => {
  const backend = cleanup.backend({ protocol: 'fastcgi', program: appProgram('fastcgi'), log: recordingLog().log });
  const pool = backend.fastcgiPool!;
  const resp = await within(backend.dispatch(request('big=3000000')), 10000, 'the head');
  await within(new Promise((resolve) => resp.body.once('data', resolve)), 10000, 'the first chunk');
  resp.body.destroy();
  // No ABORT_REQUEST: the request runs to END_REQUEST and the connection goes back to the pool.
  await waitUntil(() => pool.idleConnections === 1, 8000, 'the connection to go idle');
  const again = await within(backend.dispatch(request('')), 10000, 'the next head');
  assert.equal(again.headers.find(([n]) => n === 'X-On-Connection')?.[1], '2');
  assert.ok((await within(readAll(again.body), 10000, 'the next body')).length > 0);
  assert.equal(backend.inFlight, 0);
  await backend.close();
});
