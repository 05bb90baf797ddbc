/**
 * @module cli/backend-flags
 * What `gatehouse serve`, callscgi and callfcgi share on their command lines:
 * getopt-"+" parsing (options end at the first non-option, so PROGRAM keeps
 * its own flags), callscgi's backend flags (-N -n -i -u -t), HTTP listen
 * addresses, and the stop-signal handling (first SIGTERM/SIGINT drains, a
 * second one exits at once).
 */
import type { BackendAddress } from '../backend/contract.js';
import { parseTcpSpec, parseUnixSpec } from '../backend/address.js';

export interface OptionSpec {
  /** Short flags that take an argument (attached or as the next word). `h` is always help. */
  short: ReadonlySet<string>;
  /** Long options that take an argument (`--opt VALUE` or `--opt=VALUE`). */
  long: ReadonlySet<string>;
  /** Long options without an argument. `--help` is always help. */
  longFlags?: ReadonlySet<string>;
}

export type ParsedOptions =
  | { kind: 'ok'; options: Array<[name: string, value: string | undefined]>; program: string[] }
  | { kind: 'help' }
  | { kind: 'error'; message: string };

/**
 * Splits argv into options (in order, names as written: `N`, `--listen`) and
 * PROGRAM [ARGS...]. Short options may be clustered (`-hN3`); `--` ends the options.
 */
export function parseUntilProgram(argv: readonly string[], spec: OptionSpec): ParsedOptions {
  const options: Array<[string, string | undefined]> = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg : arg.slice(0, eq);
      if (name === '--help') return { kind: 'help' };
      if (spec.longFlags?.has(name)) {
        if (eq >= 0) return { kind: 'error', message: `option '${name}' takes no argument` };
        options.push([name, undefined]);
        continue;
      }
      if (!spec.long.has(name)) return { kind: 'error', message: `unknown option '${name}'` };
      const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined) return { kind: 'error', message: `option '${name}' needs an argument` };
      options.push([name, value]);
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j]!;
      if (flag === 'h') return { kind: 'help' };
      if (!spec.short.has(flag)) return { kind: 'error', message: `unknown option '-${flag}'` };
      let value = arg.slice(j + 1);
      if (value === '') {
        const next = argv[++i];
        if (next === undefined) return { kind: 'error', message: `option '-${flag}' needs an argument` };
        value = next;
      }
      options.push([flag, value]);
      break; // the rest of this word was the argument
    }
  }
  return { kind: 'ok', options, program: argv.slice(i) };
}

/** The backend flags callscgi defined, as one record. */
export interface BackendFlags {
  retries: number;
  processes: number;
  address: BackendAddress | undefined;
  /** Which of -i/-u/-t set the address: the same one repeated wins, two different ones are an error. */
  addressFlag?: string;
}

export const BACKEND_SHORT_FLAGS: ReadonlySet<string> = new Set(['N', 'n', 'i', 'u', 't']);

/**
 * Applies one of -N -n -i -u -t; throws SyntaxError on a bad value or on a
 * second address flag (callscgi: "at most one of -i, -u or -t may be given").
 */
export function applyBackendFlag(o: BackendFlags, flag: string, value: string): void {
  switch (flag) {
    case 'N':
      o.retries = integerFlag('-N', value, 0);
      return;
    case 'n':
      o.processes = integerFlag('-n', value, 1);
      return;
    case 'i':
    case 'u':
    case 't':
      if (o.addressFlag !== undefined && o.addressFlag !== flag) throw new SyntaxError('at most one of -i, -u or -t may be given');
      o.addressFlag = flag;
      o.address = flag === 'i' ? { kind: 'id', id: value } : flag === 'u' ? parseUnixSpec(value) : tcpAddress(value);
      return;
  }
}

function tcpAddress(spec: string): BackendAddress {
  const t = parseTcpSpec(spec);
  return { kind: 'tcp', host: t.host, port: t.port };
}

/** A decimal integer ≥ min, or a SyntaxError naming the flag. */
export function integerFlag(flag: string, value: string, min: number): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < min) {
    throw new SyntaxError(`${flag} needs an integer ≥ ${min}, not '${value}'`);
  }
  return Number(value);
}

/** `8080`, `HOST:8080`, `[::1]:8080`; the host defaults to 127.0.0.1 (not every interface). */
export function parseHttpListen(flag: string, spec: string): { host: string; port: number } {
  const { host, port } = parseTcpSpec(spec.includes(':') || spec.startsWith('[') ? spec : `127.0.0.1:${spec}`);
  if (!/^[0-9]+$/.test(port) || Number(port) > 65535) throw new SyntaxError(`${flag} needs a numeric port, not '${port}'`);
  return { host, port: Number(port) };
}

/** Resolves with the first SIGTERM/SIGINT; a second one exits at once (an operator who means it). */
export function onStopSignals(log: (line: string) => void): { stopped: Promise<NodeJS.Signals>; dispose: () => void } {
  let fire: (sig: NodeJS.Signals) => void = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolve) => (fire = resolve));
  let count = 0;
  const handler = (sig: NodeJS.Signals): void => {
    if (++count > 1) {
      log(`${sig} again: exiting now`);
      process.exit(1);
    }
    fire(sig);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    stopped,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
