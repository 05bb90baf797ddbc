/**
 * @module gateway/response-relay
 * The rules for passing the application's response on to the client (the
 * copy itself is forward.ts's Forwarding, a ResponseSink): its head without
 * hop-by-hop fields (src/http1's server frames the connection itself:
 * keep-alive, chunked when the application gave no Content-Length), its Content-Length
 * checked here and held to while the body is copied — a longer body would
 * desynchronise the client's keep-alive connection, a shorter one would
 * leave it waiting — and the responses that have no body whatever the
 * headers say.
 */
import type { BackendResponseHead } from '../backend/contract.js';
import { GatehouseError } from '../errors.js';

export type RelayErrorCode = 'ERR_GATEWAY_BAD_RESPONSE_HEAD' | 'ERR_GATEWAY_LENGTH_MISMATCH' | 'ERR_GATEWAY_BODY_IDLE';

export class RelayError extends GatehouseError<RelayErrorCode> {}

export interface RelayHead {
  /** The fields to send, flat [name, value, …], without the framing ones. */
  flat: string[];
  /** The application's Content-Length; undefined: none, so the response is chunked. */
  contentLength: number | undefined;
}

const CONTENT_LENGTH = /^\s*\d{1,15}\s*$/;

/**
 * RFC 9110 §7.6.1 connection-specific fields, plus the pre-standard
 * Proxy-Connection, and Content-Length (which needs a check): a field that
 * is none of them is passed on as it is.
 */
function special(lower: string): boolean {
  switch (lower) {
    case 'connection':
    case 'keep-alive':
    case 'transfer-encoding':
    case 'te':
    case 'trailer':
    case 'upgrade':
    case 'proxy-connection':
    case 'content-length':
      return true;
    default:
      return false;
  }
}

/**
 * The fields to pass on, and the application's Content-Length.
 * Throws RelayError for a head that cannot be sent faithfully (→ 502).
 */
export function responseHead(resp: BackendResponseHead): RelayHead {
  if (resp.status < 200 || resp.status > 999) {
    throw new RelayError('ERR_GATEWAY_BAD_RESPONSE_HEAD', `gateway: the application sent status ${resp.status} as its final response`);
  }
  const headers = resp.headers;
  const flat: string[] = [];
  let contentLength: number | undefined;
  let extraHopByHop: string[] | undefined;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i]!;
    const name = field[0];
    const value = field[1];
    // Only names of the right lengths can be special: most fields skip toLowerCase().
    const n = name.length;
    const lower = n === 2 || n === 7 || n === 10 || n === 14 || n === 16 || n === 17 ? name.toLowerCase() : '';
    if (lower !== '' && special(lower)) {
      if (lower !== 'content-length') {
        // Fields the application's Connection header names are hop-by-hop too.
        if (lower === 'connection') (extraHopByHop ??= []).push(...value.toLowerCase().split(',').map((t) => t.trim()));
        continue;
      }
      const length = CONTENT_LENGTH.test(value) ? Number(value) : NaN;
      if (Number.isNaN(length) || (contentLength !== undefined && contentLength !== length)) {
        throw new RelayError('ERR_GATEWAY_BAD_RESPONSE_HEAD', `gateway: the application sent a bad Content-Length ${JSON.stringify(value)}`);
      }
      contentLength = length;
      continue; // framing is the server's (encodeResponseHead writes it from contentLength)
    }
    flat.push(name, value);
  }
  if (extraHopByHop !== undefined) {
    for (let i = flat.length - 2; i >= 0; i -= 2) {
      const lower = flat[i]!.toLowerCase();
      if (extraHopByHop.includes(lower)) flat.splice(i, 2);
    }
  }
  return { flat, contentLength };
}

