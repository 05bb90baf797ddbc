/**
 * @module pool/dispatch-hooks
 * The per-request hooks of FCGI::ProcManager (pm_pre_dispatch /
 * pm_post_dispatch), as an interface the app runtime (src/app) calls around
 * each request it serves in a worker. The pool never calls them: only the
 * worker knows where a request starts and ends.
 *
 * What the original does there, for the runtime to mirror:
 *   pre:  make TERM/HUP "finish this request first" (Perl: SA_RESTART on);
 *   post: leave if TERM/HUP arrived during the request ("safe exit after
 *         SIGTERM"), or if the manager died (getppid() != manager pid),
 *         else go back to "TERM means exit now while idle".
 */

export interface DispatchContext {
  /** Requests this worker has finished before the current one. */
  readonly served: number;
  /** The manager's pid when running under a gatehouse manager (see `managedWorker()`). */
  readonly managerPid: number | undefined;
}

export interface DispatchHooks {
  /** After a request is accepted and parsed, before the handler runs. */
  preDispatch?(ctx: DispatchContext): void;
  /**
   * After the response is complete. Returning 'exit' asks the runtime to
   * stop accepting, finish other in-flight requests and exit 0 (recycling:
   * max requests, memory limits, a lost manager).
   */
  postDispatch?(ctx: DispatchContext): void | 'exit';
}

/** True when the worker's manager is gone: it was reparented (the original's post_dispatch check). */
export function managerHasDied(managerPid: number | undefined): boolean {
  return managerPid !== undefined && process.ppid !== managerPid;
}
