/**
 * @module gateway/response-relay
 * The application's response to the client: its head without hop-by-hop
 * fields (node:http frames the connection itself: keep-alive, chunked when
 * the application gave no Content-Length), then its body copied with
 * backpressure. The copy is a small hand-written pump rather than pipeline()
 * so that it can (a) hold the application to its own Content-Length — a
 * longer body would desynchronise the client's keep-alive connection, a
 * shorter one would leave it waiting — and (b) refresh an idle timer per
 * chunk, with no per-chunk allocation.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { BackendResponse } from '../backend/contract.js';
import { GatehouseError } from '../errors.js';

/** RFC 9110 §7.6.1 connection-specific fields, plus the pre-standard Proxy-Connection. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);

export type RelayErrorCode = 'ERR_GATEWAY_BAD_RESPONSE_HEAD' | 'ERR_GATEWAY_LENGTH_MISMATCH' | 'ERR_GATEWAY_BODY_IDLE';

export class RelayError extends GatehouseError<RelayErrorCode> {}

/** The client closed its connection before the response was complete (not worth a log line). */
export class ClientClosedError extends Error {
  constructor() {
    super('gateway: the client went away during the response');
  }
}

/**
 * The head as node:http's flat [name, value, …] array, and the application's
 * Content-Length (undefined: none, so node:http chunks). Throws RelayError
 * for a head node:http could not send faithfully (→ 502).
 */
export function responseHead(resp: BackendResponse): { flat: string[]; contentLength: number | undefined } {
  if (resp.status < 200 || resp.status > 999) {
    throw new RelayError('ERR_GATEWAY_BAD_RESPONSE_HEAD', `gateway: the application sent status ${resp.status} as its final response`);
  }
  const flat: string[] = [];
  let contentLength: number | undefined;
  let extraHopByHop: string[] | undefined;
  for (const [name, value] of resp.headers) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      // Fields the application's Connection header names are hop-by-hop too.
      if (lower === 'connection') (extraHopByHop ??= []).push(...value.toLowerCase().split(',').map((t) => t.trim()));
      continue;
    }
    if (lower === 'content-length') {
      const n = /^\d{1,15}$/.test(value.trim()) ? Number(value) : NaN;
      if (Number.isNaN(n) || (contentLength !== undefined && contentLength !== n)) {
        throw new RelayError('ERR_GATEWAY_BAD_RESPONSE_HEAD', `gateway: the application sent a bad Content-Length ${JSON.stringify(value)}`);
      }
      if (contentLength !== undefined) continue;
      contentLength = n;
    }
    flat.push(name, value);
  }
  if (extraHopByHop !== undefined) {
    for (let i = flat.length - 2; i >= 0; i -= 2) {
      if (extraHopByHop.includes(flat[i]!.toLowerCase()) && flat[i]!.toLowerCase() !== 'content-length') flat.splice(i, 2);
    }
  }
  return { flat, contentLength };
}

/** A shared no-op 'error' listener (not a closure per request). */
export function ignoreError(): void {}

/** Has no body whatever the headers say (RFC 9110 §6.4.1). */
export function bodyless(method: string | undefined, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304;
}

/**
 * Copies `body` into `res` and ends it. `done(err)` runs once: err undefined
 * when the whole body was sent, else why it was not (the client went away,
 * the application broke off, lied about its length or went idle). On error
 * both sides are destroyed; a half-sent response must not look complete.
 */
export class ResponsePump {
  #sent = 0;
  #finished = false;
  readonly #body: Readable;
  readonly #res: ServerResponse;
  readonly #expected: number | undefined;
  readonly #idle: NodeJS.Timeout;
  readonly #done: (err?: Error) => void;

  constructor(body: Readable, res: ServerResponse, expected: number | undefined, idleMs: number, done: (err?: Error) => void) {
    this.#body = body;
    this.#res = res;
    this.#expected = expected;
    this.#done = done;
    this.#idle = setTimeout(this.#onIdle, idleMs);
    // Stays after we detach: a late error from a body we already gave up on must not crash the process.
    body.on('error', ignoreError);
    body.on('data', this.#onData);
    body.once('end', this.#onEnd);
    body.once('error', this.#onError);
    body.once('close', this.#onBodyClose);
    res.on('drain', this.#onDrain);
    res.once('close', this.#onResClose);
    // Gone already: its 'close' has passed, and nothing would ever drain.
    if (res.destroyed) this.#fail(new ClientClosedError());
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#sent += chunk.length;
    if (this.#expected !== undefined && this.#sent > this.#expected) {
      return this.#fail(new RelayError('ERR_GATEWAY_LENGTH_MISMATCH', `gateway: the application sent more than its Content-Length ${this.#expected}`));
    }
    this.#idle.refresh();
    if (!this.#res.write(chunk)) this.#body.pause();
  };

  readonly #onDrain = (): void => {
    this.#body.resume();
  };

  readonly #onEnd = (): void => {
    if (this.#expected !== undefined && this.#sent !== this.#expected) {
      return this.#fail(
        new RelayError('ERR_GATEWAY_LENGTH_MISMATCH', `gateway: the application sent ${this.#sent} of its Content-Length ${this.#expected} bytes`),
      );
    }
    this.#settle();
    this.#res.end();
    this.#done();
  };

  readonly #onError = (err: Error): void => this.#fail(err);

  readonly #onBodyClose = (): void => {
    if (!this.#finished) this.#fail(new Error('gateway: the response body closed before its end'));
  };

  readonly #onResClose = (): void => {
    if (!this.#finished) this.#fail(new ClientClosedError());
  };

  readonly #onIdle = (): void => {
    this.#fail(new RelayError('ERR_GATEWAY_BODY_IDLE', 'gateway: the application sent no body bytes for too long'));
  };

  #fail(err: Error): void {
    if (this.#finished) return;
    this.#settle();
    this.#body.destroy();
    this.#res.destroy();
    this.#done(err);
  }

  #settle(): void {
    this.#finished = true;
    clearTimeout(this.#idle);
    this.#body.off('data', this.#onData);
    this.#body.off('end', this.#onEnd);
    this.#body.off('error', this.#onError);
    this.#body.off('close', this.#onBodyClose);
    this.#res.off('drain', this.#onDrain);
    this.#res.off('close', this.#onResClose);
  }
}
