/**
 * SCGI header codec against literal byte tables: the spec's own example,
 * then one row per way a header netstring can be wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeRequestHeaders, ScgiHeaderParser, type ScgiHeaderParserOptions } from '../../src/scgi/codec.js';
import { ScgiProtocolError, type ScgiErrorCode } from '../../src/scgi/errors.js';

/** Literal bytes from a latin1 string ("\x00" is a NUL). */
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
/** Wraps a header block in its netstring. */
const netstring = (block: string): Buffer => bytes(`${Buffer.byteLength(block, 'latin1')}:${block},`);

// python.ca/scgi/protocol.txt, "Example".
const SPEC_EXAMPLE = '70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00REQUEST_URI\x00/deepthought\x00,';
const SPEC_BODY = 'What is the answer to life?';

function parseAll(input: Buffer, options?: ScgiHeaderParserOptions) {
  const result = new ScgiHeaderParser(options).push(input);
  assert.ok(result, 'header should be complete');
  return result;
}

function assertCode(fn: () => unknown, code: ScgiErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ScgiProtocolError, `expected ScgiProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, /^scgi: /);
    return true;
  });
}

test('encodes the spec example byte for byte', () => {
  const out = encodeRequestHeaders(
    [
      ['REQUEST_METHOD', 'POST'],
      ['REQUEST_URI', '/deepthought'],
    ],
    27,
  );
  assert.deepEqual(out, bytes(SPEC_EXAMPLE));
});

test('decodes the spec example and hands back the body as rest', () => {
  const { params, contentLength, rest } = parseAll(bytes(SPEC_EXAMPLE + SPEC_BODY));
  assert.deepEqual(params, [
    ['CONTENT_LENGTH', '27'],
    ['SCGI', '1'],
    ['REQUEST_METHOD', 'POST'],
    ['REQUEST_URI', '/deepthought'],
  ]);
  assert.equal(contentLength, 27);
  assert.equal(rest.toString('latin1'), SPEC_BODY);
});

test('CONTENT_LENGTH and SCGI from params are replaced, not repeated', () => {
  const out = encodeRequestHeaders(
    [
      ['SCGI', '7'],
      ['A', 'b'],
      ['CONTENT_LENGTH', '999'],
    ],
    0,
  );
  assert.deepEqual(out, bytes('28:CONTENT_LENGTH\x000\x00SCGI\x001\x00A\x00b\x00,'));
});

test('empty values and high latin1 bytes round-trip', () => {
  const params: Array<[string, string]> = [
    ['CONTENT_LENGTH', '0'],
    ['SCGI', '1'],
    ['QUERY_STRING', ''],
    ['HTTP_X_BYTES', '\xff\x80caf\xc3\xa9'],
  ];
  const out = encodeRequestHeaders(params.slice(2), 0);
  assert.deepEqual(out, bytes('59:CONTENT_LENGTH\x000\x00SCGI\x001\x00QUERY_STRING\x00\x00HTTP_X_BYTES\x00\xff\x80caf\xc3\xa9\x00,'));
  assert.deepEqual(parseAll(out).params, params);
});

test('encoder refuses what the wire cannot carry', () => {
  assertCode(() => encodeRequestHeaders([['A\x00B', 'v']], 0), 'ERR_SCGI_BAD_HEADERS');
  assertCode(() => encodeRequestHeaders([['A', 'v\x00w']], 0), 'ERR_SCGI_BAD_HEADERS');
  assertCode(() => encodeRequestHeaders([['', 'v']], 0), 'ERR_SCGI_BAD_HEADERS');
  assertCode(() => encodeRequestHeaders([['A', 'caf\u00e9\u20ac']], 0), 'ERR_SCGI_BAD_HEADERS');
  assertCode(
    () =>
      encodeRequestHeaders(
        [
          ['A', '1'],
          ['A', '2'],
        ],
        0,
      ),
    'ERR_SCGI_BAD_HEADERS',
  );
  assert.throws(() => encodeRequestHeaders([], -1), RangeError);
  assert.throws(() => encodeRequestHeaders([], 1.5), RangeError);
});

const MIN = 'CONTENT_LENGTH\x000\x00SCGI\x001\x00';

/** [label, bytes, expected code] — each must fail the same way however it is fed. */
const BAD_INPUTS: Array<[string, Buffer, ScgiErrorCode]> = [
  ['letter in length', bytes('7x:'), 'ERR_SCGI_NETSTRING'],
  ['no length digits', bytes(':,'), 'ERR_SCGI_NETSTRING'],
  ['leading zero', bytes(`0${MIN.length}:${MIN},`), 'ERR_SCGI_NETSTRING'],
  ['double zero', bytes('00:,'), 'ERR_SCGI_NETSTRING'],
  ['sign in length', bytes('+5:'), 'ERR_SCGI_NETSTRING'],
  ['space before colon', bytes('24 :'), 'ERR_SCGI_NETSTRING'],
  ['missing comma', bytes(`${MIN.length}:${MIN};`), 'ERR_SCGI_NETSTRING'],
  ['length one short', bytes(`${MIN.length - 1}:${MIN},`), 'ERR_SCGI_NETSTRING'],
  ['length one long', bytes(`${MIN.length + 1}:${MIN},,`), 'ERR_SCGI_BAD_HEADERS'],
  ['announces more than 64 KiB', bytes('65537:'), 'ERR_SCGI_HEADER_TOO_LARGE'],
  ['absurd length', bytes('99999999999999999999999:'), 'ERR_SCGI_HEADER_TOO_LARGE'],
  ['empty header block', bytes('0:,'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['block not NUL-terminated', netstring('CONTENT_LENGTH\x000\x00SCGI\x001'), 'ERR_SCGI_BAD_HEADERS'],
  ['odd number of strings', netstring(`${MIN}LONELY\x00`), 'ERR_SCGI_BAD_HEADERS'],
  ['empty name', netstring(`${MIN}\x00value\x00`), 'ERR_SCGI_BAD_HEADERS'],
  ['duplicate CONTENT_LENGTH', netstring(`${MIN}CONTENT_LENGTH\x005\x00`), 'ERR_SCGI_BAD_HEADERS'],
  ['duplicate SCGI', netstring(`${MIN}SCGI\x001\x00`), 'ERR_SCGI_BAD_HEADERS'],
  ['CONTENT_LENGTH missing', netstring('SCGI\x001\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['CONTENT_LENGTH not first', netstring('SCGI\x001\x00CONTENT_LENGTH\x000\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['CONTENT_LENGTH empty', netstring('CONTENT_LENGTH\x00\x00SCGI\x001\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['CONTENT_LENGTH negative', netstring('CONTENT_LENGTH\x00-1\x00SCGI\x001\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['CONTENT_LENGTH exponent', netstring('CONTENT_LENGTH\x001e3\x00SCGI\x001\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['CONTENT_LENGTH spaces', netstring('CONTENT_LENGTH\x00 12\x00SCGI\x001\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['CONTENT_LENGTH beyond 2^53', netstring('CONTENT_LENGTH\x0099999999999999999\x00SCGI\x001\x00'), 'ERR_SCGI_NO_CONTENT_LENGTH'],
  ['SCGI missing', netstring('CONTENT_LENGTH\x000\x00'), 'ERR_SCGI_NO_SCGI'],
  ['SCGI=2', netstring('CONTENT_LENGTH\x000\x00SCGI\x002\x00'), 'ERR_SCGI_NO_SCGI'],
];

for (const [label, input, code] of BAD_INPUTS) {
  test(`rejects ${label} with ${code}, in one chunk and byte by byte`, () => {
    assertCode(() => new ScgiHeaderParser().push(input), code);
    assertCode(() => {
      const parser = new ScgiHeaderParser();
      for (const b of input) parser.push(Buffer.of(b));
      parser.end();
    }, code);
  });
}

// callscgi (ashd) order: CONTENT_LENGTH is the 18th variable, and every
// request header line becomes an HTTP_* pair, duplicates included.
const ASHD_BLOCK =
  'SERVER_SOFTWARE\x00ashd/0.6\x00GATEWAY_INTERFACE\x00CGI/1.1\x00SCGI\x001\x00SERVER_PROTOCOL\x00HTTP/1.1\x00' +
  'REQUEST_METHOD\x00GET\x00REQUEST_URI\x00/\x00QUERY_STRING\x00\x00CONTENT_LENGTH\x000\x00' +
  'HTTP_ACCEPT\x00a\x00HTTP_ACCEPT\x00b\x00';

test('strict mode rejects ashd callscgi order; lenient mode accepts it', () => {
  assertCode(() => new ScgiHeaderParser().push(netstring(ASHD_BLOCK)), 'ERR_SCGI_NO_CONTENT_LENGTH');
  const { params, contentLength } = parseAll(netstring(ASHD_BLOCK), { strict: false });
  assert.equal(contentLength, 0);
  assert.equal(params.length, 10);
});

test('repeated names are kept in wire order by default, rejected on request', () => {
  const block = `${MIN}HTTP_X_DUP\x00a\x00HTTP_HOST\x00h\x00HTTP_X_DUP\x00b\x00`;
  assert.deepEqual(parseAll(netstring(block)).params.slice(2), [
    ['HTTP_X_DUP', 'a'],
    ['HTTP_HOST', 'h'],
    ['HTTP_X_DUP', 'b'],
  ]);
  assertCode(() => new ScgiHeaderParser({ duplicates: 'reject' }).push(netstring(block)), 'ERR_SCGI_BAD_HEADERS');
  assertCode(
    () => new ScgiHeaderParser({ strict: false, duplicates: 'reject' }).push(netstring(ASHD_BLOCK)),
    'ERR_SCGI_BAD_HEADERS',
  );
});

test('maxHeaderBytes is inclusive', () => {
  const exact = netstring(MIN);
  assert.ok(new ScgiHeaderParser({ maxHeaderBytes: MIN.length }).push(exact));
  assertCode(() => new ScgiHeaderParser({ maxHeaderBytes: MIN.length - 1 }).push(exact), 'ERR_SCGI_HEADER_TOO_LARGE');
});

test('leading zeros in CONTENT_LENGTH are a decimal all the same', () => {
  assert.equal(parseAll(netstring('CONTENT_LENGTH\x00007\x00SCGI\x001\x00')).contentLength, 7);
});

test('end() is quiet with no bytes or a complete header, and a NETSTRING error inside one', () => {
  assert.doesNotThrow(() => new ScgiHeaderParser().end());
  const complete = new ScgiHeaderParser();
  assert.ok(complete.push(netstring(MIN)));
  assert.doesNotThrow(() => complete.end());
  for (const cut of [1, 3, 10, netstring(MIN).length - 1]) {
    const parser = new ScgiHeaderParser();
    assert.equal(parser.push(netstring(MIN).subarray(0, cut)), null);
    assert.equal(parser.started, true);
    assertCode(() => parser.end(), 'ERR_SCGI_NETSTRING');
  }
});

test('rest is only what follows the comma, split anywhere', () => {
  const input = Buffer.concat([netstring(MIN), bytes('BODY')]);
  const parser = new ScgiHeaderParser();
  assert.equal(parser.push(input.subarray(0, input.length - 6)), null);
  const result = parser.push(input.subarray(input.length - 6));
  assert.ok(result);
  assert.equal(result.rest.toString('latin1'), 'BODY');
  assert.throws(() => parser.push(bytes('x')), /after the header was complete/);
});
