/**
 * @module fastcgi/client-connection
 * FastCGI from the web server's side: one connection to an application,
 * carrying one or (if the application multiplexes) several requests, plus
 * GET_VALUES queries. Records are switched on type here; bytes are handled in
 * codec.ts.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  decodeEndRequestBody,
  decodeGetValuesResult,
  decodeUnknownTypeBody,
  encodeGetValues,
  encodeRecord,
  requireManagementId,
  type FcgiRecord,
} from './codec.js';
import { FCGI_MAX_REQUEST_ID, RecordType, roleNumber } from './constants.js';
import type { FcgiRoleName, ParamList } from './contract.js';
import { FastCgiConnectionError, FastCgiProtocolError } from './errors.js';
import { InboundGate } from './inbound.js';
import { RecordOutput } from './outbound.js';
import { RecordParser } from './record-parser.js';
import { ClientRequest, type ClientRequestHost } from './client-request.js';
import { ClientExchange, requestHead, type ClientRecordTarget, type ExchangeHost, type ExchangeSink } from './client-exchange.js';

export interface FcgiClientRequestOptions {
  /** Default RESPONDER. */
  role?: FcgiRoleName;
  /**
   * FCGI_KEEP_CONN (default true): the application keeps the connection open
   * after the request. Without it the application closes it, so the
   * connection stops being reusable (`idle` stays false).
   */
  keepConn?: boolean;
}

export interface FastCgiClientOptions {
  /** High-water mark of each stdout Readable and stdin Writable (default 64 KiB). */
  highWaterMark?: number;
}

interface PendingValues {
  resolve: (values: Map<string, string>) => void;
  reject: (err: Error) => void;
}

/**
 * Events: 'idle' () when the last in-flight request ends on a reusable
 * connection; 'protocolError' (err: FastCgiProtocolError) just before the
 * socket is destroyed for bad input; 'close' () once the socket is gone and
 * every pending request has had its 'error'. Never emits 'error' itself.
 *
 * Backpressure: a full stdout pauses the socket, which also pauses the other
 * requests multiplexed on it (see inbound.ts); a request that ends releases
 * the pause even if its stdout is still unread.
 */
export class FastCgiClientConnection extends EventEmitter implements ClientRequestHost, ExchangeHost {
  readonly socket: Duplex;
  readonly #highWaterMark: number;
  readonly #parser = new RecordParser();
  readonly #out: RecordOutput;
  readonly #gate: InboundGate;
  readonly #requests = new Map<number, ClientRecordTarget>();
  readonly #pendingValues: PendingValues[] = [];
  #reusable = true;
  #closed = false;
  #failure: unknown = undefined;

