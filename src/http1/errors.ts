/**
 * @module http1/errors
 * The error class of the HTTP/1.1 request parser. Callers match on `code`;
 * `status` is the response the server should answer with before closing the
 * connection (the parser is dead after any of these). Messages start with "http1: ".
 */
import { GatehouseError } from '../errors.js';

/** Every code an Http1ParseError can carry, with the status the server answers with. */
export const HTTP1_ERROR_STATUS = {
  /** Request line not `method SP request-target SP HTTP-version` (RFC 9112 §3), or too many empty lines before it (§2.2). */
  ERR_HTTP1_BAD_REQUEST_LINE: 400,
  /** The method is not a token (RFC 9112 §3.1). */
  ERR_HTTP1_BAD_METHOD: 400,
  /** The request-target holds whitespace/CTL, or its form does not fit the method (RFC 9112 §3.2). */
  ERR_HTTP1_BAD_TARGET: 400,
  /** The version is not `HTTP/` DIGIT `.` DIGIT (RFC 9112 §2.3). */
  ERR_HTTP1_BAD_VERSION: 400,
  /** A well-formed version other than HTTP/1.0 and HTTP/1.1 (RFC 9110 §15.6.6). */
  ERR_HTTP1_UNSUPPORTED_VERSION: 505,
  /** A line that ends in a bare LF instead of CRLF (RFC 9112 §2.2: we take the strict choice, like llhttp). */
  ERR_HTTP1_BARE_LF: 400,
  /** A field name that is not a token, is empty, or is followed by whitespace before the colon (RFC 9112 §5.1). */
  ERR_HTTP1_BAD_HEADER_NAME: 400,
  /** A field value with a CTL other than HTAB (NUL, CR, 0x7F…) (RFC 9110 §5.5). */
  ERR_HTTP1_BAD_HEADER_VALUE: 400,
  /** A field line starting with whitespace: obs-fold, or whitespace after the start-line (RFC 9112 §5.2, §2.2). */
  ERR_HTTP1_OBS_FOLD: 400,
  /** Request line plus header section exceed maxHeaderBytes. */
  ERR_HTTP1_HEADERS_TOO_LARGE: 431,
  /** More than maxHeaders field lines. */
  ERR_HTTP1_TOO_MANY_HEADERS: 431,
  /** An HTTP/1.1 request without Host, or any request with more than one (RFC 9112 §3.2). */
  ERR_HTTP1_BAD_HOST: 400,
  /** Content-Length not 1*DIGIT, beyond 2^53-1, or repeated/listed with different values (RFC 9112 §6.3 rule 5). */
  ERR_HTTP1_BAD_CONTENT_LENGTH: 400,
  /** Transfer-Encoding together with Content-Length (RFC 9112 §6.3 rule 3 allows close; we reject: smuggling defence). */
  ERR_HTTP1_CONFLICTING_FRAMING: 400,
  /**
   * Transfer-Encoding whose final coding is not `chunked`, chunked applied twice, a
   * parameter on chunked, an empty list, or any Transfer-Encoding in HTTP/1.0
   * (RFC 9112 §6.3 rule 4, §6.1, §7).
   */
  ERR_HTTP1_BAD_TRANSFER_ENCODING: 400,
  /** A final `chunked` preceded by other codings (gzip, chunked): valid, but we cannot decode it (RFC 9112 §6.1: 501). */
  ERR_HTTP1_UNSUPPORTED_TRANSFER_CODING: 501,
  /** A chunk-size line that is not hex [ext] CRLF, a bad extension byte, or chunk data not followed by CRLF (RFC 9112 §7.1). */
  ERR_HTTP1_BAD_CHUNK: 400,
  /** A chunk size above maxChunkSize (the bound that keeps the arithmetic exact). */
  ERR_HTTP1_CHUNK_TOO_LARGE: 413,
  /** The chunk extensions of one request exceed maxChunkExtensionBytes in total. */
  ERR_HTTP1_CHUNK_EXTENSIONS_TOO_LARGE: 413,
  /** The trailer section exceeds maxTrailerBytes (or maxHeaders fields). */
  ERR_HTTP1_TRAILERS_TOO_LARGE: 431,
} as const;

export type Http1ParseErrorCode = keyof typeof HTTP1_ERROR_STATUS;

/** Bad bytes from an HTTP/1.x client. The connection cannot be trusted past this point. */
export class Http1ParseError extends GatehouseError<Http1ParseErrorCode> {
  /** The status to answer with (400, 413, 431, 501 or 505), then close. */
  readonly status: number;
  constructor(code: Http1ParseErrorCode, detail: string, options?: { cause?: unknown }) {
    super(code, `http1: ${detail}`, options);
    this.status = HTTP1_ERROR_STATUS[code];
  }
}

export type Http1ResponseErrorCode =
  /** A status outside 100–999. */
  | 'ERR_HTTP1_BAD_STATUS'
  /** A header name that is not a token, a value or reason with a control character, or a framing field passed in. */
  | 'ERR_HTTP1_BAD_RESPONSE_FIELD';

/** A response head the server must not send as given (a bug or response splitting upstream): answer 502/500 instead. */
export class Http1ResponseError extends GatehouseError<Http1ResponseErrorCode> {
  constructor(code: Http1ResponseErrorCode, detail: string) {
    super(code, `http1: ${detail}`);
  }
}
