// Byte-table tests for the HTTP/1.1 request parser: every input is written out
// as literal bytes (after Go's net/http readRequest tests and the published
// request-smuggling cases), each run in one chunk and byte by byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestParser, MAX_LEADING_EMPTY_LINES, type RequestHead } from '../../src/http1/request-parser.js';
import { Http1ParseError, HTTP1_ERROR_STATUS, type Http1ParseErrorCode } from '../../src/http1/errors.js';
import { bytewise, head, one, run, type Ev } from './harness.js';

type Case = [name: string, input: string, expect: Ev[] | Http1ParseErrorCode, options?: ConstructorParameters<typeof RequestParser>[1]];

/** Runs a case in one chunk and byte by byte; both must give the expected outcome. */
function check([name, input, expect, options]: Case): void {
  for (const [how, chunks] of [['one chunk', one(input)], ['byte by byte', bytewise(input)]] as const) {
    const out = run(chunks, options);
    if (typeof expect === 'string') {
      assert.equal(out.error, expect, `${name} (${how}): ${JSON.stringify(out)}`);
      assert.equal(out.status, HTTP1_ERROR_STATUS[expect]);
    } else {
      assert.equal(out.error, null, `${name} (${how}) failed with ${out.error}`);
      assert.deepEqual(out.events, expect, `${name} (${how})`);
    }
  }
}

const H = 'Host: a\r\n';
const get = (target = '/', extra: string[] = []): RequestHead => head({ target, rawHeaders: ['Host', 'a', ...extra] });

