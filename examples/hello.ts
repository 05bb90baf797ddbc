/**
 * A tiny gatehouse app: a plain node:http handler served over FastCGI
 * (default) or SCGI, listening where the environment says.
 *
 *   node dist/examples/hello.js                       # fd 0 or LISTEN_FDS (under a manager / systemd)
 *   node dist/examples/hello.js --listen /tmp/hello.sock
 *   node dist/examples/hello.js --listen 127.0.0.1:9000 --scgi
 *
 * Routes: /            "Hello from gatehouse (pid N)"
 *         /echo        streams the request body back (POST/PUT)
 *         /slow?ms=N   answers after N milliseconds (for graceful-exit demos)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { serve } from '../src/app/index.js';

function hello(req: IncomingMessage, res: ServerResponse): void {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  switch (q < 0 ? target : target.slice(0, q)) {
    case '/echo':
      res.setHeader('Content-Type', req.headers['content-type'] ?? 'application/octet-stream');
      req.pipe(res);
      return;
    case '/slow': {
      const ms = Math.min(Number(new URLSearchParams(q < 0 ? '' : target.slice(q + 1)).get('ms') ?? '1000') || 0, 600_000);
      const timer = setTimeout(() => {
        res.setHeader('Content-Type', 'text/plain');
        res.end(`slept ${ms} ms (pid ${process.pid})\n`);
      }, ms);
      res.once('close', () => clearTimeout(timer));
      return;
    }
    default:
      res.setHeader('Content-Type', 'text/plain');
      res.end(`Hello from gatehouse (pid ${process.pid})\n`);
  }
}

const { values } = parseArgs({
  options: {
    listen: { type: 'string', short: 'l' },
    scgi: { type: 'boolean', default: false },
  },
});

try {
  const { source } = await serve(hello, {
    protocol: values.scgi ? 'scgi' : 'fastcgi',
    ...(values.listen !== undefined && { address: values.listen }),
  });
  const where = source.kind === 'address' ? JSON.stringify(source.options) : source.kind === 'systemd' ? `fd ${source.fd} (LISTEN_FDS)` : 'fd 0';
  process.stderr.write(`hello: pid ${process.pid} serving ${values.scgi ? 'SCGI' : 'FastCGI'} on ${where}\n`);
} catch (err) {
  process.stderr.write(`hello: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
