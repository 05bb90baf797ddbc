/**
 * Helpers for the app tests: an in-process gatehouse server on a unix socket
 * and a FastCGI/SCGI client built on our own protocol clients, returning the
 * split CGI response. Every wait is bounded.
 */
import net from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import type { ParamList } from '../../src/fastcgi/contract.js';
import { FastCgiClientConnection, type FcgiClientRequestOptions } from '../../src/fastcgi/client-connection.js';
import type { FcgiEndInfo } from '../../src/fastcgi/client-request.js';
import { scgiRequest } from '../../src/scgi/client.js';
import { createServer, type RequestListener, type Server, type ServerOptions } from '../../src/app/index.js';
import { splitCgi, tmpDir } from '../helpers/peers.js';
import { within } from '../helpers/wait.js';

export interface Started {
  server: Server;
  path: string;
  close(): Promise<void>;
}

let counter = 0;

/** A gatehouse server listening on a fresh unix socket. */
export async function startApp(handler: RequestListener, opts: ServerOptions = {}): Promise<Started> {
  const server = createServer(handler, opts);
  const path = join(tmpDir('gh-app-'), `app-${++counter}.sock`);
  server.listen(path);
  await within(once(server, 'listening'), 5000, 'listen');
  return {
    server,
    path,
    close: async () => {
      server.closeAllConnections();
      await within(new Promise<void>((r) => server.close(() => r())), 5000, 'server close');
    },
  };
}


/** CGI params as nginx's fastcgi_params would send them for `method uri`. */
export function cgiEnv(method: string, uri: string, extra: Record<string, string> = {}): ParamList {
  const q = uri.indexOf('?');
  const env: Record<string, string> = {
    QUERY_STRING: q >= 0 ? uri.slice(q + 1) : '',
    REQUEST_METHOD: method,
    CONTENT_TYPE: '',
    CONTENT_LENGTH: '',
    SCRIPT_NAME: q >= 0 ? uri.slice(0, q) : uri,
    REQUEST_URI: uri,
    DOCUMENT_URI: q >= 0 ? uri.slice(0, q) : uri,
    SERVER_PROTOCOL: 'HTTP/1.1',
    GATEWAY_INTERFACE: 'CGI/1.1',
    REMOTE_ADDR: '127.0.0.1',
    REMOTE_PORT: '40000',
    SERVER_ADDR: '127.0.0.1',
    SERVER_PORT: '80',
    SERVER_NAME: 'localhost',
    HTTP_HOST: 'localhost',
    ...extra,
  };
  return Object.entries(env);
}

export interface CgiResponse {
  status: number;
  headers: Record<string, string>;
  /** Every header line as sent, in order (repeated names kept). */
  lines: string[];
  body: Buffer;
  raw: Buffer;
  stderr: string;
  end: FcgiEndInfo | null;
}

export function parseCgi(raw: Buffer): Omit<CgiResponse, 'stderr' | 'end'> {
  const { headers, status, body } = splitCgi(raw);
  const idx = raw.indexOf('\r\n\r\n');
  const lines = raw.subarray(0, idx).toString('latin1').split('\r\n');
  return { headers, status, body, lines, raw };
}

export function connectUnix(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Starts one FastCGI request on `conn`: `sent` resolves once the whole
 * request (params and body) has been written, `response` with the answer.
 */
export function fcgiStart(
  conn: FastCgiClientConnection,
  params: ParamList,
  body?: Buffer | string,
  opts: FcgiClientRequestOptions = {},
  timeoutMs = 10000,
): { sent: Promise<void>; response: Promise<CgiResponse> } {
  const req = conn.request(params, opts);
  const out: Buffer[] = [];
  let stderr = '';
  req.stdout.on('data', (d: Buffer) => out.push(d));
  req.on('stderr', (d: Buffer) => (stderr += d.toString()));
  const ended = new Promise<FcgiEndInfo>((resolve, reject) => {
    req.once('end', resolve);
    req.once('error', reject);
  });
  const sent = new Promise<void>((resolve) => req.stdin.end(body ?? '', () => resolve()));
  const response = (async (): Promise<CgiResponse> => {
    const end = await within(ended, timeoutMs, 'fastcgi request');
    if (!req.stdout.readableEnded) await within(once(req.stdout, 'end'), timeoutMs, 'stdout end');
    const raw = Buffer.concat(out);
    if (raw.length === 0) return { status: 0, headers: {}, lines: [], body: raw, raw, stderr, end };
    return { ...parseCgi(raw), stderr, end };
  })();
  return { sent, response };
}

/** One FastCGI request on `conn`; `body` is written then STDIN ended. */
export function fcgiOn(
  conn: FastCgiClientConnection,
  params: ParamList,
  body?: Buffer | string,
  opts: FcgiClientRequestOptions = {},
  timeoutMs = 10000,
): Promise<CgiResponse> {
  return fcgiStart(conn, params, body, opts, timeoutMs).response;
}

/** One FastCGI request on a new connection to `path` (closed afterwards). */
export async function fcgi(path: string, params: ParamList, body?: Buffer | string, opts: FcgiClientRequestOptions = {}): Promise<CgiResponse> {
  const conn = new FastCgiClientConnection(await connectUnix(path));
  try {
    return await fcgiOn(conn, params, body, { keepConn: false, ...opts });
  } finally {
    conn.destroy();
  }
}

/** One SCGI request to `path`. */
export async function scgi(path: string, params: ParamList, body: Buffer | string = ''): Promise<CgiResponse> {
  const socket = await connectUnix(path);
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const ex = scgiRequest(socket, params.filter(([n]) => n !== 'CONTENT_LENGTH'), bytes.length);
  const out: Buffer[] = [];
  ex.response.on('data', (d: Buffer) => out.push(d));
  const done = once(ex.response, 'end');
  ex.body.end(bytes);
  await within(done, 10000, 'scgi response');
  const raw = Buffer.concat(out);
  return { ...parseCgi(raw), stderr: '', end: null };
}