  constructor(socket: Duplex, options: FastCgiClientOptions = {}) {
    super();
    this.socket = socket;
    this.#highWaterMark = options.highWaterMark ?? 64 * 1024;
    this.#out = new RecordOutput(socket);
    this.#gate = new InboundGate(socket);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    // The application ended its side: nothing more can arrive, so close ours.
    socket.on('end', () => socket.destroy());
    socket.on('error', (err: Error) => {
      this.#failure ??= err;
    });
    socket.on('close', () => this.#onClose());
  }

  /** Requests sent and not yet ended. */
  get activeRequests(): number {
    return this.#requests.size;
  }

  /** Requests are in flight. */
  get busy(): boolean {
    return this.#requests.size > 0;
  }

  /** Open, reusable (every request so far asked KEEP_CONN) and nothing in flight: a pool may hand it out. */
  get idle(): boolean {
    return !this.closed && this.#reusable && this.#requests.size === 0;
  }

  get closed(): boolean {
    return this.#closed || this.socket.destroyed || this.#out.closed;
  }

  /**
   * Starts a request: BEGIN_REQUEST and all PARAMS go out now; the body is
   * whatever is written to `stdin` (end() sends the empty STDIN record).
   * Failures are reported asynchronously on the request's 'error'.
   */
  request(params: ParamList, opts: FcgiClientRequestOptions = {}): ClientRequest {
    const role = opts.role ?? 'RESPONDER';
    const keepConn = opts.keepConn ?? true;
    const id = this.closed ? null : this.#allocateId();
    const req = new ClientRequest(this, { out: this.#out, gate: this.#gate, highWaterMark: this.#highWaterMark }, id ?? 0, role === 'FILTER');
    if (this.closed || id === null) {
      const err = this.closed
        ? new FastCgiConnectionError('ERR_FCGI_CONN_CLOSED', 'request on a closed connection', { cause: this.#failure })
        : new FastCgiConnectionError('ERR_FCGI_NO_REQUEST_ID', `all ${FCGI_MAX_REQUEST_ID} request ids are in flight`);
      // Nothing may reach the wire for a request that never got an id.
      req.stdin.detach();
      req.data?.detach();
      process.nextTick(() => req.onConnectionError(err));
      return req;
    }
    // Encoded before the id is taken, so an encoding error leaks nothing. One
    // write carries BEGIN_REQUEST, the PARAMS records and their empty terminator.
    const head = requestHead(id, roleNumber(role), keepConn, params, false);
    if (!keepConn) this.#reusable = false;
    this.#requests.set(id, req);
    this.#out.write(head);
    return req;
  }

  /**
   * Starts a RESPONDER request whose records go to `sink` (no streams, no
   * events): BEGIN_REQUEST, PARAMS and — with `endStdin`, for a request
   * without a body — the empty STDIN record go out in one write. A body goes
   * to the exchange's `stdin`. Returns an Error (nothing sent) if the
   * connection is closed or out of request ids. Used by the backend's pool.
   */
  exchange(params: ParamList, keepConn: boolean, endStdin: boolean, sink: ExchangeSink): ClientExchange | FastCgiConnectionError {
    if (this.closed) return new FastCgiConnectionError('ERR_FCGI_CONN_CLOSED', 'request on a closed connection', { cause: this.#failure });
    const id = this.#allocateId();
    if (id === null) return new FastCgiConnectionError('ERR_FCGI_NO_REQUEST_ID', `all ${FCGI_MAX_REQUEST_ID} request ids are in flight`);
    // Encoded before the id is taken, so an encoding error leaks nothing.
    const head = requestHead(id, roleNumber('RESPONDER'), keepConn, params, endStdin);
    const ex = new ClientExchange(this, { out: this.#out, gate: this.#gate, highWaterMark: this.#highWaterMark }, id, sink);
    if (!keepConn) this.#reusable = false;
    this.#requests.set(id, ex);
    this.#out.write(head);
    return ex;
  }

  /** Asks the application for FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS (or any names); resolves with those it knows. */
  getValues(names: readonly string[]): Promise<Map<string, string>> {
    if (this.closed) {
      return Promise.reject(new FastCgiConnectionError('ERR_FCGI_CONN_CLOSED', 'GET_VALUES on a closed connection', { cause: this.#failure }));
    }
    return new Promise((resolve, reject) => {
      this.#pendingValues.push({ resolve, reject });
      this.#out.write(encodeGetValues(names));
    });
  }

  /** Ends the connection politely; in-flight requests get 'error' if the application does not finish them first. */
  close(): void {
    this.#reusable = false;
    if (!this.socket.destroyed) this.socket.end();
  }

  destroy(err?: Error): void {
    if (err) this.#failure ??= err;
    this.socket.destroy();
  }

  // ---------------------------------------------------------------- ClientRequestHost

  sendAbort(req: ClientRequest): void {
    this.sendAbortFor(req);
  }

  sendAbortFor(req: ClientRecordTarget): void {
    if (this.#requests.get(req.requestId) === req) this.#out.write(encodeRecord(RecordType.ABORT_REQUEST, req.requestId));
  }

  // ---------------------------------------------------------------- input

  /** The lowest free id, so ids are reused as soon as they are released. */
  #allocateId(): number | null {
    if (this.#requests.size === 0) return 1;
    for (let id = 1; id <= FCGI_MAX_REQUEST_ID; id++) if (!this.#requests.has(id)) return id;
    return null;
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      for (const rec of this.#parser.push(chunk)) {
        if (this.socket.destroyed) return;
        this.#handleRecord(rec);
      }
    } catch (err) {
      if (!(err instanceof FastCgiProtocolError)) throw err;
      this.#failure ??= err;
      this.emit('protocolError', err);
      this.socket.destroy();
    }
  }

  #handleRecord(rec: FcgiRecord): void {
    switch (rec.type) {
      case RecordType.GET_VALUES_RESULT:
        requireManagementId(rec);
        this.#pendingValues.shift()?.resolve(decodeGetValuesResult(rec.content));
        return;
      case RecordType.UNKNOWN_TYPE: {
        requireManagementId(rec);
        const { type } = decodeUnknownTypeBody(rec.content);
        if (type === RecordType.GET_VALUES) {
          this.#pendingValues.shift()?.reject(new FastCgiConnectionError('ERR_FCGI_UNKNOWN_TYPE', 'the application does not understand GET_VALUES'));
        }
        return;
      }
    }
    // Records for ids not in flight (e.g. after END_REQUEST) are ignored, as the spec says.
    const req = this.#requests.get(rec.requestId);
    if (!req) return;
    switch (rec.type) {
      case RecordType.STDOUT:
        return req.onStdout(rec.content);
      case RecordType.STDERR:
        return req.onStderr(rec.content);
      case RecordType.END_REQUEST: {
        const info = decodeEndRequestBody(rec.content);
        this.#requests.delete(rec.requestId);
        req.onEnd(info);
        if (this.idle) this.emit('idle');
        return;
      }
      default:
        return; // types an application should not send are ignored
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.close();
    this.#gate.dispose();
    const cause = this.#failure;
    const reason = cause instanceof Error ? ` (${cause.message})` : '';
    for (const req of [...this.#requests.values()]) {
      req.onConnectionError(
        new FastCgiConnectionError('ERR_FCGI_CONN_CLOSED', `connection closed before END_REQUEST of request ${req.requestId}${reason}`, {
          cause,
          responseStarted: req.responseStarted,
        }),
      );
    }
    this.#requests.clear();
    for (const p of this.#pendingValues.splice(0)) {
      p.reject(new FastCgiConnectionError('ERR_FCGI_CONN_CLOSED', `connection closed before GET_VALUES_RESULT${reason}`, { cause }));
    }
    this.emit('close');
  }
}
