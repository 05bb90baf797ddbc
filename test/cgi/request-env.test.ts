/**
 * HTTP request → CGI meta-variables, against literal tables: one full
 * environment checked variable by variable, then each rule on its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cgiParamsFromHttp, type CgiRequestInput } from '../../src/cgi/request-env.js';
import { SERVER_SOFTWARE } from '../../src/cgi/server-software.js';
import { CgiError, type CgiErrorCode } from '../../src/cgi/errors.js';

const base: CgiRequestInput = {
  method: 'GET',
  url: '/',
  httpVersion: '1.1',
  rawHeaders: ['Host', 'example.org'],
  remoteAddress: '192.0.2.7',
  remotePort: 50123,
  localAddress: '198.51.100.1',
  localPort: 8080,
  https: false,
  contentLength: undefined,
  serverSoftware: 'gatehouse/test',
};

function env(overrides: Partial<CgiRequestInput>): Map<string, string> {
  return new Map(cgiParamsFromHttp({ ...base, ...overrides }));
}

function assertCode(fn: () => unknown, code: CgiErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CgiError, `expected CgiError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, /^cgi: /);
    return true;
  });
}

test('the full environment of a sample POST, variable by variable and in order', () => {
  const params = cgiParamsFromHttp({
    method: 'POST',
    url: '/cgi-bin/app.cgi/extra/path%20here?x=1&y=%41',
    httpVersion: '1.1',
    rawHeaders: [
      'Host', 'www.example.com:8443',
      'User-Agent', 'curl/8.5',
      'Accept', 'text/html',
      'Content-Type', 'application/x-www-form-urlencoded',
      'Content-Length', '11',
      'Accept', 'application/json',
      'Cookie', 'a=1',
      'X-Forwarded-For', '203.0.113.9',
      'Cookie', 'b=2',
    ],
    remoteAddress: '192.0.2.7',
    remotePort: 50123,
    localAddress: '198.51.100.1',
    localPort: 8443,
    https: true,
    scriptName: '/cgi-bin/app.cgi',
    scriptFilename: '/srv/www/cgi-bin/app.cgi',
    documentRoot: '/srv/www',
    contentLength: 11,
    serverSoftware: 'gatehouse/9.9.9',
  });
  assert.deepEqual(params, [
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', 'gatehouse/9.9.9'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['REQUEST_METHOD', 'POST'],
    ['REQUEST_URI', '/cgi-bin/app.cgi/extra/path%20here?x=1&y=%41'],
    ['SCRIPT_NAME', '/cgi-bin/app.cgi'],
    ['PATH_INFO', '/extra/path here'],
    ['QUERY_STRING', 'x=1&y=%41'],
    ['SERVER_NAME', 'www.example.com'],
    ['SERVER_PORT', '8443'],
    ['SERVER_ADDR', '198.51.100.1'],
    ['REMOTE_ADDR', '192.0.2.7'],
    ['REMOTE_PORT', '50123'],
    ['REQUEST_SCHEME', 'https'],
    ['CONTENT_TYPE', 'application/x-www-form-urlencoded'],
    ['CONTENT_LENGTH', '11'],
    ['HTTPS', 'on'],
    ['DOCUMENT_ROOT', '/srv/www'],
    ['SCRIPT_FILENAME', '/srv/www/cgi-bin/app.cgi'],
    ['HTTP_HOST', 'www.example.com:8443'],
    ['HTTP_USER_AGENT', 'curl/8.5'],
    ['HTTP_ACCEPT', 'text/html, application/json'],
    ['HTTP_COOKIE', 'a=1; b=2'],
    ['HTTP_X_FORWARDED_FOR', '203.0.113.9'],
  ]);
});

test('a bare GET: QUERY_STRING is "", no CONTENT_*, no HTTPS, PATH_INFO is the path', () => {
  assert.deepEqual(cgiParamsFromHttp({ ...base, url: '/a/b' }), [
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', 'gatehouse/test'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['REQUEST_METHOD', 'GET'],
    ['REQUEST_URI', '/a/b'],
    ['SCRIPT_NAME', ''],
    ['PATH_INFO', '/a/b'],
    ['QUERY_STRING', ''],
    ['SERVER_NAME', 'example.org'],
    ['SERVER_PORT', '8080'],
    ['SERVER_ADDR', '198.51.100.1'],
    ['REMOTE_ADDR', '192.0.2.7'],
    ['REMOTE_PORT', '50123'],
    ['REQUEST_SCHEME', 'http'],
    ['HTTP_HOST', 'example.org'],
  ]);
});

test('SERVER_SOFTWARE defaults to gatehouse/<package.json version>', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(SERVER_SOFTWARE, `gatehouse/${pkg.version}`);
  const { serverSoftware: _omit, ...noSoftware } = base;
  assert.equal(new Map(cgiParamsFromHttp(noSoftware)).get('SERVER_SOFTWARE'), `gatehouse/${pkg.version}`);
});

test('drops Proxy header (httpoxy)', () => {
  for (const name of ['Proxy', 'proxy', 'PROXY']) {
    const vars = env({ rawHeaders: ['Host', 'h', name, 'http://evil.example:3128/'] });
    assert.equal(vars.has('HTTP_PROXY'), false, `${name} must not become HTTP_PROXY`);
    assert.equal([...vars.values()].includes('http://evil.example:3128/'), false);
  }
  // Nor through the underscore spelling, which would map to the same name.
  assert.equal(env({ rawHeaders: ['Host', 'h', 'Proxy_', 'x', 'HTTP_PROXY', 'y'] }).has('HTTP_PROXY'), false);
});

test('Content-Type and Content-Length never become HTTP_CONTENT_*', () => {
  const vars = env({ method: 'POST', rawHeaders: ['Host', 'h', 'Content-Type', 'text/plain', 'Content-Length', '5'], contentLength: 5 });
  assert.equal(vars.get('CONTENT_TYPE'), 'text/plain');
  assert.equal(vars.get('CONTENT_LENGTH'), '5');
  assert.equal(vars.has('HTTP_CONTENT_TYPE'), false);
  assert.equal(vars.has('HTTP_CONTENT_LENGTH'), false);
});

test('CONTENT_LENGTH only with a body; an empty body is "0"', () => {
  assert.equal(env({ contentLength: undefined }).has('CONTENT_LENGTH'), false);
  assert.equal(env({ contentLength: 0 }).get('CONTENT_LENGTH'), '0');
  assert.throws(() => env({ contentLength: -1 }), RangeError);
});

test('names with "_" or other non-alphanumerics are dropped, so they cannot spoof HTTP_X_FOO', () => {
  const vars = env({ rawHeaders: ['Host', 'h', 'X_Foo', 'spoof', 'X.Foo', 'spoof2', 'X-Foo', 'real'] });
  assert.equal(vars.get('HTTP_X_FOO'), 'real');
  assert.equal([...vars.keys()].filter((k) => k.startsWith('HTTP_X')).length, 1);
});

const BAD_HEADERS: Array<[string, string[]]> = [
  ['CR in a value', ['X-A', 'a\rb']],
  ['LF in a value (response splitting)', ['X-A', 'a\r\nSet-Cookie: evil=1']],
  ['NUL in a value', ['X-A', 'a\0b']],
  ['LF in a name', ['X-A\nB', 'v']],
  ['space in a name', ['X A', 'v']],
  ['colon in a name', ['X:A', 'v']],
  ['empty name', ['', 'v']],
  ['two Host headers', ['Host', 'b.example']],
  ['two Content-Type headers', ['Content-Type', 'a/b', 'Content-Type', 'c/d']],
  ['a name without a value', ['X-Lonely']],
];

for (const [label, extra] of BAD_HEADERS) {
  test(`rejects ${label} with ERR_CGI_BAD_HEADER`, () => {
    assertCode(() => env({ rawHeaders: ['Host', 'a.example', ...extra] }), 'ERR_CGI_BAD_HEADER');
  });
}

test('a method or version with injected bytes is rejected', () => {
  assertCode(() => env({ method: 'GET\r\nX: y' }), 'ERR_CGI_BAD_HEADER');
  assertCode(() => env({ httpVersion: '1.1\n' }), 'ERR_CGI_BAD_HEADER');
});

/** [Host header (or undefined), absolute-form url (or undefined), local address, expected SERVER_NAME] */
const HOSTS: Array<[string | undefined, string | undefined, string, string]> = [
  ['example.org', undefined, '10.0.0.1', 'example.org'],
  ['example.org:8080', undefined, '10.0.0.1', 'example.org'],
  ['EXAMPLE.org', undefined, '10.0.0.1', 'EXAMPLE.org'],
  ['127.0.0.1:80', undefined, '10.0.0.1', '127.0.0.1'],
  ['[::1]', undefined, '10.0.0.1', '[::1]'],
  ['[::1]:8080', undefined, '10.0.0.1', '[::1]'],
  ['[2001:db8::7]:443', undefined, '10.0.0.1', '[2001:db8::7]'],
  [undefined, undefined, '10.0.0.1', '10.0.0.1'],
  [undefined, undefined, '::1', '[::1]'],
  ['', undefined, '10.0.0.1', '10.0.0.1'],
  ['ignored.example', 'http://target.example:81/p?q', '10.0.0.1', 'target.example'],
  ['ignored.example', 'http://user@[::2]:81/p', '10.0.0.1', '[::2]'],
];

