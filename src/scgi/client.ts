/**
 * @module scgi/client
 * The web server's side of one SCGI exchange on an already connected
 * socket: write the header netstring, stream the body, and read the raw
 * CGI response (headers, blank line, body) until the server closes.
 */
import { Readable, Writable, type Duplex } from 'node:stream';
import type { ParamList } from './contract.js';
import { encodeRequestHeaders } from './codec.js';
import { ScgiProtocolError } from './errors.js';

export interface ScgiClientExchange {
  /**
   * The request body: write exactly `contentLength` bytes, then end() it.
   * More bytes, or end() with fewer, fail with ERR_SCGI_BODY_LENGTH. Writes
   * complete when the socket has taken them (backpressure). Once the
   * response has ended, later body bytes are discarded: SCGI gives a server
   * no way to refuse a body except answering and closing.
   */
  readonly body: Writable;
  /**
   * The raw response bytes. Ends when the server closes the connection.
   * Errors with ERR_SCGI_CONNECTION_CLOSED if the server closes before any
   * byte or the socket fails before the end (the socket error is the cause).
   */
  readonly response: Readable;
}

/**
 * Starts one SCGI request on `socket` (connected, unused; the exchange owns
 * it and destroys it once the response has ended or failed). Header
 * problems (a NUL in a param, …) throw ScgiProtocolError synchronously,
 * before anything is written. The socket is not half-closed after the body,
 * as nginx does not either; servers read CONTENT_LENGTH bytes instead.
 */
export function scgiRequest(socket: Duplex, params: ParamList, contentLength: number): ScgiClientExchange {
  const header = encodeRequestHeaders(params, contentLength);
  let written = 0;
  let received = 0;
  let responseDone = false;

  const response = new Readable({
    read() {
      socket.resume();
    },
    destroy(err, callback) {
      // The caller gave up on the response (or it failed): the connection is useless.
      responseDone = true;
      socket.destroy();
      callback(err);
    },
  });

  const body = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (responseDone) return callback();
      if (written + chunk.length > contentLength) {
        return callback(
          new ScgiProtocolError('ERR_SCGI_BODY_LENGTH', `body exceeds the announced CONTENT_LENGTH ${contentLength}`),
        );
      }
      written += chunk.length;
      // A write failure also fails the socket, which fails `response` with a
      // typed error; the body is then destroyed without an error of its own.
      socket.write(chunk, () => callback());
    },
    final(callback) {
      if (!responseDone && written !== contentLength) {
        return callback(
          new ScgiProtocolError('ERR_SCGI_BODY_LENGTH', `body ended after ${written} of ${contentLength} announced bytes`),
        );
      }
      callback();
    },
  });

  const failResponse = (detail: string, cause?: unknown): void => {
    if (responseDone) return;
    response.destroy(new ScgiProtocolError('ERR_SCGI_CONNECTION_CLOSED', detail, { cause }));
    // The body need not error: its pending writes fail through their callbacks.
    body.destroy();
  };

  socket.on('data', (chunk: Buffer) => {
    if (responseDone) return;
    received += chunk.length;
    if (!response.push(chunk)) socket.pause();
  });
  socket.on('end', () => {
    if (received === 0) return failResponse('server closed the connection without a response');
    if (responseDone) return;
    responseDone = true;
    response.push(null);
    socket.destroy();
  });
  socket.on('error', (err: Error) => failResponse(`connection failed: ${err.message}`, err));
  socket.on('close', () => failResponse('connection closed before the response ended'));

  socket.write(header);
  return { body, response };
}
