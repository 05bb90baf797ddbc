/**
 * Test fixture: an SCGI application built on serveScgiConnection that
 * answers by path — /created (Status: 201), /large/<bytes> (a generated
 * body), anything else echoes the params and a digest of the body as JSON.
 */
import net from 'node:net';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ScgiServerRequest } from '../../src/scgi/contract.js';
import { serveScgiConnection, type ScgiConnectionOptions } from '../../src/scgi/server-connection.js';

export interface EchoReply {
  params: Array<[string, string]>;
  bodyLength: number;
  bodySha256: string;
  /** The first 64 bytes of the body, latin1. */
  bodyStart: string;
}

export interface EchoServer {
  port: number;
  /** Every error serveScgiConnection reported. */
  errors: Error[];
  close(): Promise<void>;
}

/** The bytes /large/<n> sends: deterministic, so a client can hash its own copy. */
export function largeBody(size: number): Readable {
  let made = 0;
  return new Readable({
    read() {
      if (made >= size) return void this.push(null);
      const n = Math.min(65536, size - made);
      const chunk = Buffer.alloc(n, made & 0xff);
      chunk.writeUInt32BE(made, 0);
      made += n;
      this.push(chunk);
    },
  });
}

function handle(req: ScgiServerRequest): void {
  const uri = req.params.find(([n]) => n === 'REQUEST_URI')?.[1] ?? '';
  const path = uri.split('?')[0]!;
  if (path === '/created') {
    req.body.resume();
    req.response.end('Status: 201 Created\r\nContent-Type: text/plain\r\nX-Made: yes\r\n\r\nmade it');
    return;
  }
  const large = /^\/large\/(\d+)$/.exec(path);
  if (large) {
    req.body.resume();
    req.response.write('Content-Type: application/octet-stream\r\n\r\n');
    pipeline(largeBody(Number(large[1])), req.response).catch(() => req.response.destroy());
    return;
  }
  const hash = createHash('sha256');
  let length = 0;
  let start = Buffer.alloc(0);
  req.body.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    if (start.length < 64) start = Buffer.concat([start, chunk]).subarray(0, 64);
    length += chunk.length;
  });
  req.body.on('end', () => {
    const reply: EchoReply = {
      params: req.params,
      bodyLength: length,
      bodySha256: hash.digest('hex'),
      bodyStart: start.toString('latin1'),
    };
    req.response.write('Status: 200 OK\r\nContent-Type: application/json\r\n\r\n');
    req.response.end(JSON.stringify(reply));
  });
}

/** Starts the fixture on 127.0.0.1 (a free port). */
export async function startEchoServer(options: Omit<ScgiConnectionOptions, 'onError'> = {}): Promise<EchoServer> {
  const errors: Error[] = [];
  const server = net.createServer((socket) => serveScgiConnection(socket, { ...options, onError: (err) => errors.push(err) }, handle));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    errors,
    close: async () => {
      server.close();
      await once(server, 'close');
    },
  };
}
