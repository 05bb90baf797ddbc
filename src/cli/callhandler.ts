/**
 * @module cli/callhandler
 * What callscgi and callfcgi share: their options (getopt "+hN:i:u:t:n:"
 * plus --http), the ashd persistent-handler loop on fd 0 (SOCK_SEQPACKET
 * datagrams with the response socket passed by SCM_RIGHTS), the tiny
 * `--http` front, and shutdown on SIGINT/SIGTERM or control-socket EOF.
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import type { BackendOptions, BackendProtocol } from '../backend/contract.js';
import { BackendError } from '../backend/contract.js';
import { createBackend, type GatehouseBackend } from '../backend/create-backend.js';
import { decideMode } from '../backend/modes.js';
import { applyBackendFlag, BACKEND_SHORT_FLAGS, onStopSignals, parseHttpListen, parseUntilProgram, type BackendFlags, type OptionSpec } from './backend-flags.js';
import { statusForBackendError } from '../backend/errors.js';
import { causeChain, serveAshdRequest } from '../backend/ashd/serve.js';
import { loadNative } from '../pool/native.js';
import { cgiParamsFromHttp } from '../cgi/request-env.js';
import { CgiError } from '../cgi/errors.js';
import { SERVER_SOFTWARE } from '../cgi/server-software.js';

export interface CallHandlerSpec {
  /** callscgi or callfcgi: the name in messages and usage. */
  name: string;
  protocol: BackendProtocol;
}

export interface CallOptions extends BackendFlags {
  http: { host: string; port: number } | undefined;
  program: string[];
}

export type ParseResult = { kind: 'run'; options: CallOptions } | { kind: 'help' } | { kind: 'error'; message: string };

export function usage(name: string): string {
  return `usage: ${name} [-h] [-N RETRIES] [-i ID] [-u UNIXPATH] [-t [HOST:]TCPPORT] [-n N] [--http [HOST:]PORT] [PROGRAM [ARGS...]]\n`;
}

/** A body without Content-Length is buffered (up to this) to learn the CONTENT_LENGTH CGI needs. */
const MAX_BUFFERED_BODY = 16 * 1024 * 1024;

const OPTION_SPEC: OptionSpec = { short: BACKEND_SHORT_FLAGS, long: new Set(['--http']) };

/**
 * Options up to the first non-option (getopt's "+"): PROGRAM's own
 * arguments are never ours. Short options may be clustered (`-hN3`) and
 * take their argument attached or as the next word; `--` ends the options.
 */
export function parseCallArgs(argv: readonly string[]): ParseResult {
  const parsed = parseUntilProgram(argv, OPTION_SPEC);
  if (parsed.kind !== 'ok') return parsed;
  const opts: CallOptions = { retries: 0, address: undefined, processes: 1, http: undefined, program: parsed.program };
  try {
    for (const [name, value = ''] of parsed.options) {
      if (name === '--http') opts.http = parseHttpListen('--http', value);
      else applyBackendFlag(opts, name, value);
    }
  } catch (err) {
    return { kind: 'error', message: (err as Error).message };
  }
  if (opts.address === undefined && opts.program.length === 0) {
    return { kind: 'error', message: 'need an address (-i, -u or -t) or a PROGRAM to start' };
  }
  return { kind: 'run', options: opts };
}

/** Runs callscgi/callfcgi with `argv` (without node and script); resolves with the exit code. */
export async function runCallHandler(spec: CallHandlerSpec, argv: readonly string[]): Promise<number> {
  const parsed = parseCallArgs(argv);
  if (parsed.kind === 'help') {
    process.stdout.write(usage(spec.name));
    return 0;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`${spec.name}: ${parsed.message}\n${usage(spec.name)}`);
    return 2;
  }
  const o = parsed.options;
  const log = (line: string): void => {
    process.stderr.write(`${spec.name}: ${line}\n`);
  };
  const backendOptions: BackendOptions = {
    protocol: spec.protocol,
    ...(o.address !== undefined && { address: o.address }),
    ...(o.program.length > 0 && { program: o.program }),
    retries: o.retries,
    processes: o.processes,
    log,
  };
  let backend: GatehouseBackend;
  try {
    if (o.processes > 1 && decideMode(backendOptions) !== 'anonymous') {
      throw new Error('-n needs anonymous mode (a PROGRAM and no -i, -u or -t)');
    }
    backend = createBackend(backendOptions);
  } catch (err) {
    process.stderr.write(`${spec.name}: ${(err as Error).message}\n`);
    return 2;
  }
  // Eager start; a failure is only logged (the next request tries again, as the modes say).
  backend.start().catch((err: unknown) => log(`start: ${causeChain(err)}`));
  const serverSoftware = SERVER_SOFTWARE;
  return o.http !== undefined
    ? serveHttp(backend, o.http, { serverSoftware, log, protocol: spec.protocol })
    : serveAshd(backend, { serverSoftware, log, protocol: spec.protocol });
}

interface ServeContext {
  serverSoftware: string;
  protocol: BackendProtocol;
  log: (line: string) => void;
}

