/**
 * @module cgi/request-env
 * An HTTP request as the gateway received it → the CGI meta-variables of
 * RFC 3875 §4.1 as a ParamList (the gateway's side; no sockets, no I/O).
 * The same list feeds FastCGI PARAMS and the SCGI header netstring.
 */
import type { ParamList } from '../fastcgi/contract.js';
import { CgiError } from './errors.js';
import { hostOfAuthority, percentDecode, splitRequestTarget } from './request-target.js';
import { SERVER_SOFTWARE } from './server-software.js';

/** What the gateway knows about one request (node:http's IncomingMessage and its socket carry all of it). */
export interface CgiRequestInput {
  method: string;
  /** The request-target exactly as received (req.url): origin-form, absolute-form or "*". */
  url: string;
  /** "1.1", "1.0" (req.httpVersion). */
  httpVersion: string;
  /** req.rawHeaders: name, value, name, value… in arrival order, repeats included. */
  rawHeaders: readonly string[];
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** The request came over TLS: HTTPS=on, REQUEST_SCHEME=https. */
  https: boolean;
  /**
   * The mount point, decoded, without a trailing slash ("/app"; default "").
   * When it prefixes the decoded path at a segment boundary, the remainder
   * becomes PATH_INFO; otherwise PATH_INFO is the whole decoded path.
   */
  scriptName?: string;
  /** The remainder after scriptName, still percent-encoded, when the caller split the path itself. */
  pathInfo?: string;
  scriptFilename?: string;
  documentRoot?: string;
  /**
   * Body length after transfer-codings are removed; undefined = no body.
   * (A chunked upload must be measured or refused before this point: CGI
   * has no way to say "length unknown".)
   */
  contentLength: number | undefined;
  /** Default `gatehouse/<version>`. */
  serverSoftware?: string;
}

/** tchar of RFC 9110 §5.6.2. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** The names we turn into HTTP_* (nginx's ignore_invalid_headers set). */
const PLAIN_NAME = /^[0-9A-Za-z-]+$/;
const CTL_BREAKING = /[\0\r\n]/;

function checkNoControl(what: string, value: string): void {
  if (CTL_BREAKING.test(value)) throw new CgiError('ERR_CGI_BAD_PATH', `${what} contains CR, LF or NUL`);
}

/** IPv6 addresses go in brackets where a host name would go (RFC 3875 §4.1.14). */
function addressAsHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

interface HeaderFacts {
  /** HTTP_* variables, in order of each name's first appearance. */
  http: ParamList;
  host: string | undefined;
  contentType: string | undefined;
}

/**
 * Turns rawHeaders into HTTP_* variables. Rules, each for a reason:
 * - `Proxy` is dropped: HTTP_PROXY would be read as the app's outbound
 *   proxy by many HTTP libraries (httpoxy, CVE-2016-5385 and friends).
 * - Content-Type and Content-Length become CONTENT_TYPE/CONTENT_LENGTH
 *   only, never HTTP_CONTENT_*, so there is one source of truth.
 * - A name with a token character other than letters, digits and '-'
 *   (e.g. `X_Foo`, `X.Foo`) is dropped, as nginx does by default: mapped
 *   to HTTP_X_FOO it would spoof or collide with `X-Foo`.
 * - A name outside token, or CR/LF/NUL anywhere, is an error (400).
 * - Repeats are joined with ", " (RFC 9110 §5.3), Cookie with "; "
 *   (RFC 6265 §5.4); a repeated Host or Content-Type is ambiguous: error.
 */
function translateHeaders(rawHeaders: readonly string[]): HeaderFacts {
  if (rawHeaders.length % 2 !== 0) throw new CgiError('ERR_CGI_BAD_HEADER', 'rawHeaders has a name without a value');
  // Each variable appears once in `http`; repeats are joined into that entry.
  const http: ParamList = [];
  /** variable → its index in `http`; built only when the list grows long (a linear scan is cheaper below that). */
  let index: Map<string, number> | undefined;
  /** index in `http` → every value of a name that repeats (rare), joined at the end. */
  let repeats: Map<number, { values: string[]; separator: string }> | undefined;
  let host: string | undefined;
  let contentType: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    const rule = headerRule(name);
    if (CTL_BREAKING.test(value)) throw new CgiError('ERR_CGI_BAD_HEADER', `header ${name} contains CR, LF or NUL`);
    if (rule.kind === 'content-type') {
      if (contentType !== undefined) throw new CgiError('ERR_CGI_BAD_HEADER', 'more than one Content-Type');
      contentType = value;
    } else if (rule.kind === 'host') {
      if (host !== undefined) throw new CgiError('ERR_CGI_BAD_HEADER', 'more than one Host');
      host = value;
    }
    const variable = rule.variable;
    if (variable === undefined) continue;
    let at = -1;
    if (index !== undefined) at = index.get(variable) ?? -1;
    else for (let j = 0; j < http.length && at < 0; j++) if (http[j]![0] === variable) at = j;
    if (at < 0) {
      http.push([variable, value]);
      if (index !== undefined) index.set(variable, http.length - 1);
      else if (http.length > SCAN_LIMIT) index = new Map(http.map(([v], j) => [v, j]));
      continue;
    }
    repeats ??= new Map();
    const entry = repeats.get(at);
    if (entry !== undefined) entry.values.push(value);
    else repeats.set(at, { values: [http[at]![1], value], separator: rule.separator });
  }
  if (repeats !== undefined) for (const [at, { values, separator }] of repeats) http[at] = [http[at]![0], values.join(separator)];
  return { http, host, contentType };
}

/** Distinct HTTP_* variables found by scanning; more than this (a hostile request) switches to a Map. */
const SCAN_LIMIT = 32;

