/**
 * @module app/graceful
 * FCGI::ProcManager's worker contract (research/procmanager.md §3–§4), event
 * driven: on SIGTERM or SIGHUP (the manager respawns either way) stop
 * accepting, close idle kept-alive connections at once, let in-flight
 * requests finish, then exit 0; an idle worker therefore exits at once.
 * Beyond the Perl original, deliberately: an optional hard cap (exit 1),
 * a second signal meaning "hurry up" instead of default death, an orphan
 * check that does not need a request to notice the manager is gone, and
 * PM2's 'shutdown' message (Windows has no signals).
 */
import type { Server } from './server.js';

/**
 * FCGI::ProcManager's pm_pre_dispatch/pm_post_dispatch as the pool
 * declares them (src/pool/dispatch-hooks.ts, matched structurally so the
 * runtime does not depend on the pool): postDispatch may return 'exit' to
 * recycle the worker (max requests, memory limits, …).
 */
export interface WorkerDispatchHooks {
  preDispatch?(ctx: { readonly served: number; readonly managerPid: number | undefined }): void;
  postDispatch?(ctx: { readonly served: number; readonly managerPid: number | undefined }): void | 'exit';
}

/** Where a manager puts its pid: gatehouse's pool manager, and the generic name. */
const MANAGER_PID_VARS = ['GATEHOUSE_PM_MANAGER_PID', 'GATEHOUSE_MANAGER_PID'];

function managerPidFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  for (const name of MANAGER_PID_VARS) {
    const pid = Number(env[name]);
    if (Number.isInteger(pid) && pid > 0) return pid;
  }
  return undefined;
}

export interface GracefulOptions {
  /** Signals that start a graceful exit (default SIGTERM, SIGHUP, SIGINT). */
  signals?: NodeJS.Signals[];
  /** Hard cap in ms: then in-flight requests are aborted and the exit code is 1 (default 0 = wait forever). */
  timeoutMs?: number;
  /** Exit gracefully after this many requests (FCGI::ProcManager::Constrained max_requests); 0 = never. */
  maxRequests?: number;
  /**
   * The manager's pid: when process.ppid stops being it, the worker exits
   * gracefully. Default: env GATEHOUSE_PM_MANAGER_PID (set by gatehouse's
   * pool manager) or GATEHOUSE_MANAGER_PID, else the parent pid at install
   * time. false turns the check off.
   */
  managerPid?: number | false;
  /** Per-request hooks in the pool's shape; postDispatch returning 'exit' starts a graceful exit. */
  hooks?: WorkerDispatchHooks;
  /** How often the orphan check looks at process.ppid (default 1000 ms; the timer is unref'd). */
  orphanCheckIntervalMs?: number;
  /** Runs after the server closed, before the exit (close database pools here). */
  onShutdown?: (reason: string) => void | Promise<void>;
  /** process.exit() when done (default true). false: only close the server. */
  exit?: boolean;
  /** Where the one-line notices go (default stderr); false for none. */
  log?: false | ((line: string) => void);
}

export interface GracefulHandle {
  readonly shuttingDown: boolean;
  /** Starts the graceful exit as a signal would; resolves when the server has closed. */
  shutdown(reason: string): Promise<void>;
  /** Removes the signal handlers and the orphan timer. */
  dispose(): void;
}

