/**
 * @module pool/fork-self
 * Library mode, FCGI::ProcManager's `pm_manage` for a Node script: the same
 * script runs as the manager and as each worker, like `cluster.isPrimary`.
 *
 *   const role = await manage({ nProcesses: 4, listen: { kind: 'unix', path } });
 *   // only workers get here: the listening socket is fd 0
 *   net.createServer(handler).listen({ fd: 0 });
 *
 * In the manager role, `manage()` re-runs `process.execPath` with this
 * process's execArgv and argv N times (through gatehouse-exec, like any
 * worker) and never returns: the process exits with the manager's code.
 * In the server role (the marker variable names our parent) it runs
 * `serverInit` and returns.
 */
import { MANAGER_PID_ENV, ProcManager, type ProcManagerOptions } from './manager.js';
import { setProcessTitle, workerTitle } from './process-title.js';

export interface ManageOptions extends Omit<ProcManagerOptions, 'command'> {
  /** Runs in each worker before `manage()` returns there (the original's handling_init hook). */
  serverInit?: () => void | Promise<void>;
  /** Extra environment for the workers. */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface ServerRole {
  role: 'server';
  managerPid: number;
  /** The listening socket's fd in a worker: always 0 (FCGI_LISTENSOCK_FILENO). */
  listenFd: 0;
}

/**
 * The manager's pid when this process is a worker spawned by a gatehouse
 * manager that is still its parent; undefined otherwise. Checking the parent
 * too means a grandchild that inherited the variable is not fooled.
 */
export function managedWorker(env: NodeJS.ProcessEnv = process.env): { managerPid: number } | undefined {
  const managerPid = Number(env[MANAGER_PID_ENV]);
  return Number.isInteger(managerPid) && managerPid > 1 && managerPid === process.ppid ? { managerPid } : undefined;
}

export async function manage(options: ManageOptions): Promise<ServerRole> {
  const worker = managedWorker();
  if (worker) {
    setProcessTitle(workerTitle(options.processTitle));
    await options.serverInit?.();
    return { role: 'server', managerPid: worker.managerPid, listenFd: 0 };
  }
  const { serverInit: _serverInit, env, ...rest } = options;
  const pm = new ProcManager({
    ...rest,
    command: {
      program: process.execPath,
      args: [...process.execArgv, ...process.argv.slice(1)],
      ...(env ? { env } : {}),
    },
  });
  process.exit(await pm.run());
}
