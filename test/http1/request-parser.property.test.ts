// Property tests for the HTTP/1.1 request parser: chunking never changes the
// events (nor, for bad input, the error), pausing never changes them either,
// and hostile bytes only ever produce an Http1ParseError with bounded memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RequestParser } from '../../src/http1/request-parser.js';
import { Http1ParseError } from '../../src/http1/errors.js';
import { chunk, head, one, run, type Ev } from './harness.js';

const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SPECIAL = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'expect', 'upgrade']);
const VALUE_CHARS = [...Array(256).keys()].filter((c) => c === 9 || (c >= 0x20 && c !== 0x7f)).map((c) => String.fromCharCode(c));
const TARGET_CHARS = [...Array(256).keys()].filter((c) => c > 0x20 && c !== 0x7f).map((c) => String.fromCharCode(c));

const token = (max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: max });
const fieldName = token(20).filter((n) => !SPECIAL.has(n.toLowerCase()));
/** A value as the parser reports it: no OWS at either end. */
const fieldValue = fc.string({ unit: fc.constantFrom(...VALUE_CHARS), maxLength: 40 }).map((v) => v.replace(/^[ \t]+|[ \t]+$/g, ''));
const ows = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 2 });
const field = fc.tuple(fieldName, fieldValue, ows, ows);
const bodyBytes = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 200 });

type Body = { kind: 'none' } | { kind: 'cl'; data: string } | { kind: 'chunked'; pieces: string[]; exts: string[]; trailers: Array<[string, string]> };
const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  bodyBytes.map((data) => ({ kind: 'cl' as const, data })),
  fc.record({
    kind: fc.constant('chunked' as const),
    pieces: fc.array(bodyBytes.filter((s) => s.length > 0), { maxLength: 4 }),
    exts: fc.array(fc.constantFrom('', ';a', ';a=b', ' ; q="x;y"', ';x;y=1'), { minLength: 5, maxLength: 5 }),
    trailers: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 2 }),
  }),
);

interface Req {
  method: string;
  target: string;
  fields: Array<[string, string, string, string]>;
  body: Body;
  close: boolean;
}
const reqArb: fc.Arbitrary<Req> = fc.record({
  method: token(8).filter((m) => m !== 'CONNECT'),
  target: fc.string({ unit: fc.constantFrom(...TARGET_CHARS), maxLength: 30 }).map((t) => `/${t}`),
  fields: fc.array(field, { maxLength: 8 }),
  body: bodyArb,
  close: fc.boolean(),
});

/** The wire bytes of a request and the events the parser must give for it (a model, not the parser). */
function build(r: Req): { wire: string; events: Ev[] } {
  let wire = `${r.method} ${r.target} HTTP/1.1\r\nHost: h\r\n`;
  const raw = ['Host', 'h'];
  for (const [n, v, o1, o2] of r.fields) {
    wire += `${n}:${o1}${v}${o2}\r\n`;
    raw.push(n, v);
  }
  if (r.close) {
    wire += 'Connection: close\r\n';
    raw.push('Connection', 'close');
  }
  const events: Ev[] = [];
  const b = r.body;
  let contentLength: number | undefined;
  let body = '';
  let tail = '';
  let trailers: string[] | null = null;
  if (b.kind === 'cl') {
    wire += `Content-Length: ${b.data.length}\r\n`;
    raw.push('Content-Length', String(b.data.length));
    contentLength = b.data.length;
    body = b.data;
    tail = b.data;
  } else if (b.kind === 'chunked') {
    wire += 'Transfer-Encoding: chunked\r\n';
    raw.push('Transfer-Encoding', 'chunked');
    b.pieces.forEach((p, i) => {
      tail += `${p.length.toString(16)}${b.exts[i]}\r\n${p}\r\n`;
      body += p;
    });
    tail += `0${b.exts[4]}\r\n`;
    for (const [n, v] of b.trailers) tail += `${n}: ${v}\r\n`;
    tail += '\r\n';
    if (b.trailers.length) trailers = b.trailers.flat();
  }
  wire += `\r\n${tail}`;
  events.push({ head: head({ method: r.method, target: r.target, rawHeaders: raw, contentLength, chunked: b.kind === 'chunked', keepAlive: !r.close }) });
  if (body) events.push({ body });
  if (trailers) events.push({ trailers });
  events.push('end');
  return { wire, events };
}

const streamArb = fc.array(reqArb, { minLength: 1, maxLength: 4 }).map((reqs) => {
  const built = reqs.map(build);
  return { wire: Buffer.from(built.map((b) => b.wire).join(''), 'latin1'), events: built.flatMap((b) => b.events) };
});
const cutsArb = fc.array(fc.nat(), { maxLength: 12 });

