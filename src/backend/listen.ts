/**
 * @module backend/listen
 * Listening sockets a backend creates for the program it starts, as raw fds
 * that libuv never polls (we never accept; the child does, on its fd 0):
 * the anonymous socket in a private 0700 directory, and the launching-mode
 * socket at the configured address (a connect probe before a stale Unix
 * path is removed; SO_REUSEADDR for TCP, ashd bug §7.2).
 */
import { mkdtemp, rm, lstat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadNative } from '../pool/native.js';
import { checkUnixPath, ensurePrivateDir, type SocketTarget } from './address.js';
import { connectTarget } from './connect.js';
import { isNotListening } from './errors.js';

export const LISTEN_BACKLOG = 128;

/** A listening socket fd we own until it is handed to a child and closed. */
export interface ListeningFd {
  fd: number;
  target: SocketTarget;
}

/** Closes an fd from listen*(); errors (EBADF) are not interesting here. */
export function closeListeningFd(l: ListeningFd): void {
  try {
    loadNative().closeFd(l.fd);
  } catch {
    /* already closed */
  }
}

/**
 * The private directory of an anonymous socket: `$XDG_RUNTIME_DIR` when set,
 * else the system temp dir, plus an unguessable mkdtemp name (mode 0700).
 */
export async function makeAnonymousDir(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const xdg = env.XDG_RUNTIME_DIR;
  const base = xdg !== undefined && xdg.startsWith('/') ? xdg : tmpdir();
  const dir = await mkdtemp(join(base, 'gatehouse-anon-'));
  await ensurePrivateDir(dir);
  return dir;
}

/** Binds the anonymous socket `path` (inside our private dir) with mode 0600, replacing an old one of ours. */
export async function listenAnonymous(path: string): Promise<ListeningFd> {
  checkUnixPath(path);
  await unlink(path).catch(() => {});
  return { fd: loadNative().listenUnix(path, LISTEN_BACKLOG, 0o600), target: { kind: 'unix', path } };
}

/** Removes the anonymous directory and everything in it. */
export async function removeAnonymousDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/**
 * Creates the listening socket at `target` for launching mode. Returns null
 * when a probe finds somebody already accepting there (use them instead).
 * A Unix path is only removed when it is a socket nobody accepts on.
 */
export async function listenAt(target: SocketTarget, opts: { probeTimeoutMs: number; privateDir?: boolean }): Promise<ListeningFd | null> {
  if (target.kind === 'tcp') {
    // The native listener sets SO_REUSEADDR, so a relaunch is not stopped by TIME_WAIT.
    return { fd: loadNative().listenTcp(target.host, target.port, LISTEN_BACKLOG), target };
  }
  checkUnixPath(target.path);
  if (opts.privateDir) await ensurePrivateDir(dirname(target.path));
  try {
    const probe = await connectTarget(target, { timeoutMs: opts.probeTimeoutMs });
    probe.destroy();
    return null;
  } catch (err) {
    if (!isNotListening(err)) throw err;
  }
  const st = await lstat(target.path).catch(() => undefined);
  if (st !== undefined) {
    if (!st.isSocket()) {
      throw Object.assign(new Error(`${target.path} exists and is not a socket; not replacing it`), { code: 'EEXIST' });
    }
    await unlink(target.path).catch(() => {});
  }
  return { fd: loadNative().listenUnix(target.path, LISTEN_BACKLOG), target };
}
