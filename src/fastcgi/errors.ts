/**
 * @module fastcgi/errors
 * The error classes of the FastCGI layer, on both sides of the protocol.
 * Callers match on `code`; messages start with "fcgi: ".
 */
import { GatehouseError } from '../errors.js';

/** Every code a FastCgiProtocolError can carry: the peer (or our caller) broke the wire format. */
export type FastCgiProtocolErrorCode =
  /** A record header whose version byte is not FCGI_VERSION_1. */
  | 'ERR_FCGI_BAD_VERSION'
  /**
   * A record that is well framed but wrong for its type: a BEGIN_REQUEST/END_REQUEST/UNKNOWN_TYPE
   * body that is not 8 bytes, a management record with a request id ≠ 0, BEGIN_REQUEST on id 0,
   * a BEGIN_REQUEST for an id already in flight.
   */
  | 'ERR_FCGI_BAD_RECORD'
  /** The PARAMS of one request exceed maxParamsBytes, or a name/value is longer than 2^31-1 bytes. */
  | 'ERR_FCGI_PARAMS_TOO_LARGE'
  /** A name–value pair stream that ends inside a length, name or value. */
  | 'ERR_FCGI_BAD_NAME_VALUE'
  /** Encoding a record whose content would exceed 65535 bytes. */
  | 'ERR_FCGI_RECORD_TOO_LARGE';

/** Bad bytes on the wire (or an attempt to encode an impossible record). */
export class FastCgiProtocolError extends GatehouseError<FastCgiProtocolErrorCode> {
  constructor(code: FastCgiProtocolErrorCode, detail: string, options?: { cause?: unknown }) {
    super(code, `fcgi: ${detail}`, options);
  }
}

/** The error for a header whose version byte is not 1. */
export function badVersion(version: number): FastCgiProtocolError {
  return new FastCgiProtocolError('ERR_FCGI_BAD_VERSION', `invalid header version ${version}`);
}

/** Every code a FastCgiConnectionError can carry. */
export type FastCgiConnectionErrorCode =
  /** The connection ended, failed, broke the protocol or was destroyed before END_REQUEST. */
  | 'ERR_FCGI_CONN_CLOSED'
  /** All 65535 request ids are in flight on this connection. */
  | 'ERR_FCGI_NO_REQUEST_ID'
  /** The peer answered a management record with UNKNOWN_TYPE (e.g. it does not implement GET_VALUES). */
  | 'ERR_FCGI_UNKNOWN_TYPE';

/**
 * A request (client side) that could not complete because of its connection.
 * `responseStarted` says whether any byte of the response (a STDOUT or STDERR
 * record for this request) had arrived: when false, nothing was produced and a
 * caller may retry the request elsewhere if its body can be replayed.
 * `cause` holds the socket or protocol error, if there was one.
 */
export class FastCgiConnectionError extends GatehouseError<FastCgiConnectionErrorCode> {
  readonly responseStarted: boolean;
  constructor(code: FastCgiConnectionErrorCode, detail: string, options: { cause?: unknown; responseStarted?: boolean } = {}) {
    super(code, `fcgi: ${detail}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.responseStarted = options.responseStarted ?? false;
  }
}
