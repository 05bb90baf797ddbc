/**
 * ashd's handler protocol without sockets: the request datagram byte format
 * (callscgi.md §4) and the CGI variables built from it (§5: order, values,
 * SCRIPT_NAME/PATH_INFO from the rest string).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AshdProtocolError, decodeAshdRequest, encodeAshdRequest, getHeader } from '../../src/backend/ashd/request.js';
import { ashdCgiParams, httpVariableName, splitScriptPath, unquoteUrl } from '../../src/backend/ashd/env.js';
import { formatErrorResponse, formatResponseHead } from '../../src/backend/ashd/serve.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

test('decodes the §4 example datagram', () => {
  const req = decodeAshdRequest(bytes('GET\0/foo/bar?x=1\0HTTP/1.1\0bar\0Host\0example.com\0X-Ash-Address\x00192.0.2.1\0\0'));
  assert.deepEqual(req, {
    method: 'GET',
    url: '/foo/bar?x=1',
    version: 'HTTP/1.1',
    rest: 'bar',
    headers: [
      ['Host', 'example.com'],
      ['X-Ash-Address', '192.0.2.1'],
    ],
  });
  assert.equal(getHeader(req, 'host'), 'example.com');
  assert.deepEqual(decodeAshdRequest(encodeAshdRequest(req)), req);
});

test('keeps header order and duplicates, and every byte (latin1)', () => {
  const req = decodeAshdRequest(bytes('POST\0/\0HTTP/1.0\0\0A\x001\0a\x002\0X\0\xe9\xff\0\0'));
  assert.deepEqual(req.headers, [
    ['A', '1'],
    ['a', '2'],
    ['X', '\xe9\xff'],
  ]);
  assert.equal(getHeader(req, 'A'), '1');
});

test('a datagram cut short is an error, not a crash (ashd dereferenced NULL)', () => {
  for (const bad of ['GET\0/x\0HTTP/1.1\0rest\0Host\0', 'GET\0/x\0HTTP/1.1\0rest\0Host\0h\0', 'GET\0/x', '', '\0/\0HTTP/1.1\0\0\0', 'GET\0/\0HTTP/1.1\0\0\0junk']) {
    assert.throws(() => decodeAshdRequest(bytes(bad)), AshdProtocolError, JSON.stringify(bad));
  }
});

test('SCRIPT_NAME and PATH_INFO follow ashd (verified examples of §5)', () => {
  assert.deepEqual(splitScriptPath('/app/x/y?q', 'x/y'), { scriptName: '/app/', pathInfo: 'x/y' });
  assert.deepEqual(splitScriptPath('/a%20b', 'a%20b'), { scriptName: '', pathInfo: '/a b' });
  assert.deepEqual(splitScriptPath('/app/x/y%20z?q=1', 'x/y%20z'), { scriptName: '/app/', pathInfo: 'x/y z' });
  assert.deepEqual(splitScriptPath('/static/file', ''), { scriptName: '/static/file', pathInfo: '' });
  assert.deepEqual(splitScriptPath('/other', 'rewritten'), { scriptName: '/other', pathInfo: 'rewritten' });
  assert.equal(unquoteUrl('a%2'), undefined);
  assert.deepEqual(splitScriptPath('/x/a%zz', 'a%zz'), { scriptName: '/x/', pathInfo: 'a%zz' });
  assert.equal(unquoteUrl('a+b%2Bc'), 'a+b+c');
  assert.throws(() => splitScriptPath('/x/a%00b', 'a%00b'), AshdProtocolError);
});

test('HTTP_* names: alphanumerics upper-cased, anything else _', () => {
  assert.equal(httpVariableName('x-weird.hdr'), 'HTTP_X_WEIRD_HDR');
  assert.equal(httpVariableName('Content-Type'), 'HTTP_CONTENT_TYPE');
});

test('CGI variables in ashd order with ashd values', () => {
  const req = decodeAshdRequest(
    encodeAshdRequest({
      method: 'POST',
      url: '/app/x/y%20z?q=1',
      version: 'HTTP/1.1',
      rest: 'x/y%20z',
      headers: [
        ['Host', 'example.com:8080'],
        ['Content-Type', 'text/plain'],
        ['Content-Length', '5'],
        ['X-Ash-Address', '192.0.2.1'],
        ['X-Ash-Port', '5555'],
        ['X-Ash-Server-Address', '192.0.2.9'],
        ['X-Ash-Server-Port', '8080'],
        ['X-Ash-Protocol', 'https'],
        ['X-Ash-Remote-User', 'alice'],
        ['X-Ash-File', 'rel/script.py'],
        ['Cookie', 'a=1'],
        ['Accept', 'text/html'],
        ['cookie', 'b=2'],
        ['accept', 'text/plain'],
        ['Proxy', 'http://evil'],
      ],
    }),
  );
  const params = ashdCgiParams(req, { protocol: 'scgi', serverSoftware: 'gatehouse/1', contentLength: 5, cwd: '/srv/www/' });
  assert.deepEqual(params, [
    ['SERVER_SOFTWARE', 'gatehouse/1'],
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SCGI', '1'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['REQUEST_METHOD', 'POST'],
    ['REQUEST_URI', '/app/x/y%20z?q=1'],
    ['PATH_INFO', 'x/y z'],
    ['SCRIPT_NAME', '/app/'],
    ['QUERY_STRING', 'q=1'],
    ['SERVER_NAME', 'example.com:8080'],
    ['SERVER_ADDR', '192.0.2.9'],
    ['SERVER_PORT', '8080'],
    ['REMOTE_USER', 'alice'],
    ['HTTPS', 'on'],
    ['REMOTE_ADDR', '192.0.2.1'],
    ['REMOTE_PORT', '5555'],
    ['CONTENT_TYPE', 'text/plain'],
    ['CONTENT_LENGTH', '5'],
    ['SCRIPT_FILENAME', '/srv/www/rel/script.py'],
    ['HTTP_HOST', 'example.com:8080'],
    ['HTTP_CONTENT_TYPE', 'text/plain'],
    ['HTTP_CONTENT_LENGTH', '5'],
    ['HTTP_X_ASH_ADDRESS', '192.0.2.1'],
    ['HTTP_X_ASH_PORT', '5555'],
    ['HTTP_X_ASH_SERVER_ADDRESS', '192.0.2.9'],
    ['HTTP_X_ASH_SERVER_PORT', '8080'],
    ['HTTP_X_ASH_PROTOCOL', 'https'],
    ['HTTP_X_ASH_REMOTE_USER', 'alice'],
    ['HTTP_X_ASH_FILE', 'rel/script.py'],
    // Repeated headers are joined (both protocols' peers reject duplicate names); Proxy is dropped (httpoxy).
    ['HTTP_COOKIE', 'a=1; b=2'],
    ['HTTP_ACCEPT', 'text/html, text/plain'],
  ]);
});

test('minimal request: no optional variables, CONTENT_LENGTH 0, no SCGI for FastCGI', () => {
  const req = decodeAshdRequest(bytes('GET\0/\0HTTP/1.0\0\0\0'));
  const params = ashdCgiParams(req, { protocol: 'fastcgi', serverSoftware: 's', contentLength: 0, cwd: '/' });
  assert.deepEqual(
    params.map(([n]) => n),
    ['SERVER_SOFTWARE', 'GATEWAY_INTERFACE', 'SERVER_PROTOCOL', 'REQUEST_METHOD', 'REQUEST_URI', 'PATH_INFO', 'SCRIPT_NAME', 'QUERY_STRING', 'CONTENT_LENGTH'],
  );
  assert.deepEqual(Object.fromEntries(params).PATH_INFO, '/');
  assert.deepEqual(Object.fromEntries(params).SCRIPT_NAME, '');
  const plain = ashdCgiParams(decodeAshdRequest(bytes('GET\0/\0HTTP/1.1\0\0X-Ash-Protocol\0http\0\0')), {
    protocol: 'scgi',
    serverSoftware: 's',
    contentLength: 0,
    cwd: '/',
  });
  assert.equal(Object.fromEntries(plain).HTTPS, undefined);
});

test('response head: status line, headers, CRLF blank line; CR/LF in a header is dropped', () => {
  const head = formatResponseHead(201, 'Made It', [
    ['Content-Type', 'text/plain'],
    ['X-Foo', 'bar'],
    ['X-Evil', 'a\r\nSet-Cookie: x'],
  ]);
  assert.equal(head.toString('latin1'), 'HTTP/1.1 201 Made It\r\nContent-Type: text/plain\r\nX-Foo: bar\r\n\r\n');
  const err = formatErrorResponse(503, 'The application is not available.', [['Retry-After', '1']]).toString();
  assert.match(err, /^HTTP\/1\.1 503 Service Unavailable\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Length: 34\r\nRetry-After: 1\r\n\r\nThe application is not available\.\n$/);
});