test('a valid pipelined stream gives the modelled events, in one chunk and under any chunking', () => {
  fc.assert(
    fc.property(streamArb, cutsArb, ({ wire, events }, cuts) => {
      assert.deepEqual(run(one(wire)), { events, error: null });
      assert.deepEqual(run(chunk(wire, cuts)), { events, error: null });
    }),
    { numRuns: 300 },
  );
});

test('pausing in callbacks and resuming later never changes the events', () => {
  fc.assert(
    fc.property(streamArb, cutsArb, fc.array(fc.boolean(), { minLength: 1, maxLength: 20 }), ({ wire, events }, cuts, pauses) => {
      const got: Ev[] = [];
      let k = 0;
      const maybePause = (): void => {
        if (pauses[k++ % pauses.length]) p.pause();
      };
      const p: RequestParser = new RequestParser({
        onHead: (h) => {
          got.push({ head: h });
          maybePause();
        },
        onBody: (c) => {
          const last = got[got.length - 1];
          if (typeof last === 'object' && 'body' in last) last.body += c.toString('latin1');
          else got.push({ body: c.toString('latin1') });
          maybePause();
        },
        onTrailers: (t) => got.push({ trailers: t }),
        onEnd: () => {
          got.push('end');
          maybePause();
        },
      });
      for (const c of chunk(wire, cuts)) {
        p.push(c);
        // Sometimes the server only gets round to resuming after the next read.
        if (pauses[k % pauses.length]) while (p.paused) p.resume();
      }
      while (p.paused) p.resume();
      assert.deepEqual(got, events);
      assert.equal(p.idle, true);
    }),
    { numRuns: 200 },
  );
});

/** Byte edits: overwrite, insert or delete at a position (taken modulo the length). */
const editArb = fc.array(fc.tuple(fc.constantFrom('set', 'insert', 'delete'), fc.nat(), fc.constantFrom(0, 9, 10, 13, 32, 44, 58, 59, 0x7f, 0x80, 0xff, 48, 65, 102)), {
  minLength: 1,
  maxLength: 4,
});

function mutate(wire: Buffer, edits: Array<[string, number, number]>): Buffer {
  const b = [...wire];
  for (const [op, at, byte] of edits) {
    const i = b.length ? at % b.length : 0;
    if (op === 'set' && b.length) b[i] = byte;
    else if (op === 'insert') b.splice(i, 0, byte);
    else b.splice(i, 1);
  }
  return Buffer.from(b);
}

test('mutated requests: only Http1ParseError, and the same events and error under any chunking', () => {
  fc.assert(
    fc.property(streamArb, editArb, cutsArb, ({ wire }, edits, cuts) => {
      const bad = mutate(wire, edits);
      const whole = run(one(bad)); // run() asserts that nothing but Http1ParseError escapes, and the memory bound
      assert.deepEqual(run(chunk(bad, cuts)), whole);
    }),
    { numRuns: 500 },
  );
});

test('random bytes: only Http1ParseError, never a hang, memory bounded', () => {
  const prefix = fc.constantFrom('', 'GET / HTTP/1.1\r\n', 'GET / HTTP/1.1\r\nHost: a\r\n', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
  fc.assert(
    fc.property(prefix, fc.uint8Array({ maxLength: 600 }), cutsArb, (pre, bytes, cuts) => {
      const input = Buffer.concat([Buffer.from(pre, 'latin1'), Buffer.from(bytes)]);
      const whole = run(one(input), { maxHeaderBytes: 256, maxTrailerBytes: 128, maxHeaders: 8 });
      assert.deepEqual(run(chunk(input, cuts), { maxHeaderBytes: 256, maxTrailerBytes: 128, maxHeaders: 8 }), whole);
    }),
    { numRuns: 500 },
  );
});

test('an endless head or trailer section never holds more than its limit', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('GET /', 'GET / HTTP/1.1\r\nX: ', 'GET / HTTP/1.1\r\nHost: a\r\n', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n'),
      fc.integer({ min: 1, max: 64 }),
      fc.constantFrom('a', 'X: y\r\n'),
      (start, size, filler) => {
        if (start === 'GET /') filler = 'a'; // a field line would make a bad request line, not an endless one
        const p = new RequestParser({ onHead: () => {}, onBody: () => {}, onEnd: () => {} }, { maxHeaderBytes: 300, maxTrailerBytes: 200, maxHeaders: 1000 });
        let err: unknown;
        try {
          p.push(Buffer.from(start));
          for (let i = 0; i < 400; i++) {
            p.push(Buffer.from(filler.repeat(size)));
            assert.ok(p.bufferedBytes <= 300);
          }
        } catch (e) {
          err = e;
        }
        assert.ok(err instanceof Http1ParseError, String(err));
        assert.ok(['ERR_HTTP1_HEADERS_TOO_LARGE', 'ERR_HTTP1_TRAILERS_TOO_LARGE'].includes(err.code), err.code);
        assert.equal(err.status, 431);
      },
    ),
  );
});
