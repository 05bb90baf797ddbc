/**
 * @module fastcgi/client-request
 * One request as the FastCGI client (web-server side) drives it: the
 * FcgiClientRequest of contract.ts. Records are routed here by
 * client-connection.ts.
 */
import { EventEmitter } from 'node:events';
import { RecordType } from './constants.js';
import type { FcgiClientRequest } from './contract.js';
import type { FastCgiConnectionError } from './errors.js';
import { InboundStream, type InboundGate } from './inbound.js';
import { RecordStreamWritable, type RecordOutput } from './outbound.js';

/** The payload of a request's 'end' event (END_REQUEST's body). */
export interface FcgiEndInfo {
  appStatus: number;
  protocolStatus: number;
}

/** What a request needs from its connection. */
export interface ClientRequestHost {
  sendAbort(req: ClientRequest): void;
}

/**
 * Events: 'stderr' (chunk: Buffer), 'end' (FcgiEndInfo) after END_REQUEST,
 * 'error' (FastCgiConnectionError) when the connection ends first. Exactly one
 * of 'end' and 'error' is emitted.
 */
export class ClientRequest extends EventEmitter implements FcgiClientRequest {
  readonly requestId: number;
  readonly stdin: RecordStreamWritable;
  readonly stdout: InboundStream;
  /** FCGI_DATA for the FILTER role (null for the other roles). end() sends the empty DATA record. */
  readonly data: RecordStreamWritable | null;
  readonly #host: ClientRequestHost;
  #responseStarted = false;
  #abortSent = false;
  #done = false;

  constructor(host: ClientRequestHost, io: { out: RecordOutput; gate: InboundGate; highWaterMark?: number }, requestId: number, filter: boolean) {
    super();
    this.#host = host;
    this.requestId = requestId;
    this.stdin = new RecordStreamWritable(io.out, RecordType.STDIN, requestId, { endRecord: 'always', highWaterMark: io.highWaterMark });
    this.data = filter ? new RecordStreamWritable(io.out, RecordType.DATA, requestId, { endRecord: 'always', highWaterMark: io.highWaterMark }) : null;
    this.stdout = new InboundStream(io.gate, requestId, io.highWaterMark);
  }

  /** Whether any STDOUT or STDERR byte of the response has arrived. */
  get responseStarted(): boolean {
    return this.#responseStarted;
  }

  /** True once 'end' or 'error' was emitted. */
  get done(): boolean {
    return this.#done;
  }

  abort(): void {
    if (this.#done || this.#abortSent) return;
    this.#abortSent = true;
    // The body is no longer wanted; stop sending it.
    this.stdin.detach();
    this.data?.detach();
    this.#host.sendAbort(this);
  }

  // ---------------------------------------------------------------- called by the connection

  onStdout(content: Buffer): void {
    if (content.length === 0) {
      this.stdout.finish();
      return;
    }
    this.#responseStarted = true;
    this.stdout.deliver(content);
  }

  onStderr(content: Buffer): void {
    if (content.length === 0) return;
    this.#responseStarted = true;
    // Copy: the content may share the socket chunk and a listener may keep it.
    this.emit('stderr', Buffer.from(content));
  }

  onEnd(info: FcgiEndInfo): void {
    if (this.#done) return;
    this.#done = true;
    // The id is being released: a later STDIN record could land on its next user.
    this.stdin.detach();
    this.data?.detach();
    this.stdout.finish();
    this.emit('end', info);
  }

  onConnectionError(err: FastCgiConnectionError): void {
    if (this.#done) return;
    this.#done = true;
    this.stdin.detach();
    this.data?.detach();
    // Destroyed without an error: a consumer sees a premature close, and a
    // stdout without 'error' listeners cannot crash the process.
    if (!this.stdout.finished) this.stdout.destroy();
    this.emit('error', err);
  }
}
