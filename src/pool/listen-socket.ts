/**
 * @module pool/listen-socket
 * The pool's listening socket, held as a raw fd that libuv never polls (a
 * libuv-wrapped server in the manager would accept connections itself). It is
 * either created here (Unix path or TCP address, through the addon) or
 * inherited: systemd's LISTEN_FDS/LISTEN_PID, or fd 0 when fd 0 is a
 * listening socket (FastCGI's FCGI_LISTENSOCK_FILENO convention).
 */
import { chownSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { PoolError } from './errors.js';
import { loadNative, type NativeAddon } from './native.js';

/** spawn-fcgi's default; nginx uses 511, uWSGI's 100 overflows under load (pm-anchors pain point 3). */
export const DEFAULT_BACKLOG = 1024;

/** Variables of systemd's socket activation protocol; never passed on to workers. */
export const SOCKET_ACTIVATION_VARS = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

export type ListenSpec =
  | {
      kind: 'unix';
      path: string;
      /** Permissions applied between bind() and listen() (e.g. 0o660). */
      mode?: number;
      /** chown after listen (root only). */
      owner?: { uid: number; gid: number };
      backlog?: number;
    }
  | { kind: 'tcp'; /** "" = every address */ host: string; port: number; backlog?: number }
  | { kind: 'inherit' };

export interface ListenSocket {
  readonly fd: number;
  /** For logs: `unix:/run/x.sock`, `tcp:127.0.0.1:9000`, `inherited fd 3 (systemd)`. */
  readonly address: string;
  /** The bound TCP port (the real one when port 0 was asked). */
  readonly port?: number;
  /** Closes our copy; a Unix socket we created is unlinked if the path is still that socket. */
  close(): void;
}

/** Where an inherited listening socket is, if there is one. */
export function findInheritedSocket(
  env: NodeJS.ProcessEnv = process.env,
  native: NativeAddon = loadNative(),
): { fd: number; from: 'systemd' | 'fd 0' } | undefined {
  if (env.LISTEN_PID === String(process.pid) && Number(env.LISTEN_FDS) >= 1 && native.isListeningSocket(3)) {
    return { fd: 3, from: 'systemd' };
  }
  if (native.isListeningSocket(0)) return { fd: 0, from: 'fd 0' };
  return undefined;
}

/**
 * Opens (or adopts) the socket described by `spec`. `warn` receives advice
 * that is not an error (a backlog the kernel will cap).
 */
export async function openListenSocket(spec: ListenSpec, warn: (message: string) => void): Promise<ListenSocket> {
  const native = loadNative();
  if (spec.kind === 'inherit') {
    const found = findInheritedSocket(process.env, native);
    if (!found) {
      throw new PoolError(
        'ERR_PM_NO_INHERITED_SOCKET',
        'no inherited listening socket: neither LISTEN_FDS (for this pid) nor a listening socket on fd 0',
      );
    }
    return { fd: found.fd, address: `inherited fd ${found.fd} (${found.from})`, close: () => native.closeFd(found.fd) };
  }

  const backlog = spec.backlog ?? DEFAULT_BACKLOG;
  warnIfBacklogCapped(backlog, warn);

  if (spec.kind === 'tcp') {
    let fd: number;
    try {
      fd = native.listenTcp(spec.host, spec.port, backlog);
    } catch (err) {
      throw listenError(`tcp:${spec.host || '*'}:${spec.port}`, err);
    }
    const port = native.localPort(fd);
    return { fd, port, address: `tcp:${spec.host || '*'}:${port}`, close: () => native.closeFd(fd) };
  }

  await clearStaleUnixPath(spec.path);
  let fd: number;
  try {
    fd = native.listenUnix(spec.path, backlog, spec.mode);
  } catch (err) {
    throw listenError(`unix:${spec.path}`, err);
  }
  const inode = lstatSync(spec.path).ino;
  const close = (): void => {
    native.closeFd(fd);
    // Only the socket we bound is ours to remove (gunicorn #1524: a successor's file was deleted).
    try {
      if (lstatSync(spec.path).ino === inode) unlinkSync(spec.path);
    } catch {
      // already gone
    }
  };
  if (spec.owner) {
    try {
      chownSync(spec.path, spec.owner.uid, spec.owner.gid);
    } catch (err) {
      close();
      throw listenError(`unix:${spec.path}`, err);
    }
  }
  return { fd, address: `unix:${spec.path}`, close };
}

/**
 * spawn-fcgi's rule: an existing socket file that accepts connections belongs
 * to a live server (refuse); one that refuses them is a leftover (remove).
 * Anything that is not a socket is never deleted.
 */
async function clearStaleUnixPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // absent (or unreachable: bind will report it)
  }
  if (!isSocket) throw new PoolError('ERR_PM_NOT_A_SOCKET', `${path} exists and is not a socket; not touching it`);
  const verdict = await probeUnixSocket(path);
  if (verdict === 'live') throw new PoolError('ERR_PM_SOCKET_IN_USE', `${path} is in use by a running server`);
  if (verdict === 'stale') {
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw listenError(`unix:${path}`, err);
    }
  }
}

/** connect() probe. EAGAIN (full backlog), EACCES, a timeout… all count as "live": refusing is the safe side. */
function probeUnixSocket(path: string): Promise<'live' | 'stale' | 'absent'> {
  return new Promise((resolve) => {
    const sock = createConnection({ path });
    const done = (verdict: 'live' | 'stale' | 'absent'): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(verdict);
    };
    const timer = setTimeout(() => done('live'), 2000);
    sock.once('connect', () => done('live'));
    sock.once('error', (err: NodeJS.ErrnoException) => {
      done(err.code === 'ECONNREFUSED' ? 'stale' : err.code === 'ENOENT' ? 'absent' : 'live');
    });
  });
}

function warnIfBacklogCapped(backlog: number, warn: (message: string) => void): void {
  let somaxconn: number;
  try {
    somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
  } catch {
    return; // not Linux, or /proc hidden: nothing to compare against
  }
  if (Number.isFinite(somaxconn) && backlog > somaxconn) {
    warn(`backlog ${backlog} exceeds net.core.somaxconn (${somaxconn}); the kernel caps it at ${somaxconn}`);
  }
}

function listenError(address: string, cause: unknown): PoolError {
  const e = cause as NodeJS.ErrnoException;
  return new PoolError('ERR_PM_LISTEN', `cannot listen on ${address}: ${e.message}`, { cause });
}
