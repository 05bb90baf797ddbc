/**
 * @module app
 * Serve an unmodified node:http handler (plain, Express, Koa, Fastify via
 * serverFactory) over FastCGI or SCGI, in a worker that finds its listening
 * socket the FastCGI way and exits gracefully the FCGI::ProcManager way.
 */
export { createServer, Server, type ServerOptions, type RequestListener, type Protocol } from './server.js';
export { serve, type ServeOptions, type Serving } from './serve.js';
export {
  listenFromEnvironment,
  findListenSource,
  parseListenAddress,
  systemdListenFd,
  isListeningFd,
  ListenError,
  SD_LISTEN_FDS_START,
  type ListenSource,
  type ListenErrorCode,
} from './listen-source.js';
export { installGracefulShutdown, type GracefulOptions, type GracefulHandle, type WorkerDispatchHooks } from './graceful.js';
export { cgiParams, cgiParamList, fastcgiRequest, requestErrorLog, logRequestError } from './request-info.js';
export { CgiSocket } from './cgi-socket.js';
