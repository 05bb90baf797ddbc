/**
 * @module cgi/request-target
 * Pieces of an HTTP request-target and Host value as CGI needs them: the
 * path and query of origin- or absolute-form targets, percent-decoding that
 * keeps bytes as latin1, and the host part of an authority. Pure functions.
 */
import { CgiError } from './errors.js';

export interface SplitTarget {
  /** The path, still percent-encoded; "*" for asterisk-form. */
  path: string;
  /** Everything after the first '?', raw; "" when there is none. */
  query: string;
  /** The authority of an absolute-form target (RFC 9112 §3.2.2: it wins over Host). */
  authority: string | undefined;
}

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/;

/** Splits a request-target (origin-form `/p?q`, absolute-form `http://h/p?q`, or `*`). */
export function splitRequestTarget(target: string): SplitTarget {
  if (/[\0\r\n]/.test(target)) throw new CgiError('ERR_CGI_BAD_PATH', 'request-target contains CR, LF or NUL');
  let rest = target;
  let authority: string | undefined;
  const absolute = ABSOLUTE_FORM.exec(target);
  if (absolute) {
    authority = absolute[1]!;
    rest = target.slice(absolute[0].length);
  }
  // A fragment never belongs in a request-target; if a client sends one, it is not part of the query.
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  const path = q >= 0 ? rest.slice(0, q) : rest;
  return {
    path: path === '' && authority !== undefined ? '/' : path,
    query: q >= 0 ? rest.slice(q + 1) : '',
    authority,
  };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Decodes %XX escapes to the byte they name, as a latin1 character, so a
 * UTF-8 sequence stays the same bytes on the wire. A malformed escape is
 * kept literally (as ashd does); '+' is not a space in a path. A decoded NUL
 * would cut C strings and break NUL-separated framing, so it is refused.
 */
export function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && i + 2 < s.length) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        const byte = hi * 16 + lo;
        if (byte === 0) throw new CgiError('ERR_CGI_BAD_PATH', 'path decodes to a NUL byte (%00)');
        out += String.fromCharCode(byte);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

/** reg-name, IPv4 and percent-escapes (RFC 3986 §3.2.2), or an IP literal in brackets. */
const REG_NAME = /^[A-Za-z0-9._~!$&'()*+,;=%-]*$/;
const IP_LITERAL = /^\[[0-9A-Za-z:.]+\]$/;

/**
 * The host of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`), port
 * removed, brackets kept (RFC 3875 §4.1.14 writes IPv6 SERVER_NAME in
 * brackets). Anything else is refused: SERVER_NAME ends up in redirects and
 * virtual-host checks.
 */
export function hostOfAuthority(hostPort: string): string {
  // Userinfo is deprecated in http(s) URIs (RFC 9110 §4.2.4) and never part of the host.
  const authority = hostPort.slice(hostPort.lastIndexOf('@') + 1);
  let host = authority;
  let port = '';
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) throw new CgiError('ERR_CGI_BAD_HEADER', `bad host ${JSON.stringify(authority)}`);
    host = authority.slice(0, close + 1);
    port = authority.slice(close + 1);
    if (port !== '' && !port.startsWith(':')) throw new CgiError('ERR_CGI_BAD_HEADER', `bad host ${JSON.stringify(authority)}`);
    port = port.slice(1);
    if (!IP_LITERAL.test(host)) throw new CgiError('ERR_CGI_BAD_HEADER', `bad host ${JSON.stringify(authority)}`);
  } else {
    const colon = authority.indexOf(':');
    if (colon >= 0) {
      host = authority.slice(0, colon);
      port = authority.slice(colon + 1);
    }
    if (!REG_NAME.test(host)) throw new CgiError('ERR_CGI_BAD_HEADER', `bad host ${JSON.stringify(authority)}`);
  }
  if (!/^[0-9]*$/.test(port)) throw new CgiError('ERR_CGI_BAD_HEADER', `bad port in host ${JSON.stringify(authority)}`);
  return host;
}
