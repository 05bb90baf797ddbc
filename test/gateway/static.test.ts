/**
 * The --root preset without PHP: static files (types, validators, 304,
 * ranges, HEAD), directories, dotfiles, traversal and symlinks, and where
 * each path is routed (script split, front controller), checked on the
 * params a recording backend receives.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, realpathSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fixture, httpRequest, tmpDir } from '../helpers/peers.js';
import { fakeBackend, Harness, param, rawHttp, type Running } from './support.js';

const ROOT = fixture('php-app');

describe('gateway --root: static files and routing', () => {
  const h = new Harness();
  let gw: Running;
  let backend: ReturnType<typeof fakeBackend>;
  let root: string;

  before(async () => {
    // A copy, so symlinks pointing out of the root can be added without touching the fixture.
    root = join(tmpDir('gh-gw-root-'), 'site');
    cpSync(ROOT, root, { recursive: true });
    symlinkSync('/etc/passwd', join(root, 'passwd.txt'));
    symlinkSync('/etc', join(root, 'etc'));
    symlinkSync(join(root, 'style.css'), join(root, 'alias.css'));
    const outside = tmpDir('gh-gw-outside-');
    writeFileSync(join(outside, 'evil.php'), '<?php echo "outside";');
    symlinkSync(join(outside, 'evil.php'), join(root, 'evil.php'));
    backend = fakeBackend(() => ({
      status: 200,
      statusText: 'OK',
      headers: [['Content-Type', 'text/plain']],
      body: Readable.from([Buffer.from('from backend\n')]),
    }));
    gw = await h.gateway(backend, { root });
  });
  after(() => h.closeAll());

  it('serves a CSS file with its type, length, ETag and Last-Modified', async () => {
    const r = await httpRequest(`${gw.url}/style.css`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/css; charset=utf-8');
    assert.equal(r.body.toString(), readFileSync(join(root, 'style.css'), 'utf8'));
    assert.equal(r.headers['content-length'], String(r.body.length));
    assert.match(r.headers.etag ?? '', /^"[0-9a-f]+-[0-9a-f]+"$/);
    assert.ok(r.headers['last-modified']);
    assert.equal(r.headers['accept-ranges'], 'bytes');
  });

  it('serves a PNG byte for byte as image/png', async () => {
    const r = await httpRequest(`${gw.url}/logo.png`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'image/png');
    assert.deepEqual(r.body, readFileSync(join(root, 'logo.png')));
  });

  it('answers 304 to a matching If-None-Match and to If-Modified-Since', async () => {
    const first = await httpRequest(`${gw.url}/style.css`);
    const etag = first.headers.etag!;
    const byTag = await httpRequest(`${gw.url}/style.css`, { headers: { 'If-None-Match': etag } });
    assert.equal(byTag.status, 304);
    assert.equal(byTag.body.length, 0);
    assert.equal(byTag.headers.etag, etag);
    const weak = await httpRequest(`${gw.url}/style.css`, { headers: { 'If-None-Match': `"nope", W/${etag}` } });
    assert.equal(weak.status, 304);
    const byDate = await httpRequest(`${gw.url}/style.css`, { headers: { 'If-Modified-Since': first.headers['last-modified']! } });
    assert.equal(byDate.status, 304);
    const stale = await httpRequest(`${gw.url}/style.css`, { headers: { 'If-None-Match': '"other"' } });
    assert.equal(stale.status, 200);
    const old = await httpRequest(`${gw.url}/style.css`, { headers: { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' } });
    assert.equal(old.status, 200);
  });

  it('serves single byte ranges with 206, and 416 past the end', async () => {
    const whole = readFileSync(join(root, 'style.css'));
    const r = await httpRequest(`${gw.url}/style.css`, { headers: { Range: 'bytes=3-9' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes 3-9/${whole.length}`);
    assert.deepEqual(r.body, whole.subarray(3, 10));
    const suffix = await httpRequest(`${gw.url}/style.css`, { headers: { Range: 'bytes=-5' } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(suffix.body, whole.subarray(whole.length - 5));
    const open = await httpRequest(`${gw.url}/style.css`, { headers: { Range: 'bytes=80-' } });
    assert.deepEqual(open.body, whole.subarray(80));
    const beyond = await httpRequest(`${gw.url}/style.css`, { headers: { Range: `bytes=${whole.length}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${whole.length}`);
    // Several ranges are allowed to be answered with the whole file.
    const multi = await httpRequest(`${gw.url}/style.css`, { headers: { Range: 'bytes=0-1,4-5' } });
    assert.equal(multi.status, 200);
    assert.equal(multi.body.length, whole.length);
    // If-Range with another ETag: the representation changed, so the whole file.
    const changed = await httpRequest(`${gw.url}/style.css`, { headers: { Range: 'bytes=0-1', 'If-Range': '"old"' } });
    assert.equal(changed.status, 200);
  });

  it('answers HEAD with the headers and no body', async () => {
    const r = await httpRequest(`${gw.url}/logo.png`, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
    assert.equal(r.headers['content-length'], String(readFileSync(join(root, 'logo.png')).length));
  });

  it('refuses other methods on a static file with 405 and Allow', async () => {
    const r = await httpRequest(`${gw.url}/style.css`, { method: 'DELETE' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, HEAD');
  });

  it('denies dotfiles (.env) but serves /.well-known/', async () => {
    assert.equal((await httpRequest(`${gw.url}/.env`)).status, 403);
    assert.equal((await httpRequest(`${gw.url}/sub/.env`)).status, 403);
    assert.equal((await httpRequest(`${gw.url}/.git/config`)).status, 403);
    const wk = await httpRequest(`${gw.url}/.well-known/security.txt`);
    assert.equal(wk.status, 200);
    assert.match(wk.body.toString(), /Contact:/);
  });

  it('makes traversal impossible: .., encoded .., NUL, symlinks out of the root', async () => {
    const probe = async (path: string): Promise<number> => {
      const answer = await rawHttp(gw.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      return Number(answer.slice(9, 12));
    };
    assert.equal(await probe('/../etc/passwd'), 403);
    assert.equal(await probe('/sub/../../etc/passwd'), 403);
    assert.equal(await probe('/%2e%2e/%2e%2e/etc/passwd'), 403);
    assert.equal(await probe('/sub/%2E%2E/.env'), 403);
    assert.equal(await probe('/style.css%00.php'), 400);
    assert.equal(await probe('/%ZZ'), 400);
    assert.equal(await probe('/passwd.txt'), 403);
    assert.equal(await probe('/etc/passwd'), 403);
    // A symlink that stays inside the root is fine.
    assert.equal(await probe('/alias.css'), 200);
    // A script symlinked from outside is not run.
    assert.equal(await probe('/evil.php'), 404);
    assert.equal(backend.requests.length, 0);
  });

  it('redirects a directory without its slash and serves its index.html', async () => {
    const r = await rawHttp(gw.port, 'GET /sub?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(r, /^HTTP\/1.1 301 /);
    assert.match(r, /\r\nLocation: \/sub\/\?x=1\r\n/i);
    // The Location is a URL again: a decoded name is re-encoded, never sent raw.
    mkdirSync(join(root, 'dir with ü?'));
    const odd = await rawHttp(gw.port, 'GET /dir%20with%20%C3%BC%3F HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(odd, /\r\nLocation: \/dir%20with%20%C3%BC%3F\/\r\n/i);
    const index = await httpRequest(`${gw.url}/sub/`);
    assert.equal(index.status, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(index.body.toString(), /sub index/);
  });

  it('answers 403 for a directory without an index', async () => {
    assert.equal((await httpRequest(`${gw.url}/static-dir/`)).status, 403);
  });

  it('routes /info.php/extra/path to info.php with PATH_INFO, and unknown paths to /index.php', async () => {
    backend.requests.length = 0;
    await httpRequest(`${gw.url}/info.php/extra/path?q=1`);
    await httpRequest(`${gw.url}/hello/World`);
    await httpRequest(`${gw.url}/`);
    const [info, hello, home] = backend.requests.map((r) => r.params);
    assert.equal(param(info!, 'SCRIPT_NAME'), '/info.php');
    assert.equal(param(info!, 'PATH_INFO'), '/extra/path');
    assert.equal(param(info!, 'SCRIPT_FILENAME'), join(realpathSync(root), 'info.php'));
    assert.equal(param(info!, 'QUERY_STRING'), 'q=1');
    assert.equal(param(info!, 'REQUEST_URI'), '/info.php/extra/path?q=1');
    assert.equal(param(hello!, 'SCRIPT_NAME'), '/index.php');
    assert.equal(param(hello!, 'PATH_INFO'), '');
    assert.equal(param(hello!, 'REQUEST_URI'), '/hello/World');
    assert.equal(param(home!, 'SCRIPT_NAME'), '/index.php');
    assert.equal(param(home!, 'DOCUMENT_ROOT'), param(info!, 'DOCUMENT_ROOT'));
  });

  it('does not decode a %-escape in PATH_INFO twice', async () => {
    backend.requests.length = 0;
    await httpRequest(`${gw.url}/info.php/a%2541b`);
    assert.equal(param(backend.requests[0]!.params, 'PATH_INFO'), '/a%41b');
  });

  it('answers 404 for a missing *.php script', async () => {
    assert.equal((await httpRequest(`${gw.url}/missing.php`)).status, 404);
  });
});
