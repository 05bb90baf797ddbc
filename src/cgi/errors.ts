/**
 * @module cgi/errors
 * The error class of the RFC 3875 translation layer, both directions.
 * Request-side codes mean "answer 400"; response-side codes mean the
 * application sent something unusable ("answer 502"). Messages start "cgi: ".
 */
import { GatehouseError } from '../errors.js';

export type CgiErrorCode =
  /** A request header name outside token, a name/value with CR, LF or NUL, or an ambiguous repeat (Host, Content-Type). */
  | 'ERR_CGI_BAD_HEADER'
  /** The request path (or a configured SCRIPT_NAME/file) decodes to a NUL, or holds CR/LF/NUL raw. */
  | 'ERR_CGI_BAD_PATH'
  /** A response head line that is not a valid CGI header (no ':', obs-fold, bad name/value, bad Status). */
  | 'ERR_CGI_BAD_RESPONSE'
  /** The response head is longer than the limit (default 64 KiB). */
  | 'ERR_CGI_HEADER_TOO_LARGE'
  /** The response ended before the blank line that ends the head. */
  | 'ERR_CGI_TRUNCATED_HEAD';

export class CgiError extends GatehouseError<CgiErrorCode> {
  constructor(code: CgiErrorCode, detail: string, options?: { cause?: unknown }) {
    super(code, `cgi: ${detail}`, options);
  }
}
