/**
 * @module fastcgi/server-request
 * One request as the FastCGI server (application side) holds it: the
 * FcgiServerRequest of contract.ts. State changes come from the connection
 * (server-connection.ts); the application only writes and calls end().
 */
import { EventEmitter } from 'node:events';
import { finished } from 'node:stream';
import { RecordType } from './constants.js';
import type { FcgiRoleName, FcgiServerRequest, ParamList } from './contract.js';
import { InboundStream, type InboundGate } from './inbound.js';
import { RecordStreamWritable, type RecordOutput } from './outbound.js';

/** What a request needs from its connection. */
export interface ServerRequestHost {
  /** Writes END_REQUEST and releases the id (called once, after stdout/stderr flushed). */
  completeRequest(req: ServerRequest, appStatus: number): void;
}

export class ServerRequest extends EventEmitter implements FcgiServerRequest {
  readonly requestId: number;
  readonly role: FcgiRoleName;
  readonly keepConn: boolean;
  readonly stdin: InboundStream;
  readonly data: InboundStream;
  readonly stdout: RecordStreamWritable;
  readonly stderr: RecordStreamWritable;
  readonly #host: ServerRequestHost;
  #params: ParamList = [];
  #paramsDone = false;
  #aborted = false;
  #ending = false;
  #closed = false;

  constructor(
    host: ServerRequestHost,
    io: { out: RecordOutput; gate: InboundGate; highWaterMark?: number },
    requestId: number,
    role: FcgiRoleName,
    keepConn: boolean,
  ) {
    super();
    this.#host = host;
    this.requestId = requestId;
    this.role = role;
    this.keepConn = keepConn;
    this.stdin = new InboundStream(io.gate, requestId, io.highWaterMark);
    this.data = new InboundStream(io.gate, requestId, io.highWaterMark);
    // DATA exists only for FILTER; for the other roles it is an empty stream.
    if (role !== 'FILTER') this.data.finish();
    this.stdout = new RecordStreamWritable(io.out, RecordType.STDOUT, requestId, { endRecord: 'always', highWaterMark: io.highWaterMark });
    this.stderr = new RecordStreamWritable(io.out, RecordType.STDERR, requestId, { endRecord: 'if-written', highWaterMark: io.highWaterMark });
  }

  get params(): ParamList {
    return this.#params;
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

  // ---------------------------------------------------------------- called by the connection

  /** True once the empty PARAMS record arrived ('request' has been emitted). */
  get paramsDone(): boolean {
    return this.#paramsDone;
  }

  setParams(params: ParamList): void {
    this.#params = params;
    this.#paramsDone = true;
  }

  /** ABORT_REQUEST, connection loss or a stall: the app's later writes are dropped. */
  markAborted(): void {
    if (this.#closed || this.#aborted) return;
    this.#aborted = true;
    this.#dropStreams();
    this.emit('abort');
  }

  /** The id is released: END_REQUEST went out (or the connection is gone). */
  markClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dropStreams();
    this.emit('close');
  }

  #dropStreams(): void {
    // Detach first: a write waiting for 'drain' must not send a record on a released id.
    this.stdout.detach();
    this.stderr.detach();
    if (!this.stdin.finished) this.stdin.destroy();
    if (!this.data.finished) this.data.destroy();
    if (this.#aborted) {
      this.stdout.destroy();
      this.stderr.destroy();
    }
  }
}
