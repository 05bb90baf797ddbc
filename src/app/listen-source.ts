/**
 * @module app/listen-source
 * Where a worker listens, in the order FastCGI programs look:
 *   1. an address the caller gives explicitly (`--listen`),
 *   2. systemd socket activation (LISTEN_FDS, LISTEN_PID → fd 3),
 *   3. fd 0 when it is a listening socket (FCGI_LISTENSOCK_FILENO: what
 *      spawn-fcgi, mod_fcgid and our own pool manager hand a worker).
 * Telling a listening fd 0 from a connected one (stdin piped from a parent
 * over a socketpair) must not disturb it: the native addon asks the kernel
 * (SO_ACCEPTCONN); without it, Linux's /proc/net tables say the same; only
 * where neither works do we try listen() on it and let that fail.
 */
import { existsSync, fstatSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { GatehouseError } from '../errors.js';

export type ListenSource =
  | { kind: 'address'; options: net.ListenOptions }
  | { kind: 'systemd'; fd: number; name: string | undefined }
  | { kind: 'fd0'; fd: 0 };

export type ListenErrorCode = 'ERR_APP_NO_LISTEN_SOCKET' | 'ERR_APP_BAD_LISTEN_ADDRESS';

export class ListenError extends GatehouseError<ListenErrorCode> {}

/** systemd's first passed descriptor (SD_LISTEN_FDS_START). */
export const SD_LISTEN_FDS_START = 3;

/**
 * Parses a listen address: `/path/to.sock` or `unix:/path` (unix socket),
 * `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT` (all interfaces).
 */
export function parseListenAddress(spec: string): net.ListenOptions {
  const s = spec.trim();
  if (s.startsWith('unix:')) return { path: s.slice(5) };
  if (s.startsWith('/') || s.startsWith('./') || s.startsWith('../')) return { path: s };
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (bracket) return { host: bracket[1]!, port: toPort(bracket[2]!, spec) };
  if (/^\d+$/.test(s)) return { port: toPort(s, spec) };
  const colon = s.lastIndexOf(':');
  if (colon >= 0 && s.indexOf(':') === colon) {
    const host = s.slice(0, colon);
    const port = toPort(s.slice(colon + 1), spec);
    return host === '' || host === '*' ? { port } : { host, port };
  }
  throw new ListenError('ERR_APP_BAD_LISTEN_ADDRESS', `not a listen address: ${JSON.stringify(spec)} (want PATH, HOST:PORT or :PORT)`);
}

function toPort(s: string, spec: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new ListenError('ERR_APP_BAD_LISTEN_ADDRESS', `bad port in listen address ${JSON.stringify(spec)}`);
  }
  return n;
}

/** The systemd-activated descriptor meant for this process, if any (sd_listen_fds semantics). */
export function systemdListenFd(env: NodeJS.ProcessEnv = process.env): { fd: number; name: string | undefined } | null {
  const fds = env.LISTEN_FDS;
  if (!fds) return null;
  const n = Number(fds);
  if (!Number.isInteger(n) || n < 1) return null;
  // LISTEN_PID names the process the fds are for; a child that inherited the variables is not it.
  if (env.LISTEN_PID && Number(env.LISTEN_PID) !== process.pid) return null;
  const name = env.LISTEN_FDNAMES?.split(':')[0] || undefined;
  return { fd: SD_LISTEN_FDS_START, name };
}

interface NativeProbe {
  isListeningSocket(fd: number): boolean;
  /** Moves fd 0's socket to a new fd (returned), /dev/null on fd 0 (see src/pool/native.ts). */
  moveFromStdin?: () => number;
}

let nativeProbe: NativeProbe | null | undefined;

/**
 * The addon's probe, when src/pool/native.ts and the built addon are there
 * (its loadNative() throws when the addon is not built). Imported by URL so
 * this module compiles and runs without them.
 */
async function loadNativeProbe(): Promise<NativeProbe | null> {
  if (nativeProbe !== undefined) return nativeProbe;
  try {
    const mod = (await import(new URL('../pool/native.js', import.meta.url).href)) as { loadNative?: () => Partial<NativeProbe> };
    const addon = typeof mod.loadNative === 'function' ? mod.loadNative() : null;
    const fn = addon?.isListeningSocket;
    const move = addon?.moveFromStdin;
    nativeProbe =
      typeof fn === 'function'
        ? { isListeningSocket: (fd) => fn.call(addon, fd), ...(typeof move === 'function' && { moveFromStdin: () => move.call(addon) }) }
        : null;
  } catch {
    nativeProbe = null;
  }
  return nativeProbe;
}

