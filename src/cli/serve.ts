/**
 * @module cli/serve
 * `gatehouse serve`: flags → backend + gateway options; usage and exit codes.
 *   0  stopped by SIGTERM/SIGINT after in-flight requests finished
 *   1  a runtime failure (cannot listen, bad --root), in one line
 *   2  a usage error (one line + usage on stderr)
 * The backend mode is picked from the flags exactly as callscgi does
 * (address only → client, PROGRAM only → anonymous, both → launching, or
 * mixed with -N). With --workers N this process runs the backend and N
 * gateway workers (serve-worker.ts) on one HTTP listening socket.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { BackendOptions, BackendProtocol } from '../backend/contract.js';
import { createBackend, GatehouseBackend } from '../backend/create-backend.js';
import { decideMode } from '../backend/modes.js';
import { describeAddress } from '../backend/address.js';
import { applyBackendFlag, BACKEND_SHORT_FLAGS, integerFlag, onStopSignals, parseHttpListen, parseUntilProgram, type BackendFlags, type OptionSpec } from './backend-flags.js';
import type { Backend } from '../backend/contract.js';
import { createGateway, httpUrl, type Gateway } from '../gateway/gateway.js';
import { ProcManager } from '../pool/manager.js';
import { loadNative } from '../pool/native.js';
import { describeCause } from '../gateway/error-response.js';
import { parseTrustedRange } from '../gateway/client-address.js';
import { AccessLogFile, checkAccessLogPath } from '../gateway/access-log.js';

export const SERVE_USAGE = `usage: gatehouse serve [--listen [HOST:]PORT] [--scgi|--fastcgi] [-N RETRIES] [-i ID]
                       [-u UNIXPATH] [-t [HOST:]PORT] [-n N] [--root DIR] [--timeout S]
                       [--max-conns N] [--keepalive-timeout S] [--status-path P]
                       [--workers N] [--access-log PATH|-] [--max-body-size SIZE]
                       [--trust-proxy ADDR[,ADDR...]] [--tls-cert FILE --tls-key FILE]
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
  --status-path P       serve the gateway's status page at P (e.g. /gatehouse-status);
                        with --workers, each worker answers with its own counters
  --workers N           run the gateway as N processes accepting on one listening
                        socket, to use N cores (default 1); --max-conns is split
                        among them, so it must be at least N; SIGHUP replaces
                        them with new ones (the old finish in-flight requests)
  --access-log PATH|-   one line per response in nginx's "combined" format, appended
                        to PATH (SIGUSR1 reopens it, for logrotate) or - for stdout;
                        a client that left early is logged as 499 (default: none)
  --max-body-size SIZE  largest request body, as nginx's client_max_body_size: bytes,
                        or with k, m or g; larger → 413 (default 64m); 0 = no limit
  --trust-proxy ADDR[,ADDR...]
                        REMOTE_ADDR (and the access log's address) from the last
                        X-Forwarded-For / Forwarded entry when the peer is one of
                        these proxies: addresses or CIDR ranges (default: never)
  --tls-cert FILE, --tls-key FILE
                        serve HTTPS with this PEM certificate (chain) and key; the
                        application sees HTTPS=on. SIGHUP reads both again for new
                        connections (a renewed certificate); with --workers it
                        replaces the workers, which finish in-flight requests
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
/** --workers: the worker's entry point (serve-worker.ts), run by this node. */
const WORKER_ENTRY = fileURLToPath(new URL('./serve-worker.js', import.meta.url));
/** --workers: a TERMed worker gets the gateway's closeTimeout (10 s) and a little more before SIGKILL. */
const WORKER_DIE_TIMEOUT_S = 15;

export interface ServeFlags extends BackendFlags {
  listen: { host: string; port: number };
  protocol: BackendProtocol;
  root: string | undefined;
  timeoutMs: number;
  statusPath: string | undefined;
  maxConns: number | undefined;
  /** FastCGI: idle connection lifetime; 0 = no keep-alive; undefined = the backend's default. */
  keepaliveMs: number | undefined;
  /** Gateway processes on one listening socket (1: this process serves). */
  workers: number;
  /** --access-log: a file to append to, `-` for stdout, or none. */
  accessLog: string | undefined;
  /** --max-body-size in bytes (0: no limit); undefined = the gateway's default. */
  maxBodySize: number | undefined;
  /** --trust-proxy: peer addresses whose X-Forwarded-For/Forwarded is believed. */
  trustProxy: string[] | undefined;
  /** --tls-cert / --tls-key: PEM files; both or neither. */
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  program: string[];
}

