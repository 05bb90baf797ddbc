// Property tests for the pure FastCGI codec: round trips, chunking does not
// change what the parser yields, and hostile bytes only ever produce a typed
// error with bounded memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  RecordParser,
  decodeBeginRequestBody,
  decodeEndRequestBody,
  decodeGetValuesResult,
  decodePairs,
  decodeUnknownTypeBody,
  encodeBeginRequestBody,
  encodeHeader,
  encodePairs,
  encodeRecord,
  encodeSize,
  encodeStream,
  readSize,
  type FcgiRecord,
} from '../../src/fastcgi/codec.js';
import { encodeRequestHead } from '../../src/fastcgi/client-exchange.js';
import { FCGI_HEADER_LEN, FCGI_MAX_CONTENT_LENGTH, RecordType } from '../../src/fastcgi/constants.js';
import type { ParamList } from '../../src/fastcgi/contract.js';
import { FastCgiProtocolError } from '../../src/fastcgi/errors.js';

/** A byte string: any bytes, seen as latin1 (how PARAMS are decoded). */
const byteString = (maxLength: number): fc.Arbitrary<string> =>
  fc.uint8Array({ maxLength }).map((b) => Buffer.from(b).toString('latin1'));

/** A record with arbitrary type, id, content and padding (not only the padding we send). */
const recordArbOf = (content: fc.Arbitrary<Uint8Array>): fc.Arbitrary<RecordSpec> =>
  fc.record({
    type: fc.integer({ min: 0, max: 255 }),
    requestId: fc.integer({ min: 0, max: 0xffff }),
    content,
    padding: fc.integer({ min: 0, max: 255 }),
  });
const smallRecordArb = recordArbOf(fc.uint8Array({ maxLength: 300 }));
const recordArb = recordArbOf(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 60000, maxLength: FCGI_MAX_CONTENT_LENGTH })));
type RecordSpec = { type: number; requestId: number; content: Uint8Array; padding: number };

function wire(recs: RecordSpec[]): Buffer {
  return Buffer.concat(
    recs.flatMap((r) => [encodeHeader(r.type, r.requestId, r.content.length, r.padding), Buffer.from(r.content), Buffer.alloc(r.padding, 0xee)]),
  );
}

/** Splits `buf` at the given cut points (taken modulo its length). */
function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (buf.length ? c % buf.length : 0)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
}

const MAX_BUFFERED = FCGI_HEADER_LEN + FCGI_MAX_CONTENT_LENGTH;

/** Feeds chunks; returns the records and the typed error, asserting the memory bound after each push. */
function parseAll(chunks: Buffer[]): { records: FcgiRecord[]; error: FastCgiProtocolError | null } {
  const p = new RecordParser();
  const records: FcgiRecord[] = [];
  for (const c of chunks) {
    try {
      records.push(...p.push(c).map((r) => ({ ...r, content: Buffer.from(r.content) })));
    } catch (err) {
      assert.ok(err instanceof FastCgiProtocolError, `only FastCgiProtocolError may escape, got ${String(err)}`);
      return { records, error: err };
    }
    assert.ok(p.bufferedBytes <= MAX_BUFFERED, `buffered ${p.bufferedBytes}`);
  }
  return { records, error: null };
}

test('sizes round-trip over the whole 31-bit range', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (n) => {
      const enc = encodeSize(n);
      assert.equal(enc.length, n <= 127 ? 1 : 4);
      assert.deepEqual(readSize(enc, 0), { size: n, bytes: enc.length });
    }),
  );
});

test('name-value pairs round-trip (byte strings, lengths either side of 127)', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(byteString(300), byteString(300)), { maxLength: 20 }), (pairs) => {
      assert.deepEqual(decodePairs(encodePairs(pairs)), pairs);
    }),
  );
});

test('records round-trip through encodeStream and the parser under any chunking', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 0xffff }),
      fc.integer({ min: 0, max: 140_000 }),
      fc.integer({ min: 1, max: 255 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (id, length, seed, cuts) => {
        // Sizes spread evenly up to two full records and more (a plain uint8Array arbitrary favours tiny ones).
        const body = Buffer.alloc(length);
        for (let i = 0; i < length; i++) body[i] = (i * seed) & 0xff;
        const stream = Buffer.concat(encodeStream(6, id, body, { end: true }));
        const { records, error } = parseAll(chunk(stream, cuts));
        assert.equal(error, null);
        assert.ok(records.every((r) => r.type === 6 && r.requestId === id && r.content.length <= FCGI_MAX_CONTENT_LENGTH));
        assert.equal(records.at(-1)?.content.length, 0, 'ends with the empty record');
        assert.ok(Buffer.concat(records.map((r) => r.content)).equals(Buffer.from(body)));
      },
    ),
    { numRuns: 50 },
  );
});

