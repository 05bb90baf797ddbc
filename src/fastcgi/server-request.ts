/**
 * @module fastcgi/server-request
 * One request as the FastCGI server (application side) holds it: the
 * FcgiServerRequest of contract.ts. State changes come from the connection
 * (server-connection.ts); the application only writes and calls end().
 *
 * The four streams are made on first use. A small request (no body, a
 * response written through writeStdout(), no stderr) never builds one: its
 * records go straight to the connection's RecordOutput, and end() writes the
 * empty STDOUT record and END_REQUEST at once. Touching `stdin`, `data`,
 * `stdout` or `stderr` gives the streams, in the state they would have had
 * all along; from then on they carry the bytes, in order.
 */
import { EventEmitter } from 'node:events';
import { finished } from 'node:stream';
import { checkPairs, decodePairs } from './codec.js';
import { FCGI_MAX_CONTENT_LENGTH, RecordType } from './constants.js';
import type { FcgiRoleName, FcgiServerRequest, ParamList } from './contract.js';
import { InboundStream, type InboundGate } from './inbound.js';
import { RecordStreamWritable, type RecordOutput } from './outbound.js';

/** Told when a request is aborted (at most once, before 'abort') and when it is closed (once, before 'close'). */
export interface ServerRequestWatcher {
  requestAborted(): void;
  requestClosed(): void;
}

/** What a request needs from its connection. */
export interface ServerRequestHost {
  /**
   * Writes END_REQUEST and releases the id (called once, after stdout/stderr
   * flushed). With `endStdout`, the empty STDOUT record goes first, in the
   * same write.
   */
  completeRequest(req: ServerRequest, appStatus: number, endStdout?: boolean): void;
}

/**
 * EventEmitter without its constructor: the listener table is made when the
 * first listener is added. EventEmitter's methods allow for its absence (as
 * for any object inheriting EventEmitter.prototype without calling the
 * constructor); a request is made per request and most never get a listener,
 * so this saves a table per request. `instanceof EventEmitter` holds.
 */
export const LazyEventEmitter = function LazyEventEmitter() {} as unknown as typeof EventEmitter;
LazyEventEmitter.prototype = EventEmitter.prototype;
Object.setPrototypeOf(LazyEventEmitter, EventEmitter);

const EMPTY = Buffer.alloc(0);
/** See finishParams(). */
const RETAIN_SLACK_BYTES = 16 * 1024;

export class ServerRequest extends LazyEventEmitter implements FcgiServerRequest {
  readonly requestId: number;
  readonly role: FcgiRoleName;
  readonly keepConn: boolean;
  readonly #host: ServerRequestHost;
  readonly #out: RecordOutput;
  readonly #gate: InboundGate;
  readonly #highWaterMark: number | undefined;
  #stdin: InboundStream | null = null;
  #stdinEnded = false;
  #data: InboundStream | null = null;
  #dataEnded: boolean;
  #stdout: RecordStreamWritable | null = null;
  #stderr: RecordStreamWritable | null = null;
  #params: ParamList | null = null;
  /** The PARAMS stream as received, once complete (checked, decoded into `params` on first use). */
  #rawParams: Buffer | null = null;
  /** PARAMS content received so far (views of the records), until the empty PARAMS record. */
  #paramParts: Buffer | Buffer[] | null = null;
  #paramBytes = 0;
  #paramsDone = false;
  #aborted = false;
  #ending = false;
  #closed = false;
  /** The in-process watcher (see watch()), told before the 'abort' / 'close' events. */
  #watcher: ServerRequestWatcher | null = null;

  constructor(
    host: ServerRequestHost,
    io: { out: RecordOutput; gate: InboundGate; highWaterMark?: number },
    requestId: number,
    role: FcgiRoleName,
    keepConn: boolean,
  ) {
    super();
    this.#host = host;
    this.#out = io.out;
    this.#gate = io.gate;
    this.#highWaterMark = io.highWaterMark;
    this.requestId = requestId;
    this.role = role;
    this.keepConn = keepConn;
    // DATA exists only for FILTER; for the other roles it is an empty stream.
    this.#dataEnded = role !== 'FILTER';
  }

  get params(): ParamList {
    if (this.#params === null) {
      const raw = this.#rawParams;
      this.#params = raw === null || raw.length === 0 ? [] : decodePairs(raw);
    }
    return this.#params;
  }

