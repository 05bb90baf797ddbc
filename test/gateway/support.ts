/**
 * Shared pieces of the gateway tests: a gateway in front of a real backend
 * (closed after the test, children included), small FastCGI applications
 * with misbehaviours on a Unix socket, and raw-socket HTTP for what
 * node:http's client would refuse to send. Every wait is bounded.
 */
import net from 'node:net';
import { join } from 'node:path';
import { createBackend, type GatehouseBackend } from '../../src/backend/create-backend.js';
import type { Backend, BackendOptions, BackendRequest, BackendResponse } from '../../src/backend/contract.js';
import { createFastCgiServer } from '../../src/fastcgi/server-connection.js';
import type { FcgiServerRequest, ParamList } from '../../src/fastcgi/contract.js';
import { createGateway, type Gateway } from '../../src/gateway/gateway.js';
import type { GatewayOptions } from '../../src/gateway/options.js';
import { tmpDir } from '../helpers/peers.js';

export interface Running {
  gateway: Gateway;
  backend: Backend;
  url: string;
  port: number;
  /** Log lines the gateway wrote. */
  logs: string[];
}

/** Gateways, backends and servers made through here are closed in after(). */
export class Harness {
  readonly #closers: Array<() => Promise<void>> = [];

  /** A gateway on 127.0.0.1:<free port> in front of `backend` (a real one, or a fake object). */
  async gateway(backend: Backend, options: Omit<GatewayOptions, 'backend'> = {}): Promise<Running> {
    const logs: string[] = [];
    const gateway = createGateway({
      backend,
      log: (line) => {
        logs.push(line);
        if (process.env.GH_TEST_VERBOSE) process.stderr.write(`[gateway] ${line}\n`);
      },
      ...options,
    });
    const url = await gateway.listen({ host: '127.0.0.1', port: 0 });
    this.#closers.push(() => gateway.close());
    return { gateway, backend, url: url.replace(/\/$/, ''), port: Number(new URL(url).port), logs };
  }

  /** A real backend (src/backend); closing it stops any child it started. */
  backend(options: BackendOptions): GatehouseBackend {
    const backend = createBackend({ log: () => {}, stopTimeoutMs: 2000, ...options });
    this.#closers.push(() => backend.close());
    return backend;
  }

  /** A FastCGI application on a fresh Unix socket; `onRequest` decides how it (mis)behaves. */
  async fastcgiApp(onRequest: (req: FcgiServerRequest) => void): Promise<{ path: string; connections: () => number }> {
    const path = join(tmpDir('gh-gw-app-'), 'app.sock');
    const sockets = new Set<net.Socket>();
    let connections = 0;
    const server = createFastCgiServer({}, onRequest);
    server.on('connection', (s: net.Socket) => {
      connections++;
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    this.#closers.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { path, connections: () => connections };
  }

  /** A raw server that accepts and then does `onSocket` (close at once, never answer…). */
  async rawApp(onSocket: (socket: net.Socket) => void): Promise<{ path: string }> {
    const path = join(tmpDir('gh-gw-raw-'), 'raw.sock');
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {});
      onSocket(s);
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    this.#closers.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { path };
  }

  async closeAll(): Promise<void> {
    for (const close of this.#closers.splice(0).reverse()) await close().catch(() => {});
  }
}

/** A Backend that records what it was asked and answers with `answer`. */
export function fakeBackend(answer: (req: BackendRequest) => Promise<BackendResponse> | BackendResponse): Backend & { requests: BackendRequest[] } {
  const requests: BackendRequest[] = [];
  return {
    protocol: 'fastcgi',
    mode: 'client',
    requests,
    start: async () => {},
    dispatch: async (req) => {
      requests.push(req);
      return answer(req);
    },
    close: async () => {},
  };
}

/** A param's value from a ParamList (last one wins, as in an environment). */
export function param(params: ParamList, name: string): string | undefined {
  let value: string | undefined;
  for (const [n, v] of params) if (n === name) value = v;
  return value;
}

/**
 * Writes `request` bytes on a fresh connection and resolves with everything
 * the server sent until it closed (or `untilIncludes` appeared).
 */
export function rawHttp(port: number, request: string | Buffer, opts: { timeoutMs?: number; untilIncludes?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${opts.timeoutMs ?? 5000} ms; got ${JSON.stringify(out.slice(0, 300))}`));
    }, opts.timeoutMs ?? 5000);
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(out);
    };
    socket.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (opts.untilIncludes !== undefined && out.includes(opts.untilIncludes)) finish();
    });
    socket.on('end', finish);
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (out !== '') resolve(out);
      else reject(err);
    });
    socket.write(request);
  });
}

/** Resolves when `emitter` emits `event`; rejects after timeoutMs. */
export function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${timeoutMs} ms`)), timeoutMs);
    emitter.once(event, (value: T) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

export type { FcgiServerRequest };
