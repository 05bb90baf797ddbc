/**
 * @module scgi/contract
 * The shapes the SCGI layer offers to src/app (server side) and src/backend
 * (client side).
 */
import type { Readable, Writable } from 'node:stream';
import type { ParamList } from '../fastcgi/contract.js';

export type { ParamList };

/** One SCGI request as the application side sees it (one request per connection). */
export interface ScgiServerRequest {
  /** The header block, in wire order (CONTENT_LENGTH first, SCGI=1 present). */
  readonly params: ParamList;
  /** Exactly CONTENT_LENGTH bytes of body; an early EOF errors it with ERR_SCGI_SHORT_BODY. */
  readonly body: Readable;
  /** The raw CGI response goes here (headers, blank line, body); end() closes the connection. */
  readonly response: Writable;
}

export interface ScgiServerOptions {
  /** Upper bound on the netstring header block (default 64 KiB). */
  maxHeaderBytes?: number;
}
