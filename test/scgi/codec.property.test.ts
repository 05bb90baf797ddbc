/**
 * Properties of the SCGI header codec: encode/parse round-trips, chunking
 * never changes the outcome, arbitrary or mutated bytes only ever raise
 * ScgiProtocolError, and an oversized announcement is refused before the
 * parser holds more than maxHeaderBytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeRequestHeaders, ScgiHeaderParser, type ScgiParsedHeader } from '../../src/scgi/codec.js';
import { ScgiProtocolError } from '../../src/scgi/errors.js';

/** latin1 text without NUL: what a param name or value may hold. */
const latin1Text = (minLength: number) =>
  fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)), minLength, maxLength: 24 });

const paramList = fc
  .uniqueArray(fc.tuple(latin1Text(1), latin1Text(0)), { selector: ([name]) => name, maxLength: 20 })
  .map((pairs) => pairs.filter(([name]) => name !== 'CONTENT_LENGTH' && name !== 'SCGI'));

/** Cuts `buf` at the given offsets (taken modulo its length). */
function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % buf.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  out.push(buf.subarray(from));
  return out;
}

type Outcome = { header: ScgiParsedHeader; after: Buffer } | { error: string } | { incomplete: true };

/** Feeds chunks until the header completes or fails; `after` is rest plus every later chunk. */
function feed(chunks: Buffer[], maxHeaderBytes?: number): Outcome {
  const parser = new ScgiHeaderParser(maxHeaderBytes === undefined ? {} : { maxHeaderBytes });
  try {
    for (let i = 0; i < chunks.length; i++) {
      const header = parser.push(chunks[i]!);
      if (header) return { header, after: Buffer.concat([header.rest, ...chunks.slice(i + 1)]) };
    }
    parser.end();
    return { incomplete: true };
  } catch (err) {
    if (!(err instanceof ScgiProtocolError)) throw err;
    return { error: err.code };
  }
}

function normalise(o: Outcome): unknown {
  if ('header' in o) return { params: o.header.params, contentLength: o.header.contentLength, after: o.after };
  return o;
}

test('encode then parse gives back CONTENT_LENGTH, SCGI=1 and the params in order', () => {
  fc.assert(
    fc.property(paramList, fc.nat({ max: 2 ** 40 }), (params, contentLength) => {
      const header = new ScgiHeaderParser({ maxHeaderBytes: 1 << 20 }).push(encodeRequestHeaders(params, contentLength));
      assert.ok(header);
      assert.deepEqual(header.params, [['CONTENT_LENGTH', String(contentLength)], ['SCGI', '1'], ...params]);
      assert.equal(header.contentLength, contentLength);
      assert.equal(header.rest.length, 0);
    }),
  );
});

test('any chunking of a valid request parses the same', () => {
  fc.assert(
    fc.property(paramList, fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(), { maxLength: 12 }), (params, body, cuts) => {
      const wire = Buffer.concat([encodeRequestHeaders(params, body.length), body]);
      const whole = feed([wire], 1 << 20);
      const split = feed(chunk(wire, cuts), 1 << 20);
      assert.deepEqual(normalise(split), normalise(whole));
      assert.ok('header' in split);
      assert.deepEqual(split.after, Buffer.from(body));
    }),
  );
});

test('random bytes only ever raise ScgiProtocolError, the same way however split', () => {
  const digitsFirst = fc.tuple(fc.stringMatching(/^[0-9]{1,3}:$/), fc.uint8Array({ maxLength: 200 }));
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    digitsFirst.map(([prefix, b]) => Buffer.concat([Buffer.from(prefix), b])),
  );
  fc.assert(
    fc.property(input, fc.array(fc.nat(), { maxLength: 8 }), (wire, cuts) => {
      // feed() rethrows anything that is not an ScgiProtocolError.
      assert.deepEqual(normalise(feed(chunk(wire, cuts))), normalise(feed([wire])));
    }),
    { numRuns: 2000 },
  );
});

test('mutated valid requests only ever raise ScgiProtocolError', () => {
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), byte: fc.constant(0) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  );
  fc.assert(
    fc.property(paramList, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 6 }), (params, mutations, cuts) => {
      const bytes = [...encodeRequestHeaders(params, 3), 0x61, 0x62, 0x63];
      for (const m of mutations) {
        const at = m.at % (bytes.length + 1);
        if (m.kind === 'flip' && at < bytes.length) bytes[at] = m.byte;
        else if (m.kind === 'delete') bytes.splice(at, 1);
        else if (m.kind === 'insert') bytes.splice(at, 0, m.byte);
      }
      const wire = Buffer.from(bytes);
      assert.deepEqual(normalise(feed(chunk(wire, cuts))), normalise(feed([wire])));
    }),
    { numRuns: 2000 },
  );
});

test('memory is bounded: an oversized length is refused within its digits, before any block is held', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 1, max: 1 << 30 }), (max, extra) => {
      const announced = String(max + extra);
      const parser = new ScgiHeaderParser({ maxHeaderBytes: max });
      let consumed = 0;
      let code: string | undefined;
      // One byte at a time, then an endless tail of more digits: the
      // parser must stop at the first digit that pushes the length past max.
      const stream = `${announced}${'9'.repeat(16)}:`;
      for (const ch of stream) {
        consumed++;
        try {
          parser.push(Buffer.from(ch));
        } catch (err) {
          assert.ok(err instanceof ScgiProtocolError);
          code = err.code;
          break;
        }
      }
      assert.equal(code, 'ERR_SCGI_HEADER_TOO_LARGE');
      assert.ok(consumed <= String(max).length + 1, `consumed ${consumed} bytes for max ${max}`);
    }),
  );
});

test('a header of exactly maxHeaderBytes fed byte by byte is accepted', () => {
  const filler = 'X'.repeat(1000);
  const wire = encodeRequestHeaders([['PAD', filler]], 0);
  const blockLength = Number(wire.toString('latin1', 0, wire.indexOf(':')));
  const parser = new ScgiHeaderParser({ maxHeaderBytes: blockLength });
  let header: ScgiParsedHeader | null = null;
  for (const b of wire) header = parser.push(Buffer.of(b));
  assert.ok(header);
  assert.equal(header.params[2]![1], filler);
});
