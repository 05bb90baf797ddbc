/**
 * How close can a Node front get? Two hand-written floors next to the real
 * gateway and nginx, all in front of the same php-cgi (4 workers), GET
 * /hello/bench through the front controller, CPU per request from /proc:
 *
 *   floor-raw-net    bench/floors/raw-net-floor.mjs: net server + naive HTTP/1.1 parser + minimal FastCGI client
 *   floor-node-http  bench/floors/node-http-floor.mjs: node:http + the same minimal FastCGI client
 *   gatehouse        gatehouse serve -u SOCK --max-conns 4 --root (everything real)
 *   nginx            1 worker, fastcgi_keep_conn off
 *
 * The floors have no limits, timeouts or error handling: they bound what
 * the real thing could cost, they are not alternatives to it. Each Node
 * front runs alone (its kept-alive connections hold php-cgi's workers) and
 * is stopped before the next one starts.
 *
 *   npx tsc -p . && node dist/bench/floors.js [--rounds 3] [--duration 5s] [--connections 64]
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { median, wrk, type WrkResult } from './lib/wrk.js';
import { startPhpSite } from './lib/php-site.js';
import { distPath, freePort, repoRoot, spawnTracked, stopProcess, waitForConnectable } from '../test/helpers/peers.js';

const PATH = '/hello/bench';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5s' },
    connections: { type: 'string', default: '64' },
  },
});
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const site = await startPhpSite();
const { root, sock, php, nginx } = site;

/** The Node fronts: how to start each on `port`. */
const nodeFronts: Record<string, (port: number) => string[]> = {
  'floor-raw-net': (port) => [join(repoRoot, 'bench', 'floors', 'raw-net-floor.mjs'), sock, String(port), root],
  'floor-node-http': (port) => [join(repoRoot, 'bench', 'floors', 'node-http-floor.mjs'), sock, String(port), root],
  gatehouse: (port) => [distPath('src', 'cli', 'gatehouse.js'), 'serve', '--listen', `127.0.0.1:${port}`, '-u', sock, '--max-conns', '4', '--root', root],
};

async function measureNodeFront(name: string, php: ChildProcess): Promise<WrkResult> {
  const port = await freePort();
  const child = spawnTracked(process.execPath, nodeFronts[name]!(port), { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitForConnectable({ port }, 10_000, child);
    const url = `http://127.0.0.1:${port}${PATH}`;
    const groups = { front: [child.pid!], php: php.pid! };
    await wrk(url, '2s', connections, groups); // warm up (JIT)
    return await wrk(url, values.duration!, connections, groups);
  } finally {
    await stopProcess(child, 'SIGKILL');
  }
}

try {
  const names = [...Object.keys(nodeFronts), 'nginx'];
  const runs = new Map<string, WrkResult[]>(names.map((n) => [n, []]));
  const nginxGroups = { front: [nginx.child.pid!], php: php.child.pid! };
  await wrk(`${nginx.url}${PATH}`, '2s', connections, nginxGroups);
  for (let r = 0; r < rounds; r++) {
    for (const name of names) {
      const result = name === 'nginx' ? await wrk(`${nginx.url}${PATH}`, values.duration!, connections, nginxGroups) : await measureNodeFront(name, php.child);
      if (result.errors) process.stderr.write(`${name} round ${r + 1}: ${result.errors}\n`);
      runs.get(name)!.push(result);
    }
  }
  const nginxRps = median(runs.get('nginx')!.map((x) => x.rps));
  console.log(`php-cgi: 4 workers; GET ${PATH}; wrk -c${connections} -d${values.duration}; median of ${rounds} rounds; node ${process.version}`);
  for (const name of names) {
    const xs = runs.get(name)!;
    const rps = median(xs.map((x) => x.rps));
    const cpu = (['front', 'php', 'machine'] as const).map((k) => `${k} ${median(xs.map((x) => x.cpuUs[k])).toFixed(1)}`).join(', ');
    console.log(`  ${name.padEnd(16)} ${rps.toFixed(0).padStart(7)} req/s   CPU µs/request: ${cpu}   ${(rps / nginxRps).toFixed(2)}× nginx`);
  }
} finally {
  await site.stop();
}