/** What one gateway process needs of the flags: all but where to listen (a --workers worker gets them as one JSON argument). */
export type WorkerFlags = Omit<ServeFlags, 'listen'>;

export type ServeParse = { kind: 'run'; options: ServeFlags } | { kind: 'help' } | { kind: 'error'; message: string };

const OPTION_SPEC: OptionSpec = {
  short: BACKEND_SHORT_FLAGS,
  long: new Set(['--listen', '--root', '--timeout', '--status-path', '--max-conns', '--keepalive-timeout', '--workers', '--access-log', '--max-body-size', '--trust-proxy', '--tls-cert', '--tls-key']),
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
    workers: 1,
    accessLog: undefined,
    maxBodySize: undefined,
    trustProxy: undefined,
    tlsCert: undefined,
    tlsKey: undefined,
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
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) return { kind: 'error', message: '--tls-cert and --tls-key go together' };
  if (o.program.length === 0 && o.address === undefined) {
    if (o.root === undefined) return { kind: 'error', message: 'need an address (-i, -u or -t) or a PROGRAM to start' };
    o.program = PHP_PROGRAM;
    // php-cgi serves one connection per process: never more requests at it than it has processes.
    if (o.maxConns === undefined && o.processes < o.workers) {
      return { kind: 'error', message: `--root runs php-cgi with -n ${o.processes}, fewer processes than --workers ${o.workers}: give -n ≥ ${o.workers}` };
    }
    o.maxConns ??= o.processes;
  }
  if (o.maxConns !== undefined && o.maxConns < o.workers) {
    return { kind: 'error', message: `--max-conns ${o.maxConns} is less than --workers ${o.workers}: each worker needs at least one` };
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
    case '--workers':
      o.workers = integerFlag('--workers', value, 1);
      return;
    case '--access-log':
      if (value === '') throw new SyntaxError('--access-log needs a file or - (stdout)');
      o.accessLog = value;
      return;
    case '--max-body-size':
      o.maxBodySize = sizeFlag(name, value);
      return;
    case '--trust-proxy':
      o.trustProxy = [...(o.trustProxy ?? []), ...value.split(',').map((a) => proxyAddress(name, a.trim()))];
      return;
    case '--tls-cert':
    case '--tls-key':
      if (value === '') throw new SyntaxError(`${name} needs a PEM file`);
      if (name === '--tls-cert') o.tlsCert = value;
      else o.tlsKey = value;
      return;
  }
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** nginx's size syntax: `512`, `512k`, `10m`, `1g` (either case). */
export function sizeFlag(name: string, value: string): number {
  const m = /^([0-9]+)([kmg]?)$/i.exec(value);
  const bytes = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(bytes)) throw new SyntaxError(`${name} needs a size in bytes, optionally with k, m or g (e.g. 10m), not '${value}'`);
  return bytes;
}

