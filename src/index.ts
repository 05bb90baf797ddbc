/**
 * @module gatehouse
 * The public surface. Each part is also reachable as a namespace
 * (`fastcgi`, `scgi`, `cgi`, `app`, `pool`, `backend`, `gateway`).
 */
export { GatehouseError, hasCode } from './errors.js';

// The parts, whole.
export * as fastcgi from './fastcgi/index.js';
export * as scgi from './scgi/index.js';
export * as cgi from './cgi/index.js';
export * as app from './app/index.js';
export * as pool from './pool/index.js';
export * as backend from './backend/index.js';
export * as gateway from './gateway/index.js';

// What most users reach for.
export { createServer, serve, listenFromEnvironment, installGracefulShutdown, cgiParams } from './app/index.js';
export type { ServerOptions, ServeOptions, Protocol } from './app/index.js';
export { ProcManager, manage, managedWorker, PoolError } from './pool/index.js';
export type { ProcManagerOptions, ManageOptions } from './pool/index.js';
export { createBackend, BackendError } from './backend/index.js';
export type { Backend, BackendOptions, BackendRequest, BackendResponse } from './backend/index.js';
export { createGateway } from './gateway/index.js';
export type { Gateway, GatewayOptions } from './gateway/index.js';
export { FastCgiServerConnection, FastCgiClientConnection, FastCgiProtocolError } from './fastcgi/index.js';
export { ScgiProtocolError, serveScgiConnection, scgiRequest } from './scgi/index.js';
export { CgiError, cgiParamsFromHttp, CgiResponseParser } from './cgi/index.js';
