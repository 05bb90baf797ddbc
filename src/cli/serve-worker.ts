/**
 * @module cli/serve-worker
 * One gateway worker of `gatehouse serve --workers N` (internal: the
 * primary's pool manager runs it). argv[2] is its flags as JSON (see
 * WorkerFlags); the HTTP listening socket is on fd 0. It serves as
 * single-process serve does and exits 0 after SIGTERM once its in-flight
 * requests are done.
 */
import { runServeWorker } from './serve.js';

runServeWorker(process.argv[2] ?? '{}').then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`gatehouse: worker ${process.pid}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
