/**
 * @module app/serve
 * The one-liner for a worker: create the server, listen where the
 * environment says (listen-source.ts), and install graceful dispatch
 * (graceful.ts).
 *
 *   import { serve } from 'gatehouse/app';
 *   await serve(app);                       // Express, Koa's app.callback(), a plain handler
 */
import type net from 'node:net';
import { installGracefulShutdown, type GracefulHandle, type GracefulOptions } from './graceful.js';
import { listenFromEnvironment, type ListenSource } from './listen-source.js';
import { createServer, type RequestListener, type Server, type ServerOptions } from './server.js';

export interface ServeOptions extends ServerOptions {
  /** Listen here instead of LISTEN_FDS / fd 0 (`host:port`, `:port`, `/path.sock`, or net.ListenOptions). */
  address?: string | net.ListenOptions;
  /** Graceful-exit options, or false to install no signal handlers. */
  graceful?: GracefulOptions | false;
}

export interface Serving {
  server: Server;
  source: ListenSource;
  graceful: GracefulHandle | null;
}

export async function serve(handler: RequestListener, opts: ServeOptions = {}): Promise<Serving> {
  const { address, graceful, ...serverOptions } = opts;
  const server = createServer(handler, serverOptions);
  // Signals first: a TERM that arrives while we are still binding must not kill us mid-way.
  const handle = graceful === false ? null : installGracefulShutdown(server, graceful ?? {});
  const source = await listenFromEnvironment(server, address === undefined ? {} : { address });
  return { server, source, graceful: handle };
}
