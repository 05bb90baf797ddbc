/**
 * Properties of the CGI response head parser: however the bytes are
 * chunked, the outcome (head, or error code) is the same; arbitrary bytes
 * only ever raise CgiError; generated valid heads come back as written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CgiResponseParser } from '../../src/cgi/response-head.js';
import { CgiError } from '../../src/cgi/errors.js';

function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % (buf.length + 1))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  out.push(buf.subarray(from));
  return out;
}

/** The head plus everything after it, or the error code; anything else escapes and fails the property. */
function outcome(chunks: Buffer[], maxHeadBytes: number): unknown {
  const parser = new CgiResponseParser({ maxHeadBytes });
  try {
    for (let i = 0; i < chunks.length; i++) {
      const head = parser.push(chunks[i]!);
      if (head) return { ...head, rest: Buffer.concat([head.rest, ...chunks.slice(i + 1)]) };
    }
    parser.end();
    return 'unreachable';
  } catch (err) {
    if (!(err instanceof CgiError)) throw err;
    return err.code;
  }
}

const tokenChar = fc.constantFrom(...'!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'.split(''));
const name = fc.string({ unit: tokenChar, minLength: 1, maxLength: 12 }).filter((n) => n.toLowerCase() !== 'status');
/** A value as it comes back: no leading/trailing SP/HTAB, no controls. */
const value = fc
  .string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 20 })
  .map((v) => v.trim());
const eol = fc.constantFrom('\n', '\r\n');

test('a generated head parses back to what was written, however it is chunked', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(name, value, eol), { minLength: 1, maxLength: 10 }),
      fc.option(fc.integer({ min: 200, max: 599 }), { nil: undefined }),
      eol,
      fc.uint8Array({ maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (headers, status, end, body, cuts) => {
        const lines = headers.map(([n, v, e]) => `${n}: ${v}${e}`);
        if (status !== undefined) lines.splice(headers.length >> 1, 0, `Status: ${status} Reason Here\n`);
        const wire = Buffer.concat([Buffer.from(lines.join('') + end, 'latin1'), body]);
        const result = outcome(chunk(wire, cuts), 1 << 20) as { status: number; headers: unknown; rest: Buffer };
        assert.deepEqual(result.headers, headers.map(([n, v]) => [n, v]));
        assert.deepEqual(result.rest, Buffer.from(body));
        if (status !== undefined) assert.equal(result.status, status);
      },
    ),
  );
});

test('any chunking of arbitrary bytes gives the same head or the same error code', () => {
  // Mostly header-ish text, so that both success and every error are reached.
  const piece = fc.oneof(
    fc.constantFrom('A: 1', 'Status: 404', 'Status: 20x', 'Location: /x', 'HTTP/1.1 200 OK', ' fold', 'nocolon', ': v', 'X: \0'),
    fc.string({ maxLength: 6 }),
  );
  const text = fc.array(fc.tuple(piece, fc.constantFrom('\n', '\r\n', '\r', '')), { maxLength: 8 });
  const input = fc.oneof(
    text.map((parts) => Buffer.from(parts.map(([p, e]) => p + e).join(''), 'latin1')),
    fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)),
  );
  fc.assert(
    fc.property(input, fc.array(fc.nat(), { maxLength: 10 }), fc.integer({ min: 1, max: 64 }), (wire, cuts, maxHeadBytes) => {
      assert.deepEqual(outcome(chunk(wire, cuts), maxHeadBytes), outcome([wire], maxHeadBytes));
    }),
    { numRuns: 3000 },
  );
});
