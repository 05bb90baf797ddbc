/**
 * `gatehouse serve` as a process for the CLI tests: runServe(argv) in a
 * fresh node (as gatehouse.js would run it), and its output with a bounded
 * wait for a line on stderr, and a request kept in flight across a signal.
 */
import http from 'node:http';
import type { ChildProcess } from 'node:child_process';
import { distPath, repoRoot, spawnTracked } from '../helpers/peers.js';

const SERVE = distPath('src', 'cli', 'serve.js');

/** Runs runServe(argv) in a fresh node, as gatehouse.js would. */
export function serve(argv: string[]): ChildProcess {
  const script = `import(${JSON.stringify(SERVE)}).then((m) => m.runServe(${JSON.stringify(argv)})).then((c) => { process.exitCode = c; })`;
  return spawnTracked(process.execPath, ['-e', script], { cwd: repoRoot });
}

export function output(child: ChildProcess): { stdout: () => string; stderr: () => string; waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray> } {
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters) w();
  });
  return {
    stdout: () => out,
    stderr: () => err,
    waitFor: (re, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = err.match(re);
          if (!m) return;
          cleanup();
          resolve(m);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${re} in stderr within ${ms} ms:\n${err}`));
        }, ms);
        const onExit = (): void => {
          cleanup();
          reject(new Error(`exited before ${re}:\n${err}`));
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
        };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      }),
  };
}

/**
 * POSTs "hello" + "world" to `${url}/echo` and sends `child` the signal
 * while the request is provably in flight: the echo has started answering,
 * the upload has not ended. Resolves with the echoed body.
 */
export function echoAcrossSignal(url: string, child: ChildProcess, signal: NodeJS.Signals): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = http.request(`${url}/echo`, { method: 'POST', agent: false, headers: { 'Content-Length': 10 } }, (res) => {
      let got = '';
      res.on('data', (d: Buffer) => {
        if (got === '') {
          child.kill(signal);
          // The signal is being handled; the rest of the body must still get through.
          setImmediate(() => req.end('world'));
        }
        got += d.toString();
      });
      res.on('end', () => resolve(got));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('echo timed out')));
    req.write('hello');
  });
}
