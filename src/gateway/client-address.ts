/**
 * @module gateway/client-address
 * REMOTE_ADDR when the gateway sits behind a reverse proxy. Off by default:
 * anyone can send X-Forwarded-For, so it is believed only from a peer the
 * operator named (`trustProxy`). Then the address the trusted proxy appended
 * (the last hop: `Forwarded: for=` first, else X-Forwarded-For) is the
 * client's; earlier entries were written by the client and are ignored.
 */
import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';

/** true: trust whatever peer connects; a list: trust only these peer addresses. */
export type TrustProxy = boolean | readonly string[];

/** The client address for CGI: the socket peer unless a trusted proxy says otherwise. */
export function clientAddress(peer: string, headers: IncomingHttpHeaders, trust: TrustProxy): string {
  if (trust === false || !(trust === true || trust.includes(peer) || trust.includes(unmapped(peer)))) return peer;
  return lastForwardedFor(single(headers.forwarded)) ?? lastXForwardedFor(single(headers['x-forwarded-for'])) ?? peer;
}

/** node:http joins repeated list-valued headers with ", "; an array only comes from unusual names. */
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