for (const [host, url, localAddress, expected] of HOSTS) {
  test(`SERVER_NAME is ${expected} for Host ${JSON.stringify(host)}${url ? ` and target ${url}` : ''}`, () => {
    const vars = env({ rawHeaders: host === undefined ? [] : ['Host', host], localAddress, ...(url && { url }) });
    assert.equal(vars.get('SERVER_NAME'), expected);
    assert.equal(vars.get('SERVER_PORT'), '8080'); // the port we received on, never the Host's
  });
}

test('hosts that are not a host are rejected', () => {
  for (const host of ['evil.example/path', 'a b', '[::1', '[::1]x', 'h:80x', 'h:-1', '[zz::<]']) {
    assertCode(() => env({ rawHeaders: ['Host', host] }), 'ERR_CGI_BAD_HEADER');
  }
});

test('absolute-form targets give the path and query, REQUEST_URI stays raw', () => {
  const vars = env({ url: 'http://target.example/a%2Fb?q=%20' });
  assert.equal(vars.get('REQUEST_URI'), 'http://target.example/a%2Fb?q=%20');
  assert.equal(vars.get('PATH_INFO'), '/a/b');
  assert.equal(vars.get('QUERY_STRING'), 'q=%20');
  assert.equal(env({ url: 'http://target.example' }).get('PATH_INFO'), '/');
});

