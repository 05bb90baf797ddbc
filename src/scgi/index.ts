/**
 * @module scgi
 * SCGI: the netstring header codec (pure) and the streaming server and client.
 */
export * from './errors.js';
export * from './codec.js';
export { serveScgiConnection, type ScgiConnectionOptions } from './server-connection.js';
export { scgiRequest, type ScgiClientExchange } from './client.js';
export type { ScgiServerRequest, ScgiServerOptions, ParamList } from './contract.js';
