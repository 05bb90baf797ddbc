/**
 * @module gateway/access-log
 * nginx's "combined" access log:
 *   $remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
 * combinedLine() builds one line (the gateway calls it only when an access
 * log is configured); AccessLogFile writes lines to a file (O_APPEND) or
 * stdout, buffered as nginx's `access_log ... buffer= flush=`: queued lines
 * go out in one write when FLUSH_MS have passed since the first of them or
 * the buffer is full, so a busy gateway makes one write per several hundred
 * requests, never a synchronous one to a file.
 */
import { closeSync, createWriteStream, openSync, type WriteStream } from 'node:fs';
import { describeCause } from './error-response.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

let cachedSecond = -1;
let cachedTime = '';

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** `10/Oct/2000:13:55:36 -0700`, local time, rebuilt at most once a second. */
export function timeLocal(now: number = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second === cachedSecond) return cachedTime;
  const d = new Date(second * 1000);
  const offset = -d.getTimezoneOffset();
  const abs = Math.abs(offset);
  cachedTime =
    `${pad2(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ` +
    `${offset < 0 ? '-' : '+'}${pad2(Math.floor(abs / 60))}${pad2(abs % 60)}`;
  cachedSecond = second;
  return cachedTime;
}

const NEEDS_ESCAPE = /[\x00-\x1f"\\\x7f-\uffff]/;
const ESCAPED = /[\x00-\x1f"\\\x7f-\uffff]/g;

/** As nginx's default log escaping: `"`, `\`, control and non-ASCII bytes as `\xHH`; absent or empty as `-`. */
export function logField(value: string | string[] | undefined): string {
  if (value === undefined || value === '') return '-';
  const s = Array.isArray(value) ? value.join(', ') : value;
  if (!NEEDS_ESCAPE.test(s)) return s;
  return s.replace(ESCAPED, (c) => {
    const code = c.charCodeAt(0);
    // Header and URL strings are latin1 (one char per byte); anything wider is shown by its UTF-8 bytes.
    const bytes = code <= 0xff ? [code] : [...Buffer.from(c, 'utf8')];
    return bytes.map((b) => `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  });
}

/** What a log line shows of a request (the gateway's Exchange has it). */
export interface LoggedRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  /** The first value of a header, by lowercase name. */
  header(lower: string): string | undefined;
}

/** One combined-format line, newline included. `request` undefined: none could be parsed (logged as "-"). */
export function combinedLine(remoteAddr: string, req: LoggedRequest | undefined, status: number, bodyBytes: number, now?: number): string {
  const request = req === undefined ? '-' : logField(`${req.method} ${req.url} HTTP/${req.httpVersion}`);
  const referer = req === undefined ? '-' : logField(req.header('referer'));
  const agent = req === undefined ? '-' : logField(req.header('user-agent'));
  return `${remoteAddr || '-'} - - [${timeLocal(now)}] "${request}" ${status} ${bodyBytes} "${referer}" "${agent}"\n`;
}

/** Lines written to one pipe at once stay under PIPE_BUF, so workers sharing stdout do not interleave them. */
const PIPE_CHUNK = 4096;
/** A file gets up to this much per write. */
const FILE_CHUNK = 64 * 1024;
/** A queued line is written within this long. */
const FLUSH_MS = 100;
/** close(): how long the last lines may take to leave. */
const CLOSE_TIMEOUT_MS = 5000;

/**
 * An access log: `-` for stdout, else a file opened for appending (created
 * if missing). The constructor opens the file synchronously, so a path that
 * cannot be written is a start-up failure (it throws). A write error later
 * is logged once and logging stops until reopen(); it never stops serving.
 */
export class AccessLogFile {
  readonly path: string;
  readonly #log: (line: string) => void;
  readonly #chunk: number;
  #out: WriteStream | NodeJS.WriteStream;
  #pending = '';
  #timer: NodeJS.Timeout | undefined;
  #failed = false;

  constructor(path: string, log: (line: string) => void) {
    this.path = path;
    this.#log = log;
    this.#chunk = path === '-' ? PIPE_CHUNK : FILE_CHUNK;
    this.#out = path === '-' ? process.stdout : this.#open();
    this.#watch(this.#out);
  }

  /** Queues one line (newline included); it is written within FLUSH_MS, or sooner once the buffer fills. */
  readonly write = (line: string): void => {
    if (this.#failed) return;
    if (this.#pending.length + line.length > this.#chunk) this.#flush();
    this.#pending += line;
    this.#timer ??= setTimeout(this.#flush, FLUSH_MS);
  };

  /** SIGUSR1 (logrotate): lines from now on go to a freshly opened PATH; the old file gets what was queued. Stdout: nothing to do. */
  reopen(): void {
    if (this.path === '-') return;
    let next: WriteStream;
    try {
      next = this.#open();
    } catch (err) {
      this.#log(`access log: cannot reopen ${this.path}, still writing to the old file: ${describeCause(err)}`);
      return;
    }
    this.#flush();
    const old = this.#out as WriteStream;
    old.end();
    this.#out = next;
    this.#watch(next);
    this.#failed = false;
  }

  /** Writes what is queued and closes the file (stdout: waits until it has taken the lines); bounded in time. */
  close(): Promise<void> {
    this.#flush();
    this.#failed = true; // nothing more after this
    const out = this.#out;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS).unref();
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      if (out === process.stdout) {
        if (out.writableLength === 0 || out.destroyed) done();
        else out.write('', done);
      } else if ((out as WriteStream).closed) {
        done();
      } else {
        out.once('close', done);
        out.end();
      }
    });
  }

  #open(): WriteStream {
    const fd = openSync(this.path, 'a', 0o644);
    try {
      return createWriteStream('', { fd, autoClose: true });
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  readonly #flush = (): void => {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    if (pending === '') return;
    this.#pending = '';
    if (!this.#failed) this.#out.write(pending);
  };

  #watch(out: WriteStream | NodeJS.WriteStream): void {
    out.on('error', (err: Error) => {
      if (out === this.#out) this.#onError(err);
    });
  }

  #onError(err: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#log(`access log: cannot write ${this.path === '-' ? 'to stdout' : this.path}, no more access log lines${this.path === '-' ? '' : ' until it is reopened (SIGUSR1)'}: ${describeCause(err)}`);
  }
}

/** Throws (with the cause) when PATH cannot be opened for appending: checked by a --workers primary before it starts workers. */
export function checkAccessLogPath(path: string): void {
  if (path !== '-') closeSync(openSync(path, 'a', 0o644));
}
