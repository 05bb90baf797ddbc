/**
 * @module backend/dispatch-adapter
 * Backend.dispatch() on top of a call() (the reverse of call-adapter.ts):
 * the sink's callbacks become a promise of the head and Readables for the
 * body and STDERR, and req.signal becomes call.abort(). For callers that
 * want streams (callscgi/callfcgi, the ashd driver); the gateway's hot path
 * uses call() itself.
 */
import { Readable } from 'node:stream';
import type { BackendCall, BackendRequest, BackendResponse, BackendResponseHead, ResponseSink } from './contract.js';

/**
 * A call that can also give up on the rest of the body without aborting
 * the request (FastCGI: the request runs to END_REQUEST and the connection
 * stays reusable); the sink still hears end() or error(). Without it a
 * destroyed body aborts the call.
 */
export interface DiscardableCall extends BackendCall {
  discard?(): void;
}

export interface CallSource {
  call(req: BackendRequest, sink: ResponseSink): DiscardableCall;
}

/**
 * Resolves at the head with a body that streams with backpressure (reading
 * resumes the call; destroying it early discards the rest) and rejects with
 * the call's error before the head. Aborting req.signal aborts the call:
 * the promise rejects with the signal's reason before the head, the body is
 * destroyed with it after.
 */
export function dispatchViaCall(source: CallSource, req: BackendRequest): Promise<BackendResponse> {
  const signal = req.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const sink = new DispatchSink(resolve, reject, signal);
    sink.start(source, req);
  });
}

class DispatchSink implements ResponseSink {
  readonly #resolve: (r: BackendResponse) => void;
  readonly #reject: (err: unknown) => void;
  readonly #signal: AbortSignal | undefined;
  #call: DiscardableCall | undefined;
  #body: CallBody | undefined;
  #stderr: Readable | undefined;
  /** end() or error() came: the call is over. */
  #done = false;

  constructor(resolve: (r: BackendResponse) => void, reject: (err: unknown) => void, signal: AbortSignal | undefined) {
    this.#resolve = resolve;
    this.#reject = reject;
    this.#signal = signal;
  }

  start(source: CallSource, req: BackendRequest): void {
    this.#call = source.call(req, this);
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  head(head: BackendResponseHead): void {
    this.#body = new CallBody(this);
    this.#stderr ??= new Readable({ read() {} });
    this.#resolve({ status: head.status, statusText: head.statusText, headers: head.headers, body: this.#body, stderr: this.#stderr });
  }

  data(chunk: Buffer): boolean {
    return this.#body!.push(chunk);
  }

  end(): void {
    this.#finish();
    if (!this.#body!.destroyed) this.#body!.push(null);
  }

  error(err: unknown): void {
    this.#finish();
    if (this.#body === undefined) this.#reject(err);
    else this.#body.destroy(asError(err));
  }

  stderr(chunk: Buffer): void {
    (this.#stderr ??= new Readable({ read() {} })).push(chunk);
  }

  /** The body wants more. */
  resume(): void {
    this.#call?.resume();
  }

  /** The body was destroyed: before the end, the rest of it is not wanted. */
  bodyGone(): void {
    if (this.#done) return;
    if (this.#call?.discard !== undefined) this.#call.discard();
    else this.#abort();
  }

  #finish(): void {
    this.#done = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#stderr?.push(null);
  }

  #abort(): void {
    this.#finish();
    this.#call?.abort();
  }

  readonly #onAbort = (): void => {
    if (this.#done) return;
    const reason: unknown = this.#signal!.reason;
    this.#abort();
    if (this.#body === undefined) this.#reject(reason);
    else this.#body.destroy(asError(reason));
  };
}

/** The response body: reads resume the call; destroying it before the end discards the rest. */
class CallBody extends Readable {
  readonly #owner: DispatchSink;
  constructor(owner: DispatchSink) {
    super();
    this.#owner = owner;
  }
  override _read(): void {
    this.#owner.resume();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#owner.bodyGone();
    cb(err);
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
