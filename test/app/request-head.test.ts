/**
 * CGI params → the request line, headers and addresses IncomingMessage gets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ParamList } from '../../src/fastcgi/contract.js';
import { readRequestHead } from '../../src/app/request-head.js';

test('nginx-style params: REQUEST_URI wins, HTTP_* become headers, addresses parsed', () => {
  const params: ParamList = [
    ['QUERY_STRING', 'a=1'],
    ['REQUEST_METHOD', 'POST'],
    ['CONTENT_TYPE', 'application/json'],
    ['CONTENT_LENGTH', '12'],
    ['SCRIPT_NAME', '/app'],
    ['REQUEST_URI', '/app/x%20y?a=1'],
    ['SERVER_PROTOCOL', 'HTTP/1.0'],
    ['REMOTE_ADDR', '::1'],
    ['REMOTE_PORT', '50123'],
    ['SERVER_ADDR', '127.0.0.1'],
    ['SERVER_PORT', '8080'],
    ['HTTPS', 'on'],
    ['HTTP_HOST', 'example.org'],
    ['HTTP_X_FORWARDED_FOR', '10.0.0.1'],
    ['HTTP_CONTENT_TYPE', 'ignored/dup'],
  ];
  const h = readRequestHead(params);
  assert.equal(h.method, 'POST');
  assert.equal(h.url, '/app/x%20y?a=1');
  assert.deepEqual([h.httpVersionMajor, h.httpVersionMinor], [1, 0]);
  assert.deepEqual(h.rawHeaders, ['host', 'example.org', 'x-forwarded-for', '10.0.0.1', 'content-type', 'application/json', 'content-length', '12']);
  assert.equal(h.remoteAddress, '::1');
  assert.equal(h.remotePort, 50123);
  assert.equal(h.localAddress, '127.0.0.1');
  assert.equal(h.localPort, 8080);
  assert.equal(h.encrypted, true);
});

test('without REQUEST_URI the url is SCRIPT_NAME + PATH_INFO + ?QUERY_STRING', () => {
  const h = readRequestHead([
    ['SCRIPT_NAME', '/cgi/app'],
    ['PATH_INFO', '/users/7'],
    ['QUERY_STRING', 'x=y'],
  ]);
  assert.equal(h.url, '/cgi/app/users/7?x=y');
  assert.equal(h.method, 'GET');
  assert.deepEqual([h.httpVersionMajor, h.httpVersionMinor], [1, 1]);
  assert.equal(readRequestHead([]).url, '/');
  assert.equal(readRequestHead([['SCRIPT_NAME', '/s']]).url, '/s');
});

test('empty CONTENT_TYPE/CONTENT_LENGTH (nginx on GET) give no header; HTTP/2.0 and HTTP/3 parse', () => {
  const h = readRequestHead([
    ['CONTENT_TYPE', ''],
    ['CONTENT_LENGTH', ''],
    ['SERVER_PROTOCOL', 'HTTP/2.0'],
    ['HTTPS', ''],
  ]);
  assert.deepEqual(h.rawHeaders, []);
  assert.deepEqual([h.httpVersionMajor, h.httpVersionMinor], [2, 0]);
  assert.equal(h.encrypted, false);
  const h3 = readRequestHead([['SERVER_PROTOCOL', 'HTTP/3']]);
  assert.deepEqual([h3.httpVersionMajor, h3.httpVersionMinor], [3, 0]);
});
