// Byte-table tests for the pure FastCGI codec (after Go's fcgi_test.go):
// every expectation is written out as literal bytes, not produced by the codec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RecordParser,
  decodeBeginRequestBody,
  decodeEndRequestBody,
  decodeGetValues,
  decodeGetValuesResult,
  decodeHeader,
  decodePairs,
  decodeUnknownTypeBody,
  encodeBeginRequestBody,
  encodeEndRequestBody,
  encodeGetValues,
  encodeGetValuesResult,
  encodeHeader,
  encodePairs,
  encodeRecord,
  encodeSize,
  encodeStream,
  encodeUnknownTypeBody,
  readSize,
  requireManagementId,
} from '../../src/fastcgi/codec.js';
import { ProtocolStatus, RecordType, Role } from '../../src/fastcgi/constants.js';
import { FastCgiProtocolError } from '../../src/fastcgi/errors.js';

const bytes = (...b: number[]): Buffer => Buffer.from(b);

/** A record built by hand, independent of encodeRecord (Go's makeRecord). */
function makeRecord(type: number, id: number, content: Buffer, padding = 0): Buffer {
  return Buffer.concat([bytes(1, type, id >> 8, id & 0xff, content.length >> 8, content.length & 0xff, padding, 0), content, Buffer.alloc(padding)]);
}

function assertCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof FastCgiProtocolError && err.code === code && err.message.startsWith('fcgi: '));
}

const sizeTests: Array<[number, number[]]> = [
  [0, [0x00]],
  [127, [0x7f]],
  [128, [0x80, 0x00, 0x00, 0x80]],
  [1000, [0x80, 0x00, 0x03, 0xe8]],
  [33554431, [0x81, 0xff, 0xff, 0xff]],
  [2 ** 31 - 1, [0xff, 0xff, 0xff, 0xff]],
];

test('name-value sizes encode to 1 or 4 bytes and read back', () => {
  for (const [n, enc] of sizeTests) {
    assert.deepEqual([...encodeSize(n)], enc, `encodeSize(${n})`);
    assert.deepEqual(readSize(Buffer.from(enc), 0), { size: n, bytes: enc.length }, `readSize(${enc})`);
  }
  assertCode(() => encodeSize(2 ** 31), 'ERR_FCGI_PARAMS_TOO_LARGE');
  assertCode(() => encodeSize(-1), 'ERR_FCGI_PARAMS_TOO_LARGE');
  assert.equal(readSize(bytes(0x80, 0, 0), 0), null, 'a 4-byte size cut short');
  assert.equal(readSize(bytes(), 0), null);
});

test('record header: PARAMS, id 258, 5 content bytes, 3 padding', () => {
  const h = encodeHeader(RecordType.PARAMS, 258, 5, 3);
  assert.deepEqual([...h], [0x01, 0x04, 0x01, 0x02, 0x00, 0x05, 0x03, 0x00]);
  assert.deepEqual(decodeHeader(h), { version: 1, type: 4, requestId: 258, contentLength: 5, paddingLength: 3 });
  assertCode(() => decodeHeader(bytes(2, 4, 1, 2, 0, 5, 3, 0)), 'ERR_FCGI_BAD_VERSION');
  assertCode(() => encodeHeader(RecordType.STDOUT, 1, 65536, 0), 'ERR_FCGI_RECORD_TOO_LARGE');
  assertCode(() => encodeHeader(RecordType.STDOUT, 65536, 0, 0), 'ERR_FCGI_BAD_RECORD');
});

test('BEGIN_REQUEST record: RESPONDER with KEEP_CONN on id 1', () => {
  const rec = encodeRecord(RecordType.BEGIN_REQUEST, 1, encodeBeginRequestBody(Role.RESPONDER, true));
  assert.deepEqual([...rec], [0x01, 0x01, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]);
  assert.deepEqual(decodeBeginRequestBody(bytes(0, 3, 0, 0, 0, 0, 0, 0)), { role: 3, flags: 0, keepConn: false });
  assertCode(() => decodeBeginRequestBody(bytes(0, 1, 1, 0, 0, 0, 0)), 'ERR_FCGI_BAD_RECORD');
});