/** Linux: the socket inode behind `fd`, from its /proc/self/fd link ("socket:[12345]"). */
function socketInode(fd: number): string | null {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    return m ? m[1]! : null;
  } catch {
    return null;
  }
}

/**
 * Linux: whether the socket with this inode is listening, from /proc/net:
 * TCP state 0A is LISTEN; unix sockets carry __SO_ACCEPTCON (0x10000) in
 * their flags. undefined when the inode is in none of the tables.
 */
function procSaysListening(inode: string): boolean | undefined {
  for (const table of ['tcp', 'tcp6']) {
    const rows = readTable(`/proc/net/${table}`);
    for (const cols of rows) if (cols[9] === inode) return cols[3] === '0A';
  }
  for (const cols of readTable('/proc/net/unix')) {
    if (cols[6] === inode) return (Number.parseInt(cols[3] ?? '0', 16) & 0x10000) !== 0;
  }
  return undefined;
}

function readTable(path: string): string[][] {
  try {
    return readFileSync(path, 'latin1')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
  } catch {
    return [];
  }
}

/**
 * Whether `fd` is a listening socket. 'unknown' when it is a socket but
 * neither the addon nor /proc could tell (then listen() decides).
 */
export async function isListeningFd(fd: number): Promise<boolean | 'unknown'> {
  try {
    if (!fstatSync(fd).isSocket()) return false;
  } catch {
    return false;
  }
  const probe = await loadNativeProbe();
  if (probe) return probe.isListeningSocket(fd);
  const inode = socketInode(fd);
  const proc = inode === null ? undefined : procSaysListening(inode);
  return proc ?? 'unknown';
}

/** Decides where to listen without listening. */
export async function findListenSource(opts: { address?: string | net.ListenOptions; env?: NodeJS.ProcessEnv } = {}): Promise<ListenSource> {
  if (opts.address !== undefined) {
    return { kind: 'address', options: typeof opts.address === 'string' ? parseListenAddress(opts.address) : opts.address };
  }
  const sd = systemdListenFd(opts.env ?? process.env);
  if (sd) return { kind: 'systemd', ...sd };
  const fd0 = await isListeningFd(0);
  if (fd0 !== false) return { kind: 'fd0', fd: 0 };
  throw new ListenError(
    'ERR_APP_NO_LISTEN_SOCKET',
    'no listening socket: fd 0 is not one, LISTEN_FDS is not set, and no address was given (e.g. --listen 127.0.0.1:9000 or --listen /run/app.sock)',
  );
}

/** Resolves on 'listening', rejects on the first 'error'. */
function listenOnce(server: net.Server, options: net.ListenOptions | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.removeListener('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

/** A unix socket path nobody answers on (a previous run's leftover) may be replaced. */
function isStaleSocket(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(path)) return resolve(false);
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/**
 * Makes `server` listen where the environment says (see the module comment)
 * and resolves with the source used once it is listening. Consumed systemd
 * variables are removed from process.env so the app's own children do not
 * take them for theirs.
 */
export async function listenFromEnvironment(
  server: net.Server,
  opts: { address?: string | net.ListenOptions; env?: NodeJS.ProcessEnv } = {},
): Promise<ListenSource> {
  const source = await findListenSource(opts);
  switch (source.kind) {
    case 'address': {
      const path = source.options.path;
      try {
        await listenOnce(server, source.options);
      } catch (err) {
        if (path === undefined || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !(await isStaleSocket(path))) throw err;
        unlinkSync(path);
        await listenOnce(server, source.options);
      }
      break;
    }
    case 'systemd':
      await listenOnce(server, { fd: source.fd });
      if (!opts.env) {
        delete process.env.LISTEN_FDS;
        delete process.env.LISTEN_PID;
        delete process.env.LISTEN_FDNAMES;
      }
      break;
    case 'fd0': {
      // Off fd 0 first, where the addon is built: Node restores fd 0's O_NONBLOCK to its startup value
      // at exit, and on a socket other workers share a blocking value would make their accept() block.
      const move = (await loadNativeProbe())?.moveFromStdin;
      await listenOnce(server, { fd: move !== undefined ? move() : 0 });
      break;
    }
  }
  return source;
}
