/**
 * @module pool/pidfile
 * The manager's pid file, with the ordering the original gets wrong
 * (procmanager.md §3, §6.5): written only once the socket is listening,
 * refused while it names a live process, removed LAST, after every worker is
 * gone and the socket is closed, so "no pid file" really means "stopped".
 * Content is the original's: "<pid>\n".
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { PoolError } from './errors.js';

/** The pid a pid file names, or undefined when absent/unreadable/garbage. */
export function readPidFile(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^\s*(\d+)\s*$/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** kill(pid, 0): EPERM still means the process exists (someone else's). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class PidFile {
  private constructor(
    readonly path: string,
    readonly pid: number,
  ) {}

  /**
   * Writes `pid` to `path`. A file naming a live process (other than `pid`)
   * is refused; a stale one is replaced. O_EXCL makes two managers racing
   * for the same file fail instead of both "winning".
   */
  static claim(path: string, pid: number = process.pid): PidFile {
    const existing = readPidFile(path);
    if (existing !== undefined && existing !== pid && isProcessAlive(existing)) {
      throw new PoolError('ERR_PM_PIDFILE_LIVE', `pid file ${path} names a running process (pid ${existing})`);
    }
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw writeError(path, err);
    }
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new PoolError('ERR_PM_PIDFILE_LIVE', `pid file ${path} was created by someone else meanwhile`);
      }
      throw writeError(path, err);
    }
    try {
      writeSync(fd, `${pid}\n`);
    } catch (err) {
      unlinkSync(path);
      throw writeError(path, err);
    } finally {
      closeSync(fd);
    }
    return new PidFile(path, pid);
  }

  /** Removes the file if it still names us: a successor's pid file is left alone. */
  remove(): void {
    if (readPidFile(this.path) !== this.pid) return;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone: nothing to do
    }
  }
}

function writeError(path: string, cause: unknown): PoolError {
  return new PoolError('ERR_PM_PIDFILE_WRITE', `cannot write pid file ${path}: ${(cause as Error).message}`, { cause });
}