  /**
   * The complete PARAMS stream (name–value pairs as on the wire, already
   * checked), or null before the empty PARAMS record or after setParams().
   * For readers that want a few params without decoding them all.
   */
  get rawParams(): Buffer | null {
    return this.#rawParams;
  }

  /** FCGI_STDIN (made on first use). */
  get stdin(): InboundStream {
    return (this.#stdin ??= this.#inbound(this.#stdinEnded));
  }

  /** FCGI_DATA (made on first use; already ended unless the role is FILTER). */
  get data(): InboundStream {
    return (this.#data ??= this.#inbound(this.#dataEnded));
  }

  get stdout(): RecordStreamWritable {
    return (this.#stdout ??= this.#outbound(RecordType.STDOUT, 'always'));
  }

  get stderr(): RecordStreamWritable {
    return (this.#stderr ??= this.#outbound(RecordType.STDERR, 'if-written'));
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  /** True once END_REQUEST was written or the request was aborted. */
  get closed(): boolean {
    return this.#closed;
  }

  end(appStatus = 0): void {
    if (this.#ending || this.#closed) return;
    this.#ending = true;
    if (this.#stdout === null && this.#stderr === null) {
      // Nothing is buffered in a stream: every STDOUT byte is already with the
      // connection, so the empty STDOUT record and END_REQUEST can follow now.
      this.#host.completeRequest(this, appStatus, true);
      return;
    }
    let pending = 2;
    const done = (): void => {
      if (--pending > 0 || this.#closed) return;
      this.#host.completeRequest(this, appStatus);
    };
    // END_REQUEST only after both streams wrote their last record.
    for (const s of [this.stdout, this.stderr]) {
      finished(s, () => done());
      if (!s.writableEnded && !s.destroyed) s.end();
    }
  }

  // ---------------------------------------------------------------- the response without streams

  /**
   * Writes response bytes as STDOUT records, as `stdout.write()` would (and
   * through it once `stdout` has been made, or for a write of more than one
   * record), without a Writable's buffering: the record goes to the
   * connection now. Returns false while the connection is congested (wait
   * with onStdoutDrain()). Dropped once the request is closed, aborted or
   * ending.
   */
  writeStdout(data: string | Buffer, encoding?: BufferEncoding): boolean {
    if (this.#stdout === null) {
      if (this.#closed || this.#ending) return true;
      // One record's worth at most goes straight out. A larger write takes the stream, which
      // sends it record by record as the socket drains instead of copying all of it at once.
      if (data.length <= FCGI_MAX_CONTENT_LENGTH / 3 || (typeof data !== 'string' && data.length <= FCGI_MAX_CONTENT_LENGTH)) {
        return this.#out.writeContent(RecordType.STDOUT, this.requestId, data, encoding);
      }
    }
    const s = this.stdout;
    return encoding === undefined ? s.write(data) : s.write(data, encoding);
  }

  /** True when writes are dropped: the request is closed or aborted (or its stdout destroyed). */
  get stdoutDropped(): boolean {
    if (this.#closed || this.#aborted) return true;
    return this.#stdout !== null && this.#stdout.destroyed;
  }

  /** True while a writer should wait (onStdoutDrain) before writing more. */
  get stdoutNeedsDrain(): boolean {
    const s = this.#stdout;
    return s !== null ? s.writableNeedDrain : !this.#closed && this.#out.congested;
  }

  /** Calls `cb` once writing may go on (the stream's or the connection's 'drain'). */
  onStdoutDrain(cb: () => void): void {
    const s = this.#stdout;
    if (s !== null) s.once('drain', cb);
    else this.#out.whenDrained(cb);
  }

  /**
   * Like once('abort') and once('close') listeners, without the listener
   * bookkeeping: one watcher per request, for the app runtime. A second
   * watcher is told after the first.
   */
  watch(watcher: ServerRequestWatcher): void {
    const first = this.#watcher;
    this.#watcher =
      first === null
        ? watcher
        : {
            requestAborted: () => {
              first.requestAborted();
              watcher.requestAborted();
            },
            requestClosed: () => {
              first.requestClosed();
              watcher.requestClosed();
            },
          };
  }

  /** True when the whole body is known to be empty and no stream was made for it. */
  get stdinEmpty(): boolean {
    return this.#stdinEnded && this.#stdin === null;
  }

  // ---------------------------------------------------------------- called by the connection

  /** True once the empty PARAMS record arrived ('request' has been emitted). */
  get paramsDone(): boolean {
    return this.#paramsDone;
  }

  /** True once every input stream has ended (PARAMS, STDIN and DATA). */
  get inputDone(): boolean {
    if (!this.#paramsDone) return false;
    if (!(this.#stdin === null ? this.#stdinEnded : this.#stdin.finished)) return false;
    return this.#data === null ? this.#dataEnded : this.#data.finished;
  }

  setParams(params: ParamList): void {
    this.#params = params;
    this.#rawParams = null;
    this.#paramParts = null;
    this.#paramsDone = true;
  }

  /**
   * One PARAMS record's content (a view, kept only until the empty record).
   * Returns the PARAMS bytes received so far, or -1 if the stream has already ended.
   */
  addParams(content: Buffer): number {
    if (this.#paramsDone) return -1;
    const parts = this.#paramParts;
    if (parts === null) this.#paramParts = content;
    else if (Array.isArray(parts)) parts.push(content);
    else this.#paramParts = [parts, content];
    return (this.#paramBytes += content.length);
  }

  /**
   * The empty PARAMS record: checks the pairs (throws ERR_FCGI_BAD_NAME_VALUE
   * as decodePairs would); they are decoded on first use. False if they had
   * already ended.
   */
  finishParams(): boolean {
    if (this.#paramsDone) return false;
    const parts = this.#paramParts;
    let bytes = parts === null ? EMPTY : Array.isArray(parts) ? Buffer.concat(parts, this.#paramBytes) : parts;
    checkPairs(bytes);
    // A view into a much larger socket chunk would keep all of it alive for as long as the request lives.
    if (bytes.buffer.byteLength > RETAIN_SLACK_BYTES + 2 * bytes.length) bytes = Buffer.from(bytes);
    this.#rawParams = bytes;
    this.#params = null;
    this.#paramParts = null;
    this.#paramsDone = true;
    return true;
  }

  /** A STDIN record (empty: the end of the stream). */
  deliverStdin(content: Buffer): void {
    if (content.length === 0) {
      if (this.#stdin !== null) this.#stdin.finish();
      else this.#stdinEnded = true;
    } else if (!this.#stdinEnded || this.#stdin !== null) {
      this.stdin.deliver(content);
    }
  }

  /** A DATA record (empty: the end of the stream). */
  deliverData(content: Buffer): void {
    if (content.length === 0) {
      if (this.#data !== null) this.#data.finish();
      else this.#dataEnded = true;
    } else if (!this.#dataEnded || this.#data !== null) {
      this.data.deliver(content);
    }
  }

  /** ABORT_REQUEST, connection loss or a stall: the app's later writes are dropped. */
  markAborted(): void {
    if (this.#closed || this.#aborted) return;
    this.#aborted = true;
    this.#dropStreams();
    this.#watcher?.requestAborted();
    this.emit('abort');
  }

  /** The id is released: END_REQUEST went out (or the connection is gone). */
  markClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dropStreams();
    const watcher = this.#watcher;
    if (watcher !== null) {
      this.#watcher = null;
      watcher.requestClosed();
    }
    this.emit('close');
  }

  // ---------------------------------------------------------------- streams

  #inbound(ended: boolean): InboundStream {
    const s = new InboundStream(this.#gate, this.requestId, this.#highWaterMark);
    if (ended) s.finish();
    else if (this.#closed || this.#aborted) s.destroy();
    return s;
  }

  #outbound(type: number, endRecord: 'always' | 'if-written'): RecordStreamWritable {
    const s = new RecordStreamWritable(this.#out, type, this.requestId, { endRecord, highWaterMark: this.#highWaterMark });
    if (this.#closed || this.#aborted) {
      // Made after the id was released: the state its eager twin would be in now.
      s.detach();
      if (this.#aborted) s.destroy();
      else s.end();
    }
    return s;
  }

  #dropStreams(): void {
    // Detach first: a write waiting for 'drain' must not send a record on a released id.
    this.#stdout?.detach();
    this.#stderr?.detach();
    if (this.#stdin !== null && !this.#stdin.finished) this.#stdin.destroy();
    if (this.#data !== null && !this.#data.finished) this.#data.destroy();
    if (this.#aborted) {
      this.#stdout?.destroy();
      this.#stderr?.destroy();
    }
  }
}

