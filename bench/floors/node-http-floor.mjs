// Floor 1: node:http + the minimal FastCGI pool. Usage: node node-http-floor.mjs PHP_SOCK PORT ROOT
import http from 'node:http';
import { existsSync, lstatSync } from 'node:fs';
import { fastcgiPool, splitCgi } from './fastcgi-floor.mjs';

const [sock, port, root] = process.argv.slice(2);
const send = fastcgiPool(sock, 4);
http
  .createServer((req, res) => {
    const url = req.url, q = url.indexOf('?'), path = q < 0 ? url : url.slice(0, q);
    existsSync(root + path); lstatSync(root + '/index.php');
    const params = [['GATEWAY_INTERFACE', 'CGI/1.1'], ['QUERY_STRING', q < 0 ? '' : url.slice(q + 1)], ['REQUEST_METHOD', req.method], ['SCRIPT_FILENAME', root + '/index.php'], ['SCRIPT_NAME', '/index.php'], ['REQUEST_URI', url], ['DOCUMENT_ROOT', root], ['SERVER_PROTOCOL', 'HTTP/1.1'], ['REMOTE_ADDR', req.socket.remoteAddress], ['REMOTE_PORT', String(req.socket.remotePort)], ['SERVER_PORT', port], ['SERVER_NAME', 'localhost'], ['REDIRECT_STATUS', '200']];
    for (let i = 0; i < req.rawHeaders.length; i += 2) params.push(['HTTP_' + req.rawHeaders[i].toUpperCase().replaceAll('-', '_'), req.rawHeaders[i + 1]]);
    send(params, (raw) => {
      const { status, headers, body } = splitCgi(raw);
      res.writeHead(parseInt(status, 10), headers.flat());
      res.end(body);
    });
  })
  .listen(Number(port), '127.0.0.1');