test('END_REQUEST and UNKNOWN_TYPE bodies', () => {
  assert.deepEqual([...encodeEndRequestBody(0x01020304, ProtocolStatus.OVERLOADED)], [1, 2, 3, 4, 2, 0, 0, 0]);
  assert.deepEqual([...encodeEndRequestBody(-1, ProtocolStatus.REQUEST_COMPLETE)], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
  assert.deepEqual(decodeEndRequestBody(bytes(0xff, 0, 0, 1, 3, 0, 0, 0)), { appStatus: 0xff000001, protocolStatus: 3 });
  assertCode(() => decodeEndRequestBody(bytes(0, 0, 0, 0, 0, 0, 0, 0, 0)), 'ERR_FCGI_BAD_RECORD');
  assert.deepEqual([...encodeUnknownTypeBody(200)], [200, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(decodeUnknownTypeBody(bytes(42, 0, 0, 0, 0, 0, 0, 0)), { type: 42 });
  assertCode(() => decodeUnknownTypeBody(bytes()), 'ERR_FCGI_BAD_RECORD');
});

test('stream split: a 66000-byte body is 65535 (+1 pad), 465 (+7 pad) and the empty end record', () => {
  const body = Buffer.alloc(66000, 0xab);
  const recs = encodeStream(RecordType.STDOUT, 1, body, { end: true });
  assert.deepEqual(
    recs.map((r) => r.length),
    [8 + 65535 + 1, 8 + 465 + 7, 8],
  );
  assert.deepEqual([...recs[0]!.subarray(0, 8)], [0x01, 0x06, 0x00, 0x01, 0xff, 0xff, 0x01, 0x00]);
  assert.deepEqual([...recs[1]!.subarray(0, 8)], [0x01, 0x06, 0x00, 0x01, 0x01, 0xd1, 0x07, 0x00]);
  assert.deepEqual([...recs[2]!], [0x01, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
  assert.ok(recs[0]!.subarray(8, 8 + 65535).equals(body.subarray(0, 65535)));
  assert.equal(recs[0]![8 + 65535], 0, 'padding is zero');
  assert.ok(recs[1]!.subarray(8 + 465).equals(Buffer.alloc(7)));
  assert.deepEqual(encodeStream(RecordType.STDOUT, 1, Buffer.alloc(0)), [], 'an empty chunk is no record: it would end the stream');
});

test('name-value pairs: literal bytes for short and long lengths', () => {
  assert.deepEqual([...encodePairs([['SCRIPT_NAME', '/x']])], [11, 2, ...Buffer.from('SCRIPT_NAME/x')]);
  const long = 'v'.repeat(200);
  const enc = encodePairs([['QUERY_STRING', long]]);
  assert.deepEqual([...enc.subarray(0, 5)], [12, 0x80, 0x00, 0x00, 0xc8]);
  assert.equal(enc.length, 5 + 12 + 200);
  assert.deepEqual(decodePairs(enc), [['QUERY_STRING', long]]);
  assert.deepEqual(decodePairs(bytes(0, 0, 1, 0, 0x41)), [['', ''], ['A', '']]);
});

test('name-value strings are bytes: latin1 round-trips, text above U+00FF goes as UTF-8', () => {
  assert.deepEqual([...encodePairs([['A', '\u00e9']])], [1, 1, 0x41, 0xe9]);
  assert.deepEqual([...encodePairs([['A', '\u20ac']])], [1, 3, 0x41, 0xe2, 0x82, 0xac]);
  assert.deepEqual(decodePairs(bytes(1, 2, 0x41, 0xc3, 0xa9)), [['A', '\u00c3\u00a9']]);
});

test('truncated name-value pairs are ERR_FCGI_BAD_NAME_VALUE', () => {
  assertCode(() => decodePairs(bytes(5, 0, 0x61, 0x62)), 'ERR_FCGI_BAD_NAME_VALUE'); // name cut
  assertCode(() => decodePairs(bytes(1, 3, 0x61, 0x62)), 'ERR_FCGI_BAD_NAME_VALUE'); // value cut
  assertCode(() => decodePairs(bytes(0x80, 0, 0)), 'ERR_FCGI_BAD_NAME_VALUE'); // 4-byte length cut
  assertCode(() => decodePairs(bytes(1)), 'ERR_FCGI_BAD_NAME_VALUE'); // value length missing
});

test('GET_VALUES and GET_VALUES_RESULT records', () => {
  const rec = encodeGetValues(['FCGI_MPXS_CONNS']);
  assert.deepEqual([...rec], [1, 9, 0, 0, 0, 17, 7, 0, 15, 0, ...Buffer.from('FCGI_MPXS_CONNS'), 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(decodeGetValues(rec.subarray(8, 25)), ['FCGI_MPXS_CONNS']);
  const res = encodeGetValuesResult([['FCGI_MAX_REQS', '10']]);
  assert.deepEqual([...res.subarray(0, 8)], [1, 10, 0, 0, 0, 17, 7, 0]);
  assert.deepEqual(decodeGetValuesResult(res.subarray(8, 25)), new Map([['FCGI_MAX_REQS', '10']]));
  assertCode(() => requireManagementId({ type: RecordType.GET_VALUES, requestId: 1, content: Buffer.alloc(0) }), 'ERR_FCGI_BAD_RECORD');
});

test('RecordParser yields the same records byte by byte as in one chunk, padding dropped', () => {
  const stream = Buffer.concat([
    makeRecord(RecordType.BEGIN_REQUEST, 1, bytes(0, 1, 0, 0, 0, 0, 0, 0)),
    makeRecord(RecordType.PARAMS, 1, bytes(1, 1, 0x41, 0x42), 4),
    makeRecord(RecordType.PARAMS, 1, bytes(), 255),
    makeRecord(RecordType.STDIN, 0xfffe, Buffer.from('hello'), 3),
    makeRecord(200, 0, bytes(9)),
  ]);
  const want = [
    { type: 1, requestId: 1, content: bytes(0, 1, 0, 0, 0, 0, 0, 0) },
    { type: 4, requestId: 1, content: bytes(1, 1, 0x41, 0x42) },
    { type: 4, requestId: 1, content: bytes() },
    { type: 5, requestId: 0xfffe, content: Buffer.from('hello') },
    { type: 200, requestId: 0, content: bytes(9) },
  ];
  assert.deepEqual(new RecordParser().push(stream), want);
  const p = new RecordParser();
  const got = [];
  for (let i = 0; i < stream.length; i++) got.push(...p.push(stream.subarray(i, i + 1)));
  assert.deepEqual(got, want);
  assert.ok(p.atRecordBoundary);
  assert.equal(p.bufferedBytes, 0);
});

test('RecordParser fails on a bad version and stays failed', () => {
  const p = new RecordParser();
  assert.equal(p.push(makeRecord(RecordType.STDIN, 1, bytes(1, 2, 3))).length, 1);
  const bad = Buffer.from('GET / HTTP/1.1\r\n');
  assertCode(() => p.push(bad), 'ERR_FCGI_BAD_VERSION');
  assert.equal(p.error?.code, 'ERR_FCGI_BAD_VERSION');
  assertCode(() => p.push(makeRecord(RecordType.STDIN, 1, bytes())), 'ERR_FCGI_BAD_VERSION');
});

test('RecordParser holds a partial content of at most 65535 bytes', () => {
  const p = new RecordParser();
  const rec = makeRecord(RecordType.STDOUT, 1, Buffer.alloc(65535, 7), 255);
  assert.deepEqual(p.push(rec.subarray(0, rec.length - 300)), []);
  assert.equal(p.bufferedBytes, 65535 - 45, 'the last 300 bytes are 45 of content and 255 of padding');
  const [r] = p.push(rec.subarray(rec.length - 300));
  assert.equal(r?.content.length, 65535);
  assert.equal(p.bufferedBytes, 0);
});

test('encodeRecord refuses content over 65535 bytes', () => {
  assertCode(() => encodeRecord(RecordType.STDOUT, 1, Buffer.alloc(65536)), 'ERR_FCGI_RECORD_TOO_LARGE');
});
