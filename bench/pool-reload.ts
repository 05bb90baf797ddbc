/**
 * `gatehouse manage` under reload and at start/stop, next to the programs it
 * replaces, in one run (< 3 minutes):
 *
 *  1. nginx → `gatehouse manage -n 4 -s SOCK -- php-cgi`, `wrk -t2 -c32 -d10s`
 *     while the manager gets SIGHUP every second: non-2xx answers (counted by
 *     a wrk Lua script), wrk socket errors and nginx error-log lines about the
 *     upstream; once with nginx's default (a connection per request) and once
 *     with `upstream { keepalive 16; }` + `fastcgi_keep_conn on`.
 *  2. SIGTERM to the manager of an idle pool of 8 → its exit (median of 5),
 *     next to FCGI::ProcManager 0.28 (n_processes 8, Perl workers).
 *  3. spawn → 8 distinct worker pids blocked in accept()/accept4() (read from
 *     /proc/PID/syscall), next to `spawn-fcgi -F 8` and FCGI::ProcManager.
 *  4. the manager's RSS with 8 workers after a load with reloads.
 *
 *   npx tsc -p . && node dist/bench/pool-reload.js [--parts 1,2,3,4]
 *
 * Needs /usr/sbin/nginx, /usr/bin/php-cgi, wrk, spawn-fcgi, perl with FCGI and
 * FCGI::ProcManager; Linux x86_64 (syscall numbers). Every process is started
 * in its own process group and killed by pid/group, also on failure.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startNginx, type Nginx } from '../test/helpers/peers.js';
import { Family, isAlive, memoryKb, waitAccepting, waitGone } from './lib/procfs.js';
import { adoptPid, BenchProcess, killEverything, releasePid } from './lib/procs.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MANAGE = join(ROOT, 'dist/src/cli/manage-main.js');
const PHP_CGI = '/usr/bin/php-cgi';
/** One php-cgi process per worker, and no max-requests exits (php-cgi's default is 500) muddying the reload numbers. */
const PHP_ENV = { ...process.env, PHP_FCGI_CHILDREN: '0', PHP_FCGI_MAX_REQUESTS: '0' };
const ROUNDS = 5;
/** The whole bench must finish well inside 3 minutes; past this it stops and cleans up. */
const WATCHDOG_MS = 170_000;

const WRK_LUA = `-- counts what wrk's own summary does not break down
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0; s502 = 0; s504 = 0; badbody = 0 end
function response(status, headers, body)
  if status >= 300 then
    non2xx = non2xx + 1
    if status == 502 then s502 = s502 + 1 elseif status == 504 then s504 = s504 + 1 end
  elseif body ~= "ok" then
    badbody = badbody + 1
  end
end
function done(summary, latency, requests)
  local n, a, b, c = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    n = n + t:get("non2xx"); a = a + t:get("s502"); b = b + t:get("s504"); c = c + t:get("badbody")
  end
  local e = summary.errors
  io.write(string.format("GH non2xx=%d s502=%d s504=%d badbody=%d requests=%d connect=%d read=%d write=%d status=%d timeout=%d p99us=%d maxus=%d\\n",
    n, a, b, c, summary.requests, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(99), latency.max))
end
`;

/** The Perl original, as in its documentation: the manager owns the socket from FCGI::OpenSocket. */
const PERL_PM = `use strict;
use warnings;
use FCGI;
use FCGI::ProcManager;
my $path = shift or die "usage: pm.pl SOCKET\\n";
my $sock = FCGI::OpenSocket($path, 1024) or die "OpenSocket $path: $!\\n";
my $pm = FCGI::ProcManager->new({ n_processes => 8, die_timeout => 10 });
my $req = FCGI::Request(\\*STDIN, \\*STDOUT, \\*STDERR, \\%ENV, $sock, FCGI::FAIL_ACCEPT_ON_INTR);
$pm->pm_manage;
while ($req->Accept() >= 0) {
    $pm->pm_pre_dispatch;
    print "Content-Type: text/plain\\r\\n\\r\\nok";
    $pm->pm_post_dispatch;
}
`;