/** What a header name turns into; the same names come with every request, so the answer is cached. */
interface HeaderRule {
  kind: 'plain' | 'host' | 'content-type' | 'drop';
  /** HTTP_* name; undefined: not passed on as HTTP_*. */
  variable: string | undefined;
  /** How repeats are joined. */
  separator: string;
}

const rules = new Map<string, HeaderRule>();
/** Bounds the cache against a client inventing a new header name per request. */
const MAX_CACHED_RULES = 1024;

function headerRule(name: string): HeaderRule {
  const cached = rules.get(name);
  if (cached !== undefined) return cached;
  if (!TOKEN.test(name)) throw new CgiError('ERR_CGI_BAD_HEADER', `bad header name ${JSON.stringify(name)}`);
  const lower = name.toLowerCase();
  const kind = lower === 'proxy' || lower === 'content-length' ? 'drop' : lower === 'content-type' ? 'content-type' : lower === 'host' ? 'host' : 'plain';
  const variable = kind === 'drop' || kind === 'content-type' || !PLAIN_NAME.test(name) ? undefined : `HTTP_${name.toUpperCase().replaceAll('-', '_')}`;
  const rule: HeaderRule = { kind, variable, separator: lower === 'cookie' ? '; ' : ', ' };
  if (rules.size >= MAX_CACHED_RULES) rules.clear();
  rules.set(name, rule);
  return rule;
}

/** SCRIPT_NAME and PATH_INFO (decoded) from the mount point and the raw path. */
function splitScript(rawPath: string, scriptName: string, rawPathInfo: string | undefined): [string, string] {
  if (rawPathInfo !== undefined) return [scriptName, percentDecode(rawPathInfo)];
  const decoded = percentDecode(rawPath);
  if (scriptName !== '' && (decoded === scriptName || decoded.startsWith(`${scriptName}/`))) {
    return [scriptName, decoded.slice(scriptName.length)];
  }
  return [scriptName, decoded];
}

/**
 * The CGI/1.1 environment for one request, in this order: GATEWAY_INTERFACE,
 * SERVER_SOFTWARE, SERVER_PROTOCOL, REQUEST_METHOD, REQUEST_URI, SCRIPT_NAME,
 * PATH_INFO, QUERY_STRING, SERVER_NAME, SERVER_PORT, SERVER_ADDR,
 * REMOTE_ADDR, REMOTE_PORT, REQUEST_SCHEME, [CONTENT_TYPE], [CONTENT_LENGTH],
 * [HTTPS], [DOCUMENT_ROOT], [SCRIPT_FILENAME], then HTTP_*.
 *
 * CONTENT_LENGTH is present only with a body (RFC 3875 §4.1.2); we omit it
 * rather than send "" since §4.1 treats a NULL (empty) value as unset, and
 * nginx's fastcgi_params does send "" — applications must accept both.
 * SERVER_NAME is the Host (or absolute-form authority) without its port,
 * else the local address. Throws CgiError: ERR_CGI_BAD_HEADER, ERR_CGI_BAD_PATH.
 */
export function cgiParamsFromHttp(input: CgiRequestInput): ParamList {
  if (!TOKEN.test(input.method)) throw new CgiError('ERR_CGI_BAD_HEADER', `bad method ${JSON.stringify(input.method)}`);
  if (!/^[0-9]\.[0-9]$/.test(input.httpVersion)) {
    throw new CgiError('ERR_CGI_BAD_HEADER', `bad HTTP version ${JSON.stringify(input.httpVersion)}`);
  }
  if (input.contentLength !== undefined && !(Number.isSafeInteger(input.contentLength) && input.contentLength >= 0)) {
    throw new RangeError(`cgi: contentLength must be a non-negative integer, got ${input.contentLength}`);
  }
  const target = splitRequestTarget(input.url);
  const headers = translateHeaders(input.rawHeaders);
  const scriptName = input.scriptName ?? '';
  checkNoControl('SCRIPT_NAME', scriptName);
  const [script, pathInfo] = splitScript(target.path, scriptName, input.pathInfo);
  const authority = target.authority ?? headers.host;
  const serverName = authority ? hostOfAuthority(authority) : '';

  const params: ParamList = [
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', input.serverSoftware ?? SERVER_SOFTWARE],
    ['SERVER_PROTOCOL', `HTTP/${input.httpVersion}`],
    ['REQUEST_METHOD', input.method],
    ['REQUEST_URI', input.url],
    ['SCRIPT_NAME', script],
    ['PATH_INFO', pathInfo],
    ['QUERY_STRING', target.query],
    ['SERVER_NAME', serverName !== '' ? serverName : addressAsHost(input.localAddress)],
    ['SERVER_PORT', String(input.localPort)],
    ['SERVER_ADDR', input.localAddress],
    ['REMOTE_ADDR', input.remoteAddress],
    ['REMOTE_PORT', String(input.remotePort)],
    ['REQUEST_SCHEME', input.https ? 'https' : 'http'],
  ];
  if (headers.contentType !== undefined) params.push(['CONTENT_TYPE', headers.contentType]);
  if (input.contentLength !== undefined) params.push(['CONTENT_LENGTH', String(input.contentLength)]);
  if (input.https) params.push(['HTTPS', 'on']);
  if (input.documentRoot !== undefined) {
    checkNoControl('DOCUMENT_ROOT', input.documentRoot);
    params.push(['DOCUMENT_ROOT', input.documentRoot]);
  }
  if (input.scriptFilename !== undefined) {
    checkNoControl('SCRIPT_FILENAME', input.scriptFilename);
    params.push(['SCRIPT_FILENAME', input.scriptFilename]);
  }
  params.push(...headers.http);
  return params;
}
