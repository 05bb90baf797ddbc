/**
 * @module cli/status
 * `gatehouse status --pidfile F`: reads a manager's pid file and reports the
 * manager and its workers from /proc. Exit 0 running, 1 not running (3 would
 * be LSB's "not running", but one code for "not running" keeps scripts simple).
 */
import { parseArgs } from 'node:util';
import { readFileSync, readdirSync } from 'node:fs';

const USAGE = `usage: gatehouse status --pidfile FILE [--json]
  --pidfile FILE   the pid file a 'gatehouse manage --pidfile FILE' wrote
  --json           print one JSON object instead of text
`;

interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
  cmdline: string;
  startTicks: number;
}

function readProc(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return { pid, ppid: Number(fields[1]), state: fields[0] ?? '?', cmdline, startTicks: Number(fields[19]) };
  } catch {
    return null;
  }
}

function childrenOf(ppid: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const info = readProc(Number(name));
    if (info && info.ppid === ppid) out.push(info);
  }
  return out.sort((a, b) => a.pid - b.pid);
}

export async function runStatus(argv: string[]): Promise<number> {
  let values: { pidfile?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { pidfile: { type: 'string', short: 'p' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`gatehouse status: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!values.pidfile) {
    process.stderr.write(`gatehouse status: --pidfile is required\n${USAGE}`);
    return 2;
  }
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(values.pidfile, 'utf8').trim(), 10);
  } catch (err) {
    process.stderr.write(`gatehouse status: cannot read ${values.pidfile}: ${(err as NodeJS.ErrnoException).code ?? err}\n`);
    return 1;
  }
  const manager = Number.isInteger(pid) && pid > 0 ? readProc(pid) : null;
  if (!manager || manager.state === 'Z') {
    const msg = `gatehouse status: manager pid ${pid} from ${values.pidfile} is not running (stale pid file)`;
    if (values.json) process.stdout.write(JSON.stringify({ running: false, pid }) + '\n');
    else process.stderr.write(msg + '\n');
    return 1;
  }
  const workers = childrenOf(pid);
  if (values.json) {
    process.stdout.write(JSON.stringify({ running: true, pid, title: manager.cmdline, workers: workers.map((w) => ({ pid: w.pid, state: w.state, cmdline: w.cmdline })) }) + '\n');
  } else {
    process.stdout.write(`manager ${pid} running: ${manager.cmdline}\n`);
    process.stdout.write(`workers: ${workers.length}\n`);
    for (const w of workers) process.stdout.write(`  ${w.pid} ${w.state} ${w.cmdline}\n`);
  }
  return 0;
}
