/**
 * @module pool
 * The process manager: a listening socket it never accepts on, N workers
 * that get it as fd 0, FCGI::ProcManager's signal contract, respawn with
 * backoff, parent-death cleanup, pid file.
 */
export { PoolError, type PoolErrorCode } from './errors.js';
export {
  ProcManager,
  MANAGER_PID_ENV,
  type ManagerHooks,
  type ManagerLogEvent,
  type ProcManagerOptions,
  type SpawnPlan,
  type WorkerCommand,
  type WorkerInfo,
} from './manager.js';
export { manage, managedWorker, type ManageOptions, type ServerRole } from './fork-self.js';
export { managerHasDied, type DispatchContext, type DispatchHooks } from './dispatch-hooks.js';
export {
  DEFAULT_BACKLOG,
  findInheritedSocket,
  openListenSocket,
  type ListenSocket,
  type ListenSpec,
} from './listen-socket.js';
export { PidFile, isProcessAlive, readPidFile } from './pidfile.js';
export { RespawnBackoff, type BackoffOptions } from './backoff.js';
export { managerTitle, workerTitle } from './process-title.js';
export { execWrapperPath, loadNative, type NativeAddon, type SeqpacketCallback, type SeqpacketReceiver } from './native.js';
