/**
 * Test bed: start real peers (nginx, php-cgi, Perl FCGI apps, cgi-fcgi) and
 * clean them up by process group. Every wait is event-driven and bounded.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

/** Repository root (works from both src and dist/test). */
export const repoRoot = (() => {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = join(dir, '..');
  return dir;
})();

/** A fixture path under test/fixtures (the sources, not dist). */
export function fixture(...parts: string[]): string {
  return join(repoRoot, 'test', 'fixtures', ...parts);
}

const EXEC_WRAPPER = join(repoRoot, 'build', 'Release', 'gatehouse-exec');
const tracked = new Set<ChildProcess>();
const dirs = new Set<string>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

function cleanup(): void {
  for (const c of tracked) killGroup(c);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanup);
// A test run killed by a timeout or Ctrl-C must not leave peers behind either.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(128 + (sig === 'SIGHUP' ? 1 : sig === 'SIGINT' ? 2 : 15));
  });
}

/** A fresh temporary directory, removed when the test process exits. */
export function tmpDir(prefix = 'gh-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

/**
 * Spawns a process in its own process group and tracks it so it is killed
 * (by group) when the test process exits, even if a test forgot.
 */
export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  // Through gatehouse-exec (when built) the peer also dies if this test process
  // is SIGKILLed, when no exit handler runs. Not when a test passes fds above 2:
  // the wrapper marks those close-on-exec.
  const extraFds = Array.isArray(opts.stdio) && opts.stdio.length > 3;
  const [file, argv] = existsSync(EXEC_WRAPPER) && !extraFds ? [EXEC_WRAPPER, [String(process.pid), 'KILL', '--', cmd, ...args]] : [cmd, args];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts, detached: true });
  tracked.add(child);
  child.once('exit', () => tracked.delete(child));
  return child;
}

/** Kills the child's whole process group and waits (bounded) for the exit. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = waitForExit(child, timeoutMs);
  killGroup(child, signal);
  await exited;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when the child exits; rejects after timeoutMs. */
export function waitForExit(child: ChildProcess, timeoutMs = 10000): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pid ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Polls `kill(pid, 0)` until the pid is gone (for processes that are not our children). */
export async function waitForPidGone(pid: number, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return Date.now() - start;
    }
    // A zombie still answers kill(0): treat state Z as gone.
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return Date.now() - start;
    } catch {
      return Date.now() - start;
    }
    if (Date.now() - start > timeoutMs) throw new Error(`pid ${pid} still alive after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export type Address = { port: number; host?: string } | { path: string };

/** Formats an address the way nginx and cgi-fcgi want it. */
export function addressString(a: Address, style: 'nginx' | 'cgi-fcgi' = 'cgi-fcgi'): string {
  if ('path' in a) return style === 'nginx' ? `unix:${a.path}` : a.path;
  return `${a.host ?? '127.0.0.1'}:${a.port}`;
}

/** Resolves once a connect() to the address succeeds; retries on refusal until timeoutMs. */
export async function waitForConnectable(a: Address, timeoutMs = 10000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`process ${child.pid} exited (${child.exitCode ?? child.signalCode}) before ${addressString(a)} accepted`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = 'path' in a ? net.connect(a.path) : net.connect(a.port, a.host ?? '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${addressString(a)} not accepting after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects a stream into a string (for logs of spawned peers). */
export function collect(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return { stdout: () => out, stderr: () => err };
}

export interface Nginx {
  port: number;
  url: string;
  dir: string;
  child: ChildProcess;
  errorLog(): string;
  stop(): Promise<void>;
}

/**
 * Starts nginx (foreground, no master) with `serverBody` inside a
 * `server { listen 127.0.0.1:PORT; … }` block and `httpExtra` (upstreams) in `http {}`.
 */
export async function startNginx(serverBody: string, opts: { httpExtra?: string; workers?: number } = {}): Promise<Nginx> {
  const dir = tmpDir('gh-nginx-');
  const port = await freePort();
  for (const t of ['body', 'proxy', 'fastcgi', 'scgi', 'uwsgi']) mkdirSync(join(dir, t));
  const conf = `daemon off;
master_process ${opts.workers ? 'on' : 'off'};
${opts.workers ? `worker_processes ${opts.workers};` : ''}
error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  scgi_temp_path ${dir}/scgi;
  uwsgi_temp_path ${dir}/uwsgi;
  ${opts.httpExtra ?? ''}
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    ${serverBody}
  }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const child = spawnTracked('/usr/sbin/nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')]);
  const logs = collect(child);
  try {
    await waitForConnectable({ port }, 10000, child);
  } catch (e) {
    throw new Error(`nginx did not start: ${(e as Error).message}\n${logs.stderr()}\n${safeRead(join(dir, 'error.log'))}`);
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    child,
    errorLog: () => safeRead(join(dir, 'error.log')),
    stop: () => stopProcess(child, 'SIGKILL'),
  };
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

