/**
 * @module app/request-head
 * CGI meta-variables (RFC 3875 §4.1) → what node:http's IncomingMessage
 * carries: method, url, HTTP version, header lines, and the addresses its
 * socket would report. One pass over the params, no per-request regexes.
 */
import { latin1 } from '../latin1.js';
import type { ParamList } from '../fastcgi/contract.js';

export interface RequestHead {
  method: string;
  url: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  /** Header names and values alternating, like IncomingMessage#rawHeaders (names lowercase). */
  rawHeaders: string[];
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  /** HTTPS=on (or 1): the client spoke TLS to the web server. */
  encrypted: boolean;
}

/**
 * `HTTP_USER_AGENT` → `user-agent`. Names repeat on every request, so the
 * conversions are remembered (bounded: a peer cannot grow it without limit).
 */
const headerNames = new Map<string, string>();
const MAX_REMEMBERED_NAMES = 512;

function headerName(param: string): string {
  let name = headerNames.get(param);
  if (name === undefined) {
    name = param.slice(5).toLowerCase().replaceAll('_', '-');
    if (headerNames.size < MAX_REMEMBERED_NAMES) headerNames.set(param, name);
  }
  return name;
}

function port(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

/** Reads the request line, headers and peer addresses out of CGI params. */
export function readRequestHead(params: ParamList): RequestHead {
  let method = 'GET';
  let requestUri: string | undefined;
  let scriptName = '';
  let pathInfo = '';
  let queryString = '';
  let protocol: string | undefined;
  let remoteAddr: string | undefined;
  let remotePort: string | undefined;
  let serverAddr: string | undefined;
  let serverPort: string | undefined;
  let https: string | undefined;
  let contentType: string | undefined;
  let contentLength: string | undefined;
  const raw: string[] = [];

  for (let i = 0; i < params.length; i++) {
    const pair = params[i]!;
    const name = pair[0];
    const value = pair[1];
    if (name.charCodeAt(0) === 0x48 /* H */ && name.startsWith('HTTP_')) {
      // CONTENT_TYPE/CONTENT_LENGTH are authoritative; a server that also sends the HTTP_ copies must not duplicate them.
      if (name === 'HTTP_CONTENT_TYPE' || name === 'HTTP_CONTENT_LENGTH') continue;
      raw.push(headerName(name), value);
      continue;
    }
    switch (name) {
      case 'REQUEST_METHOD':
        if (value !== '') method = value;
        break;
      case 'REQUEST_URI':
        requestUri = value;
        break;
      case 'SCRIPT_NAME':
        scriptName = value;
        break;
      case 'PATH_INFO':
        pathInfo = value;
        break;
      case 'QUERY_STRING':
        queryString = value;
        break;
      case 'SERVER_PROTOCOL':
        protocol = value;
        break;
      case 'REMOTE_ADDR':
        remoteAddr = value;
        break;
      case 'REMOTE_PORT':
        remotePort = value;
        break;
      case 'SERVER_ADDR':
        serverAddr = value;
        break;
      case 'SERVER_PORT':
        serverPort = value;
        break;
      case 'HTTPS':
        https = value;
        break;
      case 'CONTENT_TYPE':
        contentType = value;
        break;
      case 'CONTENT_LENGTH':
        contentLength = value;
        break;
    }
  }
  // nginx sends CONTENT_TYPE/CONTENT_LENGTH empty when the request has none: no header then.
  if (contentType) raw.push('content-type', contentType);
  if (contentLength) raw.push('content-length', contentLength);

  let major = 1;
  let minor = 1;
  if (protocol === 'HTTP/1.0') minor = 0;
  else if (protocol !== undefined && protocol !== 'HTTP/1.1') {
    // "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", also "HTTP/2" and "HTTP/3".
    const m = /^HTTP\/(\d)(?:\.(\d))?$/i.exec(protocol);
    if (m) {
      major = Number(m[1]);
      minor = m[2] === undefined ? 0 : Number(m[2]);
    }
  }

  return {
    method,
    url: requestUri || scriptName + pathInfo + (queryString ? '?' + queryString : '') || '/',
    httpVersionMajor: major,
    httpVersionMinor: minor,
    rawHeaders: raw,
    remoteAddress: remoteAddr || undefined,
    remotePort: port(remotePort),
    localAddress: serverAddr || undefined,
    localPort: port(serverPort),
    encrypted: https !== undefined && (https.toLowerCase() === 'on' || https === '1'),
  };
}

// ---------------------------------------------------------------- straight from the PARAMS bytes

/** Param names as bytes, to recognise them without making strings. */
const N = (s: string): Buffer => Buffer.from(s, 'latin1');
const REQUEST_METHOD = N('REQUEST_METHOD');
const REQUEST_URI = N('REQUEST_URI');
const SCRIPT_NAME = N('SCRIPT_NAME');
const PATH_INFO = N('PATH_INFO');
const QUERY_STRING = N('QUERY_STRING');
const SERVER_PROTOCOL = N('SERVER_PROTOCOL');
const REMOTE_ADDR = N('REMOTE_ADDR');
const REMOTE_PORT = N('REMOTE_PORT');
const SERVER_ADDR = N('SERVER_ADDR');
const SERVER_PORT = N('SERVER_PORT');
const HTTPS = N('HTTPS');
const CONTENT_TYPE = N('CONTENT_TYPE');
const CONTENT_LENGTH = N('CONTENT_LENGTH');
const HTTP_CONTENT_TYPE = N('HTTP_CONTENT_TYPE');
const HTTP_CONTENT_LENGTH = N('HTTP_CONTENT_LENGTH');
const HTTP_1_1 = N('HTTP/1.1');
const HTTP_1_0 = N('HTTP/1.0');

/** b[at, at + word.length) equals `word` (the caller knows b is long enough). */
function is(b: Buffer, at: number, word: Buffer): boolean {
  for (let i = 0; i < word.length; i++) if (b[at + i] !== word[i]) return false;
  return true;
}

/** A header name as its HTTP_ param bytes, with the last value seen for it (values repeat too: Host, Accept…). */
interface HeaderEntry {
  readonly bytes: Buffer;
  readonly name: string;
  last: string;
}

/**
 * `HTTP_USER_AGENT` bytes → `user-agent`, remembered by the bytes (bounded
 * like headerNames). Keyed by length, first and last char of the name, then
 * checked byte by byte.
 */
const headerEntries = new Map<number, HeaderEntry[]>();
let rememberedEntries = 0;

function headerEntryAt(b: Buffer, start: number, end: number): HeaderEntry | null {
  const n = end - start;
  const key = n > 5 ? (n << 16) | (b[start + 5]! << 8) | b[end - 1]! : n << 16;
  const bucket = headerEntries.get(key);
  if (bucket !== undefined) {
    for (let i = 0; i < bucket.length; i++) {
      const e = bucket[i]!;
      if (e.bytes.length === n && is(b, start, e.bytes)) return e;
    }
  }
  if (rememberedEntries >= MAX_REMEMBERED_NAMES) return null;
  rememberedEntries++;
  const entry: HeaderEntry = { bytes: Buffer.from(b.subarray(start, end)), name: headerName(latin1(b, start, end)), last: '' };
  if (bucket !== undefined) bucket.push(entry);
  else headerEntries.set(key, [entry]);
  return entry;
}

/** Values no longer than this are compared with the last one seen before a new string is made. */
const MAX_CACHED_VALUE = 32;

/** latin1(b, start, end), reusing `last` when the bytes are the same (end > start). */
function sameOr(b: Buffer, start: number, end: number, last: string): string {
  const n = end - start;
  if (n === last.length && n <= MAX_CACHED_VALUE) {
    let i = 0;
    while (i < n && b[start + i] === last.charCodeAt(i)) i++;
    if (i === n) return last;
  }
  return latin1(b, start, end);
}

/** The last strings made for a few values that rarely change from one request to the next. */
let lastServerAddr = '';
let lastRemoteAddr = '';
let lastUri = '';

/** As port(latin1(b, start, end)), without the string for plain digits. */
function portAt(b: Buffer, start: number, end: number): number | undefined {
  if (start < 0 || start === end) return undefined;
  if (end - start <= 5) {
    let n = 0;
    let i = start;
    for (; i < end; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
    }
    if (i === end) return n <= 65535 ? n : undefined;
  }
  return port(latin1(b, start, end));
}

function methodAt(b: Buffer, start: number, end: number): string {
  const n = end - start;
  if (n === 3 && b[start] === 0x47 && b[start + 1] === 0x45 && b[start + 2] === 0x54) return 'GET';
  if (n === 4 && b[start] === 0x50 && b[start + 1] === 0x4f && b[start + 2] === 0x53 && b[start + 3] === 0x54) return 'POST';
  if (n === 4 && b[start] === 0x48 && b[start + 1] === 0x45 && b[start + 2] === 0x41 && b[start + 3] === 0x44) return 'HEAD';
  return latin1(b, start, end);
}

/** The value at [start, end) as a string, or undefined when the param was absent (start < 0). */
function opt(b: Buffer, start: number, end: number): string | undefined {
  return start < 0 ? undefined : start === end ? '' : latin1(b, start, end);
}

/** Reads a pair length at `off` (the pairs were checked, so it is there). */
function sizeAt(b: Buffer, off: number): number {
  const b0 = b[off]!;
  return b0 < 0x80 ? b0 : (b0 & 0x7f) * 0x1000000 + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!;
}

/** Without REQUEST_URI: SCRIPT_NAME + PATH_INFO + ?QUERY_STRING (the last of each), or '/'. */
function urlFromParts(b: Buffer): string {
  let scriptS = -1, scriptE = 0;
  let pathS = -1, pathE = 0;
  let queryS = -1, queryE = 0;
  const end = b.length;
  let off = 0;
  while (off < end) {
    const nl = sizeAt(b, off);
    off += b[off]! < 0x80 ? 1 : 4;
    const vl = sizeAt(b, off);
    off += b[off]! < 0x80 ? 1 : 4;
    const ns = off;
    const vs = off + nl;
    off = vs + vl;
    if (nl === 11 && is(b, ns, SCRIPT_NAME)) (scriptS = vs), (scriptE = off);
    else if (nl === 9 && is(b, ns, PATH_INFO)) (pathS = vs), (pathE = off);
    else if (nl === 12 && is(b, ns, QUERY_STRING)) (queryS = vs), (queryE = off);
  }
  const query = opt(b, queryS, queryE) ?? '';
  return (opt(b, scriptS, scriptE) ?? '') + (opt(b, pathS, pathE) ?? '') + (query ? '?' + query : '') || '/';
}

/**
 * readRequestHead(decodePairs(pairs)), the same result, straight from a
 * checked PARAMS stream: names are recognised by their bytes and only the
 * values the head needs become strings (for nginx's usual twenty-odd params
 * that is at most five strings instead of forty-odd, fewer when they repeat
 * the previous request's).
 */
export function readRequestHeadFromPairs(b: Buffer): RequestHead {
  // Value ranges [xS, xE) of the last occurrence; xS = -1 when absent.
  // SCRIPT_NAME, PATH_INFO and QUERY_STRING only matter without REQUEST_URI: urlFromParts() looks for them then.
  let methodS = -1, methodE = 0;
  let uriS = -1, uriE = 0;
  let protoS = -1, protoE = 0;
  let raddrS = -1, raddrE = 0;
  let rportS = -1, rportE = 0;
  let saddrS = -1, saddrE = 0;
  let sportS = -1, sportE = 0;
  let httpsS = -1, httpsE = 0;
  let ctypeS = -1, ctypeE = 0;
  let clenS = -1, clenE = 0;
  const raw: string[] = [];

  const end = b.length;
  let off = 0;
  while (off < end) {
    const nl = sizeAt(b, off);
    off += b[off]! < 0x80 ? 1 : 4;
    const vl = sizeAt(b, off);
    off += b[off]! < 0x80 ? 1 : 4;
    const ns = off;
    const vs = off + nl;
    const ve = vs + vl;
    off = ve;
    if (nl >= 5 && b[ns] === 0x48 && b[ns + 1] === 0x54 && b[ns + 2] === 0x54 && b[ns + 3] === 0x50 && b[ns + 4] === 0x5f) {
      // HTTP_*; CONTENT_TYPE/CONTENT_LENGTH are authoritative, their HTTP_ copies are dropped.
      if ((nl === 17 && is(b, ns, HTTP_CONTENT_TYPE)) || (nl === 19 && is(b, ns, HTTP_CONTENT_LENGTH))) continue;
      const entry = headerEntryAt(b, ns, vs);
      if (entry === null) raw.push(headerName(latin1(b, ns, vs)), vl === 0 ? '' : latin1(b, vs, ve));
      else {
        const value = vl === 0 ? '' : sameOr(b, vs, ve, entry.last);
        // Only short values are kept (a long Cookie would otherwise stay in memory for good).
        if (vl <= MAX_CACHED_VALUE) entry.last = value;
        raw.push(entry.name, value);
      }
      continue;
    }
    // One candidate per name, picked by its length and a byte or two where the candidates differ, then checked whole.
    const c0 = b[ns];
    switch (nl) {
      case 5:
        if (c0 === 0x48 /* H */ && is(b, ns, HTTPS)) (httpsS = vs), (httpsE = ve);
        break;
      case 11:
        if (c0 === 0x52 /* R */) {
          if (b[ns + 2] === 0x51 /* Q */) {
            if (is(b, ns, REQUEST_URI)) (uriS = vs), (uriE = ve);
          } else if (b[ns + 7] === 0x41 /* A */) {
            if (is(b, ns, REMOTE_ADDR)) (raddrS = vs), (raddrE = ve);
          } else if (b[ns + 7] === 0x50 /* P */ && is(b, ns, REMOTE_PORT)) (rportS = vs), (rportE = ve);
        } else if (c0 === 0x53 /* S */ && b[ns + 1] === 0x45 /* E */) {
          if (b[ns + 7] === 0x41 /* A */) {
            if (is(b, ns, SERVER_ADDR)) (saddrS = vs), (saddrE = ve);
          } else if (b[ns + 7] === 0x50 /* P */ && is(b, ns, SERVER_PORT)) (sportS = vs), (sportE = ve);
        }
        break;
      // An empty CONTENT_TYPE/CONTENT_LENGTH/REQUEST_METHOD changes nothing unless it replaces a non-empty one.
      case 12:
        if (c0 === 0x43 /* C */ && (vl > 0 || (ctypeS >= 0 && ctypeE > ctypeS)) && is(b, ns, CONTENT_TYPE)) (ctypeS = vs), (ctypeE = ve);
        break;
      case 14:
        if (c0 === 0x52 /* R */) {
          if (vl > 0 && b[ns + 8] === 0x4d /* M */ && is(b, ns, REQUEST_METHOD)) (methodS = vs), (methodE = ve);
        } else if (c0 === 0x43 /* C */ && (vl > 0 || (clenS >= 0 && clenE > clenS)) && is(b, ns, CONTENT_LENGTH)) (clenS = vs), (clenE = ve);
        break;
      case 15:
        if (c0 === 0x53 /* S */ && b[ns + 7] === 0x50 /* P */ && is(b, ns, SERVER_PROTOCOL)) (protoS = vs), (protoE = ve);
        break;
    }
  }
  // nginx sends CONTENT_TYPE/CONTENT_LENGTH empty when the request has none: no header then.
  if (ctypeE > ctypeS && ctypeS >= 0) raw.push('content-type', latin1(b, ctypeS, ctypeE));
  if (clenE > clenS && clenS >= 0) raw.push('content-length', latin1(b, clenS, clenE));

  let major = 1;
  let minor = 1;
  if (protoS >= 0 && !(protoE - protoS === 8 && is(b, protoS, HTTP_1_1))) {
    if (protoE - protoS === 8 && is(b, protoS, HTTP_1_0)) minor = 0;
    else {
      const m = /^HTTP\/(\d)(?:\.(\d))?$/i.exec(latin1(b, protoS, protoE));
      if (m) {
        major = Number(m[1]);
        minor = m[2] === undefined ? 0 : Number(m[2]);
      }
    }
  }

  const url = uriS >= 0 && uriE > uriS ? (lastUri = sameOr(b, uriS, uriE, lastUri)) : urlFromParts(b);
  const https = opt(b, httpsS, httpsE);
  return {
    method: methodS >= 0 ? methodAt(b, methodS, methodE) : 'GET',
    url,
    httpVersionMajor: major,
    httpVersionMinor: minor,
    rawHeaders: raw,
    remoteAddress: raddrE > raddrS && raddrS >= 0 ? (lastRemoteAddr = sameOr(b, raddrS, raddrE, lastRemoteAddr)) : undefined,
    remotePort: portAt(b, rportS, rportE),
    localAddress: saddrE > saddrS && saddrS >= 0 ? (lastServerAddr = sameOr(b, saddrS, saddrE, lastServerAddr)) : undefined,
    localPort: portAt(b, sportS, sportE),
    encrypted: https !== undefined && (https.toLowerCase() === 'on' || https === '1'),
  };
}

/** A CGI param list as a plain lookup object (later duplicates win, as in an environment). */
export function paramsObject(params: ParamList): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of params) out[name] = value;
  return out;
}