/** A plain Perl FCGI worker (accepts on fd 0) for gatehouse: separates the manager's share from the worker's. */
const PERL_WORKER = `use strict;
use warnings;
use FCGI;
my $req = FCGI::Request();
while ($req->Accept() >= 0) { print "Content-Type: text/plain\\r\\n\\r\\nok"; }
`;

/**
 * nginx logs only the requests that were not one clean 200 from one upstream
 * attempt: "$status $upstream_status", e.g. "200 502, 200" for a request nginx
 * retried after a failed cached connection, "499 -" for one the client gave up.
 */
const ODD_REQUESTS_LOG = `log_format gh_odd '$status $upstream_status';
  map "$status:$upstream_status" $gh_odd { "~^200:[0-9]+$" 0; default 1; }`;

const UPSTREAM_RE = /upstream|connect\(\) failed|prematurely closed|reset by peer/;
const NGINX_LEVEL_RE = /^\S+ \S+ \[(\w+)\]/;

// ---- small helpers -----------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function spread(xs: number[]): string {
  return `${median(xs).toFixed(1)} ms [${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}]`;
}

function mib(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MiB`;
}

function version(cmd: string, args: string[], re: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 });
    return re.exec(out)?.[0] ?? '?';
  } catch (err) {
    // nginx -v writes to stderr
    const e = err as { stderr?: string };
    return re.exec(e.stderr ?? '')?.[0] ?? '?';
  }
}

function nginxVersion(): string {
  const r = spawnSync('/usr/sbin/nginx', ['-v'], { encoding: 'utf8', timeout: 5000 });
  return /nginx\/\S+/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[0] ?? '?';
}

/** One GET with a bounded wait. */
function get(url: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** Kills descendants still alive after their manager is gone; returns how many there were. */
async function killLeftovers(family: Family): Promise<number> {
  family.refresh();
  const left = family.descendants();
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await waitGone(left, 3000);
  return left.length;
}

const anomalies: string[] = [];

// ---- pools -------------------------------------------------------------------

type PoolKind = 'gatehouse-php' | 'gatehouse-perl' | 'perl-pm' | 'spawn-fcgi';

interface Pool {
  kind: PoolKind;
  proc: BenchProcess;
  family: Family;
  command: string;
  /** Stops the pool (timed for managers) and kills anything left. */
  stop(): Promise<void>;
}

let poolSerial = 0;

function startPool(kind: PoolKind, n: number, sock: string, dir: string): Pool {
  let proc: BenchProcess;
  let command: string;
  // In every pool process's environment: finds spawn-fcgi's workers after it has exited and left them to init.
  const marker = `GH_BENCH_POOL=${process.pid}.${++poolSerial}`;
  const [markerName, markerValue] = marker.split('=') as [string, string];
  const env = { ...PHP_ENV, [markerName]: markerValue };
  if (kind === 'gatehouse-php' || kind === 'gatehouse-perl') {
    const program = kind === 'gatehouse-php' ? [PHP_CGI] : ['/usr/bin/perl', join(dir, 'worker.pl')];
    const args = [MANAGE, '-n', String(n), '--die-timeout', '10', '-s', sock, '--', ...program];
    command = `node ${args.join(' ').replace(ROOT, '')}`;
    proc = new BenchProcess(process.execPath, args, { env });
  } else if (kind === 'perl-pm') {
    command = `perl pm.pl ${sock}   (FCGI::ProcManager, n_processes ${n})`;
    proc = new BenchProcess('/usr/bin/perl', [join(dir, 'pm.pl'), sock], { env });
  } else {
    const args = ['-F', String(n), '-s', sock, '--', PHP_CGI];
    command = `spawn-fcgi ${args.join(' ')}`;
    proc = new BenchProcess('/usr/bin/spawn-fcgi', args, { env });
  }
  const family = new Family(proc.pid, marker);
  const pool: Pool = {
    kind,
    proc,
    family,
    command: command.replace(sock, 'SOCK').replaceAll(dir, 'DIR'),
    async stop() {
      if (kind === 'spawn-fcgi') {
        // spawn-fcgi itself is gone; its php-cgi children were re-parented to init.
        await proc.waitExit(2000);
        family.refresh();
        const pids = family.descendants();
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            /* gone */
          }
        }
        if (!(await waitGone(pids, 5000))) anomalies.push(`spawn-fcgi workers ignored TERM for 5 s`);
      } else {
        const exit = await proc.stop('SIGTERM', 15_000);
        if (!exit) anomalies.push(`${kind}: manager ${proc.pid} did not exit`);
      }
      const left = await killLeftovers(family);
      if (left > 0) anomalies.push(`${kind}: ${left} worker(s) still alive after the pool stopped (SIGKILLed)`);
      for (const pid of family.members) releasePid(pid);
    },
  };
  return pool;
}

/** Waits for n workers in accept(), adopting each new pid so it dies with the bench. */
async function poolReady(pool: Pool, n: number, timeoutMs = 10_000): Promise<{ ms: number; pids: number[] }> {
  const died = (): string | undefined => {
    // Killed with the bench, whatever happens next (if the pid still carries this pool's marker).
    for (const pid of pool.family.members) adoptPid(pid, () => pool.family.hasMarker(pid));
    const e = pool.proc.exit;
    if (!e || pool.kind === 'spawn-fcgi') return undefined; // spawn-fcgi exits by design
    return `${pool.kind} exited (${e.code ?? e.signal}):\n${pool.proc.text()}`;
  };
  try {
    const ready = await waitAccepting(pool.family, n, pool.proc.startedAt, timeoutMs, died);
    died();
    return ready;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${pool.kind} log (last 15 lines):\n${pool.proc.lines.slice(-15).map((l) => l.text).join('\n')}`);
  }
}

