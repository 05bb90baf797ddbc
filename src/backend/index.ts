/**
 * @module backend
 * Reaching an application over FastCGI or SCGI in callscgi's four modes.
 */
export * from './contract.js';
export { createBackend, GatehouseBackend } from './create-backend.js';
export { decideMode } from './modes.js';
export { parseTcpSpec, parseUnixSpec, socketIdPath, resolvePort, lookupService, describeAddress } from './address.js';
export { ChildExitedError, statusForBackendError } from './errors.js';
