/**
 * gatehouse against the npm packages people reach for, in one run, one table:
 *
 *  1. HTTP → PHP. One `php-cgi -b SOCK` (PHP_FCGI_CHILDREN=4,
 *     PHP_FCGI_MAX_REQUESTS=0) running `<?php echo "hello";`, fronted by
 *     (a) `gatehouse serve -u SOCK --max-conns 4 --root DIR` (client mode,
 *         kept-alive connections, requests beyond 4 wait in the gateway), and
 *     (b) an Express 5 app using fastcgi-client@0.2.0 the way the php-fpm
 *         style middlewares do: skipCheckServer, no multiplexing (the
 *         library then opens one connection per request, without
 *         FCGI_KEEP_CONN), CGI params from the request, stdout collected and
 *         its CGI head turned into the HTTP response. Its maxConns is left
 *         above wrk's connection count (fastcgi-client fails a request
 *         outright beyond it, it has no queue): php-cgi's listen backlog
 *         queues what its 4 workers cannot take yet.
 *     Issue target: gatehouse ≥ 2× req/s.
 *
 *  2. nginx → Node FastCGI app. One nginx process, `fastcgi_pass` to an
 *     upstream with `keepalive` and `fastcgi_keep_conn on`, in front of the
 *     same hello handler (examples/hello.ts: same body, same headers) on
 *     (a) our app runtime (`node dist/examples/hello.js --listen SOCK`) and
 *     (b) node-fastcgi@2.0.0's createServer().listen(SOCK).
 *     Each location logs to its own nginx error log (level warn), so upstream
 *     errors (node-fastcgi was seen giving "broken pipe") are counted per app.
 *     Issue target: ours ≥ 5× req/s.
 *
 * wrk -t1 -c32 -d5s per run, fronts alternating, 2 rounds, median; one
 * 2-second warm-up run per front first (not counted). Every wait is bounded;
 * the whole bench gives up after 170 s.
 *
 *   npx tsc -p . && node dist/bench/peers-npm.js
 *
 * Needs php-cgi, /usr/sbin/nginx and wrk.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BenchProcess, killEverything } from './lib/procs.js';
import { toMs } from './lib/wrk.js';
import { freePort } from '../test/helpers/peers.js';

const ROUNDS = 2;
const DURATION = '5s';
const WARMUP = '2s';
const CONNECTIONS = 32;
const PHP_CHILDREN = 4;
const OVERALL_LIMIT_MS = 170_000;

const repoRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the bench');
    dir = up;
  }
  return dir;
})();
const dist = (...p: string[]): string => join(repoRoot, 'dist', ...p);
const nodeArgs = ['--no-deprecation']; // fastcgi-client calls new Buffer()

// ---------------------------------------------------------------------------
// The peers' programs, written to the temp dir as .mjs (they load their npm
// packages from the repository's node_modules through createRequire).

const EXPRESS_APP = `// Express 5 + fastcgi-client@0.2.0 in front of php-cgi, as php-fpm middlewares do it.
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(join(repoRoot, 'package.json'))});
const express = require('express');
const fcgi = require('fastcgi-client');
const [sockFile, port, root] = process.argv.slice(2);
const client = fcgi({ sockFile, skipCheckServer: true, maxConns: 1024, maxReqs: 1024, mpxsConns: false });
client.on('error', (err) => console.error('fastcgi-client:', err.message));
const app = express();
app.use((req, res) => {
  const q = req.originalUrl.indexOf('?');
  const path = q < 0 ? req.originalUrl : req.originalUrl.slice(0, q);
  const params = {
    GATEWAY_INTERFACE: 'CGI/1.1', SERVER_SOFTWARE: 'express', SERVER_PROTOCOL: 'HTTP/' + req.httpVersion,
    REQUEST_METHOD: req.method, REQUEST_URI: req.originalUrl, QUERY_STRING: q < 0 ? '' : req.originalUrl.slice(q + 1),
    SCRIPT_NAME: path, SCRIPT_FILENAME: root + path, DOCUMENT_URI: path, DOCUMENT_ROOT: root,
    CONTENT_TYPE: req.headers['content-type'] ?? '', CONTENT_LENGTH: req.headers['content-length'] ?? '',
    REMOTE_ADDR: req.socket.remoteAddress, REMOTE_PORT: req.socket.remotePort,
    SERVER_ADDR: req.socket.localAddress, SERVER_PORT: req.socket.localPort, SERVER_NAME: req.hostname ?? 'localhost',
    REDIRECT_STATUS: '200',
  };
  for (const [k, v] of Object.entries(req.headers)) params['HTTP_' + k.toUpperCase().replace(/-/g, '_')] = Array.isArray(v) ? v.join(', ') : v;
  client.request(params, (err, fr) => {
    if (err) { res.status(502).send(err.message); return; }
    const chunks = [];
    fr.stdout.on('data', (c) => chunks.push(c));
    fr.stderr.on('data', (c) => console.error('php stderr:', String(c)));
    fr.stdout.on('end', () => {
      const out = Buffer.concat(chunks);
      let at = out.indexOf('\\r\\n\\r\\n'), sep = 4;
      if (at < 0) { at = out.indexOf('\\n\\n'); sep = 2; }
      if (at < 0) { res.status(502).send('bad CGI response'); return; }
      let status = 200;
      for (const line of out.subarray(0, at).toString('latin1').split(/\\r?\\n/)) {
        const c = line.indexOf(':');
        if (c <= 0) continue;
        const name = line.slice(0, c).trim(), value = line.slice(c + 1).trim();
        if (name.toLowerCase() === 'status') status = parseInt(value, 10) || 200;
        else res.append(name, value);
      }
      res.status(status).end(out.subarray(at + sep));
    });
    if (req.headers['content-length'] > 0 || req.headers['transfer-encoding']) req.pipe(fr.stdin);
    else fr.stdin.end();
  });
});
app.listen(Number(port), '127.0.0.1');
`;

const NODE_FASTCGI_APP = `// node-fastcgi@2.0.0 serving examples/hello.ts's default route (same body and headers).
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(join(repoRoot, 'package.json'))});
const fcgi = require('node-fastcgi');
fcgi.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(\`Hello from gatehouse (pid \${process.pid})\\n\`);
}).listen(process.argv[2]);
`;

// ---------------------------------------------------------------------------

interface WrkRun {
  rps: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  socketText: string;
}

function wrk(url: string, duration: string): Promise<WrkRun> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${duration}`, '--latency', '--timeout', '5s', url];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' }, (err, out) => {
      if (err) return reject(new Error(`wrk ${url}: ${err.message}`));
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const p99 = /^\s+99%\s+(\S+)\s*$/m.exec(out);
      const total = /(\d+) requests in/.exec(out);
      if (!rps || !p99 || !total) return reject(new Error(`unexpected wrk output:\n${out}`));
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      resolve({
        rps: Number(rps[1]),
        p99Ms: toMs(p99[1]!),
        requests: Number(total[1]),
        non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
        socketErrors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
        socketText: sock ? sock[0] : '',
      });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

type Address = { port: number } | { path: string };

/** Resolves once a connect() succeeds; throws when `proc` exits first or after timeoutMs. */
async function waitConnectable(a: Address, proc: BenchProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const what = 'path' in a ? a.path : `127.0.0.1:${a.port}`;
  for (;;) {
    if (proc.exit) throw new Error(`${proc.command} ${proc.args.join(' ')} exited (${proc.exit.code ?? proc.exit.signal}) before ${what} accepted:\n${proc.text()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = 'path' in a ? net.connect(a.path) : net.connect(a.port, '127.0.0.1');
      const timer = setTimeout(() => (s.destroy(), resolve(false)), 1000);
      s.once('connect', () => (clearTimeout(timer), s.destroy(), resolve(true)));
      s.once('error', () => (clearTimeout(timer), resolve(false)));
    });
    if (ok) return;
    if (performance.now() > deadline) throw new Error(`${what} not accepting after ${timeoutMs} ms:\n${proc.text()}`);
    await sleep(20);
  }
}

/** One GET (bounded): status and body, to check a front answers what we think before timing it. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

async function expectOk(name: string, url: string, bodyRe: RegExp): Promise<void> {
  const r = await get(url);
  if (r.status !== 200 || !bodyRe.test(r.body)) throw new Error(`${name}: GET ${url} → ${r.status} ${JSON.stringify(r.body.slice(0, 200))}`);
}

function lineCount(file: string): number {
  try {
    return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').length;
  } catch {
    return 0;
  }
}

/** Distinct messages of an nginx error log (timestamps, pids and connection numbers stripped), most frequent first. */
function logDigest(file: string, top = 3): string[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const msg = line
      .replace(/^\S+ \S+ /, '')
      .replace(/\d+#\d+: \*\d+ /, '')
      .replace(/, client: .*$/, '')
      .trim();
    counts.set(msg, (counts.get(msg) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, top).map(([m, n]) => `${n}× ${m}`);
}

interface Front {
  label: string;
  url: string;
  /** The process whose early exit makes the comparison void. */
  procs: BenchProcess[];
  /** nginx error log of this front's location (part 2). */
  errorLog?: string;
  runs: WrkRun[];
  logLines: number;
  warmLogLines: number;
}

async function measure(fronts: Front[]): Promise<void> {
  for (const f of fronts) {
    const before = f.errorLog ? lineCount(f.errorLog) : 0;
    await wrk(f.url, WARMUP);
    if (f.errorLog) f.warmLogLines += lineCount(f.errorLog) - before;
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const f of fronts) {
      const before = f.errorLog ? lineCount(f.errorLog) : 0;
      const run = await wrk(f.url, DURATION);
      if (f.errorLog) f.logLines += lineCount(f.errorLog) - before;
      f.runs.push(run);
      const dead = f.procs.find((p) => p.exit);
      if (dead) throw new Error(`${f.label}: ${dead.command} ${dead.args.join(' ')} exited (${dead.exit?.code ?? dead.exit?.signal}) during the runs:\n${dead.text()}`);
    }
  }
}

function row(f: Front, withLog: boolean): string {
  const rps = median(f.runs.map((r) => r.rps));
  const p99 = median(f.runs.map((r) => r.p99Ms));
  const non2xx = f.runs.reduce((a, r) => a + r.non2xx, 0);
  const sockErr = f.runs.reduce((a, r) => a + r.socketErrors, 0);
  const reqs = f.runs.reduce((a, r) => a + r.requests, 0);
  const cols = [
    `  ${f.label.padEnd(44)}`,
    rps.toFixed(0).padStart(7),
    p99.toFixed(2).padStart(9),
    `${non2xx}/${reqs}`.padStart(14),
    String(sockErr).padStart(9),
    (withLog ? `${f.logLines} (+${f.warmLogLines} warm-up)` : '-').padStart(24),
    `   [${f.runs.map((r) => r.rps.toFixed(0)).join(', ')}]`,
  ];
  return cols.join('');
}

const rpsOf = (f: Front): number => median(f.runs.map((r) => r.rps));

async function main(): Promise<void> {
  const t0 = performance.now();
  const load0 = loadavg()[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'gh-peers-npm-'));
  // Also gone when the overall guard exits the process.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const started: BenchProcess[] = [];
  const start = (cmd: string, args: string[], env?: NodeJS.ProcessEnv): BenchProcess => {
    const p = new BenchProcess(cmd, args, env ? { env } : {});
    started.push(p);
    return p;
  };
  const out: string[] = [];
  try {
    // ---------------- part 1: HTTP → php-cgi ----------------
    const phpRoot = join(dir, 'php');
    mkdirSync(phpRoot);
    writeFileSync(join(phpRoot, 'index.php'), '<?php echo "hello";\n');
    const phpSock = join(dir, 'php.sock');
    const php = start('php-cgi', ['-b', phpSock], { ...process.env, PHP_FCGI_CHILDREN: String(PHP_CHILDREN), PHP_FCGI_MAX_REQUESTS: '0' });
    await waitConnectable({ path: phpSock }, php);

    const gwPort = await freePort();
    const gateway = start(process.execPath, [dist('src', 'cli', 'gatehouse.js'), 'serve', '--listen', `127.0.0.1:${gwPort}`, '-u', phpSock, '--max-conns', String(PHP_CHILDREN), '--root', phpRoot]);
    const exPort = await freePort();
    const expressJs = join(dir, 'express-fastcgi-client.mjs');
    writeFileSync(expressJs, EXPRESS_APP);
    const express = start(process.execPath, [...nodeArgs, expressJs, phpSock, String(exPort), phpRoot]);
    await waitConnectable({ port: gwPort }, gateway);
    await waitConnectable({ port: exPort }, express);

    const part1: Front[] = [
      { label: `gatehouse serve -u --max-conns ${PHP_CHILDREN} --root`, url: `http://127.0.0.1:${gwPort}/index.php`, procs: [gateway, php], runs: [], logLines: 0, warmLogLines: 0 },
      { label: 'Express 5 + fastcgi-client 0.2.0', url: `http://127.0.0.1:${exPort}/index.php`, procs: [express, php], runs: [], logLines: 0, warmLogLines: 0 },
    ];
    for (const f of part1) await expectOk(f.label, f.url, /^hello$/);
    const gwStartLines = gateway.lines.length;
    const exStartLines = express.lines.length;
    await measure(part1);
    const exStderr = express.lines.length - exStartLines;
    const gwStderr = gateway.lines.length - gwStartLines;
    await Promise.all([gateway.stop('SIGTERM', 5000), express.stop('SIGTERM', 2000)]);
    await php.stop('SIGTERM', 3000);

    // ---------------- part 2: nginx → Node FastCGI app ----------------
    const ghSock = join(dir, 'hello-gatehouse.sock');
    const nfSock = join(dir, 'hello-node-fastcgi.sock');
    const hello = start(process.execPath, [dist('examples', 'hello.js'), '--listen', ghSock]);
    const nfJs = join(dir, 'node-fastcgi-hello.mjs');
    writeFileSync(nfJs, NODE_FASTCGI_APP);
    const nf = start(process.execPath, [...nodeArgs, nfJs, nfSock]);
    await waitConnectable({ path: ghSock }, hello);
    await waitConnectable({ path: nfSock }, nf);
    for (const s of [ghSock, nfSock]) chmodSync(s, 0o666);

    const ngx = join(dir, 'nginx');
    for (const t of ['', 'body', 'proxy', 'fastcgi', 'scgi', 'uwsgi']) mkdirSync(join(ngx, t), { recursive: true });
    const ngPort = await freePort();
    const location = (name: string, upstream: string): string =>
      `location /${name}/ { error_log ${ngx}/${name}.error.log warn; fastcgi_pass ${upstream}; fastcgi_keep_conn on; include /etc/nginx/fastcgi_params; }`;
    writeFileSync(
      join(ngx, 'nginx.conf'),
      `daemon off;
master_process off;
error_log ${ngx}/error.log warn;
pid ${ngx}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${ngx}/body; proxy_temp_path ${ngx}/proxy; fastcgi_temp_path ${ngx}/fastcgi;
  scgi_temp_path ${ngx}/scgi; uwsgi_temp_path ${ngx}/uwsgi;
  upstream gatehouse { server unix:${ghSock}; keepalive 64; }
  upstream nodefastcgi { server unix:${nfSock}; keepalive 64; }
  server {
    listen 127.0.0.1:${ngPort};
    ${location('gh', 'gatehouse')}
    ${location('nf', 'nodefastcgi')}
  }
}
`,
    );
    const nginx = start('/usr/sbin/nginx', ['-p', ngx, '-c', join(ngx, 'nginx.conf')]);
    await waitConnectable({ port: ngPort }, nginx);

    const part2: Front[] = [
      { label: 'gatehouse app runtime (examples/hello.js)', url: `http://127.0.0.1:${ngPort}/gh/`, procs: [hello, nginx], errorLog: join(ngx, 'gh.error.log'), runs: [], logLines: 0, warmLogLines: 0 },
      { label: 'node-fastcgi 2.0.0 createServer', url: `http://127.0.0.1:${ngPort}/nf/`, procs: [nf, nginx], errorLog: join(ngx, 'nf.error.log'), runs: [], logLines: 0, warmLogLines: 0 },
    ];
    for (const f of part2) await expectOk(f.label, f.url, /^Hello from gatehouse \(pid \d+\)\n$/);
    const helloStartLines = hello.lines.length;
    const nfStartLines = nf.lines.length;
    await measure(part2);
    const nfDigest = logDigest(join(ngx, 'nf.error.log'));
    const ghDigest = logDigest(join(ngx, 'gh.error.log'));
    const mainLog = logDigest(join(ngx, 'error.log'));
    const helloStderr = hello.lines.length - helloStartLines;
    const nfStderr = nf.lines.length - nfStartLines;

    // ---------------- the table ----------------
    const head = `  ${''.padEnd(44)}${'req/s'.padStart(7)}${'p99 ms'.padStart(9)}${'non-2xx/reqs'.padStart(14)}${'sock err'.padStart(9)}${'nginx err-log lines'.padStart(24)}   rounds req/s`;
    const r1 = rpsOf(part1[0]!) / rpsOf(part1[1]!);
    const r2 = rpsOf(part2[0]!) / rpsOf(part2[1]!);
    out.push(
      `peers-npm: node ${process.version}, ${cpus().length} CPUs, wrk -t1 -c${CONNECTIONS} -d${DURATION}, ${ROUNDS} alternating rounds (median; one ${WARMUP} warm-up per front not counted)`,
      head,
      `1. HTTP → php-cgi -b unix (PHP_FCGI_CHILDREN=${PHP_CHILDREN}, MAX_REQUESTS=0), GET /index.php = <?php echo "hello";`,
      row(part1[0]!, false),
      row(part1[1]!, false),
      `  ratio gatehouse / Express+fastcgi-client: ${r1.toFixed(2)}× req/s   (issue target ≥ 2×: ${r1 >= 2 ? 'met' : 'NOT met'})`,
      `2. nginx (1 process, upstream keepalive 64, fastcgi_keep_conn on) → unix socket → hello app, GET /`,
      row(part2[0]!, true),
      row(part2[1]!, true),
      `  ratio gatehouse runtime / node-fastcgi:  ${r2.toFixed(2)}× req/s   (issue target ≥ 5×: ${r2 >= 5 ? 'met' : 'NOT met'})`,
      `notes:`,
      `  nginx error log, node-fastcgi location: ${nfDigest.length ? nfDigest.join(' | ') : 'empty'}`,
      `  nginx error log, gatehouse location:    ${ghDigest.length ? ghDigest.join(' | ') : 'empty'}`,
      `  (an upstream error on a cached keepalive connection is retried by nginx on a new one, so such lines cost throughput without reaching wrk as non-2xx;`,
      `   node-fastcgi: ${part2[1]!.logLines} lines for ${part2[1]!.runs.reduce((n, r) => n + r.requests, 0)} timed requests)`,
      ...(mainLog.length ? [`  nginx main error log: ${mainLog.join(' | ')}`] : []),
      `  stderr lines after startup: gateway ${gwStderr}, Express app ${exStderr}, hello ${helloStderr}, node-fastcgi app ${nfStderr}`,
      `  total wall time ${((performance.now() - t0) / 1000).toFixed(0)} s; 1-min load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at the end (this bench alone keeps ~2 busy)`,
    );
    if (gwStderr > 0) out.push(`  gateway stderr (first 3): ${gateway.lines.slice(gwStartLines, gwStartLines + 3).map((l) => l.text).join(' | ')}`);
    if (exStderr > 0) out.push(`  Express app stderr (first 3): ${express.lines.slice(exStartLines, exStartLines + 3).map((l) => l.text).join(' | ')}`);
    if (helloStderr > 0) out.push(`  hello stderr (first 3): ${hello.lines.slice(helloStartLines, helloStartLines + 3).map((l) => l.text).join(' | ')}`);
    if (nfStderr > 0) out.push(`  node-fastcgi stderr (first 3): ${nf.lines.slice(nfStartLines, nfStartLines + 3).map((l) => l.text).join(' | ')}`);
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    // Reverse start order: fronts before their backends; each stop is bounded (SIGKILL of the group after the grace).
    for (const p of started.reverse()) await p.stop('SIGTERM', 3000);
    killEverything();
    rmSync(dir, { recursive: true, force: true });
  }
}

const guard = setTimeout(() => {
  process.stderr.write(`peers-npm: gave up after ${OVERALL_LIMIT_MS / 1000} s\n`);
  killEverything();
  process.exit(1);
}, OVERALL_LIMIT_MS);
guard.unref();

try {
  await main();
} catch (err) {
  process.stderr.write(`peers-npm: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
} finally {
  clearTimeout(guard);
}