/** [url, scriptName, pathInfo (raw) or undefined, SCRIPT_NAME, PATH_INFO, QUERY_STRING] */
const PATHS: Array<[string, string | undefined, string | undefined, string, string, string]> = [
  ['/', undefined, undefined, '', '/', ''],
  ['/a%20b', undefined, undefined, '', '/a b', ''],
  ['/a+b', undefined, undefined, '', '/a+b', ''],
  ['/caf%C3%A9', undefined, undefined, '', '/caf\xc3\xa9', ''],
  ['/bad%zz%4', undefined, undefined, '', '/bad%zz%4', ''],
  ['/p?', undefined, undefined, '', '/p', ''],
  ['/p?a=1?b=2', undefined, undefined, '', '/p', 'a=1?b=2'],
  ['/app', '/app', undefined, '/app', '', ''],
  ['/app/', '/app', undefined, '/app', '/', ''],
  ['/app/x/y%20z?q', '/app', undefined, '/app', '/x/y z', 'q'],
  ['/%61pp/x', '/app', undefined, '/app', '/x', ''],
  ['/application/x', '/app', undefined, '/app', '/application/x', ''],
  ['/index.php/x%2Fy', '/index.php', '/x%2Fy', '/index.php', '/x/y', ''],
];

for (const [url, scriptName, pathInfo, expectScript, expectPathInfo, expectQuery] of PATHS) {
  test(`${url} with SCRIPT_NAME ${JSON.stringify(scriptName ?? '')} → PATH_INFO ${JSON.stringify(expectPathInfo)}`, () => {
    const vars = env({ url, ...(scriptName !== undefined && { scriptName }), ...(pathInfo !== undefined && { pathInfo }) });
    assert.equal(vars.get('SCRIPT_NAME'), expectScript);
    assert.equal(vars.get('PATH_INFO'), expectPathInfo);
    assert.equal(vars.get('QUERY_STRING'), expectQuery);
    assert.equal(vars.get('REQUEST_URI'), url);
  });
}

test('a path decoding to NUL is rejected (it would cut C strings and SCGI framing)', () => {
  assertCode(() => env({ url: '/a%00b' }), 'ERR_CGI_BAD_PATH');
  assertCode(() => env({ url: '/app/x', scriptName: '/app', pathInfo: '/%00' }), 'ERR_CGI_BAD_PATH');
  assertCode(() => env({ url: '/a\r\nb' }), 'ERR_CGI_BAD_PATH');
  assertCode(() => env({ scriptFilename: '/srv/a\0b' }), 'ERR_CGI_BAD_PATH');
  // %00 in the query is the application's business: it stays encoded.
  assert.equal(env({ url: '/a?x=%00' }).get('QUERY_STRING'), 'x=%00');
});

test('many distinct headers: repeats are still joined in first-appearance order (the indexed path past 32 names)', () => {
  const raw: string[] = ['Host', 'example.org'];
  for (let i = 0; i < 40; i++) raw.push(`X-H${i}`, `v${i}`);
  raw.push('X-H5', 'again', 'Cookie', 'c=1', 'X-H39', 'last', 'Cookie', 'd=2', 'X-H5', 'third');
  const http = cgiParamsFromHttp({ ...base, rawHeaders: raw }).filter(([name]) => name.startsWith('HTTP_'));
  assert.deepEqual(http.slice(0, 3), [
    ['HTTP_HOST', 'example.org'],
    ['HTTP_X_H0', 'v0'],
    ['HTTP_X_H1', 'v1'],
  ]);
  assert.equal(http.length, 1 + 40 + 1);
  const m = new Map(http);
  assert.equal(m.get('HTTP_X_H5'), 'v5, again, third');
  assert.equal(m.get('HTTP_X_H39'), 'v39, last');
  assert.equal(m.get('HTTP_COOKIE'), 'c=1; d=2');
  assert.equal(http.at(-1)![0], 'HTTP_COOKIE');
});
