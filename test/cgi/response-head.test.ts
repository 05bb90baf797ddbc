/**
 * CGI response head parsing against literal tables. Every row is also fed
 * split at every byte boundary, and must give the same answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CgiResponseParser, type CgiResponseHead } from '../../src/cgi/response-head.js';
import { CgiError, type CgiErrorCode } from '../../src/cgi/errors.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

type Expected = Omit<CgiResponseHead, 'rest'> & { rest: string };

function parseChunks(chunks: Buffer[], maxHeadBytes?: number): Expected {
  const parser = new CgiResponseParser(maxHeadBytes === undefined ? {} : { maxHeadBytes });
  for (let i = 0; i < chunks.length; i++) {
    const head = parser.push(chunks[i]!);
    if (head) return { ...head, rest: Buffer.concat([head.rest, ...chunks.slice(i + 1)]).toString('latin1') };
  }
  parser.end();
  throw new Error('unreachable: end() throws before the head is complete');
}

/** The whole input at once, then split in two at every offset. */
function everySplit(input: Buffer, maxHeadBytes?: number): Array<() => Expected> {
  const ways = [() => parseChunks([input], maxHeadBytes)];
  for (let i = 0; i <= input.length; i++) {
    ways.push(() => parseChunks([input.subarray(0, i), input.subarray(i)], maxHeadBytes));
  }
  ways.push(() => parseChunks([...input].map((b) => Buffer.of(b)), maxHeadBytes));
  return ways;
}

