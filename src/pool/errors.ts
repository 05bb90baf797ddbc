/**
 * @module pool/errors
 * Errors the process manager reports. Callers and tests match on `code`.
 */
import { GatehouseError } from '../errors.js';

export type PoolErrorCode =
  /** A Unix socket path answers connect(): another server owns it. */
  | 'ERR_PM_SOCKET_IN_USE'
  /** The socket path exists and is not a socket: never deleted on our behalf. */
  | 'ERR_PM_NOT_A_SOCKET'
  /** socket/bind/listen failed; `cause` is the errno error from the addon. */
  | 'ERR_PM_LISTEN'
  /** --inherit (or no address) but neither LISTEN_FDS nor a listening fd 0 is present. */
  | 'ERR_PM_NO_INHERITED_SOCKET'
  /** The pid file names a process that is still alive. */
  | 'ERR_PM_PIDFILE_LIVE'
  /** The pid file could not be written. */
  | 'ERR_PM_PIDFILE_WRITE'
  /** build/Release/gatehouse_native.node or gatehouse-exec is missing: the addon was not built. */
  | 'ERR_PM_NATIVE_MISSING'
  /** An option has a value the manager cannot use. */
  | 'ERR_PM_BAD_OPTION'
  /** The worker program is not an executable file (checked before anything is created). */
  | 'ERR_PM_PROGRAM_NOT_FOUND';

export class PoolError extends GatehouseError<PoolErrorCode> {}
