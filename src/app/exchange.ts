/**
 * @module app/exchange
 * One request/response pair as the protocol layer hands it over, in the one
 * shape dispatch.ts works with: FastCGI (FcgiServerRequest) and SCGI
 * (ScgiServerRequest) differ in where the response goes, how it ends, how an
 * abort shows up and where a request's error log goes.
 */
import type { Readable, Writable } from 'node:stream';
import type { Socket } from 'node:net';
import type { FcgiServerRequest, ParamList } from '../fastcgi/contract.js';
import type { FastCgiServerConnection } from '../fastcgi/server-connection.js';
import { ServerRequest } from '../fastcgi/server-request.js';
import type { ScgiServerRequest } from '../scgi/contract.js';
import type { CgiOutput } from './cgi-socket.js';

export interface ExchangeWatcher {
  requestAborted(): void;
  requestClosed(): void;
}

export interface Exchange {
  readonly protocol: 'fastcgi' | 'scgi';
  readonly params: ParamList;
  /** The params still as PARAMS bytes (checked name–value pairs), when the protocol layer has them so; else null. */
  readonly rawParams: Buffer | null;
  /** Request body: FastCGI STDIN or the SCGI body. */
  readonly body: Readable;
  /** Where the raw CGI response goes. */
  readonly output: Writable;
  /** What the response is written to: `output`, or a lighter stand-in for it with the same effect. */
  readonly sink: CgiOutput;
  /** True when the request is known, before dispatch, to have no body at all (and `body` need not be read). */
  readonly bodyEmpty: boolean;
  /** The request-scoped error log (FCGI_STDERR), or null where the protocol has none (SCGI). */
  readonly errorLog: Writable | null;
  /** The FastCGI request itself (role, requestId, FILTER data), when there is one. */
  readonly fastcgi: FcgiServerRequest | null;
  /** True once the peer aborted or went away. */
  readonly aborted: boolean;
  /** The response is complete: END_REQUEST (FastCGI) or end of connection (SCGI). */
  complete(): void;
  /**
   * The app gave up half way (res.destroy(), a throw after the head went out):
   * make the web server see a broken response rather than a short one that
   * looks complete.
   */
  fail(): void;
  /**
   * `watcher.requestAborted()` runs if the peer aborts (ABORT_REQUEST,
   * connection lost) before complete(); `watcher.requestClosed()` runs once
   * the protocol layer is done with the request (END_REQUEST written,
   * aborted, or connection gone). Called once per exchange.
   */
  watch(watcher: ExchangeWatcher): void;
  /**
   * Output is about to be written: gather this turn of the event loop's
   * writes into one syscall. Called before each write and before complete().
   */
  batch(): void;
}

/**
 * The FastCGI exchange. With our own ServerRequest it is also the response
 * sink (CgiOutput): writes become STDOUT records through
 * ServerRequest#writeStdout, so no Writable is built for stdout unless the
 * application asks for `req.stdout` itself; and an empty body is recognised
 * before dispatch, so no Readable is built for stdin either.
 */
export class FastCgiExchange implements Exchange, CgiOutput {
  readonly protocol = 'fastcgi' as const;
  readonly #req: FcgiServerRequest;
  /** #req when it is ours (the fast paths), else null. */
  readonly #own: ServerRequest | null;
  readonly #conn: FastCgiServerConnection;
  #batching = false;

  constructor(req: FcgiServerRequest, conn: FastCgiServerConnection) {
    this.#req = req;
    this.#own = req instanceof ServerRequest ? req : null;
    this.#conn = conn;
  }

  get params(): ParamList {
    return this.#req.params;
  }
  get rawParams(): Buffer | null {
    return this.#own !== null ? this.#own.rawParams : null;
  }
  get body(): Readable {
    return this.#req.stdin;
  }
  get bodyEmpty(): boolean {
    return this.#own !== null && this.#own.stdinEmpty;
  }
  get output(): Writable {
    return this.#req.stdout;
  }
  get sink(): CgiOutput {
    return this.#own !== null ? this : this.#req.stdout;
  }
  get errorLog(): Writable {
    return this.#req.stderr;
  }
  get fastcgi(): FcgiServerRequest {
    return this.#req;
  }
  get aborted(): boolean {
    return this.#req.aborted;
  }

  complete(): void {
    this.batch();
    this.#req.end(0);
  }

  /**
   * A response is at least three records (STDOUT data, the empty STDOUT,
   * END_REQUEST), written across several ticks; each would be its own
   * write(2) and wake the web server up. Our own connection gathers each
   * turn's records into one write already. For another FcgiServerRequest,
   * corking the socket until the loop has run every pending tick
   * (setImmediate) sends them as one writev. A large body is only held for
   * that one turn: once the cork is released 'drain' flows as usual.
   */
  batch(): void {
    if (this.#batching || this.#own !== null) return;
    const socket = this.#conn.socket;
    if (socket.destroyed || socket.writableEnded) return;
    this.#batching = true;
    socket.cork();
    setImmediate(() => {
      this.#batching = false;
      socket.uncork();
    });
  }

  fail(): void {
    // END_REQUEST would make nginx pass a truncated body on as complete. Dropping
    // the connection makes it report "upstream prematurely closed" and cut the
    // client off, which is the truth. Only when other requests share the
    // connection (multiplexing) do we end just this one, with a non-zero appStatus.
    if (this.#conn.activeRequests <= 1) this.#conn.destroy();
    else this.#req.end(1);
  }

  watch(watcher: ExchangeWatcher): void {
    if (this.#own !== null) {
      this.#own.watch(watcher);
      return;
    }
    this.#req.once('abort', () => watcher.requestAborted());
    this.#req.once('close', () => watcher.requestClosed());
  }

  // ---------------------------------------------------------------- CgiOutput (only used when #own is set)

  get destroyed(): boolean {
    return this.#own!.stdoutDropped;
  }
  get writableNeedDrain(): boolean {
    return this.#own!.stdoutNeedsDrain;
  }
  write(data: string | Buffer, encoding?: BufferEncoding): boolean {
    return this.#own!.writeStdout(data, encoding);
  }
  cork(): void {
    // Records are gathered per turn by the connection already.
  }
  uncork(): void {}
  once(_event: 'drain', listener: () => void): this {
    this.#own!.onStdoutDrain(listener);
    return this;
  }
}

export class ScgiExchange implements Exchange {
  readonly protocol = 'scgi' as const;
  readonly errorLog = null;
  readonly fastcgi = null;
  readonly #req: ScgiServerRequest;
  readonly #socket: Socket;
  #completed = false;

  constructor(req: ScgiServerRequest, socket: Socket) {
    this.#req = req;
    this.#socket = socket;
  }

  get params(): ParamList {
    return this.#req.params;
  }
  get rawParams(): null {
    return null;
  }
  get body(): Readable {
    return this.#req.body;
  }
  get output(): Writable {
    return this.#req.response;
  }
  get sink(): CgiOutput {
    return this.#req.response;
  }
  get bodyEmpty(): boolean {
    return false;
  }
  get aborted(): boolean {
    return !this.#completed && this.#socket.destroyed;
  }

  complete(): void {
    this.#completed = true;
    this.#req.response.end();
  }

  fail(): void {
    this.#socket.destroy();
  }

  batch(): void {
    // The response is the socket itself and ends with one write plus FIN: nothing to gather.
  }

  watch(watcher: ExchangeWatcher): void {
    this.#req.response.once('close', () => watcher.requestClosed());
    // SCGI has no abort message: the connection closing before we ended it is the abort.
    this.#socket.once('close', () => {
      if (!this.#completed) watcher.requestAborted();
    });
  }
}
