/**
 * @module backend/ashd/request
 * ashd's handler protocol, the receiving side: one SOCK_SEQPACKET datagram
 * per request, `METHOD\0URL\0VERSION\0REST\0` then `NAME\0VALUE\0` pairs and
 * a terminating empty string (ashd lib/req.c sendreq2/recvreq). Pure: no
 * sockets here. Strings are latin1 so every byte round-trips.
 */
import { GatehouseError } from '../../errors.js';

/** A datagram that is not a well-formed request (ashd would crash or quit on these). */
export class AshdProtocolError extends GatehouseError<'ERR_ASHD_BAD_REQUEST'> {
  constructor(detail: string) {
    super('ERR_ASHD_BAD_REQUEST', `ashd: ${detail}`);
  }
}

export interface AshdRequest {
  method: string;
  /** The raw request target, query included. */
  url: string;
  version: string;
  /** The part of the path not yet consumed by parent handlers (no leading '/', no query). */
  rest: string;
  /** In order, duplicates kept. */
  headers: Array<[name: string, value: string]>;
}

/** Decodes one request datagram; throws AshdProtocolError when it is cut short or malformed. */
export function decodeAshdRequest(payload: Uint8Array): AshdRequest {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let at = 0;
  const next = (what: string): string => {
    const end = buf.indexOf(0, at);
    if (end < 0) throw new AshdProtocolError(`request datagram cut short in ${what}`);
    const s = buf.toString('latin1', at, end);
    at = end + 1;
    return s;
  };
  const method = next('the method');
  const url = next('the URL');
  const version = next('the version');
  const rest = next('the rest string');
  if (method === '') throw new AshdProtocolError('empty request method');
  const headers: Array<[string, string]> = [];
  for (;;) {
    const name = next('the header list');
    if (name === '') break;
    headers.push([name, next(`the value of header ${name}`)]);
  }
  if (at !== buf.length) throw new AshdProtocolError(`${buf.length - at} stray bytes after the header list`);
  return { method, url, version, rest, headers };
}

/** Encodes a request datagram (the parent's side; used by tests and tools). */
export function encodeAshdRequest(req: AshdRequest): Buffer {
  const parts = [req.method, req.url, req.version, req.rest];
  for (const [n, v] of req.headers) parts.push(n, v);
  parts.push('');
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'latin1');
}

/** First header called `name`, case-insensitively (ashd getheader()). */
export function getHeader(req: AshdRequest, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [n, v] of req.headers) if (n.toLowerCase() === lower) return v;
  return undefined;
}
