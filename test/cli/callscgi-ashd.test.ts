/**
 * callscgi/callfcgi as ashd persistent handlers, end to end: a Python stand-in
 * for ashd's parent sends request datagrams over SOCK_SEQPACKET with the
 * response socket passed by SCM_RIGHTS (callscgi.md §4) and reads the HTTP
 * response back. Covers the byte format, the CGI variables (§5), error
 * answers instead of silent closes (§7.6), bad datagrams skipped instead of
 * exiting (§7.14), and shutdown on SIGTERM and on control-socket EOF.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeAshdRequest } from '../../src/backend/ashd/request.js';
import { fixture, freePort, tmpDir, waitForPidGone } from '../helpers/peers.js';
import { AshdParent, parseHttpResponse } from '../backend/ashd-driver.js';
import { appProgram, pidAlive } from '../backend/support.js';
import { waitUntil } from '../helpers/wait.js';

const parents: AshdParent[] = [];
/** FIXTURE_STATE_DIRs of programs that outlive callscgi (launching mode): their pids are killed at the end. */
const stateDirs: string[] = [];
after(async () => {
  for (const p of parents) await p.stop();
  for (const dir of stateDirs) {
    for (const pid of readIfExists(join(dir, 'pids')).split('\n').filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
});

async function start(cli: 'callscgi' | 'callfcgi', args: string[], env: NodeJS.ProcessEnv = {}): Promise<AshdParent> {
  const p = await AshdParent.start(cli, args, { env: { ...process.env, ...env }, cwd: fixture('backend') });
  parents.push(p);
  return p;
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

type AppDoc = { pid: number; params: Array<[string, string]>; order: string[]; body: string };
const doc = (body: Buffer): AppDoc => JSON.parse(body.toString('latin1')) as AppDoc;

test('callscgi (anonymous): the §4 datagram becomes §5 variables; the answer is HTTP/1.1 with a CRLF head', async () => {
  const runtime = tmpDir();
  const ashd = await start('callscgi', appProgram('scgi'), { XDG_RUNTIME_DIR: runtime });
  const res = await ashd.request({
    method: 'POST',
    url: '/app/x/y%20z?q=1',
    rest: 'x/y%20z',
    headers: [
      ['Host', 'example.com:8080'],
      ['Content-Type', 'text/plain'],
      ['Content-Length', '11'],
      ['X-Ash-Address', '192.0.2.1'],
      ['X-Ash-Port', '5555'],
      ['X-Ash-Protocol', 'http'],
      ['X-Ash-File', 'rel/script.py'],
      ['x-weird.hdr', 'w'],
    ],
    body: 'hello world',
  });
  assert.equal(res.statusLine, 'HTTP/1.1 200 OK');
  assert.equal(res.header('Content-Type'), 'application/json');
  const app = doc(res.body);
  const v = Object.fromEntries(app.params);
  assert.equal(app.body, 'hello world');
  assert.equal(v.PATH_INFO, 'x/y z');
  assert.equal(v.SCRIPT_NAME, '/app/');
  assert.equal(v.QUERY_STRING, 'q=1');
  assert.equal(v.SERVER_NAME, 'example.com:8080');
  assert.equal(v.REMOTE_ADDR, '192.0.2.1');
  assert.equal(v.REMOTE_PORT, '5555');
  assert.equal(v.HTTPS, undefined);
  assert.equal(v.SCRIPT_FILENAME, `${fixture('backend')}/rel/script.py`);
  assert.equal(v.HTTP_X_WEIRD_HDR, 'w');
  assert.match(v.SERVER_SOFTWARE!, /^gatehouse\//);
  // ashd's order, except that the SCGI encoder puts CONTENT_LENGTH and SCGI first (the spec's rule).
  assert.deepEqual(app.order.slice(0, 12), [
    'CONTENT_LENGTH',
    'SCGI',
    'SERVER_SOFTWARE',
    'GATEWAY_INTERFACE',
    'SERVER_PROTOCOL',
    'REQUEST_METHOD',
    'REQUEST_URI',
    'PATH_INFO',
    'SCRIPT_NAME',
    'QUERY_STRING',
    'SERVER_NAME',
    'REMOTE_ADDR',
  ]);
  assert.equal(v.CONTENT_LENGTH, '11');
  // The anonymous socket lives in a private directory under XDG_RUNTIME_DIR.
  assert.equal(readdirSync(runtime).filter((n) => n.startsWith('gatehouse-anon-')).length, 1);

  // A de-chunked body (htparser sends no Content-Length then): measured before it is sent on.
  const chunked = await ashd.request({
    method: 'POST',
    url: '/c',
    headers: [
      ['Content-Type', 'text/plain'],
      ['Transfer-Encoding', 'chunked'],
    ],
    body: 'chunk',
  });
  assert.equal(doc(chunked.body).body, 'chunk');
  assert.equal(Object.fromEntries(doc(chunked.body).params).CONTENT_LENGTH, '5');
  // No Content-Type: htparser forwards no body, so CONTENT_LENGTH is 0 whatever the header says.
  const nobody = await ashd.request({ method: 'POST', url: '/n', headers: [['Content-Length', '9']] });
  assert.equal(Object.fromEntries(doc(nobody.body).params).CONTENT_LENGTH, '0');

  const made = await ashd.request({ url: '/?status=201+Made%20It', headers: [['Host', 'h']] });
  assert.match(made.raw.toString('latin1'), /^HTTP\/1\.1 201 Made It\r\nContent-Type: application\/json\r\nX-Pid: \d+\r\n/);
  const moved = await ashd.request({ url: '/?location=/elsewhere', headers: [] });
  assert.equal(moved.status, 302);
  assert.equal(moved.header('Location'), '/elsewhere');
  // EOF on the control socket: in-flight done, child SIGTERMed, socket and directory removed, exit 0.
  const pid = app.pid;
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
  await waitForPidGone(pid, 5000);
  assert.deepEqual(readdirSync(runtime), []);
});

test('callscgi: a dead backend answers 503 with a short body (ashd closed silently)', async () => {
  const port = await freePort();
  const ashd = await start('callscgi', ['-t', `127.0.0.1:${port}`]);
  const res = await ashd.request({ url: '/', headers: [['Host', 'h']] });
  assert.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable');
  assert.equal(res.header('Retry-After'), '1');
  assert.equal(res.body.toString(), 'The application is not available.\n');
  assert.equal(res.header('Content-Length'), String(res.body.length));
  await waitUntil(() => /GET \/: 503: ERR_BACKEND_UNAVAILABLE/.test(ashd.logs.stderr()), 5000, 'the log line /GET \/: 503: ERR_BACKEND_UNAVAILABLE/');
  // callscgi is still there (ashd's client mode exited): the next request gets an answer too.
  assert.equal((await ashd.request({ url: '/' })).status, 503);
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
});

test('callscgi: an application that dies mid-request → 502, and the next request restarts it', async () => {
  const ashd = await start('callscgi', appProgram('scgi'));
  const res = await ashd.request({ url: '/?die=1', headers: [] });
  assert.equal(res.status, 502);
  assert.equal(res.statusLine, 'HTTP/1.1 502 Bad Gateway');
  await waitUntil(() => /502: ERR_BACKEND_CLOSED_EARLY.*exited with status 5/.test(ashd.logs.stderr()), 5000, 'the log line /502: ERR_BACKEND_CLOSED_EARLY.*exited with status 5/');
  // The next request restarts the application.
  assert.equal((await ashd.request({ url: '/' })).status, 200);
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
});

test('callscgi: datagrams without an fd, oversized or cut short are skipped or refused, not fatal', async () => {
  const ashd = await start('callscgi', appProgram('scgi'));
  // No response socket: logged and skipped.
  await ashd.raw(encodeAshdRequest({ method: 'GET', url: '/', version: 'HTTP/1.1', rest: '', headers: [] }), false);
  // Larger than the 64 KiB receive buffer: truncated, logged and skipped (its socket is closed).
  const big = await ashd.raw(Buffer.alloc(70000, 0x41), true);
  assert.equal((await ashd.recv(big!)).length, 0);
  // A header list cut short: 400.
  const cut = await ashd.raw(Buffer.from('GET\0/\0HTTP/1.1\0\0Host\0', 'latin1'), true);
  const bad = parseHttpResponse(await ashd.recv(cut!));
  assert.equal(bad.status, 400);
  // And the handler still serves.
  assert.equal((await ashd.request({ url: '/' })).status, 200);
  await waitUntil(() => /carried no response socket/.test(ashd.logs.stderr()), 5000, 'the log line /carried no response socket/');
  await waitUntil(() => /skipped a request: .*truncated/.test(ashd.logs.stderr()), 5000, 'the log line /skipped a request: .*truncated/');
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
});

test('callscgi: SIGTERM lets the in-flight request finish, then stops the child and removes the socket', async () => {
  const runtime = tmpDir();
  const state = tmpDir();
  const ashd = await start('callscgi', appProgram('scgi'), { XDG_RUNTIME_DIR: runtime, FIXTURE_STATE_DIR: state });
  const first = doc((await ashd.request({ url: '/' })).body);
  const slow = await ashd.send({ url: '/?sleep=800', headers: [] });
  // Signal once the application has the request in hand.
  await waitUntil(() => readIfExists(join(state, 'requests')).includes('sleep=800'), 10000, 'the slow request to arrive');
  await ashd.signal('TERM');
  const res = parseHttpResponse(await ashd.recv(slow));
  assert.equal(res.status, 200);
  assert.equal(await ashd.wait(), 0);
  await waitForPidGone(first.pid, 5000);
  assert.equal(existsSync(join(runtime)), true);
  assert.deepEqual(readdirSync(runtime), []);
});

test('callscgi (launching): the program keeps running after callscgi exits', async () => {
  const port = await freePort();
  const state = tmpDir();
  stateDirs.push(state);
  const ashd = await start('callscgi', ['-t', `127.0.0.1:${port}`, ...appProgram('scgi')], { FIXTURE_STATE_DIR: state });
  const app = doc((await ashd.request({ url: '/' })).body);
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
  assert.ok(pidAlive(app.pid));
});

test('callfcgi (anonymous): the same round trip over FastCGI, SCGI=1 not sent', async () => {
  const ashd = await start('callfcgi', appProgram('fastcgi'));
  const res = await ashd.request({
    method: 'POST',
    url: '/f/x?a=b',
    rest: 'x',
    headers: [
      ['Host', 'h'],
      ['Content-Type', 'text/plain'],
      ['Content-Length', '3'],
    ],
    body: 'abc',
  });
  assert.equal(res.status, 200);
  const app = doc(res.body);
  const v = Object.fromEntries(app.params);
  assert.equal(app.body, 'abc');
  assert.equal(v.SCGI, undefined);
  assert.equal(v.SCRIPT_NAME, '/f/');
  assert.equal(v.PATH_INFO, 'x');
  assert.equal(app.order[0], 'SERVER_SOFTWARE');
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
  await waitForPidGone(app.pid, 5000);
});

test('callfcgi with php-cgi: X-Ash-File becomes SCRIPT_FILENAME relative to the cwd', async () => {
  const ashd = await start('callfcgi', ['php-cgi'], { PHP_FCGI_CHILDREN: '0' });
  const res = await ashd.request({
    method: 'POST',
    url: '/hello.php',
    rest: '',
    headers: [
      ['Host', 'h'],
      ['X-Ash-File', 'hello.php'],
      ['Content-Type', 'application/x-www-form-urlencoded'],
      ['Content-Length', '3'],
    ],
    body: 'a=1',
  });
  assert.equal(res.status, 200, res.raw.toString());
  assert.equal(res.body.toString(), 'hello from php\nmethod=POST\nbody=a=1\n');
  await ashd.closeControl();
  assert.equal(await ashd.wait(), 0);
});
