/**
 * @module pool/native
 * Typed loader for the N-API addon (build/Release/gatehouse_native.node) and
 * the path of the `gatehouse-exec` wrapper, both built by node-gyp at
 * `npm ci` from binding.gyp. Loading is lazy so that importing the pool does
 * not fail on a machine without the build; the first use says what to run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PoolError } from './errors.js';

/** Called once per SOCK_SEQPACKET datagram; `payload === null` (and no error) means EOF. */
export type SeqpacketCallback = (err: NodeJS.ErrnoException | null, payload: Buffer | null, passedFd: number) => void;

export interface SeqpacketReceiver {
  /** Stops polling (idempotent). Does not close the fd: it stays the caller's. */
  stop(): void;
}

export interface NativeAddon {
  /** socket/SO_REUSEADDR/bind/listen, CLOEXEC; host "" = every address. Returns the raw fd. */
  listenTcp(host: string, port: number, backlog: number): number;
  /** The port a TCP socket is bound to (to learn it after binding port 0). */
  localPort(fd: number): number;
  /** socket/bind/[chmod]/listen, CLOEXEC. Never unlinks an existing path. */
  listenUnix(path: string, backlog: number, mode?: number): number;
  closeFd(fd: number): void;
  /** getsockopt(SO_ACCEPTCONN): true only for a socket in the listening state. */
  isListeningSocket(fd: number): boolean;
  /** fcntl O_NONBLOCK on or off: a flag of the open file description, so every process holding it sees it. */
  setNonBlocking(fd: number, on: boolean): void;
  /** Moves the socket on fd 0 to a new close-on-exec fd (returned) and puts /dev/null on fd 0. */
  moveFromStdin(): number;
  /** prctl(PR_SET_PDEATHSIG, signal) for the calling thread's process. */
  setPdeathsig(signal: number): void;
  /** Receives ashd-style datagrams (64 KiB payload, 1 KiB control) on the env's libuv loop. */
  startSeqpacketReceiver(fd: number, callback: SeqpacketCallback): SeqpacketReceiver;
}

/** The directory holding package.json: found by walking up, so src/ and dist/src/ both work. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'gatehouse') return dir;
      } catch {
        // not ours (or unreadable): keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new PoolError('ERR_PM_NATIVE_MISSING', 'cannot find the gatehouse package root');
    dir = parent;
  }
}

function releaseDir(): string {
  return process.env.GATEHOUSE_NATIVE_DIR ?? join(packageRoot(), 'build', 'Release');
}

function missing(what: string, cause?: unknown): PoolError {
  return new PoolError(
    'ERR_PM_NATIVE_MISSING',
    `${what} is not built; run \`npm ci\` (or node-gyp rebuild) in ${packageRoot()}`,
    cause === undefined ? undefined : { cause },
  );
}

let addon: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (addon === undefined) {
    const file = join(releaseDir(), 'gatehouse_native.node');
    try {
      addon = createRequire(import.meta.url)(file) as NativeAddon;
    } catch (err) {
      throw missing(file, err);
    }
  }
  return addon;
}

/** Absolute path of build/Release/gatehouse-exec; throws ERR_PM_NATIVE_MISSING if absent. */
export function execWrapperPath(): string {
  const file = join(releaseDir(), 'gatehouse-exec');
  if (!existsSync(file)) throw missing(file);
  return file;
}
