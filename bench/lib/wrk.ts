/**
 * @module bench/lib/wrk
 * One wrk run against a front, parsed: req/s, p99, errors, and CPU time per
 * request read from /proc for the front's process groups, the
 * application's, and the whole machine (on a shared 2-core box, CPU per
 * request is steadier than req/s).
 */
import { execFile } from 'node:child_process';
import { groupCpuMs, machineCpuMs } from './procfs.js';

export interface WrkResult {
  rps: number;
  p99Ms: number;
  /** CPU µs per request: the front (gateway or nginx), php-cgi, and the whole machine (wrk and the kernel included). */
  cpuUs: { front: number; php: number; machine: number };
  /** Non-2xx answers plus socket errors: any of them makes the run suspect. */
  errors: string | undefined;
}

/** "1.23ms" / "845.00us" / "1.02s" → ms. */
export function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v);
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** Process groups whose CPU time is charged per request: the front under test (with --workers, one group per worker) and php-cgi. */
export interface Groups {
  front: number[];
  php: number;
}

export const frontCpuMs = (groups: Groups): number => groups.front.reduce((sum, g) => sum + groupCpuMs(g), 0);

/** Runs wrk (with a raised fd limit for large -c) and parses req/s, the 99th percentile and CPU per request. */
export function wrk(url: string, duration: string, connections: number, groups: Groups): Promise<WrkResult> {
  const before = { front: frontCpuMs(groups), php: groupCpuMs(groups.php), machine: machineCpuMs().busy };
  const threads = Math.min(2, connections);
  const script = 'ulimit -n 65536 2>/dev/null || true; exec wrk "$@"';
  const args = ['-c', script, 'wrk', `-t${threads}`, `-c${connections}`, `-d${duration}`, '--latency', '--timeout', '10s', url];
  return new Promise((resolve, reject) => {
    execFile('sh', args, { encoding: 'utf8' }, (err, out) => {
      if (err) return reject(err);
      const perRequest = (ms: number): number => (ms * 1000) / Math.max(1, Number(/(\d+) requests in/.exec(out)?.[1] ?? 0));
      const cpuUs = {
        front: perRequest(frontCpuMs(groups) - before.front),
        php: perRequest(groupCpuMs(groups.php) - before.php),
        machine: perRequest(machineCpuMs().busy - before.machine),
      };
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const p99 = /^\s+99%\s+(\S+)\s*$/m.exec(out);
      if (!rps || !p99) return reject(new Error(`unexpected wrk output:\n${out}`));
      const errors = [/Non-2xx or 3xx responses: \d+/.exec(out)?.[0], /Socket errors: .*/.exec(out)?.[0]].filter(Boolean).join('; ');
      resolve({ rps: Number(rps[1]), p99Ms: toMs(p99[1]!), cpuUs, errors: errors === '' ? undefined : errors });
    });
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