/** Installs the signal handlers, orphan check and max-requests counter for `server`. */
export function installGracefulShutdown(server: Server, opts: GracefulOptions = {}): GracefulHandle {
  const signals = opts.signals ?? ['SIGTERM', 'SIGHUP', 'SIGINT'];
  const log = opts.log === false ? null : (opts.log ?? ((line: string) => process.stderr.write(line + '\n')));
  const notice = (msg: string): void => log?.(`gatehouse: worker (pid ${process.pid}): ${msg}`);
  let shuttingDown = false;
  let exitCode = 0;
  let closed: Promise<void> | null = null;
  let hardTimer: NodeJS.Timeout | null = null;

  const hurry = (why: string): void => {
    if (exitCode !== 0) return;
    exitCode = 1;
    notice(`${why}: aborting ${server.requestsInFlight} request(s) in flight`);
    server.closeAllConnections();
  };

  const shutdown = (reason: string): Promise<void> => {
    if (closed) return closed;
    shuttingDown = true;
    notice(`safe exit: ${reason}${server.requestsInFlight ? `, finishing ${server.requestsInFlight} request(s)` : ''}`);
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      hardTimer = setTimeout(() => hurry(`still busy after ${opts.timeoutMs} ms`), opts.timeoutMs);
    }
    closed = new Promise<void>((resolve) => {
      // A client may have connected (and sent its request) just before the signal, its
      // connection still in the kernel's accept queue. Closing the listener now would reset
      // it; one more poll phase accepts it first (an immediate inside an immediate runs
      // after the next poll), and the fresh-connection grace then serves it.
      setImmediate(() =>
        setImmediate(() => {
          // Callback, not 'close': it also fires (with an error) if the server was not listening.
          server.close(() => resolve());
        }),
      );
    }).then(async () => {
      if (hardTimer) clearTimeout(hardTimer);
      dispose();
      try {
        await opts.onShutdown?.(reason);
      } catch (err) {
        exitCode = 1;
        notice(`onShutdown failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (opts.exit !== false) process.exit(exitCode);
    });
    return closed;
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    // A second signal while draining: stop waiting for slow requests (the Perl manager would just die).
    if (shuttingDown) hurry(`second ${signal}`);
    else void shutdown(`after ${signal}`);
  };
  for (const s of signals) process.on(s, onSignal);

  // PM2's contract where signals are not available: process.send('shutdown') from the manager.
  const onMessage = (msg: unknown): void => {
    if (msg === 'shutdown') void shutdown("after 'shutdown' message");
  };
  if (typeof process.send === 'function') {
    process.on('message', onMessage);
    // The listener must not keep an otherwise finished worker alive.
    (process.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  // Orphan check: FCGI::ProcManager only notices in post_dispatch, so an idle orphan lived forever.
  let orphanTimer: NodeJS.Timeout | null = null;
  const managerPid = opts.managerPid ?? managerPidFromEnv(process.env) ?? process.ppid;
  if (managerPid !== false) {
    orphanTimer = setInterval(() => {
      if (process.ppid !== managerPid) void shutdown(`manager (pid ${managerPid}) has died`);
    }, opts.orphanCheckIntervalMs ?? 1000);
    orphanTimer.unref();
  }

  // Counted as each request ends, so the request that reaches max completes before the exit.
  const previousPre = server.preDispatch;
  const previousPost = server.postDispatch;
  const hooks = opts.hooks;
  const max = opts.maxRequests && opts.maxRequests > 0 ? opts.maxRequests : 0;
  let served = 0;
  const ctx = (): { served: number; managerPid: number | undefined } => ({ served, managerPid: managerPid === false ? undefined : managerPid });
  if (hooks?.preDispatch) {
    server.preDispatch = (req, res) => {
      previousPre?.(req, res);
      hooks.preDispatch!(ctx());
    };
  }
  if (max || hooks?.postDispatch) {
    server.postDispatch = (req, res) => {
      previousPost?.(req, res);
      served++;
      if (hooks?.postDispatch?.(ctx()) === 'exit') void shutdown('post_dispatch asked to exit');
      else if (max && served === max) void shutdown(`after max requests (${max})`);
    };
  }

  function dispose(): void {
    for (const s of signals) process.removeListener(s, onSignal);
    process.removeListener('message', onMessage);
    if (orphanTimer) clearInterval(orphanTimer);
    orphanTimer = null;
    server.preDispatch = previousPre;
    server.postDispatch = previousPost;
  }

  return {
    get shuttingDown() {
      return shuttingDown;
    },
    shutdown,
    dispose,
  };
}
