/**
 * @module gateway/static
 * Serving one already opened, already authorised regular file: Content-Type
 * from the extension, validators (ETag from size and mtime, Last-Modified)
 * with 304, one `Range: bytes=` range (206/416), HEAD without a body.
 * Which file may be served is decided elsewhere (php-preset.ts); this module
 * never touches a path, only the open descriptor, so nothing can swap the
 * file between the check and the read.
 */
import { closeSync, createReadStream, readSync, type Stats } from 'node:fs';
import type { Exchange } from '../http1/server.js';
import { contentTypeFor } from './mime.js';

/**
 * Bodies up to this size are read with one synchronous read (a page-cache
 * copy of microseconds, like nginx's blocking read); larger ones stream
 * from the descriptor with backpressure.
 */
const SMALL_FILE = 64 * 1024;

export interface OpenFile {
  /** A descriptor opened for reading; serveFile closes it, whatever happens. */
  fd: number;
  stat: Stats;
  /** Only its extension is used (Content-Type). */
  path: string;
}

/** `"size-mtime"` in hex, like nginx: changes whenever a deploy rewrites the file. */
export function etagFor(stat: Stats): string {
  return `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
}

/**
 * Answers `req` from `file` and returns the status sent. A large body is
 * piped with backpressure; a client that goes away just ends the stream.
 */
export function serveFile(ex: Exchange, file: OpenFile): number {
  try {
    return answer(ex, file);
  } catch (err) {
    closeQuietly(file.fd);
    throw err;
  }
}

function answer(ex: Exchange, file: OpenFile): number {
  const { stat } = file;
  const method = ex.method;
  if (method !== 'GET' && method !== 'HEAD') {
    closeSync(file.fd);
    ex.writeHead(405, undefined, ['Allow', 'GET, HEAD', 'Content-Type', 'text/plain; charset=utf-8'], 19);
    ex.end('Method Not Allowed\n');
    return 405;
  }
  const etag = etagFor(stat);
  const lastModified = stat.mtime.toUTCString();

  if (notModified(ex, etag, stat.mtime)) {
    closeSync(file.fd);
    ex.writeHead(304, undefined, ['ETag', etag, 'Last-Modified', lastModified], undefined);
    ex.end();
    return 304;
  }

  const size = stat.size;
  let start = 0;
  let end = size - 1;
  let status = 200;
  const headers = ['Content-Type', contentTypeFor(file.path), 'Accept-Ranges', 'bytes', 'ETag', etag, 'Last-Modified', lastModified];
  const rangeHeader = ex.header('range');
  if (method === 'GET' && rangeHeader !== undefined && ifRangeHolds(ex, etag, lastModified)) {
    const range = parseRange(rangeHeader, size);
    if (range === 'unsatisfiable') {
      closeSync(file.fd);
      ex.writeHead(416, undefined, ['Content-Range', `bytes */${size}`, 'Content-Type', 'text/plain; charset=utf-8'], 32);
      ex.end('Requested Range Not Satisfiable\n');
      return 416;
    }
    if (range !== null) {
      [start, end] = range;
      status = 206;
      headers.push('Content-Range', `bytes ${start}-${end}/${size}`);
    }
  }
  const length = end - start + 1;
  if (method === 'HEAD' || length <= 0) {
    closeSync(file.fd);
    ex.writeHead(status, undefined, headers, Math.max(length, 0));
    ex.end();
    return status;
  }
  if (length <= SMALL_FILE) {
    const body = Buffer.allocUnsafe(length);
    let got = 0;
    try {
      while (got < length) {
        const n = readSync(file.fd, body, got, length - got, start + got);
        if (n === 0) break;
        got += n;
      }
    } finally {
      closeSync(file.fd);
    }
    // Shrunk under us since fstat: send what is there rather than a lying Content-Length.
    ex.writeHead(status, undefined, headers, got);
    ex.end(got === length ? body : body.subarray(0, got));
    return status;
  }
  ex.writeHead(status, undefined, headers, length);
  streamFile(ex, file.fd, start, end);
  return status;
}

/**
 * A large body from the descriptor with backpressure. A client that goes
 * away ends the read (and closes the descriptor); a file truncated under us
 * leaves the body short, which cuts the connection (see Exchange.end()).
 */
function streamFile(ex: Exchange, fd: number, start: number, end: number): void {
  const body = createReadStream('', { fd, start, end, autoClose: true });
  body.on('data', (chunk) => {
    if (ex.write(chunk as Buffer)) return;
    body.pause();
    ex.ondrain ??= () => body.resume();
  });
  body.on('end', () => ex.end());
  body.on('error', () => ex.destroy());
  ex.onabort = () => body.destroy();
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since. */
function notModified(ex: Exchange, etag: string, mtime: Date): boolean {
  const inm = ex.headers['if-none-match'];
  if (typeof inm === 'string') return inm.trim() === '*' || inm.split(',').some((t) => weakEqual(t.trim(), etag));
  const ims = ex.header('if-modified-since');
  if (ims === undefined) return false;
  const since = Date.parse(ims);
  // HTTP dates have whole seconds; mtime has more, so compare at second precision.
  return Number.isFinite(since) && Math.floor(mtime.getTime() / 1000) * 1000 <= since;
}

function weakEqual(tag: string, etag: string): boolean {
  return (tag.startsWith('W/') ? tag.slice(2) : tag) === etag;
}

/** If-Range (RFC 9110 §13.1.5): the range applies only while the representation is unchanged. */
function ifRangeHolds(ex: Exchange, etag: string, lastModified: string): boolean {
  const raw = ex.rawHeaders;
  let ir: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'if-range') continue;
    // A repeat is ambiguous: no range.
    if (ir !== undefined) return false;
    ir = raw[i + 1]!;
  }
  if (ir === undefined) return true;
  const v = ir.trim();
  return v.startsWith('"') ? v === etag : v === lastModified;
}

/**
 * One `bytes=` range → [start, end] inclusive. null: not a single byte range
 * we understand (ignored: the whole file is sent, as RFC 9110 allows);
 * 'unsatisfiable': a well-formed range that misses the file → 416.
 */
export function parseRange(header: string, size: number): [number, number] | null | 'unsatisfiable' {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (m === null) return null;
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return null;
  if (first === '') {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return [start, end];
}
