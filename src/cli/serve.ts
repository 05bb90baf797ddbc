/**
 * @module cli/serve
 * `gatehouse serve`: flags → backend + gateway options; usage and exit codes.
 *   0  stopped by SIGTERM/SIGINT after in-flight requests finished
 *   1  a runtime failure (cannot listen, bad --root), in one line
 *   2  a usage error (one line + usage on stderr)
 * The backend mode is picked from the flags exactly as callscgi does
 * (address only → client, PROGRAM only → anonymous, both → launching, or
 * mixed with -N).
 */
import type { BackendOptions, BackendProtocol } from '../backend/contract.js';
import { createBackend, GatehouseBackend } from '../backend/create-backend.js';
import { decideMode } from '../backend/modes.js';
import { describeAddress } from '../backend/address.js';
import { applyBackendFlag, BACKEND_SHORT_FLAGS, integerFlag, onStopSignals, parseHttpListen, parseUntilProgram, type BackendFlags, type OptionSpec } from './backend-flags.js';
import type { Backend } from '../backend/contract.js';
import { createGateway, type Gateway } from '../gateway/gateway.js';
import { describeCause } from '../gateway/error-response.js';

export const SERVE_USAGE = `usage: gatehouse serve [--listen [HOST:]PORT] [--scgi|--fastcgi] [-N RETRIES] [-i ID]
                       [-u UNIXPATH] [-t [HOST:]PORT] [-n N] [--root DIR] [--timeout S]
                       [--max-conns N] [--keepalive-timeout S] [--status-path P]
                       [--] [PROGRAM [ARGS...]]

An HTTP/1.1 gateway in front of a FastCGI (default) or SCGI application.

  --listen [HOST:]PORT  where to accept HTTP (default 127.0.0.1:8080)
  --fastcgi, --scgi     the application's protocol (default fastcgi)
  -u UNIXPATH           the application listens on this Unix socket
  -t [HOST:]PORT        the application listens on TCP (HOST defaults to localhost)
  -i ID                 the application listens on a per-user socket named by ID
  -N RETRIES            connect tries, one second apart (client and mixed mode)
  -n N                  without an address: run N copies of PROGRAM on one socket
  --root DIR            PHP-style site: static files from DIR, *.php to the application,
                        other paths to /index.php; PROGRAM defaults to php-cgi, with
                        -n N as its PHP_FCGI_CHILDREN
  --timeout S           seconds to wait for the application's response head (default 60)
  --max-conns N         at most N requests at the application at once, the rest wait
                        (within --timeout, then 503); use the worker count of php-cgi
                        or php-fpm (default: unbounded; with --root and no PROGRAM: -n)
  --keepalive-timeout S FastCGI: seconds an idle connection to the application stays
                        open for reuse (default 30); 0 = a new connection per request.
                        A php-cgi/php-fpm process serves one connection at a time, so an
                        idle kept connection holds a worker other clients cannot use
  --status-path P       serve the gateway's status page at P (e.g. /gatehouse-status)
  -h, --help            print this help

Modes, as callscgi: an address only → connect to a running application;
PROGRAM only → start it with a listening socket on fd 0; both → start
PROGRAM on that address (with -N: PROGRAM binds it itself).
`;

const DEFAULT_LISTEN = { host: '127.0.0.1', port: 8080 };
/** PHP's own FastCGI server, started when --root is given without a PROGRAM or address. */
const PHP_PROGRAM = ['php-cgi'];
/** After closeTimeout, how long the backend gets to stop its children before we give up. */
const BACKEND_CLOSE_GRACE_MS = 15_000;

export interface ServeFlags extends BackendFlags {
  listen: { host: string; port: number };
  protocol: BackendProtocol;
  root: string | undefined;
  timeoutMs: number;
  statusPath: string | undefined;
  maxConns: number | undefined;
  /** FastCGI: idle connection lifetime; 0 = no keep-alive; undefined = the backend's default. */
  keepaliveMs: number | undefined;
  program: string[];
}

