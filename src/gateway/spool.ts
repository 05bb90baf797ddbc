/**
 * @module gateway/spool
 * A request body without Content-Length (chunked) read to its end before the
 * request is forwarded, because CGI gives the application CONTENT_LENGTH up
 * front (nginx does the same with client_body_temp_path). Small bodies stay
 * in memory; past `memoryLimit` they go to an already unlinked temp file, so
 * a crash leaves nothing behind. Past `limit` the spool stops: the caller
 * answers 413.
 */
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { GatehouseError } from '../errors.js';

export type SpoolErrorCode = 'ERR_GATEWAY_BODY_TOO_LARGE' | 'ERR_GATEWAY_BODY_ABORTED';

export class SpoolError extends GatehouseError<SpoolErrorCode> {}

export interface SpoolOptions {
  /** Largest body accepted (bytes). */
  limit: number;
  /** Bodies up to this size are kept in memory. */
  memoryLimit: number;
  /** Where temp files are created. */
  dir: string;
}

export interface SpooledBody {
  readonly length: number;
  /** The body from its first byte; call once. Reading it to the end (or destroying it) frees the file. */
  stream(): Readable;
  /** Frees the file, also when stream() was called but not read to its end. Idempotent. */
  dispose(): Promise<void>;
}

/**
 * Reads `body` to its end. Rejects with ERR_GATEWAY_BODY_TOO_LARGE past the
 * limit (the rest is left unread and the stream paused, so a 413 can still
 * be written), or ERR_GATEWAY_BODY_ABORTED when the client goes away.
 */
export function spoolBody(body: Readable, options: SpoolOptions): Promise<SpooledBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let file: FileHandle | undefined;
    let writing: Promise<void> = Promise.resolve();
    let done = false;

    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
      if (err === undefined) return;
      // A write may still be under way (even opening the file): close once it settles, or the
      // handle is left to the garbage collector, which Node 24+ turns into an uncaught error.
      void writing.then(() => file?.close()).catch(() => {});
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > options.limit) {
        body.pause();
        return finish(new SpoolError('ERR_GATEWAY_BODY_TOO_LARGE', `gateway: request body over ${options.limit} bytes`));
      }
      if (file === undefined && length <= options.memoryLimit) {
        chunks.push(chunk);
        return;
      }
      // Past the memory limit: stop reading until the disk has taken the bytes (backpressure).
      body.pause();
      writing = writing
        .then(async () => {
          if (done) return; // failed meanwhile: nothing more to keep
          file ??= await openTemp(options.dir);
          for (const c of chunks.splice(0)) await writeAll(file, c);
          await writeAll(file, chunk);
        })
        .then(
          () => {
            if (!done) body.resume();
          },
          (err: unknown) => finish(err),
        );
    };
    const onEnd = (): void => {
      if (done) return;
      body.off('close', onClose);
      void writing.then(() => {
        if (done) return;
        finish();
        resolve(file === undefined ? memoryBody(chunks, length) : fileBody(file, length));
      });
    };
    const onError = (err: Error): void =>
      finish(new SpoolError('ERR_GATEWAY_BODY_ABORTED', `gateway: reading the request body failed: ${err.message}`, { cause: err }));
    const onClose = (): void => finish(new SpoolError('ERR_GATEWAY_BODY_ABORTED', 'gateway: the client went away during the request body'));
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.once('close', onClose);
  });
}

function memoryBody(chunks: Buffer[], length: number): SpooledBody {
  return {
    length,
    stream: () => Readable.from(chunks, { objectMode: false }),
    dispose: async () => {},
  };
}

function fileBody(file: FileHandle, length: number): SpooledBody {
  let stream: Readable | undefined;
  let disposed = false;
  return {
    length,
    stream: () => {
      stream = file.createReadStream({ start: 0, autoClose: true });
      return stream;
    },
    dispose: async () => {
      if (disposed) return;
      disposed = true;
      // A stream nobody read to its end still holds the handle: destroying it closes it
      // (autoClose); Node 24+ makes a handle left to the garbage collector an uncaught error.
      if (stream !== undefined) stream.destroy();
      else await file.close();
    },
  };
}

let sequence = 0;

/** A private (0600) temp file, unlinked at once: only our descriptor keeps it. */
async function openTemp(dir: string): Promise<FileHandle> {
  const path = join(dir, `gatehouse-body-${process.pid}-${++sequence}-${randomBytes(6).toString('hex')}`);
  const file = await open(path, 'wx+', 0o600);
  await unlink(path).catch(() => {});
  return file;
}

async function writeAll(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let off = 0; off < chunk.length; ) {
    const { bytesWritten } = await file.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}
