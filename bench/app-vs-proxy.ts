/**
 * nginx → gatehouse (FastCGI, kept-alive connections, 1 process) → hello
 * versus the usual way to put Node behind nginx: proxy_pass to a plain
 * node:http hello (upstream keepalive, 1 process). Same response bytes.
 * Runs wrk against each, alternating, and prints req/s, the ratio, and the
 * RSS of the idle workers.
 *
 *   npx tsc -p . && node dist/bench/app-vs-proxy.js [--rounds 3] [--duration 5s] [--connections 32]
 *
 * Needs /usr/sbin/nginx and wrk.
 */
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { distPath, freePort, spawnTracked, startNginx, stopProcess, tmpDir, waitForConnectable } from '../test/helpers/peers.js';

// Child mode: the node:http side of the comparison.
if (process.argv[2] === '--http-hello') {
  const port = Number(process.argv[3]);
  http
    .createServer((_req, res) => {
      res.setHeader('Content-Type', 'text/plain');
      res.end(`Hello from gatehouse (pid ${process.pid})\n`);
    })
    .listen(port, '127.0.0.1');
} else {
  await main();
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** CPU time (user + system) a process has used, in ms (from /proc/PID/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

interface Run {
  rps: number;
  /** CPU µs per request of the backend worker and of nginx: robust on a busy machine where req/s is not. */
  workerUs: number;
  nginxUs: number;
}

function wrk(url: string, duration: string, connections: number, workerPid: number, nginxPid: number): Run {
  const w0 = cpuMs(workerPid);
  const n0 = cpuMs(nginxPid);
  const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${duration}`, url], { encoding: 'utf8' });
  const workerMs = cpuMs(workerPid) - w0;
  const nginxMs = cpuMs(nginxPid) - n0;
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
  if (errors) process.stderr.write(`wrk ${url}: ${errors[0]}\n`);
  if (!m || !total) throw new Error(`wrk output without Requests/sec:\n${out}`);
  const n = Number(total[1]);
  return { rps: Number(m[1]), workerUs: (workerMs * 1000) / n, nginxUs: (nginxMs * 1000) / n };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '5s' },
      connections: { type: 'string', default: '32' },
    },
  });
  const rounds = Number(values.rounds);
  const connections = Number(values.connections);
  const dir = tmpDir('gh-bench-');
  const sock = join(dir, 'hello.sock');

  const app = spawnTracked(process.execPath, [distPath('examples', 'hello.js'), '--listen', sock], { stdio: ['ignore', 'ignore', 'inherit'] });
  const httpPort = await freePort();
  const plain = spawnTracked(process.execPath, [process.argv[1]!, '--http-hello', String(httpPort)], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForConnectable({ path: sock }, 10000, app);
  await waitForConnectable({ port: httpPort }, 10000, plain);
  const idleRss = { gatehouse: rssKb(app.pid!), nodeHttp: rssKb(plain.pid!) };

  const nginx = await startNginx(
    `location /fcgi/ { fastcgi_pass gh; fastcgi_keep_conn on; include /etc/nginx/fastcgi_params; }
     location /proxy/ { proxy_pass http://nh; proxy_http_version 1.1; proxy_set_header Connection ""; }`,
    {
      httpExtra: `upstream gh { server unix:${sock}; keepalive 64; }
                  upstream nh { server 127.0.0.1:${httpPort}; keepalive 64; }`,
    },
  );
  try {
    const urls = { gatehouse: `${nginx.url}/fcgi/`, nodeHttp: `${nginx.url}/proxy/` };
    const nginxPid = nginx.child.pid!;
    // Warm both paths (JIT tiers need a few seconds on Node ≥ 22; upstream keepalive pools).
    wrk(urls.gatehouse, '3s', connections, app.pid!, nginxPid);
    wrk(urls.nodeHttp, '3s', connections, plain.pid!, nginxPid);
    const results = { gatehouse: [] as Run[], nodeHttp: [] as Run[] };
    for (let i = 0; i < rounds; i++) {
      results.gatehouse.push(wrk(urls.gatehouse, values.duration, connections, app.pid!, nginxPid));
      results.nodeHttp.push(wrk(urls.nodeHttp, values.duration, connections, plain.pid!, nginxPid));
    }
    const summary = (runs: Run[]): string => {
      const rps = median(runs.map((r) => r.rps));
      return (
        `${rps.toFixed(0).padStart(6)} req/s  [${runs.map((r) => r.rps.toFixed(0)).join(', ')}]` +
        `   CPU/request: worker ${median(runs.map((r) => r.workerUs)).toFixed(1)} µs, nginx ${median(runs.map((r) => r.nginxUs)).toFixed(1)} µs`
      );
    };
    const g = median(results.gatehouse.map((r) => r.rps));
    const p = median(results.nodeHttp.map((r) => r.rps));
    const gCpu = median(results.gatehouse.map((r) => r.workerUs + r.nginxUs));
    const pCpu = median(results.nodeHttp.map((r) => r.workerUs + r.nginxUs));
    process.stdout.write(
      [
        `node ${process.version}, wrk -t1 -c${connections} -d${values.duration}, ${rounds} alternating rounds (median), ${cpus().length} CPUs:`,
        `  nginx → gatehouse FastCGI keep-conn → hello : ${summary(results.gatehouse)}`,
        `  nginx → proxy_pass keepalive → node:http    : ${summary(results.nodeHttp)}`,
        `  ratio gatehouse / proxy_pass                : ${(g / p).toFixed(2)}× req/s, ${(pCpu / gCpu).toFixed(2)}× by CPU per request (worker + nginx)`,
        `  RSS idle worker at start: gatehouse ${idleRss.gatehouse} kB, node:http ${idleRss.nodeHttp} kB`,
        `  RSS after the runs:       gatehouse ${rssKb(app.pid!)} kB, node:http ${rssKb(plain.pid!)} kB`,
        '',
      ].join('\n'),
    );
  } finally {
    await nginx.stop();
    await stopProcess(app);
    await stopProcess(plain);
  }
}
