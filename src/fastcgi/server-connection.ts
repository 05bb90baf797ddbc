/**
 * @module fastcgi/server-connection
 * FastCGI from the application's side (Go's child.go): one connection from a
 * web server, its records switched on type, its requests handed out through
 * the 'request' event. No header bytes are handled here; see codec.ts.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  decodeGetValues,
  encodeGetValuesResult,
  encodeRecord,
  encodeUnknownTypeBody,
  requireManagementId,
  type FcgiRecord,
} from './codec.js';
import { FCGI_HEADER_LEN, FCGI_NULL_REQUEST_ID, FCGI_VERSION_1, Flags, ProtocolStatus, RecordType, ValueName, roleName } from './constants.js';
import type { FcgiServerOptions, FcgiServerRequest } from './contract.js';
import { FastCgiProtocolError } from './errors.js';
import { InboundGate, type InboundStream } from './inbound.js';
import { RecordOutput } from './outbound.js';
import { RecordParser } from './record-parser.js';
import { ServerRequest, type ServerRequestHost } from './server-request.js';

/** Connection-level knobs beyond the contract's FcgiServerOptions. */
export interface FastCgiServerConnectionOptions extends FcgiServerOptions {
  /** High-water mark of each stdin/data Readable and stdout/stderr Writable (default 64 KiB). */
  highWaterMark?: number;
  /**
   * A request whose stdin/data consumer has read nothing for this long while
   * other requests on the same connection wait behind it is aborted with
   * END_REQUEST(OVERLOADED) so the others can go on (default 30 s; 0 = never).
   * See inbound.ts for the trade-off.
   */
  stallTimeoutMs?: number;
}

export const DEFAULT_MAX_REQS = 100;
export const DEFAULT_MAX_PARAMS_BYTES = 4 * 64 * 1024;
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;

const EMPTY = Buffer.alloc(0);

/**
 * Events: 'request' (req: FcgiServerRequest) once its PARAMS are complete;
 * 'protocolError' (err: FastCgiProtocolError) just before the socket is
 * destroyed for bad input; 'close' () when the socket is gone and every
 * request has been aborted or completed. Never emits 'error': peer input and
 * socket failures must not throw out to the process.
 */
export class FastCgiServerConnection extends EventEmitter implements ServerRequestHost {
  readonly socket: Duplex;
  readonly #opts: Required<Omit<FastCgiServerConnectionOptions, 'maxConns'>> & { maxConns: number | undefined };
  readonly #parser = new RecordParser();
  readonly #out: RecordOutput;
  readonly #gate: InboundGate;
  readonly #requests = new RequestTable();
  /** What each request is given (one object for all of them). */
  readonly #io: { out: RecordOutput; gate: InboundGate; highWaterMark: number };
  readonly #roles: ReadonlySet<string>;
  /** End the socket once no request is in flight (no KEEP_CONN, close(), or peer EOF). */
  #closeWhenIdle = false;
  #closed = false;
  #socketError: Error | null = null;

