/**
 * @module scgi/errors
 * The one error class the SCGI layer throws for bad peer input, on either
 * side of the protocol. Callers match on `code`; messages start with "scgi: ".
 */
import { GatehouseError } from '../errors.js';

/** Every code an ScgiProtocolError can carry. */
export type ScgiErrorCode =
  /** Bad length digits, a leading zero, a missing ':' or trailing ',', or EOF inside the netstring. */
  | 'ERR_SCGI_NETSTRING'
  /** The netstring announces more than maxHeaderBytes. */
  | 'ERR_SCGI_HEADER_TOO_LARGE'
  /** Odd number of NUL-terminated strings, an empty name, a duplicate name, a NUL in a name/value to encode. */
  | 'ERR_SCGI_BAD_HEADERS'
  /** CONTENT_LENGTH missing, not first (strict mode), or not a decimal. */
  | 'ERR_SCGI_NO_CONTENT_LENGTH'
  /** SCGI=1 missing. */
  | 'ERR_SCGI_NO_SCGI'
  /** EOF before CONTENT_LENGTH body bytes arrived: a CONTENT_LENGTH that lies. */
  | 'ERR_SCGI_SHORT_BODY'
  /** Client side: the caller wrote more or fewer body bytes than the contentLength it announced. */
  | 'ERR_SCGI_BODY_LENGTH'
  /** Client side: the connection ended or failed before a complete response (no byte, or a reset). */
  | 'ERR_SCGI_CONNECTION_CLOSED';

export class ScgiProtocolError extends GatehouseError<ScgiErrorCode> {
  constructor(code: ScgiErrorCode, detail: string, options?: { cause?: unknown }) {
    super(code, `scgi: ${detail}`, options);
  }
}