// ---- 1 and 4: reload under load ------------------------------------------------

interface LoadResult {
  label: string;
  rps: number;
  requests: number;
  p99Ms: number;
  maxMs: number;
  non2xx: number;
  s502: number;
  s504: number;
  badBody: number;
  socket: { connect: number; read: number; write: number; timeout: number };
  upstreamErrors: number;
  upstreamLines: Map<string, number>;
  /** From nginx's log of odd requests: "200 502, 200" → count. */
  oddRequests: Map<string, number>;
  infoLines: Map<string, number>;
  hups: number;
  hupsLogged: number;
  workerExits: number;
  exitStatuses: Map<string, number>;
  managerRss: { rssKb: number; hwmKb: number };
  wrkCommand: string;
}

/** "2026/01/01 00:00:00 [error] 1#0: *5 connect() … failed (…) while …, client: …" → "[error] connect() … failed (…) while …". */
function normalizeNginxLine(line: string): string {
  return line
    .replace(/^\S+ \S+ /, '')
    .replace(/ \d+#\d+: (\*\d+ )?/, ' ')
    .replace(/, client: .*$/, '')
    .replace(/unix:\S+?\.sock/g, 'unix:SOCK');
}

async function runLoad(label: string, opts: { n: number; keepalive: boolean; duration: number }): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-pr-'));
  const sock = join(dir, 'php.sock');
  const script = join(dir, 'ok.php');
  writeFileSync(script, '<?php echo "ok";');
  const oddLog = join(dir, 'odd-requests.log');
  const lua = join(dir, 'count.lua');
  writeFileSync(lua, WRK_LUA);
  let nginx: Nginx | undefined;
  let wrk: BenchProcess | undefined;
  let hupTimer: NodeJS.Timeout | undefined;
  const pool = startPool('gatehouse-php', opts.n, sock, dir);
  try {
    await poolReady(pool, opts.n);
    const pass = opts.keepalive ? 'fastcgi_pass php; fastcgi_keep_conn on;' : `fastcgi_pass unix:${sock};`;
    nginx = await startNginx(
      `location / {
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME ${script};
        ${pass}
        access_log ${oddLog} gh_odd if=$gh_odd;
      }`,
      { httpExtra: `${ODD_REQUESTS_LOG}\n${opts.keepalive ? `upstream php { server unix:${sock}; keepalive 16; }` : ''}` },
    );
    const probe = await get(`${nginx.url}/`);
    if (probe.status !== 200 || probe.body !== 'ok') {
      throw new Error(`probe through nginx: ${probe.status} ${JSON.stringify(probe.body)}\n${nginx.errorLog()}\n${pool.proc.text()}`);
    }
    const logFrom = pool.proc.lines.length;
    const wrkArgs = ['-t2', '-c32', `-d${opts.duration}s`, '-s', lua, `${nginx.url}/`];
    wrk = new BenchProcess('/usr/bin/wrk', wrkArgs);
    // SIGHUP every second while wrk runs, the first one 0.5 s in.
    let hups = 0;
    const managerPid = pool.proc.pid;
    const hup = (): void => {
      if (wrk?.exit) return;
      process.kill(managerPid, 'SIGHUP');
      hups += 1;
    };
    const first = setTimeout(() => {
      hup();
      hupTimer = setInterval(hup, 1000);
    }, 500);
    const wrkExit = await wrk.waitExit((opts.duration + 20) * 1000);
    clearTimeout(first);
    clearInterval(hupTimer);
    if (!wrkExit) throw new Error(`wrk did not finish within ${opts.duration + 20} s`);
    if (wrkExit.code !== 0) throw new Error(`wrk exited ${wrkExit.code ?? wrkExit.signal}: ${wrk.text()}`);
    const out = wrk.text();
    const gh = /GH (.*)/.exec(out)?.[1];
    if (!gh) throw new Error(`no counts from the wrk script:\n${out}`);
    const f = Object.fromEntries(gh.split(' ').map((kv) => kv.split('=') as [string, string]));
    const num = (k: string): number => Number(f[k] ?? Number.NaN);

    // Let the pool settle back to n idle workers, then read the manager's memory. nginx goes
    // first: with keep_conn, idle workers sit in read() on nginx's cached connections, not in accept().
    const errorLog = nginx.errorLog();
    await nginx.stop();
    await poolReady(pool, opts.n, 15_000);
    const managerRss = memoryKb(managerPid);

    const upstreamLines = new Map<string, number>();
    const infoLines = new Map<string, number>();
    let upstreamErrors = 0;
    for (const line of errorLog.split('\n')) {
      if (!UPSTREAM_RE.test(line)) continue;
      const level = NGINX_LEVEL_RE.exec(line)?.[1] ?? '?';
      const key = normalizeNginxLine(line);
      // info/notice lines are the client's side (wrk closing its connections at the end), not upstream failures.
      const into = level === 'info' || level === 'notice' || level === 'debug' ? infoLines : upstreamLines;
      if (into === upstreamLines) upstreamErrors += 1;
      into.set(key, (into.get(key) ?? 0) + 1);
    }
    const oddRequests = new Map<string, number>();
    for (const line of readFileSync(oddLog, 'utf8').split('\n')) {
      if (line === '') continue;
      // "200 502, 502, 200" → "200 after 502, 502"
      const [status, ...upstream] = line.split(' ');
      const tries = upstream.join(' ').split(', ');
      const key = tries.length > 1 ? `${status} after ${tries.slice(0, -1).join(', ')} (retried)` : `${status} (upstream ${tries[0]})`;
      oddRequests.set(key, (oddRequests.get(key) ?? 0) + 1);
    }
    const exitStatuses = new Map<string, number>();
    for (const l of pool.proc.lines.slice(logFrom)) {
      const m = /exited with status (\d+) \(([^,]+),/.exec(l.text);
      if (m) exitStatuses.set(m[2]!, (exitStatuses.get(m[2]!) ?? 0) + 1);
    }
    return {
      label,
      rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
      requests: num('requests'),
      p99Ms: num('p99us') / 1000,
      maxMs: num('maxus') / 1000,
      non2xx: num('non2xx'),
      s502: num('s502'),
      s504: num('s504'),
      badBody: num('badbody'),
      socket: { connect: num('connect'), read: num('read'), write: num('write'), timeout: num('timeout') },
      upstreamErrors,
      upstreamLines,
      oddRequests,
      infoLines,
      hups,
      hupsLogged: pool.proc.count(/received signal HUP/, logFrom),
      workerExits: pool.proc.count(/exited with status/, logFrom),
      exitStatuses,
      managerRss,
      wrkCommand: `wrk ${wrkArgs.join(' ').replace(lua, 'count.lua')}`,
    };
  } finally {
    clearInterval(hupTimer);
    if (wrk) await wrk.stop('SIGKILL', 2000);
    if (nginx) await nginx.stop();
    await pool.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- 2 and 3: start and stop ---------------------------------------------------

interface StartStop {
  startMs: number[];
  /** spawn → the manager's "initialized" log line (socket bound; before the first worker). */
  initMs: number[];
  termMs: number[];
  idleRssKb: number[];
  exitCodes: Set<string>;
  command: string;
}

async function startStopRound(kind: PoolKind, dir: string, round: number, results: Map<PoolKind, StartStop>): Promise<void> {
  const sock = join(dir, `${kind}-${round}.sock`);
  const pool = startPool(kind, 8, sock, dir);
  const r = results.get(kind) ?? { startMs: [], initMs: [], termMs: [], idleRssKb: [], exitCodes: new Set<string>(), command: pool.command };
  results.set(kind, r);
  try {
    const ready = await poolReady(pool, 8);
    if (new Set(ready.pids).size !== 8) throw new Error(`${kind}: ${ready.pids.length} accepting pids`);
    if (round >= 0) {
      r.startMs.push(ready.ms);
      const init = pool.proc.lines.find((l) => /initialized/.test(l.text));
      if (init) r.initMs.push(init.at - pool.proc.startedAt);
    }
    if (kind === 'spawn-fcgi') return; // no manager to TERM
    await sleep(300); // idle
    if (!isAlive(pool.proc.pid)) throw new Error(`${kind}: manager gone before TERM`);
    const idleRss = memoryKb(pool.proc.pid).rssKb;
    const t0 = performance.now();
    process.kill(pool.proc.pid, 'SIGTERM');
    const exit = await pool.proc.waitExit(15_000);
    if (!exit) throw new Error(`${kind}: manager did not exit within 15 s of TERM\n${pool.proc.text()}`);
    if (round >= 0) {
      r.termMs.push(exit.at - t0);
      r.idleRssKb.push(idleRss);
      r.exitCodes.add(String(exit.code ?? exit.signal));
    }
  } finally {
    await pool.stop();
    rmSync(sock, { force: true });
  }
}

// ---- main ----------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { parts: { type: 'string', default: '1,2,3,4' } } });
  const parts = new Set((values.parts ?? '').split(',').map(Number).filter((n) => n >= 1 && n <= 4));
  if (parts.size === 0) throw new Error('--parts takes a comma-separated subset of 1,2,3,4');
  const began = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'gh-pr-'));
  writeFileSync(join(dir, 'pm.pl'), PERL_PM);
  writeFileSync(join(dir, 'worker.pl'), PERL_WORKER);
  try {
    readFileSync(MANAGE);
  } catch {
    throw new Error(`${MANAGE} missing: run npx tsc -p . first`);
  }
  const env = [
    `node ${process.version}`,
    `${cpus().length} CPUs`,
    nginxVersion(),
    version(PHP_CGI, ['-v'], /PHP \S+/),
    version('/usr/bin/spawn-fcgi', ['-v'], /spawn-fcgi v\S+/),
    `FCGI::ProcManager ${version('/usr/bin/perl', ['-MFCGI::ProcManager', '-e', 'print $FCGI::ProcManager::VERSION'], /\S+/)}`,
  ].join(', ');

  const out: string[] = [];
  const p = (line = ''): void => {
    out.push(line);
  };
  try {
    p(`gatehouse manage: reload, stop, start, memory   (${env})`);
    p(`command: npx tsc -p . && node dist/bench/pool-reload.js${parts.size < 4 ? ` --parts ${[...parts].sort().join(',')}` : ''}`);
    p(`php-cgi env: PHP_FCGI_CHILDREN=0 PHP_FCGI_MAX_REQUESTS=0; nginx: daemon off, master_process off (1 process)`);

    // 2 + 3 share their runs: a warm-up round (-1, discarded), then ROUNDS rounds, kinds in rotating order.
    const ss = new Map<PoolKind, StartStop>();
    let ssSeconds = 0;
    if (parts.has(2) || parts.has(3)) {
      const t = performance.now();
      const kinds: PoolKind[] = ['gatehouse-php', 'spawn-fcgi', 'perl-pm', 'gatehouse-perl'];
      for (let round = -1; round < ROUNDS; round++) {
        const shift = (round + 1) % kinds.length;
        for (const kind of [...kinds.slice(shift), ...kinds.slice(0, shift)]) await startStopRound(kind, dir, round, ss);
      }
      ssSeconds = (performance.now() - t) / 1000;
    }

    // 1: reload under load, both nginx upstream modes; 4: -n 8 with load and reloads.
    let loadRss: string | undefined;
    if (parts.has(1)) {
      const plain = await runLoad('no keepalive (connection per request)', { n: 4, keepalive: false, duration: 10 });
      const kept = await runLoad('keepalive 16 + fastcgi_keep_conn on', { n: 4, keepalive: true, duration: 10 });
      loadRss = `${mib(plain.managerRss.rssKb)} / ${mib(kept.managerRss.rssKb)}`;
      p();
      p(`1. reload under load: nginx → gatehouse manage -n 4 -s SOCK --die-timeout 10 -- ${PHP_CGI}`);
      p(`   ${plain.wrkCommand}, SIGHUP to the manager every 1 s from 0.5 s in`);
      p(`   upstream mode                           req/s  p99/max ms  requests  non-2xx (502/504)  bad body  sock err c/r/w/t  nginx upstream errors  HUPs sent/logged  worker exits`);
      for (const r of [plain, kept]) {
        const e = r.socket;
        p(
          `   ${r.label.padEnd(38)} ${r.rps.toFixed(0).padStart(6)} ${`${r.p99Ms.toFixed(0)}/${r.maxMs.toFixed(0)}`.padStart(11)} ${String(r.requests).padStart(9)} ${`${r.non2xx} (${r.s502}/${r.s504})`.padStart(18)} ${String(r.badBody).padStart(9)}  ${`${e.connect}/${e.read}/${e.write}/${e.timeout}`.padStart(16)}  ${String(r.upstreamErrors).padStart(21)}  ${`${r.hups}/${r.hupsLogged}`.padStart(16)}  ${String(r.workerExits).padStart(12)}`,
        );
      }
      p(`   reference (earlier run, keepalive): FCGI::ProcManager 35 upstream errors, php-fpm USR2 27`);
      for (const r of [plain, kept]) {
        const statuses = [...r.exitStatuses].map(([how, n]) => `${n}× ${how}`).join(', ');
        p(`   [${r.label}] worker exits: ${statuses || 'none'}`);
        for (const [line, n] of [...r.upstreamLines].sort((a, b) => b[1] - a[1]).slice(0, 6)) p(`     ${String(n).padStart(5)}× ${line}`);
        if (r.upstreamLines.size > 6) p(`     … ${r.upstreamLines.size - 6} more kinds`);
        const odd = [...r.oddRequests].sort((a, b) => b[1] - a[1]);
        p(`     requests that were not one clean upstream 200 (nginx access log): ${odd.length ? odd.map(([k, n]) => `${n}× ${k}`).join(', ') : 'none'}`);
        const info = [...r.infoLines].reduce((a, [, n]) => a + n, 0);
        if (info > 0) {
          p(`     (+ ${info} info-level lines, client side, not counted:)`);
          for (const [line, n] of [...r.infoLines].sort((a, b) => b[1] - a[1]).slice(0, 3)) p(`     ${String(n).padStart(5)}× ${line}`);
        }
      }
    }

    const g = ss.get('gatehouse-php');
    const pm = ss.get('perl-pm');
    const gp = ss.get('gatehouse-perl');
    const sf = ss.get('spawn-fcgi');
    if (parts.has(2) && g && pm && gp) {
      p();
      p(`2. SIGTERM → manager exit, idle pool of 8 (median of ${ROUNDS} [min–max]; target ≤ 50 ms)`);
      p(`   gatehouse manage -n 8 -- php-cgi            ${spread(g.termMs).padEnd(26)} exit ${[...g.exitCodes].join('/')}`);
      p(`   FCGI::ProcManager n_processes 8 (Perl)      ${spread(pm.termMs).padEnd(26)} exit ${[...pm.exitCodes].join('/')}   gatehouse/original ${(median(g.termMs) / median(pm.termMs)).toFixed(2)}×`);
      p(`   gatehouse manage -n 8 -- perl (plain FCGI)  ${spread(gp.termMs).padEnd(26)} exit ${[...gp.exitCodes].join('/')}   vs original ${(median(gp.termMs) / median(pm.termMs)).toFixed(2)}×`);
    }
    if (parts.has(3) && g && pm && gp && sf) {
      p();
      p(`3. spawn → 8 distinct workers blocked in accept()/accept4() (/proc/PID/syscall 43/288), median of ${ROUNDS} [min–max]`);
      p(`   gatehouse manage -n 8 -- php-cgi            ${spread(g.startMs).padEnd(26)} (manager "initialized" at ${median(g.initMs).toFixed(1)} ms)`);
      p(`   spawn-fcgi -F 8 -- php-cgi                  ${spread(sf.startMs).padEnd(26)} gatehouse/spawn-fcgi ${(median(g.startMs) / median(sf.startMs)).toFixed(2)}×  (spawn-fcgi sleeps 100 ms after its first fork)`);
      p(`   FCGI::ProcManager n_processes 8 (Perl)      ${spread(pm.startMs).padEnd(26)} gatehouse/original ${(median(g.startMs) / median(pm.startMs)).toFixed(2)}×  (fork only, no exec)`);
      p(`   gatehouse manage -n 8 -- perl (plain FCGI)  ${spread(gp.startMs).padEnd(26)} (manager "initialized" at ${median(gp.initMs).toFixed(1)} ms)`);
    }
    if (parts.has(4)) {
      const eight = await runLoad('-n 8, no keepalive, 5 s', { n: 8, keepalive: false, duration: 5 });
      p();
      p(`4. manager RSS (VmRSS; peak VmHWM)`);
      p(`   gatehouse, 8 php-cgi workers, after 5 s of wrk -c32 + ${eight.hups} SIGHUPs   ${mib(eight.managerRss.rssKb)} (peak ${mib(eight.managerRss.hwmKb)}); ${eight.requests} requests, ${eight.non2xx} non-2xx, ${eight.upstreamErrors} upstream errors`);
      if (loadRss) p(`   gatehouse, 4 php-cgi workers, after part 1 (no keepalive / keepalive)  ${loadRss}`);
      if (g && pm) {
        p(`   gatehouse, 8 php-cgi workers, idle (part 2, median)               ${mib(median(g.idleRssKb))}`);
        p(`   FCGI::ProcManager, 8 Perl workers, idle (part 2, median)          ${mib(median(pm.idleRssKb))}   gatehouse/original ${(median(g.idleRssKb) / median(pm.idleRssKb)).toFixed(1)}×`);
      }
    }
    p();
    p(`commands:`);
    for (const c of [g, sf, pm, gp]) if (c) p(`   ${c.command}`);
    if (pm) p(`   perl pm.pl = FCGI::OpenSocket(SOCK, 1024) + FCGI::ProcManager->new({ n_processes => 8, die_timeout => 10 }) + Accept loop (FAIL_ACCEPT_ON_INTR)`);
    if (parts.has(1)) p(`   nginx keepalive: upstream php { server unix:SOCK; keepalive 16; }  location / { fastcgi_pass php; fastcgi_keep_conn on; }`);
    p(`took ${((performance.now() - began) / 1000).toFixed(0)} s${ssSeconds ? ` (start/stop rounds ${ssSeconds.toFixed(0)} s)` : ''}`);
    if (anomalies.length > 0) {
      p();
      p('anomalies:');
      for (const a of anomalies) p(`   ${a}`);
    }
  } finally {
    // Whatever was measured before a failure is still printed.
    console.log(out.join('\n'));
    rmSync(dir, { recursive: true, force: true });
  }
}

const watchdog = setTimeout(() => {
  process.stderr.write(`pool-reload: still running after ${WATCHDOG_MS / 1000} s; giving up\n`);
  killEverything();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

try {
  await main();
} catch (err) {
  process.stderr.write(`pool-reload: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  killEverything();
  clearTimeout(watchdog);
}
