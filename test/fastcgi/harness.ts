// Test harness for the FastCGI connection tests: a listening server of ours,
// a raw socket that speaks records by hand, our client, and bounded waits.
import net from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { RecordParser, encodeRecord, type FcgiRecord } from '../../src/fastcgi/codec.js';
import { createFastCgiServer, type FastCgiServerConnection, type FastCgiServerConnectionOptions } from '../../src/fastcgi/server-connection.js';
import { FastCgiClientConnection } from '../../src/fastcgi/client-connection.js';
import type { ClientRequest, FcgiEndInfo } from '../../src/fastcgi/client-request.js';
import type { FcgiServerRequest } from '../../src/fastcgi/contract.js';
import { within } from '../helpers/wait.js';

export interface TestServer {
  server: net.Server;
  /** Where to connect: a TCP port on 127.0.0.1 or a unix socket path. */
  address: { port: number } | { path: string };
  conns: FastCgiServerConnection[];
  /** Resolves with the next server-side connection accepted. */
  nextConnection(): Promise<FastCgiServerConnection>;
  close(): Promise<void>;
}

/** Our server on 127.0.0.1:0 (or on a unix socket in a temp dir, whose small buffers show backpressure sooner). */
export async function startServer(
  options: FastCgiServerConnectionOptions,
  onRequest: (req: FcgiServerRequest) => void,
  opts: { unix?: boolean } = {},
): Promise<TestServer> {
  const conns: FastCgiServerConnection[] = [];
  // Accepted connections not yet handed to a nextConnection() caller, and callers waiting for one.
  const unclaimed: FastCgiServerConnection[] = [];
  const waiting: Array<(c: FastCgiServerConnection) => void> = [];
  const server = createFastCgiServer(options, onRequest, (conn) => {
    conns.push(conn);
    const w = waiting.shift();
    if (w) w(conn);
    else unclaimed.push(conn);
  });
  let dir: string | null = null;
  let address: TestServer['address'];
  if (opts.unix) {
    dir = mkdtempSync(join(tmpdir(), 'gh-fcgi-'));
    address = { path: join(dir, 'fcgi.sock') };
    server.listen(address.path);
  } else {
    server.listen(0, '127.0.0.1');
  }
  await within(once(server, 'listening'), 5000, 'listen');
  if (!opts.unix) address = { port: (server.address() as net.AddressInfo).port };
  return {
    server,
    address: address!,
    conns,
    nextConnection: () => {
      const c = unclaimed.shift();
      return c ? Promise.resolve(c) : within(new Promise((resolve) => waiting.push(resolve)), 5000, 'accept');
    },
    close: async () => {
      for (const c of conns) c.destroy();
      await within(new Promise<void>((r) => server.close(() => r())), 5000, 'server close');
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function connect(address: TestServer['address']): Promise<net.Socket> {
  const s = 'path' in address ? net.connect(address.path) : net.connect(address.port, '127.0.0.1');
  await within(once(s, 'connect'), 5000, 'connect');
  return s;
}

export async function connectClient(address: TestServer['address']): Promise<FastCgiClientConnection> {
  return new FastCgiClientConnection(await connect(address));
}

/** A socket that sends hand-made records and collects the records it gets back. */
export class RawPeer {
  readonly records: FcgiRecord[] = [];
  ended = false;
  closed = false;
  readonly #parser = new RecordParser();
  #waiters: Array<() => void> = [];

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      for (const r of this.#parser.push(d)) this.records.push({ ...r, content: Buffer.from(r.content) });
      this.#wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  static async connect(address: TestServer['address']): Promise<RawPeer> {
    return new RawPeer(await connect(address));
  }

  send(...records: Buffer[]): void {
    this.socket.write(Buffer.concat(records));
  }

  record(type: number, id: number, content: Buffer | number[] = []): void {
    this.send(encodeRecord(type, id, Buffer.from(content)));
  }

  /** Waits until `pred` holds over what has arrived so far. */
  async until(pred: (p: RawPeer) => boolean, what: string, ms = 5000): Promise<void> {
    await within(
      (async () => {
        while (!pred(this)) await new Promise<void>((r) => this.#waiters.push(r));
      })(),
      ms,
      what,
    );
  }

  /** Waits for a record of `type` for `id`, returns it. */
  async waitFor(type: number, id: number, ms = 5000): Promise<FcgiRecord> {
    await this.until((p) => p.records.some((r) => r.type === type && r.requestId === id), `record type ${type} for id ${id}`, ms);
    return this.records.find((r) => r.type === type && r.requestId === id)!;
  }

  /** Content of all records of `type` for `id`, joined. */
  stream(type: number, id: number): Buffer {
    return Buffer.concat(this.records.filter((r) => r.type === type && r.requestId === id).map((r) => r.content));
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

export interface Collected {
  stdout: Buffer;
  stderr: Buffer;
  end: FcgiEndInfo;
}

/** Collects a client request's whole response (stdout read to its end, stderr events, 'end'). */
export function collect(req: ClientRequest, ms = 10000): Promise<Collected> {
  const stderr: Buffer[] = [];
  req.on('stderr', (c: Buffer) => stderr.push(c));
  const ended = new Promise<FcgiEndInfo>((resolve, reject) => {
    req.once('end', resolve);
    req.once('error', reject);
  });
  const stdout = (async () => {
    const chunks: Buffer[] = [];
    for await (const c of req.stdout) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  })();
  return within(
    Promise.all([stdout, ended]).then(([out, end]) => ({ stdout: out, stderr: Buffer.concat(stderr), end })),
    ms,
    `response of request ${req.requestId}`,
  );
}
