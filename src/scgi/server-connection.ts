/**
 * @module scgi/server-connection
 * The application's side of one SCGI connection: read the header netstring,
 * hand out exactly CONTENT_LENGTH body bytes as a Readable, and let the
 * handler write the raw CGI response straight to the socket. SCGI carries
 * one request per connection; ending the response ends the connection.
 */
import { Readable, type Duplex } from 'node:stream';
import type { ScgiServerOptions, ScgiServerRequest } from './contract.js';
import { ScgiHeaderParser } from './codec.js';
import { ScgiProtocolError } from './errors.js';

export interface ScgiConnectionOptions extends ScgiServerOptions {
  /** CONTENT_LENGTH must come first (default true); see ScgiHeaderParserOptions.strict. */
  strict?: boolean;
  /** Repeated names (default 'keep'); see ScgiHeaderParserOptions.duplicates. */
  duplicates?: 'keep' | 'reject';
  /**
   * Told about every failure on this connection: ScgiProtocolError for bad
   * peer input (then only this socket is destroyed), Node's errno errors for
   * socket failures, and anything onRequest throws. Default: one line on
   * stderr with the code. Never called more than once per connection.
   */
  onError?: (err: Error, socket: Duplex) => void;
}

type ConnectionState = 'header' | 'body' | 'after';

function logError(err: Error): void {
  const code = (err as { code?: unknown }).code;
  process.stderr.write(`gatehouse: scgi connection: ${typeof code === 'string' ? `${code} ` : ''}${err.message}\n`);
}

/**
 * Serves one SCGI connection. `onRequest` is called once the header is
 * parsed; the request's `response` is the socket itself. Returns nothing:
 * failures go to `options.onError` (see there), never to an 'error' event
 * nobody listens to, so bad peer input cannot crash the process.
 *
 * The socket is made half-open capable, so a client that shuts down its
 * write side after the body still gets the response.
 */
export function serveScgiConnection(
  socket: Duplex,
  options: ScgiConnectionOptions,
  onRequest: (req: ScgiServerRequest) => void,
): void {
  const parser = new ScgiHeaderParser({
    ...(options.maxHeaderBytes !== undefined && { maxHeaderBytes: options.maxHeaderBytes }),
    strict: options.strict ?? true,
    duplicates: options.duplicates ?? 'keep',
  });
  const report = options.onError ?? logError;
  let state: ConnectionState = 'header';
  let remaining = 0;
  let failed = false;
  let responseFinished = false;
  // Reads pause the socket when the body consumer is slow; _read resumes it.
  const body = new Readable({
    read() {
      if (state === 'body') socket.resume();
    },
  });
  // The error is also reported through onError; this listener only keeps an
  // unread body from turning a peer's lie into an uncaught exception.
  body.on('error', () => {});

  socket.allowHalfOpen = true;

  const fail = (err: Error): void => {
    if (failed) return;
    failed = true;
    if (state === 'body') body.destroy(err);
    state = 'after';
    report(err, socket);
    socket.destroy();
  };

  const feedBody = (chunk: Buffer): void => {
    if (state !== 'body' || chunk.length === 0) return;
    const n = Math.min(remaining, chunk.length);
    remaining -= n;
    const more = body.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (remaining === 0) {
      // Bytes beyond CONTENT_LENGTH are ignored, as are any later ones.
      state = 'after';
      body.push(null);
      socket.resume();
    } else if (!more) {
      socket.pause();
    }
  };

  socket.on('data', (chunk: Buffer) => {
    if (state === 'body') return feedBody(chunk);
    if (state === 'after') return;
    let head;
    try {
      head = parser.push(chunk);
    } catch (err) {
      return fail(err as Error);
    }
    if (head === null) return;
    remaining = head.contentLength;
    state = 'body';
    if (remaining === 0) {
      state = 'after';
      body.push(null);
    }
    try {
      onRequest({ params: head.params, body, response: socket });
    } catch (err) {
      return fail(err as Error);
    }
    feedBody(head.rest);
  });

  socket.on('end', () => {
    if (state === 'header') {
      try {
        parser.end();
      } catch (err) {
        return fail(err as Error);
      }
      // A connection that closed before sending anything (a port probe).
      state = 'after';
      socket.destroy();
    } else if (state === 'body') {
      fail(new ScgiProtocolError('ERR_SCGI_SHORT_BODY', `connection closed with ${remaining} body bytes still due`));
    }
  });

  // A peer that resets after the whole response was written has lost nothing.
  socket.on('error', (err: Error) => {
    if (responseFinished) socket.destroy();
    else fail(err);
  });

  // The response has been written in full: drop whatever body the handler
  // did not read and keep draining, so the kernel has no unread bytes that
  // would turn our close into a reset that eats the response.
  socket.on('finish', () => {
    responseFinished = true;
    if (state === 'body') {
      state = 'after';
      body.destroy();
    }
    socket.resume();
  });

  socket.on('close', () => {
    if (state === 'body') {
      failed = true;
      body.destroy(new ScgiProtocolError('ERR_SCGI_SHORT_BODY', 'connection closed before the body was complete'));
      state = 'after';
    }
  });
}