/** One proxy address as node reports peers: IPv6 compressed, IPv4-mapped IPv6 as plain IPv4. */
function proxyAddress(name: string, value: string): string {
  const range = parseTrustedRange(value);
  if (range === undefined) throw new SyntaxError(`${name} needs IP addresses or CIDR ranges separated by commas (no names), not '${value}'`);
  const slash = value.indexOf('/');
  const suffix = slash < 0 ? '' : value.slice(slash);
  if (range.family === 'ipv4') return value;
  // The form node reports peers in: compressed, lower case, an IPv4-mapped address as plain IPv4.
  const mapped = /^::ffff:([0-9.]+)$/i.exec(range.address);
  if (mapped && isIP(mapped[1]!) === 4 && suffix === '') return mapped[1]!;
  return new URL(`http://[${range.address}]/`).hostname.slice(1, -1) + suffix;
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
function describeBackend(mode: string, o: WorkerFlags): string {
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
  return o.workers > 1 ? runPrimary(o, log) : serveGateway(o, log, o.listen);
}

/** The backend the flags describe; `pooled`: an anonymous PROGRAM under the pool manager (--workers). */
function backendOptionsOf(o: WorkerFlags, pooled: boolean): BackendOptions {
  return {
    protocol: o.protocol,
    ...(o.address !== undefined && { address: o.address }),
    ...(o.program.length > 0 && { program: o.program }),
    retries: o.retries,
    processes: o.processes,
    ...(pooled && { pooled }),
    // The gateway holds the head deadline itself (backendTimeout below): no second timer per request.
    headerTimeoutMs: 0,
    ...(o.keepaliveMs === 0 && { keepConn: false }),
    ...(o.keepaliveMs !== undefined && o.keepaliveMs > 0 && { idleTimeoutMs: o.keepaliveMs }),
    ...(o.program === PHP_PROGRAM && phpCgiOptions(o.processes)),
  };
}

/**
 * The backend and gateway for `o`, or the exit code of why not: 2 for a
 * usage error (no mode fits), 1 for a --root the gateway cannot serve.
 */
async function setUp(
  o: WorkerFlags,
  log: (line: string) => void,
  pooled: boolean,
  accessLog?: AccessLogFile,
): Promise<{ backend: GatehouseBackend; gateway: Gateway } | number> {
  let secureContext: SecureContext | undefined;
  try {
    secureContext = loadTls(o);
  } catch (err) {
    log(describeCause(err));
    return 1;
  }
  const backendOptions = backendOptionsOf(o, pooled);
  let backend: GatehouseBackend;
  try {
    decideMode(backendOptions);
    backend = createBackend(backendOptions);
  } catch (err) {
    process.stderr.write(`gatehouse serve: ${(err as Error).message}\n${SERVE_USAGE}`);
    return 2;
  }
  try {
    const gateway = createGateway({
      backend,
      backendTimeout: o.timeoutMs,
      log,
      ...(o.root !== undefined && { root: o.root }),
      ...(o.statusPath !== undefined && { statusPath: o.statusPath }),
      ...(o.maxConns !== undefined && { maxConns: o.maxConns }),
      // nginx's client_max_body_size covers both; 0 turns the check off, as there.
      ...(o.maxBodySize !== undefined && { maxBodySize: o.maxBodySize || Number.MAX_SAFE_INTEGER, maxBodySpool: o.maxBodySize || Number.MAX_SAFE_INTEGER }),
      ...(o.trustProxy !== undefined && { trustProxy: o.trustProxy }),
      ...(accessLog !== undefined && { accessLog: accessLog.write }),
      ...(secureContext !== undefined && { secureContext }),
      backendState: () => backendState(backend),
    });
    return { backend, gateway };
  } catch (err) {
    log(`cannot serve --root ${o.root}: ${describeCause(err)}`);
    await backend.close();
    return 1;
  }
}

/** The --tls-cert/--tls-key context, undefined without them; throws an Error naming the files and the cause. */
function loadTls(o: WorkerFlags): SecureContext | undefined {
  if (o.tlsCert === undefined || o.tlsKey === undefined) return undefined;
  try {
    return createSecureContext({ cert: readFileSync(o.tlsCert), key: readFileSync(o.tlsKey) });
  } catch (err) {
    throw new Error(`cannot use --tls-cert ${o.tlsCert} --tls-key ${o.tlsKey}: ${describeCause(err)}`, { cause: err });
  }
}

/**
 * SIGHUP with TLS: the certificate and key are read again and used for new
 * connections (nginx's reload, for a renewed certificate); a pair that does
 * not load is logged and the old one kept. Without TLS, HUP keeps Node's
 * default (exit), as before. Returns the remover.
 */
function reloadTlsOnHup(o: WorkerFlags, gateway: Gateway, log: (line: string) => void): () => void {
  if (o.tlsCert === undefined) return () => {};
  const reload = (): void => {
    try {
      gateway.setSecureContext(loadTls(o)!);
      log(`SIGHUP: TLS certificate ${o.tlsCert} loaded again, for new connections`);
    } catch (err) {
      log(`SIGHUP: ${describeCause(err)}; keeping the certificate loaded before`);
    }
  };
  process.on('SIGHUP', reload);
  return () => process.off('SIGHUP', reload);
}

/** backend.close() within BACKEND_CLOSE_GRACE_MS; false (logged) if it did not finish. */
async function closeBackend(backend: Backend, log: (line: string) => void): Promise<boolean> {
  const closed = await Promise.race([
    backend.close().then(() => true),
    new Promise<false>((resolve) => setTimeout(resolve, BACKEND_CLOSE_GRACE_MS, false).unref()),
  ]);
  if (!closed) log(`the backend did not stop within ${BACKEND_CLOSE_GRACE_MS} ms`);
  return closed;
}

/**
 * One gateway process: single-process serve (listening on o.listen) or a
 * --workers worker (on the primary's socket, fd 0). Serves until
 * SIGTERM/SIGINT, then lets in-flight requests finish and closes the backend.
 */
async function serveGateway(o: WorkerFlags, log: (line: string) => void, where: { host: string; port: number } | { fd: number }): Promise<number> {
  let accessLog: AccessLogFile | undefined;
  if (o.accessLog !== undefined) {
    try {
      accessLog = new AccessLogFile(o.accessLog, log);
    } catch (err) {
      log(`cannot open --access-log ${o.accessLog}: ${describeCause(err)}`);
      return 1;
    }
  }
  const set = await setUp(o, log, false, accessLog);
  if (typeof set === 'number') {
    await accessLog?.close();
    return set;
  }
  const { backend, gateway } = set;
  const signals = onStopSignals(log);
  // logrotate's convention for nginx: USR1 reopens the log files. Handled even without a log:
  // Node's default for USR1 is to open its inspector, which a stray signal must never do.
  const reopen = (): void => accessLog?.reopen();
  process.on('SIGUSR1', reopen);
  const stopTlsReload = reloadTlsOnHup(o, gateway, log);
  let url: string;
  try {
    url = await gateway.listen(where);
  } catch (err) {
    signals.dispose();
    process.off('SIGUSR1', reopen);
    stopTlsReload();
    log(`cannot listen on ${'fd' in where ? `fd ${where.fd}` : `${where.host}:${where.port}`}: ${describeCause(err)}`);
    await backend.close();
    await accessLog?.close();
    return 1;
  }
  // A worker's socket is the primary's, which has said where it listens.
  if (!('fd' in where)) log(`listening on ${url} (${o.protocol}, ${describeBackend(backend.mode, o)})`);
  // Eager start; a failure is logged and requests get 503 until a later start works.
  backend.start().catch((err: unknown) => log(`backend start failed: ${describeCause(err)}`));

  const sig = await signals.stopped;
  log(`${sig}: finishing in-flight requests`);
  await gateway.close();
  // The last lines are out before the backend's (bounded) stop.
  await accessLog?.close();
  process.off('SIGUSR1', reopen);
  stopTlsReload();
  const closed = await closeBackend(backend, log);
  signals.dispose();
  return closed ? 0 : 1;
}

/** The worker entry point's side: serve on fd 0 with the primary's flags. Never a usage error for the user to see. */
export function runServeWorker(json: string): Promise<number> {
  const o = JSON.parse(json) as WorkerFlags;
  const log = (line: string): void => {
    process.stderr.write(`gatehouse: worker ${process.pid}: ${line}\n`);
  };
  // Off fd 0 (see src/app/listen-source.ts): at exit Node would restore the shared socket's O_NONBLOCK.
  return serveGateway(o, log, { fd: loadNative().moveFromStdin() });
}

/** --max-conns M over N workers: floor(M/N) each, the remainder to the first ones. */
export function splitMaxConns(total: number, workers: number): number[] {
  return Array.from({ length: workers }, (_, i) => Math.floor(total / workers) + (i < total % workers ? 1 : 0));
}

/**
 * `serve --workers N`: this process owns the backend (it starts PROGRAM, in
 * anonymous mode under the pool manager so a dead one is respawned behind
 * the same socket) and the HTTP listening socket, and runs N gateway
 * workers on that socket through the pool manager; each reaches the
 * application in client mode. SIGTERM/SIGINT: the workers are TERMed (they
 * finish in-flight requests), then the backend closes. Workers die with us
 * (parent-death signal).
 */
async function runPrimary(o: ServeFlags, log: (line: string) => void): Promise<number> {
  // The gateway built here is never listened on: it checks --root and the rest as the workers will.
  const set = await setUp(o, log, true);
  if (typeof set === 'number') return set;
  const { backend } = set;
  // Each worker appends to the file itself; a path it cannot open is our failure, not a respawn loop.
  if (o.accessLog !== undefined) {
    try {
      checkAccessLogPath(o.accessLog);
    } catch (err) {
      log(`cannot open --access-log ${o.accessLog}: ${describeCause(err)}`);
      await closeBackend(backend, log);
      return 1;
    }
  }
  const shares = o.maxConns === undefined ? undefined : splitMaxConns(o.maxConns, o.workers);
  const indexOf = new Map<number, number>(); // worker pid → its share of --max-conns
  // Workers TERMed by a reload: their replacements take over their shares while they finish.
  const retiring = new Set<number>();
  let spawning = 0;
  let workerFlags: WorkerFlags | undefined;
  let startFailure: unknown;
  const signals = onStopSignals(log);
  let ready: () => void = () => {};
  const initialized = new Promise<void>((resolve) => (ready = resolve));
  const manager = new ProcManager({
    nProcesses: o.workers,
    command: { program: process.execPath, args: [WORKER_ENTRY] },
    listen: { kind: 'tcp', host: o.listen.host, port: o.listen.port },
    dieTimeout: WORKER_DIE_TIMEOUT_S,
    orphanSignal: 'SIGTERM',
    noSignals: true,
    hooks: {
      managerInit: async (pm) => {
        try {
          workerFlags = await startForWorkers(o, backend, log);
        } catch (err) {
          startFailure = err;
          throw err;
        }
        log(`listening on ${httpUrl(o.listen.host, pm.port ?? o.listen.port, o.tlsCert !== undefined)} (${o.protocol}, ${describeBackend(backend.mode, o)}, ${o.workers} workers)`);
        ready();
      },
      beforeSpawn: (plan) => {
        const taken = new Set([...indexOf].filter(([pid]) => !retiring.has(pid)).map(([, share]) => share));
        spawning = 0;
        while (taken.has(spawning)) spawning++;
        plan.args.push(JSON.stringify({ ...workerFlags, ...(shares !== undefined && { maxConns: shares[spawning] }) }));
      },
      afterSpawn: (worker) => indexOf.set(worker.pid, spawning),
      notify: (line, event) => {
        if (event.type === 'exited') {
          indexOf.delete(event.pid);
          retiring.delete(event.pid);
        }
        // Where it listens is said once, in our own line; the rest (started, exited, signals) is worth a log line.
        if (event.type !== 'listening' && event.type !== 'initialized') log(`workers: ${line.replace(/^FastCGI: manager \(pid \d+\): /, '')}`);
      },
    },
  });
  // logrotate signals the process it knows: pass USR1 on to the workers, which own the log.
  const reopen = (): void => {
    for (const pid of indexOf.keys()) {
      try {
        process.kill(pid, 'SIGUSR1');
      } catch {
        // exited meanwhile
      }
    }
  };
  // Also without a log: not Node's default (opening the inspector).
  process.on('SIGUSR1', reopen);
  // HUP: new workers replace the running ones, which finish their in-flight requests (the pool
  // manager's HUP; the listening socket stays open here, so nothing is refused meanwhile). The new
  // ones read the --tls-cert files again: checked first, so a broken pair keeps the old workers.
  const reload = (): void => {
    try {
      loadTls(o);
    } catch (err) {
      log(`SIGHUP: ${describeCause(err)}; the workers keep running with the certificate loaded before`);
      return;
    }
    log('SIGHUP: replacing the workers (the old ones finish their in-flight requests)');
    for (const pid of indexOf.keys()) retiring.add(pid);
    manager.signal('SIGHUP');
  };
  process.on('SIGHUP', reload);
  const running = manager.run();
  try {
    await Promise.race([initialized, running]);
  } catch (err) {
    signals.dispose();
    process.off('SIGUSR1', reopen);
    process.off('SIGHUP', reload);
    if (startFailure !== undefined) log(`backend start failed: ${describeCause(err)}`);
    else log(`cannot listen on ${o.listen.host}:${o.listen.port}: ${describeCause(err)}`);
    await closeBackend(backend, log);
    return 1;
  }
  const sig = await signals.stopped;
  log(`${sig}: stopping the workers (they finish in-flight requests)`);
  manager.signal('SIGTERM');
  const code = await running;
  process.off('SIGUSR1', reopen);
  process.off('SIGHUP', reload);
  const closed = await closeBackend(backend, log);
  signals.dispose();
  return code === 0 && closed ? 0 : 1;
}

/**
 * Starts the backend for the workers and says how they reach the
 * application: the anonymous socket this process made, or the address
 * given. In anonymous mode a start failure is fatal (there is no socket to
 * give them); otherwise it is logged and the workers answer 503 until the
 * application is up, as single-process serve does.
 */
async function startForWorkers(o: ServeFlags, backend: GatehouseBackend, log: (line: string) => void): Promise<WorkerFlags> {
  const { listen: _, ...flags } = o;
  if (backend.mode !== 'anonymous') {
    await backend.start().catch((err: unknown) => log(`backend start failed: ${describeCause(err)}`));
    return { ...flags, program: [] };
  }
  await backend.start();
  const path = backend.socketPath;
  if (path === undefined) throw new Error('the anonymous backend has no socket'); // unreachable once started
  return { ...flags, address: { kind: 'unix', path }, program: [], retries: 0 };
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