test('request lines: methods, targets and versions', () => {
  const cases: Case[] = [
    ['plain GET', `GET / HTTP/1.1\r\n${H}\r\n`, [{ head: get() }, 'end']],
    ['query string, odd method', `PROPFIND /a/b?c=d&e HTTP/1.1\r\n${H}\r\n`, [{ head: { ...get('/a/b?c=d&e'), method: 'PROPFIND' } }, 'end']],
    ['obs-text in the target (nginx takes raw UTF-8)', `GET /caf\xc3\xa9 HTTP/1.1\r\n${H}\r\n`, [{ head: get('/caf\xc3\xa9') }, 'end']],
    ['absolute-form', `GET http://a/b HTTP/1.1\r\n${H}\r\n`, [{ head: get('http://a/b') }, 'end']],
    ['asterisk-form with OPTIONS', `OPTIONS * HTTP/1.1\r\n${H}\r\n`, [{ head: { ...get('*'), method: 'OPTIONS' } }, 'end']],
    ['authority-form with CONNECT', `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`, [{ head: head({ method: 'CONNECT', target: 'example.com:443', rawHeaders: ['Host', 'example.com:443'] }) }, 'end']],
    ['CONNECT to an IPv6 literal', `CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n`, [{ head: head({ method: 'CONNECT', target: '[::1]:8080', rawHeaders: ['Host', '[::1]:8080'] }) }, 'end']],
    ['asterisk-form with GET', `GET * HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['origin-form with CONNECT', `CONNECT /x HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['CONNECT without a port', `CONNECT example.com HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['relative target', `GET foo HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['two spaces after the method', `GET  / HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['space inside the target', `GET /a b HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['NUL in the target', `GET /a\x00b HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['DEL in the target', `GET /a\x7f HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['HTAB in the target', `GET /a\tb HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_TARGET'],
    ['method not a token', `G(T / HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_METHOD'],
    ['tab after the method', `GET\t/ HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_METHOD'],
    ['leading space', ` GET / HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_METHOD'],
    ['HTTP/0.9 request line', `GET /\r\n\r\n`, 'ERR_HTTP1_BAD_REQUEST_LINE'],
    ['one word', `hello\r\n\r\n`, 'ERR_HTTP1_BAD_REQUEST_LINE'],
    ['HTTP/2.0 → 505', `GET / HTTP/2.0\r\n${H}\r\n`, 'ERR_HTTP1_UNSUPPORTED_VERSION'],
    ['HTTP/1.2 → 505', `GET / HTTP/1.2\r\n${H}\r\n`, 'ERR_HTTP1_UNSUPPORTED_VERSION'],
    ['HTTP/0.9 version → 505', `GET / HTTP/0.9\r\n${H}\r\n`, 'ERR_HTTP1_UNSUPPORTED_VERSION'],
    ['lowercase version', `GET / http/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_VERSION'],
    ['two-digit minor', `GET / HTTP/1.10\r\n${H}\r\n`, 'ERR_HTTP1_BAD_VERSION'],
    ['version without minor', `GET / HTTP/1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_VERSION'],
    ['trailing space after the version', `GET / HTTP/1.1 \r\n${H}\r\n`, 'ERR_HTTP1_BAD_VERSION'],
    ['garbage version', `GET / FOO\r\n${H}\r\n`, 'ERR_HTTP1_BAD_VERSION'],
  ];
  cases.forEach(check);
});

test('line endings: CRLF only, a few leading empty lines', () => {
  const cases: Case[] = [
    ['leading CRLFs', `\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`, [{ head: get() }, 'end']],
    [`${MAX_LEADING_EMPTY_LINES} leading CRLFs`, `${'\r\n'.repeat(MAX_LEADING_EMPTY_LINES)}GET / HTTP/1.1\r\n${H}\r\n`, [{ head: get() }, 'end']],
    [`${MAX_LEADING_EMPTY_LINES + 1} leading CRLFs`, `${'\r\n'.repeat(MAX_LEADING_EMPTY_LINES + 1)}GET / HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BAD_REQUEST_LINE'],
    ['leading bare LF', `\nGET / HTTP/1.1\r\n${H}\r\n`, 'ERR_HTTP1_BARE_LF'],
    ['bare LF after the request line', `GET / HTTP/1.1\n${H}\r\n`, 'ERR_HTTP1_BARE_LF'],
    ['bare LF after a field', `GET / HTTP/1.1\r\nHost: a\n\r\n`, 'ERR_HTTP1_BARE_LF'],
    ['bare LF as the empty line', `GET / HTTP/1.1\r\n${H}\n`, 'ERR_HTTP1_BARE_LF'],
    ['all bare LFs', `GET / HTTP/1.1\nHost: a\n\n`, 'ERR_HTTP1_BARE_LF'],
    ['bare CR in a value', `GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_VALUE'],
    ['bare CR ending the request line', `GET / HTTP/1.1\rHost: a\r\n\r\n`, 'ERR_HTTP1_BAD_VERSION'],
  ];
  cases.forEach(check);
});

test('field lines: names, values, obs-fold', () => {
  const cases: Case[] = [
    [
      'OWS trimmed, empty value, obs-text kept, names as received',
      `GET / HTTP/1.1\r\nhOsT:a\r\nX-Empty:\r\nX-Tabs: \t v \t \r\nX-Latin: caf\xe9\r\nX-Inner: a  b\tc\r\n\r\n`,
      [{ head: head({ rawHeaders: ['hOsT', 'a', 'X-Empty', '', 'X-Tabs', 'v', 'X-Latin', 'caf\xe9', 'X-Inner', 'a  b\tc'] }) }, 'end'],
    ],
    ['space before the colon (RFC 9112 §5.1)', `GET / HTTP/1.1\r\nHost : a\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_NAME'],
    ['tab before the colon', `GET / HTTP/1.1\r\n${H}X\t: a\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_NAME'],
    ['no colon', `GET / HTTP/1.1\r\n${H}X-No-Colon\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_NAME'],
    ['empty name', `GET / HTTP/1.1\r\n${H}: a\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_NAME'],
    ['0x7F in a name', `GET / HTTP/1.1\r\n${H}X\x7fY: a\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_NAME'],
    ['obs-text in a name', `GET / HTTP/1.1\r\n${H}X\xe9: a\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_NAME'],
    ['NUL in a value', `GET / HTTP/1.1\r\n${H}X: a\x00b\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_VALUE'],
    ['0x7F in a value', `GET / HTTP/1.1\r\n${H}X: a\x7f\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_VALUE'],
    ['vertical tab in a value', `GET / HTTP/1.1\r\n${H}X: a\x0bb\r\n\r\n`, 'ERR_HTTP1_BAD_HEADER_VALUE'],
    ['obs-fold', `GET / HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`, 'ERR_HTTP1_OBS_FOLD'],
    ['obs-fold with a tab', `GET / HTTP/1.1\r\n${H}X: a\r\n\tb\r\n\r\n`, 'ERR_HTTP1_OBS_FOLD'],
    ['whitespace after the start line (RFC 9112 §2.2)', `GET / HTTP/1.1\r\n ${H}\r\n`, 'ERR_HTTP1_OBS_FOLD'],
    ['HTTP/1.1 without Host', `GET / HTTP/1.1\r\nX: a\r\n\r\n`, 'ERR_HTTP1_BAD_HOST'],
    ['two Host fields', `GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n`, 'ERR_HTTP1_BAD_HOST'],
    ['two Host fields in HTTP/1.0', `GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n`, 'ERR_HTTP1_BAD_HOST'],
    ['HTTP/1.0 without Host', `GET / HTTP/1.0\r\n\r\n`, [{ head: head({ versionMinor: 0, keepAlive: false, rawHeaders: [] }) }, 'end']],
    ['HTTP/1.1 without Host, requireHost: false', `GET / HTTP/1.1\r\n\r\n`, [{ head: head({ rawHeaders: [] }) }, 'end'], { requireHost: false }],
    ['3 fields, maxHeaders 3', `GET / HTTP/1.1\r\n${H}A: 1\r\nB: 2\r\n\r\n`, [{ head: get('/', ['A', '1', 'B', '2']) }, 'end'], { maxHeaders: 3 }],
    [
      'a 3 KiB head (lines across the 1 KiB decode blocks), then a pipelined request',
      `GET / HTTP/1.1\r\n${H}${Array.from({ length: 40 }, (_, k) => `X-Field-${k}: ${'v'.repeat(k * 3)}\r\n`).join('')}\r\nGET /2 HTTP/1.1\r\n${H}\r\n`,
      [{ head: get('/', Array.from({ length: 40 }, (_, k) => [`X-Field-${k}`, 'v'.repeat(k * 3)]).flat()) }, 'end', { head: get('/2') }, 'end'],
    ],
    ['4 fields, maxHeaders 3', `GET / HTTP/1.1\r\n${H}A: 1\r\nB: 2\r\nC: 3\r\n\r\n`, 'ERR_HTTP1_TOO_MANY_HEADERS', { maxHeaders: 3 }],
  ];
  cases.forEach(check);
});

test('connection management: keep-alive defaults, Expect, Upgrade', () => {
  const h10 = (raw: string[], keepAlive: boolean): Ev[] => [{ head: head({ versionMinor: 0, keepAlive, rawHeaders: raw }) }, 'end'];
  const h11 = (raw: string[], over: Partial<RequestHead> = {}): Ev[] => [{ head: head({ rawHeaders: ['Host', 'a', ...raw], ...over }) }, 'end'];
  const cases: Case[] = [
    ['1.0 defaults to close', `GET / HTTP/1.0\r\n\r\n`, h10([], false)],
    ['1.0 with keep-alive', `GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n`, h10(['Connection', 'Keep-Alive'], true)],
    ['1.0 with keep-alive and close', `GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n`, h10(['Connection', 'keep-alive, close'], false)],
    ['1.0 with keep-alive in a second field', `GET / HTTP/1.0\r\nConnection: foo\r\nConnection: keep-alive\r\n\r\n`, h10(['Connection', 'foo', 'Connection', 'keep-alive'], true)],
    ['1.1 defaults to keep-alive', `GET / HTTP/1.1\r\n${H}\r\n`, h11([])],
    ['1.1 with close', `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, h11(['Connection', 'close'], { keepAlive: false })],
    ['1.1 with CLOSE in a list', `GET / HTTP/1.1\r\n${H}Connection: TE,\tCLOSE \r\n\r\n`, h11(['Connection', 'TE,\tCLOSE'], { keepAlive: false })],
    ['close is a whole token', `GET / HTTP/1.1\r\n${H}Connection: closed\r\n\r\n`, h11(['Connection', 'closed'])],
    ['Expect: 100-continue', `GET / HTTP/1.1\r\n${H}Expect: 100-Continue\r\n\r\n`, h11(['Expect', '100-Continue'], { expectContinue: true })],
    ['Expect in HTTP/1.0 is ignored', `GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n`, h10(['Expect', '100-continue'], false)],
    ['other expectations are not 100-continue', `GET / HTTP/1.1\r\n${H}Expect: 200-ok\r\n\r\n`, h11(['Expect', '200-ok'])],
    ['Upgrade with Connection: upgrade', `GET / HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, h11(['Connection', 'Upgrade', 'Upgrade', 'websocket'], { upgrade: true })],
    ['Upgrade without Connection: upgrade', `GET / HTTP/1.1\r\n${H}Upgrade: websocket\r\n\r\n`, h11(['Upgrade', 'websocket'])],
    ['Connection: upgrade without Upgrade', `GET / HTTP/1.1\r\n${H}Connection: keep-alive, upgrade\r\n\r\n`, h11(['Connection', 'keep-alive, upgrade'])],
  ];
  cases.forEach(check);
});

test('Content-Length framing', () => {
  const post = (cl: string[], body: string, ok: Ev[] | Http1ParseErrorCode): Case => [
    `Content-Length ${cl.join(' / ')}`,
    `POST / HTTP/1.1\r\n${H}${cl.map((v) => `Content-Length: ${v}\r\n`).join('')}\r\n${body}`,
    ok,
  ];
  const withCl = (cl: string[], n: number | undefined, body: string): Ev[] => [
    { head: head({ method: 'POST', contentLength: n, rawHeaders: ['Host', 'a', ...cl.flatMap((v) => ['Content-Length', v])] }) },
    ...(body ? [{ body }] : []),
    'end',
  ];
  const cases: Case[] = [
    post(['5'], 'hello', withCl(['5'], 5, 'hello')),
    post(['0'], '', withCl(['0'], 0, '')),
    post(['005'], 'hello', withCl(['005'], 5, 'hello')),
    post(['5', '5'], 'hello', withCl(['5', '5'], 5, 'hello')),
    post(['5, 5'], 'hello', withCl(['5, 5'], 5, 'hello')),
    post(['5', '6'], 'hello!', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['5, 6'], 'hello!', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['5', '05'], 'hello', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post([''], '', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['+5'], 'hello', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['-1'], '', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['0x5'], 'hello', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['5 5'], 'hello', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['5,'], 'hello', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['1e3'], '', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['9007199254740992'], '', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    post(['99999999999999999999'], '', 'ERR_HTTP1_BAD_CONTENT_LENGTH'),
    [
      'largest Content-Length (body streamed, not awaited)',
      `POST / HTTP/1.1\r\n${H}Content-Length: 9007199254740991\r\n\r\nab`,
      [{ head: head({ method: 'POST', contentLength: 9007199254740991, rawHeaders: ['Host', 'a', 'Content-Length', '9007199254740991'] }) }, { body: 'ab' }],
    ],
    [
      'Go readRequest: body of 7 then the start of the next request',
      'GET http://www.techcrunch.com/ HTTP/1.1\r\nHost: www.techcrunch.com\r\nUser-Agent: Fake\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n' +
        'Accept-Language: en-us,en;q=0.5\r\nAccept-Encoding: gzip,deflate\r\nAccept-Charset: ISO-8859-1,utf-8;q=0.7,*;q=0.7\r\nKeep-Alive: 300\r\n' +
        'Content-Length: 7\r\nProxy-Connection: keep-alive\r\n\r\nabcdef\n???',
      [
        {
          head: head({
            target: 'http://www.techcrunch.com/',
            contentLength: 7,
            rawHeaders: [
              'Host', 'www.techcrunch.com', 'User-Agent', 'Fake', 'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
              'Accept-Language', 'en-us,en;q=0.5', 'Accept-Encoding', 'gzip,deflate', 'Accept-Charset', 'ISO-8859-1,utf-8;q=0.7,*;q=0.7',
              'Keep-Alive', '300', 'Content-Length', '7', 'Proxy-Connection', 'keep-alive',
            ],
          }),
        },
        { body: 'abcdef\n' },
        'end',
      ],
    ],
  ];
  cases.forEach(check);
});

test('Transfer-Encoding framing and the smuggling cases', () => {
  const te = (name: string, fields: string, body: string, expect: Ev[] | Http1ParseErrorCode, version = '1.1'): Case => [
    name,
    `POST / HTTP/${version}\r\n${H}${fields}\r\n${body}`,
    expect,
  ];
  const chunkedOk = (raw: string[]): Ev[] => [{ head: head({ method: 'POST', chunked: true, rawHeaders: ['Host', 'a', ...raw] }) }, { body: 'hello' }, 'end'];
  const body = '5\r\nhello\r\n0\r\n\r\n';
  const cases: Case[] = [
    te('chunked', 'Transfer-Encoding: chunked\r\n', body, chunkedOk(['Transfer-Encoding', 'chunked'])),
    te('Chunked, any case', 'Transfer-Encoding: ChUnKeD\r\n', body, chunkedOk(['Transfer-Encoding', 'ChUnKeD'])),
    te('CL then TE', 'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n', body, 'ERR_HTTP1_CONFLICTING_FRAMING'),
    te('TE then CL', 'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n', body, 'ERR_HTTP1_CONFLICTING_FRAMING'),
    te('TE: xchunked with CL', 'Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n', body, 'ERR_HTTP1_CONFLICTING_FRAMING'),
    te('TE: xchunked', 'Transfer-Encoding: xchunked\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: chunked, identity', 'Transfer-Encoding: chunked, identity\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: identity', 'Transfer-Encoding: identity\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: gzip', 'Transfer-Encoding: gzip\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: chunked, gzip', 'Transfer-Encoding: chunked, gzip\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: chunked, chunked', 'Transfer-Encoding: chunked, chunked\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: chunked twice in two fields', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: chunked;x=1', 'Transfer-Encoding: chunked;x=1\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: empty', 'Transfer-Encoding: \r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: "chunked" quoted', 'Transfer-Encoding: "chunked"\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING'),
    te('TE: gzip, chunked → 501', 'Transfer-Encoding: gzip, chunked\r\n', body, 'ERR_HTTP1_UNSUPPORTED_TRANSFER_CODING'),
    te('TE: gzip then chunked in two fields → 501', 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n', body, 'ERR_HTTP1_UNSUPPORTED_TRANSFER_CODING'),
    te('TE in HTTP/1.0', 'Transfer-Encoding: chunked\r\n', body, 'ERR_HTTP1_BAD_TRANSFER_ENCODING', '1.0'),
    te('TE with a space before the colon', 'Transfer-Encoding : chunked\r\n', body, 'ERR_HTTP1_BAD_HEADER_NAME'),
    te('TE folded', 'Transfer-Encoding:\r\n chunked\r\n', body, 'ERR_HTTP1_OBS_FOLD'),
    te('TE with a vertical tab', 'Transfer-Encoding:\x0bchunked\r\n', body, 'ERR_HTTP1_BAD_HEADER_VALUE'),
    te('empty list elements are ignored', 'Transfer-Encoding: , chunked,\r\n', body, chunkedOk(['Transfer-Encoding', ', chunked,'])),
  ];
  cases.forEach(check);
});

test('chunked bodies: sizes, extensions, CRLFs, trailers', () => {
  const c = (name: string, chunks: string, expect: Ev[] | Http1ParseErrorCode, options?: Case[3]): Case => [
    name,
    `POST /up HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunks}`,
    expect,
    options,
  ];
  const hd = { head: head({ method: 'POST', target: '/up', chunked: true, rawHeaders: ['Host', 'a', 'Transfer-Encoding', 'chunked'] }) };
  const cases: Case[] = [
    c('two chunks', '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n', [hd, { body: 'hello world' }, 'end']),
    c('empty body', '0\r\n\r\n', [hd, 'end']),
    c('hex sizes, both cases, leading zeros', '0A\r\n0123456789\r\na\r\nabcdefghij\r\n000\r\n\r\n', [hd, { body: '0123456789abcdefghij' }, 'end']),
    c(
      'extensions (with BWS before ;) are ignored',
      '5;name=value\r\nhello\r\n1 ; a="q;\\"x" ;b\r\n!\r\n0;last\r\n\r\n',
      [hd, { body: 'hello!' }, 'end'],
    ),
    c('trailers are reported', '5\r\nhello\r\n0\r\nX-Sum: abc \r\nX-Two:2\r\n\r\n', [hd, { body: 'hello' }, { trailers: ['X-Sum', 'abc', 'X-Two', '2'] }, 'end']),
    c('a pipelined GET after the chunked body', `0\r\n\r\nGET /next HTTP/1.1\r\n${H}\r\n`, [hd, 'end', { head: get('/next') }, 'end']),
    c('huge chunk size', 'ffffffffffffffffff\r\n', 'ERR_HTTP1_CHUNK_TOO_LARGE'),
    c('size just above maxChunkSize', '401\r\n', 'ERR_HTTP1_CHUNK_TOO_LARGE', { maxChunkSize: 1024 }),
    c('size at maxChunkSize', `400\r\n${'x'.repeat(1024)}\r\n0\r\n\r\n`, [hd, { body: 'x'.repeat(1024) }, 'end'], { maxChunkSize: 1024 }),
    c('17 hex digits of leading zeros', '00000000000000001\r\nx\r\n0\r\n\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('missing CRLF after chunk data', '5\r\nhelloX\r\n0\r\n\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('bare LF after chunk data', '5\r\nhello\n0\r\n\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('chunk data longer than its size', '3\r\nhello\r\n0\r\n\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('non-hex size', 'g\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('empty size', '\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('negative size', '-1\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('0x prefix', '0x5\r\nhello\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('whitespace after the size without an extension', '5 \r\nhello\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('bare LF after the size', '5\nhello\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('bare CR after the size', '5\rhello\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('bare LF inside an extension', '5;a\nb\r\nhello\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('NUL inside an extension', '5;a\x00\r\nhello\r\n', 'ERR_HTTP1_BAD_CHUNK'),
    c('extension bytes at the bound', '1;abcd\r\nx\r\n1;efgh\r\ny\r\n0\r\n\r\n', [hd, { body: 'xy' }, 'end'], { maxChunkExtensionBytes: 10 }),
    c('extension bytes over the bound (summed over chunks)', '1;abcd\r\nx\r\n1;efghi\r\ny\r\n0\r\n\r\n', 'ERR_HTTP1_CHUNK_EXTENSIONS_TOO_LARGE', { maxChunkExtensionBytes: 10 }),
    c('bad trailer name', '0\r\nX Y: 1\r\n\r\n', 'ERR_HTTP1_BAD_HEADER_NAME'),
    c('folded trailer', '0\r\nX: 1\r\n 2\r\n\r\n', 'ERR_HTTP1_OBS_FOLD'),
    c('bare LF ending the trailers', '0\r\n\n', 'ERR_HTTP1_BARE_LF'),
    c('trailers at maxTrailerBytes', '0\r\nX: 12\r\n\r\n', [hd, { trailers: ['X', '12'] }, 'end'], { maxTrailerBytes: 9 }),
    c('trailers over maxTrailerBytes', '0\r\nX: 123\r\n\r\n', 'ERR_HTTP1_TRAILERS_TOO_LARGE', { maxTrailerBytes: 9 }),
    c('an endless trailer line', `0\r\nX: ${'y'.repeat(100)}`, 'ERR_HTTP1_TRAILERS_TOO_LARGE', { maxTrailerBytes: 50 }),
    c('too many trailer fields', '0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 'ERR_HTTP1_TRAILERS_TOO_LARGE', { maxHeaders: 2 }),
  ];
  cases.forEach(check);
  // Without onTrailers the trailer section is checked, then dropped.
  const out = run(one(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n\r\n`), {}, false);
  assert.equal(out.error, null);
  assert.deepEqual(out.events.slice(1), ['end']);
});

test('pipelined requests in one chunk get their events in order', () => {
  const input =
    `GET /1 HTTP/1.1\r\n${H}\r\n` +
    `POST /2 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc` +
    `GET /3 HTTP/1.1\r\n${H}\r\n` +
    `POST /4 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n` +
    `GET /5 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`;
  check([
    'five pipelined',
    input,
    [
      { head: get('/1') },
      'end',
      { head: head({ method: 'POST', target: '/2', contentLength: 3, rawHeaders: ['Host', 'a', 'Content-Length', '3'] }) },
      { body: 'abc' },
      'end',
      { head: get('/3') },
      'end',
      { head: head({ method: 'POST', target: '/4', chunked: true, rawHeaders: ['Host', 'a', 'Transfer-Encoding', 'chunked'] }) },
      { body: 'xy' },
      'end',
      { head: head({ target: '/5', keepAlive: false, rawHeaders: ['Host', 'a', 'Connection', 'close'] }) },
      'end',
    ],
  ]);
});

test('a POST with a Content-Length body split at every offset', () => {
  const input = Buffer.from(`POST /p HTTP/1.1\r\n${H}Content-Length: 11\r\n\r\nhello world` + `GET / HTTP/1.1\r\n${H}\r\n`, 'latin1');
  const expected: Ev[] = [
    { head: head({ method: 'POST', target: '/p', contentLength: 11, rawHeaders: ['Host', 'a', 'Content-Length', '11'] }) },
    { body: 'hello world' },
    'end',
    { head: get() },
    'end',
  ];
  for (let i = 0; i <= input.length; i++) {
    for (const j of [i, i + 1, i + 7, input.length]) {
      if (j < i || j > input.length) continue;
      const out = run([input.subarray(0, i), input.subarray(i, j), input.subarray(j)].filter((b) => b.length > 0));
      assert.deepEqual(out, { events: expected, error: null }, `split at ${i}, ${j}`);
    }
  }
});

test('maxHeaderBytes counts the request line through the final CRLF: exactly at passes, one over is 431', () => {
  const at = (limit: number, over: number): string => {
    const start = `GET / HTTP/1.1\r\n${H}X: `;
    return start + 'v'.repeat(limit - start.length - 4 + over) + '\r\n\r\n';
  };
  for (const limit of [16384, 200]) {
    const options = limit === 16384 ? {} : { maxHeaderBytes: limit };
    const ok = at(limit, 0);
    assert.equal(Buffer.byteLength(ok, 'latin1'), limit);
    const value = 'v'.repeat(limit - `GET / HTTP/1.1\r\n${H}X: `.length - 4);
    check([`exactly ${limit}`, ok, [{ head: get('/', ['X', value]) }, 'end'], options]);
    check([`exactly ${limit} after leading CRLFs (not counted)`, `\r\n\r\n${ok}`, [{ head: get('/', ['X', value]) }, 'end'], options]);
    check([`${limit} + 1`, at(limit, 1), 'ERR_HTTP1_HEADERS_TOO_LARGE', options]);
    // An endless field line fails once the limit is crossed, without waiting for its end.
    check([`endless line past ${limit}`, `GET / HTTP/1.1\r\nX: ${'v'.repeat(limit)}`, 'ERR_HTTP1_HEADERS_TOO_LARGE', options]);
    check([`endless request line past ${limit}`, `GET /${'v'.repeat(limit)}`, 'ERR_HTTP1_HEADERS_TOO_LARGE', options]);
  }
  const e = run(one(at(16384, 1)));
  assert.equal(e.status, 431);
});

test('an incomplete head waits for more bytes (no event, no error)', () => {
  for (const s of ['G', 'GET / HTTP/1.1', 'GET / HTTP/1.1\r', `GET / HTTP/1.1\r\n${H}`, `GET / HTTP/1.1\r\n${H}\r`, '\r\n']) {
    assert.deepEqual(run(one(s)), { events: [], error: null }, JSON.stringify(s));
  }
});

test('pause() in onEnd holds pipelined requests until resume()', () => {
  const events: string[] = [];
  const p: RequestParser = new RequestParser({
    onHead: (h) => events.push(`head ${h.target}`),
    onBody: (b) => events.push(`body ${b.toString()}`),
    onEnd: () => {
      events.push('end');
      p.pause();
    },
  });
  const second = `POST /2 HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nok`;
  p.push(Buffer.from(`GET /1 HTTP/1.1\r\n${H}\r\n${second}GET /3 HTTP/1.1\r\n`));
  assert.deepEqual(events, ['head /1', 'end']);
  assert.equal(p.paused, true);
  assert.equal(p.idle, false);
  assert.equal(p.bufferedBytes, second.length + 'GET /3 HTTP/1.1\r\n'.length);
  p.push(Buffer.from(`${H}\r\n`)); // queued, not parsed
  assert.deepEqual(events, ['head /1', 'end']);
  p.resume();
  assert.deepEqual(events, ['head /1', 'end', 'head /2', 'body ok', 'end']);
  p.resume();
  assert.deepEqual(events.slice(5), ['head /3', 'end']);
  p.resume();
  assert.equal(p.idle, true);
  assert.equal(p.bufferedBytes, 0);
});

test('pause() in onHead or onBody holds the body and onEnd', () => {
  const events: string[] = [];
  let pauseOn = '';
  const p: RequestParser = new RequestParser({
    onHead: () => {
      events.push('head');
      if (pauseOn === 'head') p.pause();
    },
    onBody: (b) => {
      events.push(`body ${b.toString()}`);
      if (pauseOn === 'body') p.pause();
    },
    onEnd: () => events.push('end'),
  });
  pauseOn = 'head';
  p.push(Buffer.from(`POST / HTTP/1.1\r\n${H}Content-Length: 4\r\n\r\nab`));
  assert.deepEqual(events, ['head']);
  pauseOn = 'body';
  p.resume();
  assert.deepEqual(events, ['head', 'body ab']);
  p.push(Buffer.from('cd'));
  assert.deepEqual(events, ['head', 'body ab']);
  p.resume();
  assert.deepEqual(events, ['head', 'body ab', 'body cd'], 'onEnd waits even though the body is complete');
  p.resume();
  assert.deepEqual(events, ['head', 'body ab', 'body cd', 'end']);
  // Paused on a body-less request: onEnd is owed.
  pauseOn = 'head';
  p.push(Buffer.from(`GET / HTTP/1.1\r\n${H}\r\n`));
  assert.deepEqual(events.slice(4), ['head']);
  assert.equal(p.idle, false);
  pauseOn = '';
  p.resume();
  assert.deepEqual(events.slice(4), ['head', 'end']);
  assert.equal(p.idle, true);
});

test('pause() then resume() inside the same callback keeps going', () => {
  const events: string[] = [];
  const p: RequestParser = new RequestParser({
    onHead: (h) => events.push(h.target),
    onBody: () => {},
    onEnd: () => {
      p.pause();
      p.resume();
    },
  });
  p.push(Buffer.from(`GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\n`));
  assert.deepEqual(events, ['/1', '/2']);
});

test('onBody hands out views of the pushed chunk', () => {
  const input = Buffer.from(`POST / HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`);
  const seen: Buffer[] = [];
  new RequestParser({ onHead: () => {}, onBody: (b) => seen.push(b), onEnd: () => {} }).push(input);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.buffer, input.buffer);
  assert.equal(seen[0]!.byteOffset, input.byteOffset + input.length - 5);
});

test('after an error the parser is dead; a throwing callback kills it too', () => {
  const p = new RequestParser({ onHead: () => {}, onBody: () => {}, onEnd: () => {} });
  let first: unknown;
  assert.throws(() => p.push(Buffer.from('GET / HTTP/1.1\nHost: a\r\n\r\n')), (e: unknown) => {
    first = e;
    return e instanceof Http1ParseError && e.code === 'ERR_HTTP1_BARE_LF' && e.status === 400 && e.message.startsWith('http1: ');
  });
  assert.throws(() => p.push(Buffer.from(`GET / HTTP/1.1\r\n${H}\r\n`)), (e: unknown) => e === first);
  assert.throws(() => p.resume(), (e: unknown) => e === first);
  assert.equal(p.idle, false);

  const boom = new Error('boom');
  const q = new RequestParser({
    onHead: () => {
      throw boom;
    },
    onBody: () => {},
    onEnd: () => {},
  });
  assert.throws(() => q.push(Buffer.from(`GET / HTTP/1.1\r\n${H}\r\n`)), (e: unknown) => e === boom);
  assert.throws(() => q.push(Buffer.from(`GET / HTTP/1.1\r\n${H}\r\n`)), (e: unknown) => e === boom);
  assert.equal(q.error, null, 'error is only set for Http1ParseError');
});

test('options are checked', () => {
  const h = { onHead: () => {}, onBody: () => {}, onEnd: () => {} };
  assert.throws(() => new RequestParser(h, { maxHeaderBytes: 0 }), RangeError);
  assert.throws(() => new RequestParser(h, { maxHeaders: 1.5 }), RangeError);
  assert.throws(() => new RequestParser(h, { maxChunkSize: 2 ** 53 }), RangeError);
  assert.doesNotThrow(() => new RequestParser(h, { maxChunkExtensionBytes: 0 }));
});

test('every code has a status', () => {
  for (const [code, status] of Object.entries(HTTP1_ERROR_STATUS)) {
    assert.ok([400, 413, 431, 501, 505].includes(status), code);
    assert.equal(new Http1ParseError(code as Http1ParseErrorCode, 'x').status, status);
  }
});
