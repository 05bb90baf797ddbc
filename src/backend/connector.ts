/**
 * @module backend/connector
 * What every mode offers the transports: a connect() that yields a fresh
 * stream to the application (starting or restarting PROGRAM as the mode
 * says), plus the helpers the modes share (error mapping, retry sleeps,
 * attaching a dead child's exit status to an error).
 */
import type net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BackendError, BackendMode } from './contract.js';
import type { BackendChild, ChildSpec } from './child.js';
import { backendError, ChildExitedError, errorText } from './errors.js';
import { ConnectTimeoutError } from './connect.js';

/** One connection to the application, and the child (if we started one) that serves it. */
export interface Lease {
  socket: net.Socket;
  child: BackendChild | undefined;
  /** The child was (re)started to get this connection: the one restart a request is allowed is used up. */
  restarted?: boolean;
}

export interface Connector {
  readonly mode: BackendMode;
  /** Eager start (anonymous: socket + child; launching/mixed: connect, else launch). */
  start(): Promise<void>;
  /** A new connection; rejects with a BackendError (UNAVAILABLE, TIMEOUT) whose cause is the last failure. */
  connect(signal?: AbortSignal): Promise<Lease>;
  /** Mode-specific cleanup once no request is in flight. */
  close(): Promise<void>;
  /**
   * A fresh connection served by `child` broke before the application
   * answered anything: if that is because a child we started died (the
   * connection sat in a dying child's backlog, e.g. php-cgi after
   * PHP_FCGI_MAX_REQUESTS), make the next connect() start a new one
   * (anonymous mode restarts it here) and resolve true, so the request may
   * be sent once more. Resolves false when there is nothing to recover.
   */
  recover?(child: BackendChild | undefined): Promise<boolean>;
}

export interface ConnectorContext {
  child: Omit<ChildSpec, 'log'>;
  retries: number;
  connectTimeoutMs: number;
  stopTimeoutMs: number;
  log: (line: string) => void;
}

/** How long we wait for a child that broke a connection to be reaped, to report its status. */
export const CHILD_EXIT_GRACE_MS = 1000;

/** The interval between connect tries (-N): ashd's sleep(1). */
export const RETRY_INTERVAL_MS = 1000;

/**
 * If `child` died (or dies within CHILD_EXIT_GRACE_MS), returns its exit as
 * an error with `err` as the cause; otherwise `err` unchanged. This is how
 * "the application crashed" reaches the client and the log with evidence.
 */
export async function withChildExit(err: unknown, child: BackendChild | undefined): Promise<unknown> {
  if (child === undefined) return err;
  await child.waitExit(CHILD_EXIT_GRACE_MS);
  return child.exitError(err) ?? err;
}

/** The final connect failure as a BackendError: a timeout → TIMEOUT, anything else → UNAVAILABLE. */
export function connectFailed(what: string, err: unknown): BackendError {
  let root: unknown = err;
  while (root instanceof ChildExitedError && root.cause !== undefined) root = root.cause;
  const code = root instanceof ConnectTimeoutError ? 'ERR_BACKEND_TIMEOUT' : 'ERR_BACKEND_UNAVAILABLE';
  return backendError(code, `${what}: ${errorText(err)}`, err);
}

/** Sleeps one retry interval; rejects with the signal's reason if it aborts. */
export async function retryPause(signal?: AbortSignal): Promise<void> {
  await sleep(RETRY_INTERVAL_MS, undefined, signal ? { signal } : undefined);
}

/** After a failed connect: an abort surfaces as the signal's reason, not as a connect failure. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}
