/**
 * @module backend/connect
 * Opening one stream connection to the application: a bounded connect() to a
 * resolved target, and the AddressDialer that resolves `-t`/`-u`/`-i` and, for
 * TCP, tries every getaddrinfo result in order and caches the first that
 * connected (ashd's `curaddr`). Never unlinks anything (ashd bug §7.1).
 */
import net from 'node:net';
import type { BackendAddress } from './contract.js';
import { describeAddress, resolveHost, resolvePort, socketIdPath, type SocketTarget } from './address.js';

/** A connect() that did not finish in time; treated like an errno error with code ETIMEDOUT. */
export class ConnectTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(target: SocketTarget, timeoutMs: number) {
    super(`connect ${describeAddress(target)}: no answer within ${timeoutMs} ms`);
    this.name = 'ConnectTimeoutError';
  }
}

export interface ConnectOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Connects to `target`; rejects with Node's errno error, ConnectTimeoutError, or the signal's reason. */
export function connectTarget(target: SocketTarget, { timeoutMs, signal }: ConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const socket = target.kind === 'unix' ? net.connect({ path: target.path }) : net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => settle(new ConnectTimeoutError(target, timeoutMs)), timeoutMs);
    const onAbort = (): void => settle(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    function settle(err?: unknown): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('error', settle);
      if (err !== undefined) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    }
    function onConnect(): void {
      settle();
    }
    socket.once('connect', onConnect);
    socket.once('error', settle);
  });
}

export interface DialerOptions {
  connectTimeoutMs: number;
  servicesFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Connects to one configured address. For TCP the resolved address that
 * worked is cached; when it stops working the name is resolved again and
 * every result is tried (skipping the one that just failed).
 */
export class AddressDialer {
  readonly address: BackendAddress;
  readonly #options: DialerOptions;
  #cached: SocketTarget | undefined;
  #unixPath: string | undefined;

  constructor(address: BackendAddress, options: DialerOptions) {
    this.address = address;
    this.#options = options;
    if (address.kind === 'unix') this.#unixPath = address.path;
    else if (address.kind === 'id') this.#unixPath = socketIdPath(address.id, options.env);
  }

  /** The Unix socket path for -u/-i, undefined for TCP. */
  get unixPath(): string | undefined {
    return this.#unixPath;
  }

  describe(): string {
    return this.#unixPath ?? describeAddress(this.address);
  }

  /** Where to listen when we create the socket ourselves (launching mode). */
  async listenTarget(): Promise<SocketTarget> {
    if (this.#unixPath !== undefined) return { kind: 'unix', path: this.#unixPath };
    const a = this.address as Extract<BackendAddress, { kind: 'tcp' }>;
    return { kind: 'tcp', host: a.host, port: await resolvePort(a.port, this.#options.servicesFile) };
  }

  /** One connect (to each resolved address in turn for TCP); rejects with the last failure. */
  async dial(signal?: AbortSignal): Promise<net.Socket> {
    const opts: ConnectOptions = { timeoutMs: this.#options.connectTimeoutMs, ...(signal && { signal }) };
    if (this.#unixPath !== undefined) return connectTarget({ kind: 'unix', path: this.#unixPath }, opts);
    const a = this.address as Extract<BackendAddress, { kind: 'tcp' }>;
    const tried = this.#cached;
    let last: unknown = Object.assign(new Error(`no addresses for ${a.host}`), { code: 'ENOTFOUND' });
    if (tried !== undefined) {
      try {
        return await connectTarget(tried, opts);
      } catch (err) {
        if (signal?.aborted) throw err;
        this.#cached = undefined;
        last = err;
      }
    }
    const port = await resolvePort(a.port, this.#options.servicesFile);
    const hosts = await resolveHost(a.host);
    for (const host of hosts) {
      const target: SocketTarget = { kind: 'tcp', host, port };
      if (tried !== undefined && tried.kind === 'tcp' && tried.host === host && tried.port === port) continue;
      try {
        const socket = await connectTarget(target, opts);
        this.#cached = target;
        return socket;
      } catch (err) {
        if (signal?.aborted) throw err;
        last = err;
      }
    }
    throw last;
  }
}
