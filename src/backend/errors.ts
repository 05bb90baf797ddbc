/**
 * @module backend/errors
 * Builders for the BackendError codes of contract.ts, and the error that
 * records how a child we started ended (it travels as a BackendError's cause).
 */
import { GatehouseError } from '../errors.js';
import { BackendError, type BackendErrorCode } from './contract.js';

/** How a child process ended: the evidence behind "the application crashed". */
export class ChildExitedError extends GatehouseError<'ERR_BACKEND_CHILD_EXITED'> {
  readonly pid: number | undefined;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  constructor(pid: number | undefined, exitCode: number | null, signal: NodeJS.Signals | null, options?: { cause?: unknown }) {
    super('ERR_BACKEND_CHILD_EXITED', `backend: child ${pid ?? '?'} ${describeExit(exitCode, signal)}`, options);
    this.pid = pid;
    this.exitCode = exitCode;
    this.signal = signal;
  }
}

/** "exited with status 3" / "was killed by SIGKILL". */
export function describeExit(exitCode: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with status ${exitCode ?? '?'}`;
}

/** A BackendError whose message starts with "backend: " and names the failing step. */
export function backendError(code: BackendErrorCode, detail: string, cause?: unknown): BackendError {
  return new BackendError(code, `backend: ${detail}`, cause === undefined ? undefined : { cause });
}

/** The errno (or other) code of an error, if it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** "ECONNREFUSED connect /x.sock" style text for messages. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * connect() errors that mean "nobody is listening there" (as opposed to a
 * timeout or a resolver failure): a Unix path without a socket, a port or
 * socket with no listener behind it, or a listener that went away while
 * our connect was queued on it (ECONNRESET: a dying program).
 */
export function isNotListening(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ENOTSOCK' || code === 'ECONNRESET';
}

/** The HTTP status the gateway and callscgi answer with for each code. */
export function statusForBackendError(code: BackendErrorCode): 502 | 503 | 504 {
  switch (code) {
    case 'ERR_BACKEND_UNAVAILABLE':
    case 'ERR_BACKEND_OVERLOADED':
      return 503;
    case 'ERR_BACKEND_TIMEOUT':
      return 504;
    case 'ERR_BACKEND_PROTOCOL':
    case 'ERR_BACKEND_CLOSED_EARLY':
      return 502;
  }
}
