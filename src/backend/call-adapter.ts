/**
 * @module backend/call-adapter
 * Backend.call() for a backend that only has dispatch(): the streamed
 * BackendResponse fed into a ResponseSink. Lets the gateway drive any
 * Backend through one callback path.
 */
import type { Readable } from 'node:stream';
import type { Backend, BackendCall, BackendRequest, ResponseSink } from './contract.js';

/** Thrown into dispatch() as the abort reason: the caller gave up, nobody reads it. */
export class CallAbortedError extends Error {
  constructor() {
    super('backend: the caller gave up on the request');
  }
}

export function callViaDispatch(backend: Pick<Backend, 'dispatch'>, req: BackendRequest, sink: ResponseSink): BackendCall {
  const controller = new AbortController();
  let body: Readable | undefined;
  let over = false;
  const finish = (err?: unknown): void => {
    if (over) return;
    over = true;
    if (err === undefined) sink.end();
    else sink.error(err);
  };
  backend.dispatch({ ...req, signal: controller.signal }).then(
    (resp) => {
      // Stays attached: a late error from a body we gave up on must not go unhandled.
      resp.body.on('error', (err: unknown) => finish(err));
      if (over) {
        resp.body.destroy();
        return;
      }
      body = resp.body;
      resp.stderr?.on('data', (chunk: Buffer) => over || sink.stderr?.(chunk));
      sink.head({ status: resp.status, statusText: resp.statusText, headers: resp.headers });
      if (over) {
        body.destroy(); // aborted from inside head()
        return;
      }
      const b = body;
      b.on('data', (chunk: Buffer) => {
        if (!over && !sink.data(chunk)) b.pause();
      });
      b.once('end', () => finish());
      b.once('close', () => finish(new Error('backend: the response body closed before its end')));
    },
    (err: unknown) => finish(err),
  );
  return {
    abort() {
      if (over) return;
      over = true;
      controller.abort(new CallAbortedError());
      body?.destroy();
    },
    resume() {
      if (!over) body?.resume();
    },
  };
}
