/**
 * wrk → `gatehouse serve --root` → php-cgi  versus  wrk → nginx (1 worker)
 * → the same php-cgi, in the same run. One `php-cgi -b SOCK` with
 * PHP_FCGI_CHILDREN=4 serves both fronts; both use the PHP preset
 * (try_files … /index.php) on the fixture app and fetch /hello/bench
 * through its front controller. Each front in its sane configuration for a
 * one-connection-per-process backend: nginx with its default
 * fastcgi_keep_conn off (with keep_conn on, connections beyond the 4 workers
 * starve: wrk timeouts), gatehouse with kept-alive connections and
 * --max-conns 4 (requests beyond 4 wait in the gateway). A second gatehouse
 * runs with --keepalive-timeout 0 (a connection per request, like nginx);
 * between fronts the kept-alive gateway is given time to let go of the
 * php-cgi workers its idle connections hold (status page polled).
 *
 * A fourth front runs the first configuration as `--workers 2` (two
 * gateway processes on one socket, --max-conns 4 split 2 + 2).
 *
 * Prints req/s, p99 and CPU µs per request (front, php-cgi, whole machine)
 * per front (median of alternating rounds) and the ratios, then p99 and the gateway's peak RSS at 1000 concurrent keep-alive
 * clients.
 *
 *   npx tsc -p . && node dist/bench/gateway-vs-nginx.js [--rounds 3] [--duration 10s] [--connections 64] [--burst 1000]
 *
 * Needs /usr/sbin/nginx, php-cgi and wrk.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Family, memoryKb } from './lib/procfs.js';
import { median, wrk, type Groups, type WrkResult } from './lib/wrk.js';
import { startPhpSite } from './lib/php-site.js';
import { distPath, freePort, spawnTracked, stopProcess, waitForConnectable } from '../test/helpers/peers.js';


const PATH = '/hello/bench';
const STATUS = '/gatehouse-status';

/** `gatehouse serve ARGS` on a free port, once it accepts. */
async function startGateway(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const serveJs = distPath('src', 'cli', 'serve.js');
  const argv = ['--listen', `127.0.0.1:${port}`, ...args];
  const child = spawnTracked(process.execPath, ['-e', `import(${JSON.stringify(serveJs)}).then((m) => m.runServe(${JSON.stringify(argv)})).then((c) => { process.exitCode = c; })`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitForConnectable({ port }, 10_000, child);
  return { child, url: `http://127.0.0.1:${port}` };
}

/**
 * Polls the status page until the gateway holds no FastCGI connection
 * (bounded: 10 s). With `serve --workers N` (pids given) each page is one
 * worker's, and which worker accepts is the kernel's choice, so each is
 * asked in turn with the others stopped (SIGSTOP) and continued after.
 */
async function idleConnectionsClosed(url: string, workerPids: readonly number[] = []): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (const pid of workerPids.length > 0 ? workerPids : [undefined]) {
    const others = workerPids.filter((p) => p !== pid);
    for (const o of others) process.kill(o, 'SIGSTOP');
    try {
      for (;;) {
        const res = await fetch(`${url}${STATUS}?json`, { headers: { connection: 'close' } });
        const state = (await res.json()) as { pid: number; backend: Record<string, unknown> };
        if (state.backend['connections open'] === 0) break;
        if (Date.now() > deadline) throw new Error(`the gateway still holds connections: ${JSON.stringify(state)}`);
        await sleep(100);
      }
    } finally {
      for (const o of others) process.kill(o, 'SIGCONT');
    }
  }
}

function rssKb(pid: number): number {
  return memoryKb(pid).rssKb;
}




/** The gateway workers of `serve --workers n` (each leads its own process group), once all are up (bounded: 10 s). */
async function gatewayWorkers(primary: number, n: number): Promise<number[]> {
  const family = new Family(primary);
  const deadline = Date.now() + 10_000;
  for (;;) {
    family.refresh();
    const pids = family.descendants();
    if (pids.length >= n) return pids;
    if (Date.now() > deadline) throw new Error(`only ${pids.length} of ${n} gateway workers started`);
    await sleep(20);
  }
}



/** The peak RSS of `pid` while `work` runs, sampled every 100 ms. */
async function peakRss<T>(pid: number, work: Promise<T>): Promise<{ result: T; peakKb: number }> {
  let peakKb = rssKb(pid);
  const timer = setInterval(() => (peakKb = Math.max(peakKb, rssKb(pid))), 100);
  try {
    return { result: await work, peakKb };
  } finally {
    clearInterval(timer);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '10s' },
      connections: { type: 'string', default: '64' },
      burst: { type: 'string', default: '1000' },
    },
  });
  const rounds = Number(values.rounds);
  const connections = Number(values.connections);
  const burst = Number(values.burst);
  const site = await startPhpSite();
  const { root, sock, php, nginx } = site;
  // Three gateways on the same php-cgi: kept-alive connections (what we recommend, capped at the
  // worker count), a connection per request (what nginx does by default), and the first as two
  // gateway processes (--workers 2: the 4 connections split 2 + 2).
  const gateways = {
    gatehouse: await startGateway(['-u', sock, '--max-conns', '4', '--keepalive-timeout', '1', '--status-path', STATUS, '--root', root]),
    'gatehouse-nka': await startGateway(['-u', sock, '--max-conns', '4', '--keepalive-timeout', '0', '--root', root]),
    'gatehouse-w2': await startGateway(['-u', sock, '--workers', '2', '--max-conns', '4', '--keepalive-timeout', '1', '--status-path', STATUS, '--root', root]),
  };
  const w2Workers = await gatewayWorkers(gateways['gatehouse-w2'].child.pid!, 2);
  try {
    const fronts = {
      gatehouse: `${gateways.gatehouse.url}${PATH}`,
      'gatehouse-nka': `${gateways['gatehouse-nka'].url}${PATH}`,
      'gatehouse-w2': `${gateways['gatehouse-w2'].url}${PATH}`,
      nginx: `${nginx.url}${PATH}`,
    };
    type Front = keyof typeof fronts;
    const names = Object.keys(fronts) as Front[];
    // spawnTracked puts each in its own process group.
    const groups: Record<Front, Groups> = {
      gatehouse: { front: [gateways.gatehouse.child.pid!], php: php.child.pid! },
      'gatehouse-nka': { front: [gateways['gatehouse-nka'].child.pid!], php: php.child.pid! },
      'gatehouse-w2': { front: [gateways['gatehouse-w2'].child.pid!, ...w2Workers], php: php.child.pid! },
      nginx: { front: [nginx.child.pid!], php: php.child.pid! },
    };
    /** A kept connection holds a php-cgi worker: let them go before another front runs on the same workers. */
    const run = async (name: Front, duration: string, clients: number): Promise<WrkResult> => {
      const result = await wrk(fronts[name], duration, clients, groups[name]);
      if (name === 'gatehouse') await idleConnectionsClosed(gateways.gatehouse.url);
      if (name === 'gatehouse-w2') await idleConnectionsClosed(gateways['gatehouse-w2'].url, w2Workers);
      return result;
    };
    for (const name of names) await run(name, '2s', connections); // warm up (JIT, connections)

    const runs: Record<Front, WrkResult[]> = { gatehouse: [], 'gatehouse-nka': [], 'gatehouse-w2': [], nginx: [] };
    for (let r = 0; r < rounds; r++) {
      for (const name of names) {
        const result = await run(name, values.duration!, connections);
        if (result.errors) process.stderr.write(`${name} round ${r + 1}: ${result.errors}\n`);
        runs[name].push(result);
      }
    }
    const summary = (name: Front): { rps: number; p99: number; cpu: string } => ({
      rps: median(runs[name].map((x) => x.rps)),
      p99: median(runs[name].map((x) => x.p99Ms)),
      cpu: (['front', 'php', 'machine'] as const).map((k) => `${k} ${median(runs[name].map((x) => x.cpuUs[k])).toFixed(1)}`).join(', '),
    });
    const n = summary('nginx');
    const label: Record<Front, string> = {
      gatehouse: 'gatehouse (keep-alive, --max-conns 4)',
      'gatehouse-nka': 'gatehouse (--keepalive-timeout 0)   ',
      'gatehouse-w2': 'gatehouse --workers 2 (max-conns 2+2)',
      nginx: 'nginx (1 worker, keep_conn off)      ',
    };
    console.log(`php-cgi: 4 workers on one socket; GET ${PATH}; wrk -c${connections} -d${values.duration}; median of ${rounds} alternating rounds; node ${process.version}`);
    for (const name of names) {
      const x = summary(name);
      const ratio = name === 'nginx' ? '' : `   ${(x.rps / n.rps).toFixed(2)}× nginx`;
      console.log(`  ${label[name]} ${x.rps.toFixed(0).padStart(7)} req/s   p99 ${x.p99.toFixed(2).padStart(6)} ms   CPU µs/request: ${x.cpu}${ratio}`);
    }

    const pid = gateways.gatehouse.child.pid!;
    const idleKb = rssKb(pid);
    const { result: gBurst, peakKb } = await peakRss(pid, run('gatehouse', values.duration!, burst));
    const nBurst = await run('nginx', values.duration!, burst);
    console.log(`${burst} concurrent keep-alive clients (wrk -c${burst} -d${values.duration}):`);
    console.log(`  gatehouse  ${gBurst.rps.toFixed(0).padStart(7)} req/s   p99 ${gBurst.p99Ms.toFixed(2)} ms   RSS ${(idleKb / 1024).toFixed(0)} MiB idle, ${(peakKb / 1024).toFixed(0)} MiB peak${gBurst.errors ? `   (${gBurst.errors})` : ''}`);
    console.log(`  nginx      ${nBurst.rps.toFixed(0).padStart(7)} req/s   p99 ${nBurst.p99Ms.toFixed(2)} ms${nBurst.errors ? `   (${nBurst.errors})` : ''}`);
  } finally {
    for (const g of Object.values(gateways)) await stopProcess(g.child, 'SIGTERM');
    await site.stop();
  }
}

await main();