export type ServeParse = { kind: 'run'; options: ServeFlags } | { kind: 'help' } | { kind: 'error'; message: string };

const OPTION_SPEC: OptionSpec = {
  short: BACKEND_SHORT_FLAGS,
  long: new Set(['--listen', '--root', '--timeout', '--status-path', '--max-conns', '--keepalive-timeout']),
  longFlags: new Set(['--fastcgi', '--scgi']),
};

/**
 * Options up to the first non-option (getopt's "+", as callscgi): PROGRAM's
 * own arguments are never ours. Long options take `--opt VALUE` or
 * `--opt=VALUE`; short ones may be clustered and take their argument
 * attached or as the next word.
 */
export function parseServeArgs(argv: readonly string[]): ServeParse {
  const parsed = parseUntilProgram(argv, OPTION_SPEC);
  if (parsed.kind !== 'ok') return parsed;
  const o: ServeFlags = {
    listen: DEFAULT_LISTEN,
    protocol: 'fastcgi',
    address: undefined,
    retries: 0,
    processes: 1,
    root: undefined,
    timeoutMs: 60_000,
    statusPath: undefined,
    maxConns: undefined,
    keepaliveMs: undefined,
    program: parsed.program,
  };
  try {
    for (const [name, value = ''] of parsed.options) {
      if (name.startsWith('--')) applyLong(o, name, value);
      else applyBackendFlag(o, name, value);
    }
  } catch (err) {
    return { kind: 'error', message: (err as Error).message };
  }
  if (o.program.length === 0 && o.address === undefined) {
    if (o.root === undefined) return { kind: 'error', message: 'need an address (-i, -u or -t) or a PROGRAM to start' };
    o.program = PHP_PROGRAM;
    // php-cgi serves one connection per process: never more requests at it than it has processes.
    o.maxConns ??= o.processes;
  }
  return { kind: 'run', options: o };
}

function applyLong(o: ServeFlags, name: string, value: string): void {
  switch (name) {
    case '--fastcgi':
    case '--scgi':
      o.protocol = name === '--scgi' ? 'scgi' : 'fastcgi';
      return;
    case '--listen':
      o.listen = parseHttpListen('--listen', value);
      return;
    case '--root':
      if (value === '') throw new SyntaxError('--root needs a directory');
      o.root = value;
      return;
    case '--timeout':
      o.timeoutMs = Math.max(1, secondsFlag(name, value, false));
      return;
    case '--keepalive-timeout':
      o.keepaliveMs = secondsFlag(name, value, true);
      return;
    case '--status-path':
      if (!value.startsWith('/')) throw new SyntaxError(`--status-path must start with '/', not '${value}'`);
      o.statusPath = value;
      return;
    case '--max-conns':
      o.maxConns = integerFlag('--max-conns', value, 1);
      return;
  }
}

/** Seconds (fractions allowed) as milliseconds; `zeroOk`: 0 is a value of its own. */
function secondsFlag(name: string, value: string, zeroOk: boolean): number {
  const s = Number(value);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !(zeroOk ? s >= 0 : s > 0)) {
    throw new SyntaxError(`${name} needs a ${zeroOk ? 'non-negative' : 'positive'} number of seconds, not '${value}'`);
  }
  return Math.round(s * 1000);
}

/**
 * How the --root preset runs php-cgi: `-n N` becomes PHP_FCGI_CHILDREN=N, so
 * php-cgi's own master keeps the socket on fd 0 and replaces children that
 * recycle themselves (PHP_FCGI_MAX_REQUESTS) without dropping the requests
 * queued on it. A single php-cgi (N = 1) would take its queue down with it
 * each time it recycles, so it does not recycle. The user's own environment wins.
 */
function phpCgiOptions(processes: number): Pick<BackendOptions, 'env' | 'processes'> {
  const env = { ...process.env };
  env.PHP_FCGI_CHILDREN ??= String(processes > 1 ? processes : 0);
  if (env.PHP_FCGI_CHILDREN === '0') env.PHP_FCGI_MAX_REQUESTS ??= '0';
  return { env, processes: 1 };
}

