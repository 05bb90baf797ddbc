/**
 * @module fastcgi
 * FastCGI 1.0, both sides: the pure codec, the application-side connection
 * (server) and the web-server-side connection (client).
 */
export * from './constants.js';
export * from './errors.js';
export type { FcgiRoleName, ParamList, FcgiServerRequest, FcgiServerOptions, FcgiClientRequest } from './contract.js';
export {
  paddingFor,
  encodeHeader,
  decodeHeader,
  encodeRecord,
  encodeStream,
  encodeSize,
  readSize,
  stringBytes,
  encodePairs,
  decodePairs,
  encodeBeginRequestBody,
  decodeBeginRequestBody,
  encodeEndRequestBody,
  decodeEndRequestBody,
  encodeUnknownTypeBody,
  decodeUnknownTypeBody,
  encodeGetValues,
  decodeGetValues,
  encodeGetValuesResult,
  decodeGetValuesResult,
  requireManagementId,
  RecordParser,
  type FcgiHeader,
  type FcgiRecord,
} from './codec.js';
export {
  FastCgiServerConnection,
  serveConnection,
  applyMaxConns,
  createFastCgiServer,
  DEFAULT_MAX_REQS,
  DEFAULT_MAX_PARAMS_BYTES,
  DEFAULT_STALL_TIMEOUT_MS,
  type FastCgiServerConnectionOptions,
} from './server-connection.js';
export { ServerRequest } from './server-request.js';
export { FastCgiClientConnection, type FcgiClientRequestOptions, type FastCgiClientOptions } from './client-connection.js';
export { ClientRequest, type FcgiEndInfo } from './client-request.js';