export interface Peer {
  child: ChildProcess;
  address: Address;
  logs: { stdout: () => string; stderr: () => string };
  stop(): Promise<void>;
}

/** php-cgi binding its own socket (`-b`), with PHP_FCGI_CHILDREN workers (0 = one process). */
export async function startPhpCgi(address: Address, opts: { children?: number; env?: NodeJS.ProcessEnv; maxRequests?: number } = {}): Promise<Peer> {
  const bind = 'path' in address ? address.path : `${address.host ?? '127.0.0.1'}:${address.port}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PHP_FCGI_CHILDREN: String(opts.children ?? 0),
    PHP_FCGI_MAX_REQUESTS: String(opts.maxRequests ?? 0),
    ...opts.env,
  };
  const child = spawnTracked('php-cgi', ['-b', bind], { env });
  const logs = collect(child);
  await waitForConnectable(address, 10000, child);
  return { child, address, logs, stop: () => stopProcess(child) };
}

/**
 * A Perl FCGI app. FCGI::Request() accepts on fd 0 by default; our fixtures
 * (test/fixtures/perl/*.pl) open FCGI_SOCKET_PATH themselves when it is set,
 * the convention CGI::Fast uses.
 */
export async function startPerlFcgi(script: string, address: Address, env: NodeJS.ProcessEnv = {}): Promise<Peer> {
  const sock = 'path' in address ? address.path : `${address.host ?? '127.0.0.1'}:${address.port}`;
  const child = spawnTracked('perl', [script], { env: { ...process.env, FCGI_SOCKET_PATH: sock, ...env } });
  const logs = collect(child);
  await waitForConnectable(address, 10000, child);
  return { child, address, logs, stop: () => stopProcess(child) };
}

export interface CgiResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs `cgi-fcgi -bind -connect ADDR` as a FastCGI client: `env` is the CGI
 * request (REQUEST_METHOD, …), `stdin` the body. Resolves with the raw CGI response.
 */
export function cgiFcgi(address: Address, env: Record<string, string>, stdin?: Buffer | string, timeoutMs = 15000): Promise<CgiResult> {
  return new Promise((resolve, reject) => {
    const child = spawnTracked('cgi-fcgi', ['-bind', '-connect', addressString(address)], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      killGroup(child);
      reject(new Error(`cgi-fcgi timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin?.on('error', () => {
      /* the server may answer before reading all of stdin */
    });
    child.stdin?.end(stdin ?? '');
  });
}

/** Splits a raw CGI response (as cgi-fcgi prints it) into headers and body. */
export function splitCgi(raw: Buffer): { headers: Record<string, string>; status: number; body: Buffer } {
  let idx = raw.indexOf('\r\n\r\n');
  let sepLen = 4;
  if (idx < 0) {
    idx = raw.indexOf('\n\n');
    sepLen = 2;
  }
  if (idx < 0) throw new Error(`no header/body separator in ${JSON.stringify(raw.subarray(0, 200).toString())}`);
  const headers: Record<string, string> = {};
  for (const line of raw.subarray(0, idx).toString('latin1').split(/\r?\n/)) {
    const c = line.indexOf(':');
    if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
  }
  const status = headers.status ? parseInt(headers.status, 10) : 200;
  return { headers, status, body: raw.subarray(idx + sepLen) };
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP request with a bounded wait; the body is collected. */
export function httpRequest(
  url: string,
  opts: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string; timeoutMs?: number; agent?: http.Agent | false } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 15000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A one-shot FastCGI-free check that a file exists under the repo's build output. */
export function distPath(...parts: string[]): string {
  return join(repoRoot, 'dist', ...parts);
}