  constructor(socket: Duplex, options: FastCgiServerConnectionOptions = {}) {
    super();
    this.socket = socket;
    this.#opts = {
      maxConns: options.maxConns,
      maxReqs: options.maxReqs ?? DEFAULT_MAX_REQS,
      mpxsConns: options.mpxsConns ?? true,
      maxParamsBytes: options.maxParamsBytes ?? DEFAULT_MAX_PARAMS_BYTES,
      roles: options.roles ?? ['RESPONDER'],
      highWaterMark: options.highWaterMark ?? 64 * 1024,
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    };
    this.#roles = new Set(this.#opts.roles);
    // Records of one turn go out in one write: a small response (data, empty STDOUT, END_REQUEST) is one syscall.
    this.#out = new RecordOutput(socket, { gather: true });
    this.#gate = new InboundGate(socket, {
      stallTimeoutMs: this.#opts.stallTimeoutMs,
      othersWaiting: (holders) => this.#requests.size > new Set(holders.map((h) => h.requestId)).size,
      onStall: (holders) => this.#onStall(holders),
    });
    this.#io = { out: this.#out, gate: this.#gate, highWaterMark: this.#opts.highWaterMark };
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onReadEnd());
    socket.on('error', (err: Error) => {
      this.#socketError ??= err;
    });
    socket.on('close', () => this.#onClose());
  }

  /** Requests begun and not yet completed or aborted. */
  get activeRequests(): number {
    return this.#requests.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The socket error that ended the connection, if any. */
  get socketError(): Error | null {
    return this.#socketError;
  }

  /** Graceful close: new requests get OVERLOADED; the socket ends once the in-flight ones complete. */
  close(): void {
    this.#closeWhenIdle = true;
    this.#maybeEndSocket();
  }

  /** Drops the connection now; in-flight requests are aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  // ---------------------------------------------------------------- ServerRequestHost

  completeRequest(req: ServerRequest, appStatus: number, endStdout = false): void {
    this.#finish(req, appStatus, ProtocolStatus.REQUEST_COMPLETE, endStdout);
  }

  // ---------------------------------------------------------------- input

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    // Records written while this chunk is handled are flushed by the requests that end, or scheduled after.
    this.#out.hold();
    try {
      this.#onChunk(chunk);
    } finally {
      this.#out.release();
    }
  }

  #onChunk(chunk: Buffer): void {
    const parser = this.#parser;
    // Fast path: whole records read in place. Taken only when the parser holds
    // nothing and no header in the chunk can fail (it would have thrown before
    // handing out any record of the chunk); the tail of a record cut by the
    // chunk's end goes to the parser.
    if (parser.atRecordBoundary && parser.error === null) {
      const end = wholeRecordsEnd(chunk);
      if (end >= 0) {
        if (end > 0 && !this.#handleRange(chunk, end)) return;
        if (end < chunk.length && !this.socket.destroyed) this.#parse(chunk.subarray(end));
        return;
      }
    }
    this.#parse(chunk);
  }

  #parse(chunk: Buffer): void {
    let records: FcgiRecord[];
    try {
      records = this.#parser.push(chunk);
    } catch (err) {
      this.#fail(err as FastCgiProtocolError);
      return;
    }
    this.#handleRecords(records);
  }

  /** Handles the whole records in chunk[0, end). False once the connection failed or went away. */
  #handleRange(chunk: Buffer, end: number): boolean {
    let off = 0;
    while (off < end) {
      if (this.socket.destroyed) return false;
      const type = chunk[off + 1]!;
      const id = (chunk[off + 2]! << 8) | chunk[off + 3]!;
      const contentEnd = off + FCGI_HEADER_LEN + ((chunk[off + 4]! << 8) | chunk[off + 5]!);
      const next = contentEnd + chunk[off + 6]!;
      if (type === RecordType.BEGIN_REQUEST) {
        // Read in place (no view of the 8-byte body).
        if (!this.#beginSafely(id, chunk, off + FCGI_HEADER_LEN, contentEnd)) return false;
        off = next;
        continue;
      }
      const content = contentEnd === off + FCGI_HEADER_LEN ? EMPTY : chunk.subarray(off + FCGI_HEADER_LEN, contentEnd);
      off = next;
      // An empty STDIN record right behind the empty PARAMS record: the body is empty, known before 'request' is emitted.
      let stdinEnds = false;
      if (type === RecordType.PARAMS && content.length === 0 && id !== FCGI_NULL_REQUEST_ID && off + FCGI_HEADER_LEN <= end) {
        if (chunk[off + 1] === RecordType.STDIN && ((chunk[off + 2]! << 8) | chunk[off + 3]!) === id && chunk[off + 4] === 0 && chunk[off + 5] === 0) {
          stdinEnds = true;
          off += FCGI_HEADER_LEN + chunk[off + 6]!;
        }
      }
      if (!this.#handleSafely(type, id, content, stdinEnds)) return false;
    }
    return true;
  }

  #handleRecords(records: FcgiRecord[]): void {
    for (let i = 0; i < records.length; i++) {
      if (this.socket.destroyed) return;
      const rec = records[i]!;
      let stdinEnds = false;
      if (rec.type === RecordType.PARAMS && rec.content.length === 0 && rec.requestId !== FCGI_NULL_REQUEST_ID && i + 1 < records.length) {
        const next = records[i + 1]!;
        if (next.type === RecordType.STDIN && next.requestId === rec.requestId && next.content.length === 0) {
          stdinEnds = true;
          i++;
        }
      }
      if (!this.#handleSafely(rec.type, rec.requestId, rec.content, stdinEnds)) return;
    }
  }

  #handleSafely(type: number, id: number, content: Buffer, stdinEnds: boolean): boolean {
    try {
      this.#handleRecord(type, id, content, stdinEnds);
    } catch (err) {
      // Only our own validation throws FastCgiProtocolError; anything else
      // comes from an application's listener and is its to handle.
      if (!(err instanceof FastCgiProtocolError)) throw err;
      this.#fail(err);
      return false;
    }
    return true;
  }

  #beginSafely(id: number, chunk: Buffer, start: number, end: number): boolean {
    try {
      this.#onBeginRequest(id, chunk, start, end);
    } catch (err) {
      if (!(err instanceof FastCgiProtocolError)) throw err;
      this.#fail(err);
      return false;
    }
    return true;
  }

  /** `stdinEnds`: an empty STDIN record for the same request follows an empty PARAMS record; it is taken first. */
  #handleRecord(type: number, id: number, content: Buffer, stdinEnds = false): void {
    switch (type) {
      case RecordType.BEGIN_REQUEST:
        return this.#onBeginRequest(id, content, 0, content.length);
      case RecordType.GET_VALUES:
        return this.#onGetValues({ type, requestId: id, content });
      case RecordType.UNKNOWN_TYPE:
        // Never answer UNKNOWN_TYPE with UNKNOWN_TYPE: two confused peers would ping-pong forever.
        return;
    }
    if (id === FCGI_NULL_REQUEST_ID) {
      this.#out.write(encodeRecord(RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, encodeUnknownTypeBody(type)));
      return;
    }
    const req = this.#requests.get(id);
    // The spec says to ignore records for request ids not in flight.
    if (!req) return;
    switch (type) {
      case RecordType.ABORT_REQUEST:
        return this.#abort(req, ProtocolStatus.REQUEST_COMPLETE);
      case RecordType.PARAMS:
        return this.#onParams(req, content, stdinEnds);
      case RecordType.STDIN:
        return req.deliverStdin(content);
      case RecordType.DATA:
        return req.deliverData(content);
      default:
        this.#out.write(encodeRecord(RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, encodeUnknownTypeBody(type)));
    }
  }

  /** BEGIN_REQUEST with its body at b[start, end). */
  #onBeginRequest(id: number, b: Buffer, start: number, end: number): void {
    if (id === FCGI_NULL_REQUEST_ID) throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', 'BEGIN_REQUEST on request id 0');
    if (end - start !== 8) {
      throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `BEGIN_REQUEST body is ${end - start} bytes, want 8`);
    }
    const role = (b[start]! << 8) | b[start + 1]!;
    const keepConn = (b[start + 2]! & Flags.KEEP_CONN) !== 0;
    if (this.#requests.has(id)) throw new FastCgiProtocolError('ERR_FCGI_BAD_RECORD', `BEGIN_REQUEST for request id ${id}, already in flight`);
    const name = roleName(role);
    let refusal: number | null = null;
    if (!this.#opts.mpxsConns && this.#requests.size > 0) refusal = ProtocolStatus.CANT_MPX_CONN;
    else if (this.#requests.size >= this.#opts.maxReqs || this.#closeWhenIdle) refusal = ProtocolStatus.OVERLOADED;
    else if (name === undefined || !this.#roles.has(name)) refusal = ProtocolStatus.UNKNOWN_ROLE;
    if (refusal !== null || name === undefined) {
      // The refused id never enters the table, so its PARAMS/STDIN are ignored as unknown.
      this.#writeEndRequest(id, 0, refusal ?? ProtocolStatus.UNKNOWN_ROLE);
      if (!keepConn && refusal !== ProtocolStatus.CANT_MPX_CONN) this.close();
      return;
    }
    this.#requests.set(id, new ServerRequest(this, this.#io, id, name, keepConn));
  }

  #onParams(req: ServerRequest, content: Buffer, stdinEnds: boolean): void {
    if (content.length > 0) {
      // A view of the record: kept only until the empty PARAMS record, then decoded (copied) into strings.
      const bytes = req.addParams(content);
      if (bytes > this.#opts.maxParamsBytes) {
        throw new FastCgiProtocolError('ERR_FCGI_PARAMS_TOO_LARGE', `PARAMS of request ${req.requestId} exceed ${this.#opts.maxParamsBytes} bytes`);
      }
      return; // bytes < 0: PARAMS after the stream ended, ignored
    }
    const first = req.finishParams(); // false: PARAMS after the stream ended, ignored
    if (stdinEnds) req.deliverStdin(EMPTY);
    if (!first) return;
    this.emit('request', req satisfies FcgiServerRequest);
  }

  #onGetValues(rec: FcgiRecord): void {
    requireManagementId(rec);
    const answers: Array<[string, string]> = [];
    for (const name of decodeGetValues(rec.content)) {
      const value = this.#valueOf(name);
      if (value !== undefined) answers.push([name, value]);
    }
    this.#out.write(encodeGetValuesResult(answers));
  }

  #valueOf(name: string): string | undefined {
    switch (name) {
      case ValueName.MAX_CONNS:
        return this.#opts.maxConns === undefined ? undefined : String(this.#opts.maxConns);
      case ValueName.MAX_REQS:
        return String(this.#opts.maxReqs);
      case ValueName.MPXS_CONNS:
        return this.#opts.mpxsConns ? '1' : '0';
      default:
        return undefined; // the spec: names the application does not know are left out
    }
  }

  // ---------------------------------------------------------------- request endings

  #finish(req: ServerRequest, appStatus: number, protocolStatus: number, endStdout = false): void {
    if (this.#requests.get(req.requestId) !== req) return;
    this.#requests.delete(req.requestId);
    this.#writeEndRequest(req.requestId, appStatus, protocolStatus, endStdout);
    // The request's last record: nothing more of it to gather, so its records go out now, in one write.
    this.#out.flush();
    req.markClosed();
    if (!req.keepConn) this.#closeWhenIdle = true;
    this.#maybeEndSocket();
  }

  /** ABORT_REQUEST (spec §5.4: answered at once with END_REQUEST) or a stall. */
  #abort(req: ServerRequest, protocolStatus: number): void {
    req.markAborted();
    this.#finish(req, 0, protocolStatus);
  }

  #onStall(holders: InboundStream[]): void {
    for (const id of new Set(holders.map((h) => h.requestId))) {
      const req = this.#requests.get(id);
      if (req) this.#abort(req, ProtocolStatus.OVERLOADED);
    }
  }

  /** END_REQUEST, after the empty STDOUT record with `endStdout` (in the same write). */
  #writeEndRequest(id: number, appStatus: number, protocolStatus: number, endStdout = false): void {
    this.#out.writeEndRequest(id, appStatus, protocolStatus, endStdout);
  }

  #maybeEndSocket(): void {
    if (this.#closeWhenIdle && this.#requests.size === 0 && !this.socket.writableEnded && !this.socket.destroyed) {
      this.#out.close();
      this.socket.end();
    }
  }

  // ---------------------------------------------------------------- connection endings

  /** The peer finished sending: requests still waiting for input can never complete. */
  #onReadEnd(): void {
    for (const req of this.#requests.values()) {
      if (!req.inputDone) this.#abort(req, ProtocolStatus.REQUEST_COMPLETE);
    }
    this.close();
  }

  #fail(err: FastCgiProtocolError): void {
    this.emit('protocolError', err);
    this.socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.close();
    this.#gate.dispose();
    for (const req of this.#requests.values()) {
      req.markAborted();
      req.markClosed();
    }
    this.#requests.clear();
    this.emit('close');
  }
}

