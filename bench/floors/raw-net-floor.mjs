// Floor 2: a raw net server with a naive HTTP/1.1 parser (GET without a body,
// no pipelining checks, no limits: unsafe by design) + the minimal FastCGI
// pool. What node:http itself costs is the difference from floor 1.
// Usage: node raw-net-floor.mjs PHP_SOCK PORT ROOT
import net from 'node:net';
import { existsSync, lstatSync } from 'node:fs';
import { fastcgiPool, splitCgi } from './fastcgi-floor.mjs';

const [sock, port, root] = process.argv.slice(2);
const send = fastcgiPool(sock, 4);
net
  .createServer((s) => {
    let pending = '';
    s.on('error', () => {});
    s.on('data', (d) => {
      pending += d.latin1Slice();
      let end;
      while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
        const lines = pending.slice(0, end).split('\r\n');
        pending = pending.slice(end + 4);
        const [method, url] = lines[0].split(' ');
        const q = url.indexOf('?'), path = q < 0 ? url : url.slice(0, q);
        existsSync(root + path); lstatSync(root + '/index.php');
        const params = [['GATEWAY_INTERFACE', 'CGI/1.1'], ['QUERY_STRING', q < 0 ? '' : url.slice(q + 1)], ['REQUEST_METHOD', method], ['SCRIPT_FILENAME', root + '/index.php'], ['SCRIPT_NAME', '/index.php'], ['REQUEST_URI', url], ['DOCUMENT_ROOT', root], ['SERVER_PROTOCOL', 'HTTP/1.1'], ['REMOTE_ADDR', s.remoteAddress], ['REMOTE_PORT', String(s.remotePort)], ['SERVER_PORT', port], ['SERVER_NAME', 'localhost'], ['REDIRECT_STATUS', '200']];
        for (let i = 1; i < lines.length; i++) { const c = lines[i].indexOf(':'); params.push(['HTTP_' + lines[i].slice(0, c).toUpperCase().replaceAll('-', '_'), lines[i].slice(c + 1).trim()]); }
        send(params, (raw) => {
          const { status, headers, body } = splitCgi(raw);
          let head = `HTTP/1.1 ${status}\r\n`;
          for (const [k, v] of headers) head += `${k}: ${v}\r\n`;
          s.write(`${head}Content-Length: ${body.length}\r\nDate: ${new Date().toUTCString()}\r\n\r\n${body.latin1Slice()}`, 'latin1');
        });
      }
    });
  })
  .listen(Number(port), '127.0.0.1');
