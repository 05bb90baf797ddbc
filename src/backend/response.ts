/**
 * @module backend/response
 * The application's raw CGI output (SCGI socket bytes, FastCGI STDOUT) as a
 * BackendResponse: the head parsed with src/cgi's CgiResponseParser, the
 * bytes after it streamed on with backpressure. Also the head timer both
 * transports use.
 */
import { Readable } from 'node:stream';
import { CgiResponseParser } from '../cgi/response-head.js';
import type { BackendResponse } from './contract.js';
import { backendError, errorText } from './errors.js';

export type ParsedResponse = Omit<BackendResponse, 'stderr'>;

/**
 * Reads `raw` until the CGI head is complete, then resolves with the head
 * and a body stream of everything after it. Rejects with
 * ERR_BACKEND_PROTOCOL for a bad head, ERR_BACKEND_CLOSED_EARLY when `raw`
 * ends before the head is complete, or `raw`'s own error. Once resolved,
 * `raw` failing before its end errors the body (the response broke off),
 * and destroying the body destroys `raw`. With `endGate`, the body ends
 * only once the gate resolves (FastCGI: END_REQUEST, after the connection
 * went back to the pool), and errors if it rejects.
 */
export function readCgiResponse(raw: Readable, hooks: { onHead?: () => void; endGate?: Promise<void> } = {}): Promise<ParsedResponse> {
  return new Promise((resolve, reject) => {
    const parser = new CgiResponseParser();
    let body: Readable | undefined;
    let ended = false;

    const fail = (err: unknown): void => {
      cleanup();
      if (body === undefined) reject(err);
      else body.destroy(err instanceof Error ? err : new Error(String(err)));
    };
    const onData = (chunk: Buffer): void => {
      if (body !== undefined) {
        if (!body.push(chunk)) raw.pause();
        return;
      }
      let head;
      try {
        head = parser.push(chunk);
      } catch (err) {
        raw.destroy();
        return fail(backendError('ERR_BACKEND_PROTOCOL', `bad CGI response head: ${errorText(err)}`, err));
      }
      if (head === null) return;
      hooks.onHead?.();
      body = new Readable({
        read() {
          raw.resume();
        },
        destroy(err, callback) {
          if (!ended) raw.destroy();
          callback(err);
        },
      });
      if (head.rest.length > 0) body.push(head.rest);
      resolve({ status: head.status, statusText: head.statusText, headers: head.headers, body });
    };
    const onEnd = (): void => {
      ended = true;
      if (body !== undefined) {
        cleanup();
        const b = body;
        if (hooks.endGate === undefined) b.push(null);
        else hooks.endGate.then(() => b.push(null), (err: unknown) => b.destroy(err instanceof Error ? err : new Error(String(err))));
        return;
      }
      fail(backendError('ERR_BACKEND_CLOSED_EARLY', 'the response ended before a complete CGI head'));
    };
    const onError = (err: unknown): void => fail(err);
    const onClose = (): void => {
      if (!ended) fail(backendError('ERR_BACKEND_CLOSED_EARLY', body === undefined ? 'the connection closed before a complete CGI head' : 'the connection closed in the middle of the response body'));
    };
    function cleanup(): void {
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('error', onError);
      raw.off('close', onClose);
    }
    raw.on('data', onData);
    raw.on('end', onEnd);
    raw.on('error', onError);
    raw.on('close', onClose);
  });
}

/** A timeout armed once the request is out and disarmed by the response head. */
export class HeadTimer {
  readonly #ms: number;
  readonly #onTimeout: () => void;
  #timer: NodeJS.Timeout | undefined;
  #done = false;

  constructor(ms: number, onTimeout: () => void) {
    this.#ms = ms;
    this.#onTimeout = onTimeout;
  }

  start(): void {
    // 0: no deadline here (the caller keeps its own).
    if (this.#done || this.#timer !== undefined || this.#ms === 0) return;
    this.#timer = setTimeout(() => {
      this.#done = true;
      this.#onTimeout();
    }, this.#ms);
  }

  stop(): void {
    this.#done = true;
    clearTimeout(this.#timer);
  }
}
