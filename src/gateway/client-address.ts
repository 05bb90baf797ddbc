/**
 * @module gateway/client-address
 * REMOTE_ADDR when the gateway sits behind a reverse proxy. Off by default:
 * anyone can send X-Forwarded-For, so it is believed only from a peer the
 * operator named (`trustProxy`). Then the address the trusted proxy appended
 * (the last hop: `Forwarded: for=` first, else X-Forwarded-For) is the
 * client's; earlier entries were written by the client and are ignored.
 */
import { BlockList, isIP } from 'node:net';

/**
 * true: trust whatever peer connects; a list: trust only these peers, each
 * an address (`10.0.0.7`, `::1`) or a range in CIDR notation (`10.0.0.0/8`,
 * `fd00::/8`), as nginx's set_real_ip_from.
 */
export type TrustProxy = boolean | readonly string[];

/** Lowercase names, as node:http's `req.headers` and the gateway's Exchange.headers give them. */
export type HeaderRecord = Readonly<Record<string, string | string[] | undefined>>;

/** The client address for CGI: the socket peer unless a trusted proxy says otherwise. */
export function clientAddress(peer: string, headers: HeaderRecord, trust: TrustProxy): string {
  if (trust === false || !(trust === true || trusted(trust, peer))) return peer;
  return lastForwardedFor(single(headers.forwarded)) ?? lastXForwardedFor(single(headers['x-forwarded-for'])) ?? peer;
}

/** Each list compiled once into a BlockList (looked up per request). */
const compiled = new WeakMap<readonly string[], BlockList>();

function trusted(list: readonly string[], peer: string): boolean {
  let blocks = compiled.get(list);
  if (blocks === undefined) {
    blocks = new BlockList();
    for (const entry of list) {
      const range = parseTrustedRange(entry);
      if (range === undefined) continue; // checked where the list comes from (the CLI); anything else simply never matches
      if (range.prefix === undefined) blocks.addAddress(range.address, range.family);
      else blocks.addSubnet(range.address, range.prefix, range.family);
    }
    compiled.set(list, blocks);
  }
  const addr = unmapped(peer);
  const family = isIP(addr);
  return family !== 0 && blocks.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}

/** `ADDR` or `ADDR/PREFIX` with the prefix in range for the family; undefined if it is neither. */
export function parseTrustedRange(entry: string): { address: string; family: 'ipv4' | 'ipv6'; prefix: number | undefined } | undefined {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const kind = isIP(address);
  if (kind === 0) return undefined;
  const family = kind === 4 ? 'ipv4' : 'ipv6';
  if (slash < 0) return { address, family, prefix: undefined };
  const text = entry.slice(slash + 1);
  const prefix = Number(text);
  if (!/^[0-9]{1,3}$/.test(text) || prefix > (kind === 4 ? 32 : 128)) return undefined;
  return { address, family, prefix };
}

/** Repeated headers arrive joined with ", "; an array only comes from Set-Cookie. */
function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** `::ffff:127.0.0.1` → `127.0.0.1`, so a list of IPv4 proxies matches on a dual-stack socket. */
function unmapped(addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}

/** RFC 7239: the `for=` of the last element; obfuscated or `unknown` identifiers give undefined. */
function lastForwardedFor(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const elements = value.split(',');
  for (const pair of elements[elements.length - 1]!.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
    let node = pair.slice(eq + 1).trim();
    if (node.startsWith('"') && node.endsWith('"')) node = node.slice(1, -1);
    // for="[2001:db8::1]:4711" or for=192.0.2.1:4711
    const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(node);
    const addr = v6 ? v6[1]! : node.replace(/:\d+$/, '');
    return isIP(addr) !== 0 ? addr : undefined;
  }
  return undefined;
}

function lastXForwardedFor(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const last = value.slice(value.lastIndexOf(',') + 1).trim();
  return isIP(last) !== 0 ? last : undefined;
}
