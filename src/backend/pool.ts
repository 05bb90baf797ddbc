/**
 * @module backend/pool
 * Anonymous mode with processes > 1: the pool manager (src/pool) owns the
 * listening socket in our private directory, keeps it open (so connections
 * wait in the backlog while a worker is respawned) and runs N copies of
 * PROGRAM on it, each under gatehouse-exec for parent death.
 */
import { ProcManager } from '../pool/manager.js';
import type { BackendOptions } from './contract.js';
import type { AnonymousPool } from './anonymous-mode.js';
import type { ConnectorContext } from './connector.js';

export function createAnonymousPool(options: BackendOptions, ctx: ConnectorContext): AnonymousPool {
  const [program, ...args] = options.program ?? [];
  if (program === undefined) throw new TypeError('backend: no program to start');
  let manager: ProcManager | undefined;
  let running: Promise<number> | undefined;
  return {
    async start(path: string): Promise<void> {
      if (manager !== undefined) return;
      const env: Record<string, string | undefined> = {};
      if (options.env !== undefined) {
        // The manager merges over its own environment: spell out removals too.
        for (const k of Object.keys(process.env)) if (!(k in options.env)) env[k] = undefined;
        Object.assign(env, options.env);
      }
      let ready: () => void = () => {};
      const initialized = new Promise<void>((resolve) => (ready = resolve));
      manager = new ProcManager({
        nProcesses: options.processes ?? 2,
        command: { program, args, env, ...(options.cwd !== undefined && { cwd: options.cwd }) },
        listen: { kind: 'unix', path, mode: 0o600 },
        dieTimeout: Math.max(1, (options.stopTimeoutMs ?? 5000) / 1000),
        orphanSignal: 'SIGTERM',
        // The gateway/callscgi own SIGTERM/SIGINT: they drain in-flight requests, then stop us.
        noSignals: true,
        hooks: {
          managerInit: () => ready(),
          notify: (line) => ctx.log(line),
        },
      });
      running = manager.run();
      // run() rejects if the socket cannot be opened; otherwise it resolves only at the end.
      await Promise.race([initialized, running.then(() => undefined)]);
    },
    async stop(): Promise<void> {
      if (manager === undefined) return;
      manager.signal('SIGTERM');
      await running?.catch(() => 1);
    },
  };
}
