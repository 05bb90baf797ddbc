/**
 * The HTTP → CGI head rewrite and the chunk-framing remover, on their own:
 * every split of Node's output must give the same CGI bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ChunkedDecoder, headStatus, toCgiHead } from '../../src/app/cgi-head.js';

test('status line becomes Status:, hop-by-hop headers go, the rest stays in order', () => {
  const head =
    'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n' +
    'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nTransfer-Encoding: chunked\r\nX-Connection-Id: 7\r\n\r\n';
  assert.equal(
    toCgiHead(head),
    'Status: 404 Not Found\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Connection-Id: 7\r\n\r\n',
  );
  assert.equal(toCgiHead('HTTP/1.1 200 OK\r\n\r\n'), 'Status: 200 OK\r\n\r\n');
  assert.equal(toCgiHead('HTTP/1.1 599 \r\n\r\n'), 'Status: 599 \r\n\r\n');
});

test('headStatus reads interim and final codes', () => {
  assert.equal(headStatus('HTTP/1.1 103 Early Hints\r\n\r\n'), 103);
  assert.equal(headStatus('HTTP/1.1 100 Continue\r\n\r\n'), 100);
  assert.equal(headStatus('HTTP/1.1 204 No Content\r\n\r\n'), 204);
  assert.equal(headStatus('garbage'), 0);
});

function frame(chunks: Buffer[], trailer = ''): Buffer {
  const parts: Buffer[] = [];
  for (const c of chunks) {
    if (c.length === 0) continue;
    parts.push(Buffer.from(c.length.toString(16) + '\r\n'), c, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n' + trailer + '\r\n'));
  return Buffer.concat(parts);
}

function decodeIn(pieces: Buffer[]): { data: Buffer; done: boolean } {
  const d = new ChunkedDecoder();
  const out: Buffer[] = [];
  for (const p of pieces) out.push(...d.push(p));
  return { data: Buffer.concat(out), done: d.done };
}

test('chunked framing is removed, trailers dropped, whatever the split', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { maxLength: 8 }),
      fc.boolean(),
      fc.array(fc.nat(), { maxLength: 6 }),
      (chunks, withTrailer, cuts) => {
        const bodies = chunks.map((c) => Buffer.from(c));
        const wire = frame(bodies, withTrailer ? 'X-Checksum: abc\r\nX-Other: 1\r\n' : '');
        const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const pieces: Buffer[] = [];
        let at = 0;
        for (const p of points) {
          pieces.push(wire.subarray(at, p));
          at = p;
        }
        pieces.push(wire.subarray(at));
        const { data, done } = decodeIn(pieces);
        assert.deepEqual(data, Buffer.concat(bodies));
        assert.equal(done, true);
      },
    ),
  );
});

test('chunk extensions are skipped; upper-case hex is read', () => {
  const { data } = decodeIn([Buffer.from('A;name=value\r\n0123456789\r\n0\r\n\r\n')]);
  assert.equal(data.toString(), '0123456789');
});

test('input that is not chunked passes through from where it breaks', () => {
  const { data } = decodeIn([Buffer.from('zz not chunked')]);
  assert.equal(data.toString(), 'zz not chunked');
});