const GOOD: Array<[string, string, Expected]> = [
  [
    'Status with a reason phrase',
    'Status: 404 Not Here\r\nContent-Type: text/plain\r\n\r\nbody',
    { status: 404, statusText: 'Not Here', headers: [['Content-Type', 'text/plain']], localRedirect: false, rest: 'body' },
  ],
  [
    'Status without a reason phrase takes node:http\'s',
    'Status: 404\nContent-Type: text/plain\n\n',
    { status: 404, statusText: 'Not Found', headers: [['Content-Type', 'text/plain']], localRedirect: false, rest: '' },
  ],
  [
    'an unknown code without a phrase',
    'Status: 599\n\n',
    { status: 599, statusText: 'Unknown', headers: [], localRedirect: false, rest: '' },
  ],
  [
    'no Status → 200 OK',
    'Content-Type: text/html\r\n\r\n<p>',
    { status: 200, statusText: 'OK', headers: [['Content-Type', 'text/html']], localRedirect: false, rest: '<p>' },
  ],
  [
    'LF-only lines, mixed with CRLF',
    'A: 1\nB: 2\r\n\n',
    { status: 200, statusText: 'OK', headers: [['A', '1'], ['B', '2']], localRedirect: false, rest: '' },
  ],
  [
    'an absolute Location without Status → 302 (RFC 3875; ashd says 303)',
    'Location: https://example.org/x\r\n\r\n',
    { status: 302, statusText: 'Found', headers: [['Location', 'https://example.org/x']], localRedirect: false, rest: '' },
  ],
  [
    'a local Location without Status → localRedirect, 302 if passed on',
    'Location: /elsewhere?q=1\n\n',
    { status: 302, statusText: 'Found', headers: [['Location', '/elsewhere?q=1']], localRedirect: true, rest: '' },
  ],
  [
    'a network-path Location is a client redirect, not local',
    'location: //cdn.example/x\n\n',
    { status: 302, statusText: 'Found', headers: [['location', '//cdn.example/x']], localRedirect: false, rest: '' },
  ],
  [
    'Location with a Status keeps the Status',
    'Status: 301 Moved Permanently\nLocation: /new\n\n',
    { status: 301, statusText: 'Moved Permanently', headers: [['Location', '/new']], localRedirect: false, rest: '' },
  ],
  [
    'only the first Status is consumed',
    'status: 201\nStatus: 500 Nope\nX: y\n\n',
    { status: 201, statusText: 'Created', headers: [['Status', '500 Nope'], ['X', 'y']], localRedirect: false, rest: '' },
  ],
  [
    'an NPH-style status line is taken as the status',
    'HTTP/1.1 418 Short And Stout\r\nContent-Type: text/plain\r\n\r\ntea',
    { status: 418, statusText: 'Short And Stout', headers: [['Content-Type', 'text/plain']], localRedirect: false, rest: 'tea' },
  ],
  [
    'an NPH line without a phrase',
    'HTTP/1.0 204\r\nX: 1\r\n\r\n',
    { status: 204, statusText: 'No Content', headers: [['X', '1']], localRedirect: false, rest: '' },
  ],
  [
    'values are trimmed of SP/HTAB, inner spaces and latin1 bytes kept, empty values allowed',
    'X-Foo: \t bar  baz \t\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\r\n',
    { status: 200, statusText: 'OK', headers: [['X-Foo', 'bar  baz'], ['X-Empty', ''], ['X-Latin', 'caf\xe9']], localRedirect: false, rest: '' },
  ],
  [
    'repeated headers stay repeated, in order',
    'Set-Cookie: a=1\nSet-Cookie: b=2\n\n',
    { status: 200, statusText: 'OK', headers: [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']], localRedirect: false, rest: '' },
  ],
  [
    'the body may hold anything, including what looks like headers',
    'A: 1\n\nB: 2\n\n\r\n\0',
    { status: 200, statusText: 'OK', headers: [['A', '1']], localRedirect: false, rest: 'B: 2\n\n\r\n\0' },
  ],
];

for (const [label, input, expected] of GOOD) {
  test(`parses ${label}, split anywhere`, () => {
    for (const parse of everySplit(bytes(input))) assert.deepEqual(parse(), expected);
  });
}

const BAD: Array<[string, string, CgiErrorCode]> = [
  ['a line without a colon', 'Content-Type text/html\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['an obs-fold continuation', 'X-A: 1\n  more\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['an empty name', ': v\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a space before the colon', 'X-A : v\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a name with a non-token char', 'X(A): v\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a bare CR inside a value', 'X-A: a\rb\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a NUL in a value', 'X-A: a\0b\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['another control char in a value', 'X-A: a\x01b\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a non-numeric Status', 'Status: OK\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a two-digit Status', 'Status: 20\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a 1xx Status (never final)', 'Status: 100 Continue\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a Status above 599', 'Status: 600\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a status line that is not first', 'X: 1\nHTTP/1.1 200 OK\n\n', 'ERR_CGI_BAD_RESPONSE'],
  ['a head with no header at all', '\r\nbody', 'ERR_CGI_BAD_RESPONSE'],
  ['EOF before any byte', '', 'ERR_CGI_TRUNCATED_HEAD'],
  ['EOF before the blank line', 'Content-Type: text/plain\r\n', 'ERR_CGI_TRUNCATED_HEAD'],
  ['EOF inside a line', 'Content-Type: te', 'ERR_CGI_TRUNCATED_HEAD'],
];

function assertCode(fn: () => unknown, code: CgiErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CgiError, `expected CgiError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, /^cgi: /);
    return true;
  });
}

for (const [label, input, code] of BAD) {
  test(`rejects ${label} with ${code}, split anywhere`, () => {
    for (const parse of everySplit(bytes(input))) assertCode(parse, code);
  });
}

test('the head limit counts the blank line and holds however the bytes arrive', () => {
  const head = 'X-Pad: 0123456789\r\n\r\n'; // 21 bytes
  for (const parse of everySplit(bytes(`${head}body`), head.length)) assert.equal(parse().rest, 'body');
  for (const parse of everySplit(bytes(`${head}body`), head.length - 1)) assertCode(parse, 'ERR_CGI_HEADER_TOO_LARGE');
});

test('the default limit is 64 KiB and a bad line before it is still a bad line', () => {
  const pad = `X-Pad: ${'a'.repeat(64 * 1024)}\n\n`;
  assertCode(() => new CgiResponseParser().push(bytes(pad)), 'ERR_CGI_HEADER_TOO_LARGE');
  assertCode(() => new CgiResponseParser().push(bytes(`bad line\n${pad}`)), 'ERR_CGI_BAD_RESPONSE');
  const fits = `X-Pad: ${'a'.repeat(64 * 1024 - 10)}\n\n`;
  assert.equal(new CgiResponseParser().push(bytes(fits))?.status, 200);
});

test('push after the head is a programming error; end after it is fine', () => {
  const parser = new CgiResponseParser();
  assert.ok(parser.push(bytes('A: 1\n\n')));
  assert.doesNotThrow(() => parser.end());
  assert.throws(() => parser.push(bytes('x')), /after the head was complete/);
});
