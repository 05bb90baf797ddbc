/**
 * @module cli/manage
 * `gatehouse manage`: flags → ProcManager options; usage and exit codes.
 *   0 / 1  the manager's own exit code (1: workers had to be SIGKILLed),
 *   1      a runtime failure before start (address in use, pid file live…),
 *          reported in one line, with nothing left behind,
 *   2      a usage error (one line + usage on stderr).
 */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { parseArgs } from 'node:util';
import { hasCode } from '../errors.js';
import { PoolError } from '../pool/errors.js';
import { DEFAULT_BACKLOG, findInheritedSocket, type ListenSpec } from '../pool/listen-socket.js';
import { ProcManager } from '../pool/manager.js';

export const MANAGE_USAGE = `Usage: gatehouse manage [options] -- PROGRAM [ARGS...]

Runs N copies of PROGRAM, each with the listening socket on fd 0 (FastCGI's
FCGI_LISTENSOCK_FILENO), and keeps N running. The manager never accepts.

Options:
  -n N                number of workers (default 1)
  --die-timeout S     on TERM/INT, seconds to wait for workers before SIGKILL (default 60)
  --pidfile FILE      write the manager's pid (refused while it names a live process)
  --title NAME        process title "gatehouse-pm [NAME]"
  -s PATH             listen on a Unix socket (a stale file is replaced, a live one refused)
  -t [HOST:]PORT      listen on TCP; HOST defaults to 127.0.0.1, ":PORT" means every address
  --inherit           use the inherited socket: systemd LISTEN_FDS, or fd 0 if it listens
                      (the default when none of -s, -t, --inherit is given)
  --socket-mode MODE  octal permissions of the Unix socket, e.g. 660
  --backlog N         listen backlog (default ${DEFAULT_BACKLOG})
  -h, --help          print this help

Signals to the manager:
  HUP        TERM every worker and start new ones; manager pid and pid file stay
  TERM, INT  TERM every worker, wait up to --die-timeout, SIGKILL the rest;
             exit 0, or 1 if any worker had to be killed. A second one kills at once.
`;

class UsageError extends Error {}

interface ParsedManage {
  help: boolean;
  nProcesses: number;
  dieTimeout: number;
  pidFile: string | undefined;
  title: string | undefined;
  listen: ListenSpec;
  program: string;
  args: string[];
}

export async function runManage(argv: string[]): Promise<number> {
  try {
    const parsed = parseManageArgs(argv);
    if (parsed.help) {
      process.stdout.write(MANAGE_USAGE);
      return 0;
    }
    // Losing the log sink (a closed pipe) must not take the manager, and so every worker, down.
    process.stderr.on('error', () => {});
    assertRunnable(parsed.program);
    const pm = new ProcManager({
      nProcesses: parsed.nProcesses,
      dieTimeout: parsed.dieTimeout,
      pidFile: parsed.pidFile,
      processTitle: parsed.title,
      listen: parsed.listen,
      command: { program: parsed.program, args: parsed.args },
    });
    return await pm.run();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`gatehouse manage: ${err.message}\n${MANAGE_USAGE}`);
      return 2;
    }
    if (!(err instanceof PoolError)) throw err;
    process.stderr.write(`gatehouse manage: ${err.message}\n`);
    return 1;
  }
}

function parseManageArgs(argv: string[]): ParsedManage {
  const dashes = argv.indexOf('--');
  const own = dashes === -1 ? argv : argv.slice(0, dashes);
  const command = dashes === -1 ? [] : argv.slice(dashes + 1);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      allowPositionals: false,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        processes: { type: 'string', short: 'n' },
        'die-timeout': { type: 'string' },
        pidfile: { type: 'string' },
        title: { type: 'string' },
        socket: { type: 'string', short: 's' },
        tcp: { type: 'string', short: 't' },
        inherit: { type: 'boolean' },
        'socket-mode': { type: 'string' },
        backlog: { type: 'string' },
      },
    }));
  } catch (err) {
    // parseArgs' messages name the flag; point at `--` for a stray program name.
    const msg = (err as Error).message;
    throw new UsageError(hasCode(err, 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') ? `${msg} (put the program after --)` : msg);
  }
  const help = values.help === true;
  const nProcesses = values.processes === undefined ? 1 : parseInteger('-n', values.processes, 1, 100_000);
  const dieTimeout = values['die-timeout'] === undefined ? 60 : parsePositiveSeconds(values['die-timeout']);
  const backlog = values.backlog === undefined ? DEFAULT_BACKLOG : parseInteger('--backlog', values.backlog, 1, 1 << 20);

  const addressFlags = [values.socket !== undefined, values.tcp !== undefined, values.inherit === true].filter(Boolean);
  if (addressFlags.length > 1) throw new UsageError('give at most one of -s, -t and --inherit');
  if (values['socket-mode'] !== undefined && values.socket === undefined) throw new UsageError('--socket-mode needs -s PATH');

  let listen: ListenSpec;
  if (values.socket !== undefined) {
    if (values.socket === '') throw new UsageError('-s needs a path');
    const mode = values['socket-mode'] === undefined ? undefined : parseMode(values['socket-mode']);
    listen = { kind: 'unix', path: values.socket, backlog, ...(mode === undefined ? {} : { mode }) };
  } else if (values.tcp !== undefined) {
    listen = { kind: 'tcp', ...parseTcpAddress(values.tcp), backlog };
  } else {
    listen = { kind: 'inherit' };
  }

  if (!help && command.length === 0) throw new UsageError('missing program (gatehouse manage [options] -- PROGRAM [ARGS...])');
  if (!help && values.inherit !== true && listen.kind === 'inherit' && !findInheritedSocket()) {
    throw new UsageError('no address: give -s PATH or -t [HOST:]PORT (no socket was inherited on fd 0 or LISTEN_FDS)');
  }
  return {
    help,
    nProcesses,
    dieTimeout,
    pidFile: values.pidfile,
    title: values.title,
    listen,
    program: command[0] ?? '',
    args: command.slice(1),
  };
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} needs a whole number, got "${text}"`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function parsePositiveSeconds(text: string): number {
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!(n > 0)) throw new UsageError(`--die-timeout needs a number of seconds > 0, got "${text}"`);
  return n;
}

function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new UsageError(`--socket-mode needs an octal mode like 660, got "${text}"`);
  return parseInt(text, 8);
}

/** "[HOST:]PORT": "9000" → 127.0.0.1, ":9000" → every address, "[::1]:9000" → IPv6. */
export function parseTcpAddress(text: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]*\]|[^:]*):)?(\d+)$/.exec(text);
  if (!m) throw new UsageError(`-t needs [HOST:]PORT, got "${text}"`);
  const rawHost = m[1];
  const host = rawHost === undefined ? '127.0.0.1' : rawHost.replace(/^\[(.*)\]$/, '$1');
  return { host, port: parseInteger('-t', m[2] ?? '', 0, 65535) };
}

/** Fails before anything is created when the program cannot be run at all. */
function assertRunnable(program: string): void {
  const candidates = program.includes('/')
    ? [program]
    : (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).map((dir) => join(dir || '.', program));
  for (const file of candidates) {
    try {
      accessSync(file, fsConstants.X_OK);
      if (statSync(file).isFile()) return;
    } catch {
      // not here: try the next PATH entry
    }
  }
  throw new PoolError('ERR_PM_PROGRAM_NOT_FOUND', `${program}: no such executable${program.includes('/') ? '' : ' in PATH'}`);
}
