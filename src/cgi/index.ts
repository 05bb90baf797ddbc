/**
 * @module cgi
 * CGI/1.1 translation (RFC 3875): HTTP request → meta-variables, CGI response head → status + headers.
 */
export * from './errors.js';
export { cgiParamsFromHttp, type CgiRequestInput } from './request-env.js';
export { splitRequestTarget, percentDecode, hostOfAuthority, type SplitTarget } from './request-target.js';
export { CgiResponseParser, DEFAULT_MAX_HEAD_BYTES, type CgiResponseHead, type CgiResponseParserOptions } from './response-head.js';
export { SERVER_SOFTWARE } from './server-software.js';
