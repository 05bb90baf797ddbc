/**
 * @module backend/address
 * callscgi's address options turned into something to connect to or listen
 * on: `-t [HOST:]PORT` (IPv6 in brackets, service names from /etc/services),
 * `-u PATH`, and `-i ID` (a per-user socket path in a private directory).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { readFile, mkdir, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackendAddress } from './contract.js';

/** What a connect() or a listen goes to once names are resolved. */
export type SocketTarget = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Linux sun_path holds 108 bytes including the NUL. */
export const MAX_UNIX_PATH_BYTES = 107;

/**
 * Parses `-t [HOST:]PORT`. HOST defaults to `localhost`; an IPv6 literal
 * needs brackets (`[::1]:9000`), because ashd's split at the first ':' made
 * IPv6 unusable and a bare `::1:9000` is ambiguous.
 */
export function parseTcpSpec(spec: string): { kind: 'tcp'; host: string; port: string } {
  let host = 'localhost';
  let port = spec;
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']');
    if (close < 0 || spec[close + 1] !== ':') throw new SyntaxError(`bad TCP address '${spec}': expected [IPV6]:PORT`);
    host = spec.slice(1, close);
    port = spec.slice(close + 2);
    if (isIP(host) !== 6) throw new SyntaxError(`bad TCP address '${spec}': '${host}' is not an IPv6 address`);
  } else {
    const colon = spec.indexOf(':');
    if (colon >= 0) {
      if (spec.indexOf(':', colon + 1) >= 0) {
        throw new SyntaxError(`bad TCP address '${spec}': write IPv6 addresses in brackets, [ADDR]:PORT`);
      }
      host = spec.slice(0, colon);
      port = spec.slice(colon + 1);
    }
  }
  if (host === '') throw new SyntaxError(`bad TCP address '${spec}': empty host`);
  if (port === '') throw new SyntaxError(`bad TCP address '${spec}': empty port`);
  return { kind: 'tcp', host, port };
}

/** Parses `-u PATH`, checking it fits in sun_path (ashd's strcpy overflowed instead). */
export function parseUnixSpec(path: string): { kind: 'unix'; path: string } {
  if (path === '') throw new SyntaxError('empty Unix socket path');
  checkUnixPath(path);
  return { kind: 'unix', path };
}

/** Throws when `path` cannot be a Unix socket address. */
export function checkUnixPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_UNIX_PATH_BYTES) {
    throw new RangeError(`Unix socket path is longer than ${MAX_UNIX_PATH_BYTES} bytes: ${path}`);
  }
  if (path.includes('\0')) throw new SyntaxError('Unix socket path contains NUL');
}

/**
 * Looks a TCP port up: a decimal number as is, otherwise a service name (or
 * alias) with a `/tcp` entry in the services file, as getaddrinfo would.
 */
export async function resolvePort(port: number | string, servicesFile = '/etc/services'): Promise<number> {
  if (typeof port === 'number' || /^[0-9]+$/.test(port)) {
    const n = Number(port);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new RangeError(`TCP port out of range: ${port}`);
    return n;
  }
  let text: string;
  try {
    text = await readFile(servicesFile, 'latin1');
  } catch (err) {
    throw new Error(`cannot resolve service '${port}': ${(err as Error).message}`, { cause: err });
  }
  const found = lookupService(text, port);
  if (found === undefined) throw Object.assign(new Error(`unknown TCP service '${port}' (not in ${servicesFile})`), { code: 'ENOTFOUND' });
  return found;
}

/** Finds `name` (or an alias) with protocol tcp in services(5) text. */
export function lookupService(text: string, name: string): number | undefined {
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [service, portProto, ...aliases] = line.split(/\s+/);
    const m = /^([0-9]+)\/(tcp|udp|sctp|ddp)$/i.exec(portProto ?? '');
    if (!m || m[2]!.toLowerCase() !== 'tcp') continue;
    if (service === name || aliases.includes(name)) {
      const n = Number(m[1]);
      if (n >= 1 && n <= 65535) return n;
    }
  }
  return undefined;
}

/** Every address `host` resolves to, in getaddrinfo's order (connect tries them in turn). */
export async function resolveHost(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  const all = await lookup(host, { all: true, verbatim: true });
  return all.map((a) => a.address);
}

/** Only letters, digits, '.', '_' and '-' stay; anything else becomes '_' (no '/' can escape the directory). */
export function sanitiseId(id: string): string {
  const clean = id.replace(/[^A-Za-z0-9._-]/g, '_');
  if (clean === '' || clean === '.' || clean === '..') return `_${clean}`;
  return clean;
}

/**
 * The private directory for `-i` sockets: `$XDG_RUNTIME_DIR/gatehouse` when
 * that variable names an absolute directory, else `/tmp/gatehouse-<uid>`.
 */
export function socketIdDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg !== undefined && xdg.startsWith('/')) return join(xdg, 'gatehouse');
  return join('/tmp', `gatehouse-${process.getuid?.() ?? 0}`);
}

/** `-i ID` → `<socketIdDir>/<sanitised id>.sock`. */
export function socketIdPath(id: string, env: NodeJS.ProcessEnv = process.env): string {
  if (id === '') throw new SyntaxError('empty socket id');
  const path = join(socketIdDir(env), `${sanitiseId(id)}.sock`);
  checkUnixPath(path);
  return path;
}

/**
 * Makes sure `dir` is ours alone: created with mode 0700 if missing; if it
 * exists it must be a real directory (not a symlink) owned by us and not
 * writable or readable by others, so nobody can plant or steal the socket.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
  if (uid !== undefined && st.uid !== uid) {
    throw Object.assign(new Error(`${dir} belongs to uid ${st.uid}, not to us (${uid})`), { code: 'EPERM' });
  }
  if ((st.mode & 0o077) !== 0) {
    throw Object.assign(new Error(`${dir} is accessible to others (mode ${(st.mode & 0o777).toString(8)})`), { code: 'EPERM' });
  }
}

/** A short human form of an address, for messages. */
export function describeAddress(address: BackendAddress | SocketTarget): string {
  switch (address.kind) {
    case 'unix':
      return address.path;
    case 'id':
      return `id ${address.id}`;
    case 'tcp':
      return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  }
}