/**
 * The requests in flight, by id: a Map, except that the usual single request
 * of a connection sits in a field. (A Map that goes 0 → 1 → 0 entries on
 * every request reallocates its table each time.)
 */
class RequestTable {
  #soloId = -1;
  #solo: ServerRequest | null = null;
  #more: Map<number, ServerRequest> | null = null;

  get size(): number {
    return (this.#solo === null ? 0 : 1) + (this.#more === null ? 0 : this.#more.size);
  }

  get(id: number): ServerRequest | undefined {
    if (id === this.#soloId) return this.#solo!;
    return this.#more === null ? undefined : this.#more.get(id);
  }

  has(id: number): boolean {
    return id === this.#soloId || (this.#more !== null && this.#more.has(id));
  }

  set(id: number, req: ServerRequest): void {
    if (id === this.#soloId || (this.#solo === null && (this.#more === null || !this.#more.has(id)))) {
      this.#soloId = id;
      this.#solo = req;
    } else {
      (this.#more ??= new Map()).set(id, req);
    }
  }

  delete(id: number): boolean {
    if (id === this.#soloId) {
      this.#soloId = -1;
      this.#solo = null;
      return true;
    }
    return this.#more !== null && this.#more.delete(id);
  }

  /** A snapshot, in no particular order. */
  values(): ServerRequest[] {
    const out: ServerRequest[] = this.#solo === null ? [] : [this.#solo];
    if (this.#more !== null) for (const r of this.#more.values()) out.push(r);
    return out;
  }

  clear(): void {
    this.#soloId = -1;
    this.#solo = null;
    this.#more = null;
  }
}

/**
 * How far `chunk` (read from a record boundary) holds whole records, when no
 * header in it has a bad version: the fast path may then read them in place.
 * -1 when some header is bad (the parser then reports it, exactly as before).
 */
function wholeRecordsEnd(chunk: Buffer): number {
  const n = chunk.length;
  let off = 0;
  while (n - off >= FCGI_HEADER_LEN) {
    if (chunk[off] !== FCGI_VERSION_1) return -1;
    const next = off + FCGI_HEADER_LEN + ((chunk[off + 4]! << 8) | chunk[off + 5]!) + chunk[off + 6]!;
    if (next > n) return off;
    off = next;
  }
  if (off < n && chunk[off] !== FCGI_VERSION_1) return -1;
  return off;
}

/** Serves one accepted socket: `onRequest` gets every request of the connection. */
export function serveConnection(
  socket: Duplex,
  options: FastCgiServerConnectionOptions,
  onRequest: (req: FcgiServerRequest) => void,
): FastCgiServerConnection {
  const conn = new FastCgiServerConnection(socket, options);
  conn.on('request', onRequest);
  return conn;
}

/**
 * FCGI_MAX_CONNS is enforced where connections are accepted, not per
 * connection: this sets net.Server#maxConnections, which makes Node close
 * connections over the limit as soon as they are accepted.
 */
export function applyMaxConns(server: net.Server, options: Pick<FcgiServerOptions, 'maxConns'>): void {
  if (options.maxConns !== undefined) server.maxConnections = options.maxConns;
}

/**
 * A net.Server serving FastCGI on every connection, with maxConns applied.
 * allowHalfOpen lets a response go out after a peer that half-closes its side
 * once it has sent the request; the connection then ends itself when idle.
 */
export function createFastCgiServer(
  options: FastCgiServerConnectionOptions,
  onRequest: (req: FcgiServerRequest) => void,
  onConnection?: (conn: FastCgiServerConnection) => void,
): net.Server {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const conn = serveConnection(socket, options, onRequest);
    onConnection?.(conn);
  });
  applyMaxConns(server, options);
  return server;
}