test('any chunking of a record stream parses to the same records as one chunk', () => {
  fc.assert(
    fc.property(fc.array(recordArb, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 40 }), (recs, cuts) => {
      const stream = wire(recs);
      const want = recs.map((r) => ({ type: r.type, requestId: r.requestId, content: Buffer.from(r.content) }));
      assert.deepEqual(parseAll([stream]).records, want);
      assert.deepEqual(parseAll(chunk(stream, cuts)).records, want);
    }),
    { numRuns: 60 },
  );
});

test('random bytes only ever raise FastCgiProtocolError, within the memory bound', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 20 }), (raw, cuts) => {
      const { records } = parseAll(chunk(Buffer.from(raw), cuts));
      for (const r of records) decodeBodies(r.content);
    }),
    { numRuns: 500 },
  );
});

test('mutated valid streams fail the same way whatever the chunking, and only with typed errors', () => {
  fc.assert(
    fc.property(
      // Small records, so the byte-by-byte parse stays quick.
      fc.array(smallRecordArb, { minLength: 1, maxLength: 8 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (recs, mutations, cuts) => {
        const stream = wire(recs);
        for (const [at, byte] of mutations) stream[at % stream.length] = byte;
        const whole = parseAll([stream]);
        const oneByOne = parseAll([...stream].map((b) => Buffer.from([b])));
        const chunked = parseAll(chunk(stream, cuts));
        for (const r of oneByOne.records) decodeBodies(r.content);
        // Chunk-independence even for bad streams: the same error code, and
        // the records yielded before it are a prefix of the byte-by-byte ones
        // (a push that fails drops the records of its own chunk).
        assert.equal(chunked.error?.code, whole.error?.code);
        assert.equal(oneByOne.error?.code, whole.error?.code);
        assert.deepEqual(oneByOne.records.slice(0, chunked.records.length), chunked.records);
        if (!whole.error) assert.deepEqual(chunked.records, whole.records);
      },
    ),
    { numRuns: 200 },
  );
});

/** Every body decoder on arbitrary content: results or typed errors, nothing else. */
function decodeBodies(content: Buffer): void {
  for (const decode of [decodePairs, decodeBeginRequestBody, decodeEndRequestBody, decodeUnknownTypeBody, decodeGetValuesResult]) {
    try {
      decode(content);
    } catch (err) {
      assert.ok(err instanceof FastCgiProtocolError, `decoder threw ${String(err)}`);
    }
  }
}

test('encodeRecord pads every record to a multiple of 8', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), (content) => {
      const rec = encodeRecord(5, 1, content);
      assert.equal(rec.length % 8, 0);
      assert.equal(rec[6], rec.length - 8 - content.length);
    }),
  );
});

test('encodeRequestHead (one-buffer client head) equals the codec records concatenated, for byte strings, wide characters and params beyond one record', () => {
  const anyString = fc.oneof(byteString(300), fc.string({ unit: 'binary', maxLength: 200 }));
  const bigParams = fc.constant<ParamList>([['HUGE', 'x'.repeat(70_000)], ['A', 'b']]);
  fc.assert(
    fc.property(
      fc.oneof(fc.array(fc.tuple(anyString, anyString), { maxLength: 30 }), bigParams),
      fc.integer({ min: 1, max: 0xffff }),
      fc.boolean(),
      fc.boolean(),
      (params, requestId, keepConn, endStdin) => {
        const expected = Buffer.concat([
          encodeRecord(RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(1, keepConn)),
          ...encodeStream(RecordType.PARAMS, requestId, encodePairs(params), { end: true }),
          ...(endStdin ? [encodeRecord(RecordType.STDIN, requestId)] : []),
        ]);
        assert.deepEqual(encodeRequestHead(requestId, 1, keepConn, params, endStdin), expected);
      },
    ),
    { numRuns: 300 },
  );
});
