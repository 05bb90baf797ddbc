/**
 * The same small app written four ways (plain node:http handler, Express,
 * Fastify, Koa), each mounted under /<name>/, each served unmodified by a
 * gatehouse server. Routes:
 *   GET  /<name>/query?x=&y=   JSON {x, y, method, ua, host, ip, doc} (doc: CGI DOCUMENT_URI via cgiParams)
 *   GET  /<name>/headers       X-App, X-Echo (← X-Custom), Set-Cookie; HEAD too
 *   POST /<name>/echo          the body back with its Content-Type, read whole first the
 *                              framework's way (nginx stops sending a request body once the
 *                              response head has gone to the client, so a streaming echo
 *                              of a large body deadlocks behind nginx, as with node:http)
 *   POST /<name>/pipe          streams the body straight back (req.pipe(res) or equivalent)
 *   GET  /<name>/status/:code  that status
 *   GET  /<name>/redirect      302 → /<name>/target
 *   GET  /<name>/stream        "one\ntwo\nthree\n" written in three pieces over time
 *   GET  /<name>/throw         the handler throws
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { cgiParams, createServer, type Protocol, type Server } from '../../src/app/index.js';

export const APP_NAMES = ['plain', 'express', 'fastify', 'koa'] as const;
export type AppName = (typeof APP_NAMES)[number];

const PIECES = ['one\n', 'two\n', 'three\n'];

function pieces(): Readable {
  return Readable.from(
    (async function* () {
      for (const p of PIECES) {
        await new Promise((r) => setTimeout(r, 15));
        yield Buffer.from(p);
      }
    })(),
  );
}

function plain(protocol: Protocol): Server {
  return createServer(
    (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const path = url.pathname.replace(/^\/plain/, '');
      if (path === '/query') {
        res.setHeader('Content-Type', 'application/json');
        return res.end(
          JSON.stringify({
            x: url.searchParams.get('x'),
            y: url.searchParams.get('y'),
            method: req.method,
            ua: req.headers['user-agent'],
            host: req.headers.host,
            ip: req.socket.remoteAddress,
            doc: cgiParams(req).DOCUMENT_URI,
          }),
        );
      }
      if (path === '/headers') {
        res.setHeader('X-App', 'plain');
        res.setHeader('X-Echo', req.headers['x-custom'] ?? '');
        res.setHeader('Set-Cookie', ['k=v; Path=/', 'k2=v2']);
        return res.end('headers\n');
      }
      if (path === '/echo') {
        const chunks: Buffer[] = [];
        req.on('data', (d: Buffer) => chunks.push(d));
        req.on('end', () => {
          res.setHeader('Content-Type', req.headers['content-type'] ?? 'application/octet-stream');
          res.end(Buffer.concat(chunks));
        });
        return;
      }
      if (path === '/pipe') {
        res.setHeader('Content-Type', req.headers['content-type'] ?? 'application/octet-stream');
        return void req.pipe(res);
      }
      const status = /^\/status\/(\d{3})$/.exec(path);
      if (status) {
        res.statusCode = Number(status[1]);
        return res.end(`status ${status[1]}\n`);
      }
      if (path === '/redirect') {
        res.writeHead(302, { Location: '/plain/target' });
        return res.end();
      }
      if (path === '/stream') {
        res.setHeader('Content-Type', 'text/plain');
        return void pieces().pipe(res);
      }
      if (path === '/throw') throw new Error('plain handler failed');
      res.statusCode = 404;
      res.end('not found\n');
    },
    { protocol },
  );
}

function expressApp(protocol: Protocol): Server {
  const app = express();
  const r = express.Router();
  r.get('/query', (req, res) => {
    res.json({ x: req.query.x, y: req.query.y, method: req.method, ua: req.get('user-agent'), host: req.hostname, ip: req.ip, doc: cgiParams(req).DOCUMENT_URI });
  });
  r.get('/headers', (req, res) => {
    res.set('X-App', 'express');
    res.set('X-Echo', req.get('x-custom') ?? '');
    res.cookie('k', 'v');
    res.append('Set-Cookie', 'k2=v2');
    res.send('headers\n');
  });
  r.post('/echo', express.raw({ type: () => true, limit: '10mb' }), (req, res) => {
    res.type(req.get('content-type') ?? 'application/octet-stream');
    res.send(req.body as Buffer);
  });
  r.post('/pipe', (req, res) => {
    res.type(req.get('content-type') ?? 'application/octet-stream');
    req.pipe(res);
  });
  r.get('/status/:code', (req, res) => {
    res.status(Number(req.params.code)).send(`status ${req.params.code}\n`);
  });
  r.get('/redirect', (_req, res) => res.redirect('/express/target'));
  r.get('/stream', (_req, res) => {
    res.type('text/plain');
    pieces().pipe(res);
  });
  r.get('/throw', () => {
    throw new Error('express handler failed');
  });
  app.use('/express', r);
  // Keep Express's error page short (and off stderr).
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).send(`express error: ${err.message}\n`);
  });
  return createServer(app, { protocol });
}

function fastifyApp(protocol: Protocol): Built {
  let server: Server | undefined;
  const app = Fastify({
    bodyLimit: 10 * 1024 * 1024,
    serverFactory: (handler) => {
      server = createServer(handler, { protocol });
      return server as unknown as import('node:http').Server;
    },
  });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // The pipe route's content type keeps the raw stream (Fastify parses before the handler runs).
  app.addContentTypeParser('application/x-cgi', (_req, payload, done) => done(null, payload));
  app.register(
    async (f) => {
      f.get('/query', async (req) => {
        const q = req.query as Record<string, string>;
        return { x: q.x, y: q.y, method: req.method, ua: req.headers['user-agent'], host: req.headers.host, ip: req.ip, doc: cgiParams(req.raw).DOCUMENT_URI };
      });
      f.get('/headers', async (req, reply) => {
        reply.header('X-App', 'fastify');
        reply.header('X-Echo', req.headers['x-custom'] ?? '');
        reply.header('Set-Cookie', ['k=v; Path=/', 'k2=v2']);
        return 'headers\n';
      });
      f.post('/echo', async (req, reply) => {
        reply.type(req.headers['content-type'] ?? 'application/octet-stream');
        return reply.send(req.body as Buffer);
      });
      f.post('/pipe', async (req, reply) => {
        reply.type(req.headers['content-type'] ?? 'application/octet-stream');
        return reply.send(req.body as Readable);
      });
      f.get('/status/:code', async (req, reply) => {
        const code = (req.params as { code: string }).code;
        reply.code(Number(code));
        return `status ${code}\n`;
      });
      f.get('/redirect', async (_req, reply) => reply.redirect('/fastify/target'));
      f.get('/stream', async (_req, reply) => {
        reply.type('text/plain');
        return reply.send(pieces());
      });
      f.get('/throw', async () => {
        throw new Error('fastify handler failed');
      });
    },
    { prefix: '/fastify' },
  );
  if (!server) throw new Error('fastify did not call serverFactory');
  return {
    server,
    // Fastify's own listen(), which drives our server through its listen()/address()/'listening'.
    listen: async (path) => {
      await app.listen({ path });
    },
    close: () => app.close(),
  };
}

function koaApp(protocol: Protocol): Server {
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx) => {
    const path = ctx.path.replace(/^\/koa/, '');
    if (path === '/query') {
      ctx.body = { x: ctx.query.x, y: ctx.query.y, method: ctx.method, ua: ctx.get('user-agent'), host: ctx.host, ip: ctx.ip, doc: cgiParams(ctx.req).DOCUMENT_URI };
    } else if (path === '/headers') {
      ctx.set('X-App', 'koa');
      ctx.set('X-Echo', ctx.get('x-custom'));
      ctx.append('Set-Cookie', 'k=v; Path=/');
      ctx.append('Set-Cookie', 'k2=v2');
      ctx.body = 'headers\n';
    } else if (path === '/echo' && ctx.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const d of ctx.req) chunks.push(d as Buffer);
      ctx.type = ctx.get('content-type') || 'application/octet-stream';
      ctx.body = Buffer.concat(chunks);
    } else if (path === '/pipe' && ctx.method === 'POST') {
      ctx.type = ctx.get('content-type') || 'application/octet-stream';
      ctx.body = ctx.req;
    } else if (/^\/status\/\d{3}$/.test(path)) {
      ctx.status = Number(path.slice(8));
      ctx.body = `status ${path.slice(8)}\n`;
    } else if (path === '/redirect') {
      ctx.redirect('/koa/target');
    } else if (path === '/stream') {
      ctx.type = 'text/plain';
      ctx.body = pieces();
    } else if (path === '/throw') {
      throw new Error('koa handler failed');
    }
  });
  // The other way frameworks attach: a handler-less server and a 'request' listener.
  const server = createServer(undefined, { protocol });
  server.on('request', app.callback());
  return server;
}

export interface Built {
  server: Server;
  listen(path: string): Promise<void>;
  close(): Promise<void>;
}

function wrap(server: Server): Built {
  return {
    server,
    listen: (path) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Builds one app as a gatehouse server; listen() it on a unix socket path. */
export function buildApp(name: AppName, protocol: Protocol): Built {
  switch (name) {
    case 'plain':
      return wrap(plain(protocol));
    case 'express':
      return wrap(expressApp(protocol));
    case 'fastify':
      return fastifyApp(protocol);
    case 'koa':
      return wrap(koaApp(protocol));
  }
}