/** "anonymous: node dist/examples/hello.js", "client: /run/app.sock". */
function describeBackend(mode: string, o: ServeFlags): string {
  const parts = [o.address && describeAddress(o.address), o.program.length > 0 ? o.program.join(' ') : undefined];
  return `${mode}: ${parts.filter((p) => p !== undefined).join(' + ')}`;
}

/** Runs `gatehouse serve` with `argv` (after the word `serve`); resolves with the exit code. */
export async function runServe(argv: string[]): Promise<number> {
  const parsed = parseServeArgs(argv);
  if (parsed.kind === 'help') {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`gatehouse serve: ${parsed.message}\n${SERVE_USAGE}`);
    return 2;
  }
  const o = parsed.options;
  const log = (line: string): void => {
    process.stderr.write(`gatehouse: ${line}\n`);
  };
  const backendOptions: BackendOptions = {
    protocol: o.protocol,
    ...(o.address !== undefined && { address: o.address }),
    ...(o.program.length > 0 && { program: o.program }),
    retries: o.retries,
    processes: o.processes,
    headerTimeoutMs: o.timeoutMs,
    ...(o.keepaliveMs === 0 && { keepConn: false }),
    ...(o.keepaliveMs !== undefined && o.keepaliveMs > 0 && { idleTimeoutMs: o.keepaliveMs }),
    ...(o.program === PHP_PROGRAM && phpCgiOptions(o.processes)),
  };
  let backend: Backend;
  let gateway: Gateway;
  try {
    decideMode(backendOptions);
    backend = createBackend(backendOptions);
  } catch (err) {
    process.stderr.write(`gatehouse serve: ${(err as Error).message}\n${SERVE_USAGE}`);
    return 2;
  }
  try {
    gateway = createGateway({
      backend,
      backendTimeout: o.timeoutMs,
      log,
      ...(o.root !== undefined && { root: o.root }),
      ...(o.statusPath !== undefined && { statusPath: o.statusPath }),
      ...(o.maxConns !== undefined && { maxConns: o.maxConns }),
      backendState: () => backendState(backend),
    });
  } catch (err) {
    log(`cannot serve --root ${o.root}: ${describeCause(err)}`);
    await backend.close();
    return 1;
  }
  const signals = onStopSignals(log);
  let url: string;
  try {
    url = await gateway.listen(o.listen);
  } catch (err) {
    signals.dispose();
    log(`cannot listen on ${o.listen.host}:${o.listen.port}: ${describeCause(err)}`);
    await backend.close();
    return 1;
  }
  log(`listening on ${url} (${o.protocol}, ${describeBackend(backend.mode, o)})`);
  // Eager start; a failure is logged and requests get 503 until a later start works.
  backend.start().catch((err: unknown) => log(`backend start failed: ${describeCause(err)}`));

  const sig = await signals.stopped;
  log(`${sig}: finishing in-flight requests`);
  await gateway.close();
  const closed = await Promise.race([
    backend.close().then(() => true),
    new Promise<false>((resolve) => setTimeout(resolve, BACKEND_CLOSE_GRACE_MS, false).unref()),
  ]);
  signals.dispose();
  if (!closed) {
    log(`the backend did not stop within ${BACKEND_CLOSE_GRACE_MS} ms`);
    return 1;
  }
  return 0;
}

function backendState(backend: Backend): Record<string, unknown> {
  const state: Record<string, unknown> = { protocol: backend.protocol, mode: backend.mode };
  if (backend instanceof GatehouseBackend) {
    state['requests in flight'] = backend.inFlight;
    const pool = backend.fastcgiPool;
    if (pool !== undefined) {
      state['connections open'] = pool.openConnections;
      state['connections idle'] = pool.idleConnections;
    }
  }
  return state;
}