/** The ashd persistent-handler loop: requests arrive on fd 0 until EOF or a stop signal. */
async function serveAshd(backend: GatehouseBackend, ctx: ServeContext): Promise<number> {
  const inFlight = new Set<Promise<void>>();
  const serveOptions = {
    backend,
    protocol: ctx.protocol,
    serverSoftware: ctx.serverSoftware,
    cwd: process.cwd(),
    maxBufferedBody: MAX_BUFFERED_BODY,
    log: ctx.log,
  };
  let exitCode = 0;
  let endOfInput: (why: string) => void = () => {};
  const eof = new Promise<string>((resolve) => (endOfInput = resolve));
  let receiver: { stop(): void };
  try {
    receiver = loadNative().startSeqpacketReceiver(0, (err, payload, fd) => {
      if (err !== null) {
        // A truncated datagram is skipped; anything else means fd 0 is unusable.
        if (err.code === 'EMSGSIZE') return ctx.log(`skipped a request: ${err.message}`);
        ctx.log(`control socket: ${err.message}`);
        exitCode = 1;
        return endOfInput('error');
      }
      if (payload === null) return endOfInput('eof');
      if (fd < 0) return ctx.log('skipped a request datagram that carried no response socket');
      const p = serveAshdRequest(payload, fd, serveOptions).finally(() => inFlight.delete(p));
      inFlight.add(p);
    });
  } catch (err) {
    ctx.log(`cannot read requests from fd 0: ${(err as Error).message}`);
    await backend.close();
    return 1;
  }
  const signals = onStopSignals(ctx.log);
  await Promise.race([eof, signals.stopped]);
  receiver.stop();
  // In-flight requests finish; then the mode cleans up (anonymous: SIGTERM the child, remove the socket).
  await Promise.all([...inFlight]);
  await backend.close();
  signals.dispose();
  return exitCode;
}

/** `--http [HOST:]PORT`: plain HTTP straight into the backend (the full gateway is `gatehouse serve`). */
async function serveHttp(backend: GatehouseBackend, where: { host: string; port: number }, ctx: ServeContext): Promise<number> {
  const server = http.createServer((req, res) => {
    void handleHttp(backend, req, res, where, ctx);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(where.port, where.host, () => resolve());
    });
  } catch (err) {
    ctx.log(`cannot listen on ${where.host}:${where.port}: ${(err as Error).message}`);
    await backend.close();
    return 1;
  }
  ctx.log(`serving HTTP on ${where.host}:${where.port}`);
  const signals = onStopSignals(ctx.log);
  await signals.stopped;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  await closed;
  await backend.close();
  signals.dispose();
  return 0;
}

async function handleHttp(
  backend: GatehouseBackend,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  where: { host: string; port: number },
  ctx: ServeContext,
): Promise<void> {
  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) abort.abort(new Error('the client went away'));
  });
  try {
    let body: Readable | null = req;
    let contentLength: number | undefined = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
    if (contentLength === undefined && req.headers['transfer-encoding'] !== undefined) {
      // CGI needs the length up front: measure a chunked upload (bounded).
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of req as AsyncIterable<Buffer>) {
        size += c.length;
        if (size > MAX_BUFFERED_BODY) throw new HttpAnswer(413, 'The request body is too large.\n');
        chunks.push(c);
      }
      contentLength = size;
      body = Readable.from([Buffer.concat(chunks)]);
    }
    if (!contentLength) {
      req.resume();
      body = null;
    }
    let params;
    try {
      params = cgiParamsFromHttp({
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        httpVersion: req.httpVersion,
        rawHeaders: req.rawHeaders,
        remoteAddress: req.socket.remoteAddress ?? '',
        remotePort: req.socket.remotePort ?? 0,
        localAddress: req.socket.localAddress ?? where.host,
        localPort: req.socket.localPort ?? where.port,
        https: false,
        contentLength,
        serverSoftware: ctx.serverSoftware,
      });
    } catch (err) {
      if (err instanceof CgiError) throw new HttpAnswer(400, 'Bad request.\n', err);
      throw err;
    }
    const response = await backend.dispatch({ params, body, contentLength: contentLength ?? 0, signal: abort.signal });
    response.stderr?.on('data', (chunk: Buffer) => ctx.log(`application stderr: ${chunk.toString('utf8').trimEnd()}`));
    res.writeHead(response.status, response.statusText, response.headers.flat());
    response.body.on('error', (err) => {
      ctx.log(`${req.method} ${req.url}: response broke off: ${causeChain(err)}`);
      res.destroy();
    });
    response.body.pipe(res);
  } catch (err) {
    if (abort.signal.aborted) return;
    let status = 500;
    let text = 'The request handler failed.\n';
    if (err instanceof HttpAnswer) {
      status = err.status;
      text = err.text;
    } else if (err instanceof BackendError) {
      status = statusForBackendError(err.code);
      text = status === 503 ? 'The application is not available.\n' : status === 504 ? 'The application did not answer in time.\n' : 'Bad gateway.\n';
    }
    ctx.log(`${req.method} ${req.url}: ${status}: ${causeChain(err)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}

/** An answer the --http front gives itself (400, 413). */
class HttpAnswer extends Error {
  readonly status: number;
  readonly text: string;
  constructor(status: number, text: string, cause?: unknown) {
    super(text.trim(), cause === undefined ? undefined : { cause });
    this.status = status;
    this.text = text;
  }
}
