/**
 * Nanoseconds per request for src/http1/request-parser.ts, next to llhttp
 * (node:http's C parser, called through the deprecated process.binding with
 * no-op callbacks: the parser alone, without node:http's JS on top) and the
 * naive string parser of bench/floors/raw-net-floor.mjs. One request per push,
 * as wrk sends them, and a 16-request pipelined chunk.
 *
 *   npx tsc -p . && node dist/bench/http1-parse.js [--ms 1500]
 */
import { parseArgs } from 'node:util';
import { RequestParser } from '../src/http1/request-parser.js';

const { values } = parseArgs({ options: { ms: { type: 'string', default: '1500' } } });
const MS = Number(values.ms);

const inputs: Record<string, string> = {
  'wrk GET': 'GET /hello/bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n',
  'browser GET (10 fields)':
    'GET /hello/bench?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n' +
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n' +
    'Connection: keep-alive\r\nCookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\r\n',
  'POST 64 B (Content-Length)': `POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 64\r\n\r\n${'a'.repeat(64)}`,
};

function time(fn: () => void): number {
  // Warm up, then count iterations for MS milliseconds.
  for (let i = 0; i < 20000; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  const until = start + BigInt(MS) * 1_000_000n;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 1000; i++) fn();
    n += 1000;
    now = process.hrtime.bigint();
  }
  return Number(now - start) / n;
}

function ours(buf: Buffer): () => void {
  let sink = 0;
  const p = new RequestParser({ onHead: (h) => (sink += h.rawHeaders.length), onBody: (b) => (sink += b.length), onEnd: () => sink++ });
  return () => p.push(buf);
}

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(buf: Buffer): number | Error;
  [k: number]: unknown;
}
function llhttp(buf: Buffer): (() => void) | null {
  try {
    process.noDeprecation = true;
    const { HTTPParser } = (process as unknown as { binding(n: string): { HTTPParser: Record<string, number> & (new () => LlhttpParser) } }).binding('http_parser');
    const p = new HTTPParser();
    p.initialize(HTTPParser.REQUEST!, {}, 0, 0);
    let sink = 0;
    p[HTTPParser.kOnHeadersComplete!] = (_a: number, _b: number, headers: string[]): number => {
      sink += headers.length;
      return 0;
    };
    p[HTTPParser.kOnBody!] = (b: Buffer) => (sink += b.length);
    p[HTTPParser.kOnMessageComplete!] = () => sink++;
    p[HTTPParser.kOnExecute!] = () => {};
    return () => {
      const r = p.execute(buf);
      if (r instanceof Error) throw r;
    };
  } catch {
    return null;
  }
}

function naive(buf: Buffer): () => void {
  // bench/floors/raw-net-floor.mjs's parser (GET only, no checks).
  let pending = '';
  let sink = 0;
  return () => {
    pending += buf.toString('latin1');
    let end;
    while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
      const lines = pending.slice(0, end).split('\r\n');
      pending = pending.slice(end + 4);
      const [method, url] = lines[0]!.split(' ');
      sink += method!.length + url!.length;
      for (let i = 1; i < lines.length; i++) {
        const c = lines[i]!.indexOf(':');
        sink += ('HTTP_' + lines[i]!.slice(0, c).toUpperCase().replaceAll('-', '_')).length + lines[i]!.slice(c + 1).trim().length;
      }
    }
  };
}

console.log(`node ${process.version}, ${MS} ms per cell; ns per request (lower is better)`);
console.log(['input', 'gatehouse', 'llhttp', 'naive floor'].map((s, i) => s.padEnd(i === 0 ? 44 : 12)).join(''));
for (const [name, one] of Object.entries(inputs)) {
  for (const count of [1, 16]) {
    const buf = Buffer.from(one.repeat(count), 'latin1');
    const cells = [time(ours(buf)) / count];
    const ll = llhttp(buf);
    cells.push(ll ? time(ll) / count : NaN);
    cells.push(name.startsWith('POST') ? NaN : time(naive(buf)) / count);
    console.log(`${name}${count > 1 ? ` ×${count} pipelined` : ''}`.padEnd(44) + cells.map((c) => (Number.isNaN(c) ? '-' : c.toFixed(0)).padEnd(12)).join(''));
  }
}
