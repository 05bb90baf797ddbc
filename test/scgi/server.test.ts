/**
 * Our SCGI client against our SCGI server over real loopback sockets:
 * streaming with backpressure, early answers, and bad peers that must cost
 * only their own connection.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import type { ScgiServerRequest } from '../../src/scgi/contract.js';
import { serveScgiConnection } from '../../src/scgi/server-connection.js';
import { scgiRequest } from '../../src/scgi/client.js';
import { encodeRequestHeaders } from '../../src/scgi/codec.js';
import { ScgiProtocolError } from '../../src/scgi/errors.js';

type Handler = (req: ScgiServerRequest) => void;

/** Routes each request by its REQUEST_URI so one server serves every test. */
const routes = new Map<string, Handler>();
const errors: Error[] = [];
const errorWaiters: Array<(err: Error) => void> = [];
let server: net.Server;
let port: number;

function nextServerError(): Promise<Error> {
  return new Promise((resolve) => errorWaiters.push(resolve));
}

before(async () => {
  server = net.createServer((socket) => {
    serveScgiConnection(
      socket,
      {
        onError: (err) => {
          errors.push(err);
          errorWaiters.shift()?.(err);
        },
      },
      (req) => {
        const uri = req.params.find(([n]) => n === 'REQUEST_URI')?.[1] ?? '';
        const handler = routes.get(uri);
        if (handler) handler(req);
        else req.response.end('Status: 404\r\n\r\n');
      },
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as net.AddressInfo).port;
});

after(async () => {
  server.close();
  await once(server, 'close');
});

async function connect(): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A body of `size` pseudo-random bytes made on demand, 64 KiB at a time. */
function generatedBody(size: number): { stream: Readable; sha256: () => string; produced: () => number } {
  const hash = createHash('sha256');
  let made = 0;
  const stream = new Readable({
    read() {
      if (made >= size) return void this.push(null);
      const n = Math.min(65536, size - made);
      const chunk = Buffer.alloc(n, (made / 65536) & 0xff);
      chunk.writeUInt32BE(made, 0);
      made += n;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, sha256: () => hash.digest('hex'), produced: () => made };
}

test('params arrive in order and the body is echoed back', async () => {
  routes.set('/echo', (req) => {
    void readAll(req.body).then((body) => {
      req.response.write('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n');
      req.response.end(Buffer.from(`${JSON.stringify(req.params)}\n${body.toString('latin1')}`, 'latin1'));
    });
  });
  const params: Array<[string, string]> = [
    ['REQUEST_METHOD', 'POST'],
    ['REQUEST_URI', '/echo'],
    ['HTTP_X_BYTES', '\xe9\xff'],
  ];
  const { body, response } = scgiRequest(await connect(), params, 5);
  body.end('hello');
  const raw = (await readAll(response)).toString('latin1');
  const [head, payload] = raw.split('\r\n\r\n') as [string, string];
  assert.equal(head, 'Status: 200 OK\r\nContent-Type: text/plain');
  const [paramsJson, echoed] = payload.split('\n') as [string, string];
  assert.deepEqual(JSON.parse(paramsJson), [['CONTENT_LENGTH', '5'], ['SCGI', '1'], ...params]);
  assert.equal(echoed, 'hello');
});

test('streams a 5 MB body both ways without buffering it', async (t) => {
  const SIZE = 5 * 1024 * 1024;
  const params: Array<[string, string]> = [['REQUEST_URI', '/stream']];
  const headerLength = encodeRequestHeaders(params, SIZE).length;
  const upload = generatedBody(SIZE);
  const clientSocket = await connect();
  // Bytes our code holds in user space: made by the producer but not yet
  // given to the kernel (client), or read from the kernel but not yet
  // consumed by the handler (server). The kernel's socket buffers (several
  // MB on loopback) are not ours and are left out.
  const clientHeld = (): number =>
    upload.produced() - (clientSocket.bytesWritten - clientSocket.writableLength - headerLength);
  let maxClientHeld = 0;
  let maxServerHeld = 0;
  routes.set('/stream', (req) => {
    const serverSocket = req.response as net.Socket;
    void (async () => {
      const hash = createHash('sha256');
      let consumed = 0;
      for await (const chunk of req.body) {
        hash.update(chunk as Buffer);
        consumed += (chunk as Buffer).length;
        maxServerHeld = Math.max(maxServerHeld, serverSocket.bytesRead - headerLength - consumed);
        maxClientHeld = Math.max(maxClientHeld, clientHeld());
        // A slow consumer: yield to the loop so the socket must be paused.
        await new Promise((r) => setImmediate(r));
      }
      req.response.write('Content-Type: application/octet-stream\r\n\r\n');
      req.response.write(`${consumed} ${hash.digest('hex')}\n`);
      // Then stream the same size back, honouring the socket's backpressure.
      await pipeline(generatedBody(SIZE).stream, req.response);
    })();
  });
  const { body, response } = scgiRequest(clientSocket, params, SIZE);
  const sent = pipeline(upload.stream, body);

  let received = 0;
  let head = '';
  let maxResponseBuffered = 0;
  for await (const chunk of response) {
    received += (chunk as Buffer).length;
    maxResponseBuffered = Math.max(maxResponseBuffered, clientSocket.bytesRead - received);
    if (head.length < 300) head += (chunk as Buffer).toString('latin1', 0, 300 - head.length);
    await new Promise((r) => setImmediate(r));
  }
  await sent;
  const line = head.split('\r\n\r\n')[1]!.split('\n')[0]!;
  assert.equal(line, `${SIZE} ${upload.sha256()}`);
  assert.equal(received, 'Content-Type: application/octet-stream\r\n\r\n'.length + line.length + 1 + SIZE);
  t.diagnostic(`held at most: client ${maxClientHeld}, server ${maxServerHeld}, response ${maxResponseBuffered} bytes`);
  // A few 64 KiB chunks and 16 KiB high-water marks, against 5 MB moved.
  for (const [label, n] of [
    ['client request body', maxClientHeld],
    ['server request body', maxServerHeld],
    ['client response', maxResponseBuffered],
  ] as const) {
    assert.ok(n <= 512 * 1024, `${label}: ${n} bytes held in user space`);
  }
});

test('a lying CONTENT_LENGTH fails with ERR_SCGI_SHORT_BODY and closes only that connection', async () => {
  let bodyError: unknown;
  const bodySeen = new Promise<void>((resolve) => {
    routes.set('/liar', (req) => {
      req.body.on('error', (err) => {
        bodyError = err;
        resolve();
      });
      req.body.resume();
    });
  });
  routes.set('/honest', (req) => {
    req.body.resume();
    req.body.on('end', () => req.response.end('Status: 204\r\n\r\n'));
  });

  const bystander = await connect();
  const bystanderDone = scgiRequest(bystander, [['REQUEST_URI', '/honest']], 4);
  bystanderDone.body.write('ab'); // half the body, then wait while the liar fails

  const liar = await connect();
  const serverError = nextServerError();
  liar.write(encodeRequestHeaders([['REQUEST_URI', '/liar']], 100));
  liar.end('only ten b');
  const err = await serverError;
  assert.ok(err instanceof ScgiProtocolError);
  assert.equal(err.code, 'ERR_SCGI_SHORT_BODY');
  await bodySeen;
  assert.equal((bodyError as ScgiProtocolError).code, 'ERR_SCGI_SHORT_BODY');
  await once(liar, 'close');

  bystanderDone.body.end('cd');
  assert.equal((await readAll(bystanderDone.response)).toString(), 'Status: 204\r\n\r\n');
});

test('a bad netstring is reported with its code and the socket is destroyed', async () => {
  for (const [wire, code] of [
    ['07:x', 'ERR_SCGI_NETSTRING'],
    ['999999:', 'ERR_SCGI_HEADER_TOO_LARGE'],
    ['19:CONTENT_LENGTH\x000\x00x\x00,', 'ERR_SCGI_BAD_HEADERS'],
  ] as const) {
    const socket = await connect();
    const serverError = nextServerError();
    socket.end(Buffer.from(wire, 'latin1'));
    socket.resume();
    assert.equal(((await serverError) as ScgiProtocolError).code, code);
    await once(socket, 'close');
  }
});

test('a connection closed before any byte is not an error', async () => {
  const before = errors.length;
  const socket = await connect();
  socket.end();
  socket.resume();
  await once(socket, 'close');
  // A second, real request proves the server went on; no error was recorded.
  routes.set('/after-probe', (req) => req.response.end('Status: 200\r\n\r\n'));
  const { response } = scgiRequest(await connect(), [['REQUEST_URI', '/after-probe']], 0);
  assert.equal((await readAll(response)).toString(), 'Status: 200\r\n\r\n');
  assert.equal(errors.length, before);
});

test('bytes after the body are ignored, and a half-closed client still gets its answer', async () => {
  routes.set('/extra', (req) => {
    // Answer only after the client's FIN has been seen, so half-open is really exercised.
    const finSeen = once(req.response as net.Socket, 'end');
    void Promise.all([readAll(req.body), finSeen]).then(([b]) =>
      req.response.end(`Content-Type: text/plain\r\n\r\n${b.toString()}`),
    );
  });
  const socket = await connect();
  socket.write(encodeRequestHeaders([['REQUEST_URI', '/extra']], 3));
  socket.end('abcTRAILING GARBAGE');
  assert.equal((await readAll(socket)).toString(), 'Content-Type: text/plain\r\n\r\nabc');
});

test('a server that answers without reading a large body still delivers the answer', async () => {
  routes.set('/early', (req) => req.response.end('Status: 413 Too Large\r\n\r\nno thanks'));
  const SIZE = 8 * 1024 * 1024;
  const { body, response } = scgiRequest(await connect(), [['REQUEST_URI', '/early']], SIZE);
  const sent = pipeline(generatedBody(SIZE).stream, body);
  assert.equal((await readAll(response)).toString(), 'Status: 413 Too Large\r\n\r\nno thanks');
  await sent; // the rest of the body is discarded, not an error
});

test('client: a server closing without a response is ERR_SCGI_CONNECTION_CLOSED', async () => {
  routes.set('/silent', (req) => req.response.end());
  const { response } = scgiRequest(await connect(), [['REQUEST_URI', '/silent']], 0);
  await assert.rejects(readAll(response), (err: unknown) => {
    assert.ok(err instanceof ScgiProtocolError);
    assert.equal(err.code, 'ERR_SCGI_CONNECTION_CLOSED');
    return true;
  });
});

test('client: a socket failing mid-response is ERR_SCGI_CONNECTION_CLOSED with the socket error as cause', async () => {
  routes.set('/stall', (req) => req.response.write('Content-Type: text/plain\r\n\r\npartial'));
  const socket = await connect();
  const { response } = scgiRequest(socket, [['REQUEST_URI', '/stall']], 0);
  const boom = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  response.once('data', () => socket.destroy(boom));
  await assert.rejects(readAll(response), (err: unknown) => {
    assert.ok(err instanceof ScgiProtocolError);
    assert.equal(err.code, 'ERR_SCGI_CONNECTION_CLOSED');
    assert.equal(err.cause, boom);
    return true;
  });
});

test('client: writing more or fewer bytes than announced is ERR_SCGI_BODY_LENGTH', async () => {
  routes.set('/len', (req) => req.body.resume());
  for (const [announced, sent] of [
    [3, 'abcd'],
    [5, 'ab'],
  ] as const) {
    const socket = await connect();
    const { body, response } = scgiRequest(socket, [['REQUEST_URI', '/len']], announced);
    response.on('error', () => {});
    const [err] = (await Promise.all([once(body, 'error'), body.end(sent)]))[0] as [ScgiProtocolError];
    assert.equal(err.code, 'ERR_SCGI_BODY_LENGTH');
    socket.destroy();
  }
});

test('client: a NUL in a param throws before anything is written', async () => {
  const socket = await connect();
  assert.throws(() => scgiRequest(socket, [['HTTP_X', 'a\x00b']], 0), { code: 'ERR_SCGI_BAD_HEADERS' });
  assert.equal(socket.bytesWritten, 0);
  socket.destroy();
});
