/**
 * @module gateway
 * The HTTP front of gatehouse: createGateway(options) → { server, listen, close }.
 */
export { createGateway, type Gateway, type ListenAddress } from './gateway.js';
export type { GatewayOptions } from './options.js';
export type { TrustProxy } from './client-address.js';
export { GatewayStats } from './status-page.js';
export { createPhpPreset, type PhpPreset, type PresetDecision, type ScriptTarget } from './php-preset.js';
export { serveFile, parseRange, etagFor, type OpenFile } from './static.js';
export { contentTypeFor } from './mime.js';
export { AccessLogFile, combinedLine } from './access-log.js';
