// Shared by the HTTP/1 parser tests: feed chunks, record events in a comparable form.
import assert from 'node:assert/strict';
import { RequestParser, type RequestHead, type RequestParserOptions } from '../../src/http1/request-parser.js';
import { Http1ParseError } from '../../src/http1/errors.js';

export type Ev =
  | { head: RequestHead }
  | { body: string } // latin1; consecutive pieces merged
  | { trailers: string[] }
  | 'end';

export interface Outcome {
  events: Ev[];
  /** The error code, or null when every chunk was accepted. */
  error: string | null;
  status?: number;
}

/** Feeds `chunks` to a fresh parser, checking the memory bound and that onBody is never empty. */
export function run(chunks: Buffer[], options: RequestParserOptions = {}, trailers = true): Outcome {
  const events: Ev[] = [];
  const p = new RequestParser({
    onHead: (head) => events.push({ head }),
    onBody: (chunk) => {
      assert.ok(chunk.length > 0, 'onBody with an empty chunk');
      const last = events[events.length - 1];
      if (typeof last === 'object' && 'body' in last) last.body += chunk.toString('latin1');
      else events.push({ body: chunk.toString('latin1') });
    },
    ...(trailers ? { onTrailers: (raw: string[]) => events.push({ trailers: raw }) } : {}),
    onEnd: () => events.push('end'),
  }, options);
  const bound = Math.max(options.maxHeaderBytes ?? 16384, options.maxTrailerBytes ?? 16384);
  for (const c of chunks) {
    try {
      p.push(c);
    } catch (err) {
      assert.ok(err instanceof Http1ParseError, `only Http1ParseError may escape, got ${String(err)}`);
      assert.equal(p.error, err);
      // Dead: later pushes throw the same error.
      assert.throws(() => p.push(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')), (e: unknown) => e === err);
      return { events, error: err.code, status: err.status };
    }
    assert.ok(p.bufferedBytes <= bound, `buffered ${p.bufferedBytes} > ${bound}`);
  }
  return { events, error: null };
}

export const one = (s: string | Buffer): Buffer[] => [typeof s === 'string' ? Buffer.from(s, 'latin1') : s];
export const bytewise = (s: string | Buffer): Buffer[] => [...(typeof s === 'string' ? Buffer.from(s, 'latin1') : s)].map((b) => Buffer.from([b]));

/** Splits `buf` at the given cut points (taken modulo its length). */
export function chunk(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (buf.length ? c % buf.length : 0)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    if (c > prev) out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
}

/** A head with defaults, for expectations. */
export function head(over: Partial<RequestHead> & { rawHeaders: string[] }): RequestHead {
  return {
    method: 'GET',
    target: '/',
    versionMajor: 1,
    versionMinor: 1,
    contentLength: undefined,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
    upgrade: false,
    ...over,
  };
}
