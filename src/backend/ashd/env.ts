/**
 * @module backend/ashd/env
 * The CGI meta-variables callscgi/callfcgi send for an ashd request, built
 * like ashd's mkcgienv() (same names, order and values; see
 * docs/callscgi.md "Differences from ashd" for the few deliberate changes).
 * Pure: the caller supplies the working directory for SCRIPT_FILENAME.
 */
import { isAbsolute } from 'node:path';
import type { ParamList } from '../../fastcgi/contract.js';
import type { BackendProtocol } from '../contract.js';
import { AshdProtocolError, getHeader, type AshdRequest } from './request.js';

export interface AshdEnvOptions {
  protocol: BackendProtocol;
  /** SERVER_SOFTWARE, e.g. `gatehouse/0.1.0` (ashd sends `ashd/<VERSION>`). */
  serverSoftware: string;
  /** CONTENT_LENGTH: the body length actually forwarded. */
  contentLength: number;
  /** Relative X-Ash-File values are made absolute against this directory. */
  cwd: string;
}

/**
 * `%XX` decoding of the rest string (ashd unquoteurl): bytes stay latin1
 * chars, `+` is not decoded, and a malformed escape makes the caller fall
 * back to the raw string (returns undefined).
 */
export function unquoteUrl(s: string): string | undefined {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = s.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
    out += String.fromCharCode(parseInt(hex, 16));
    i += 2;
  }
  return out;
}

/** SCRIPT_NAME and PATH_INFO from the URL and the rest string (ashd's suffix rule). */
export function splitScriptPath(url: string, rest: string): { scriptName: string; pathInfo: string } {
  const q = url.indexOf('?');
  let path = q >= 0 ? url.slice(0, q) : url;
  if (rest !== '' && path.endsWith(rest)) path = path.slice(0, path.length - rest.length);
  let pathInfo = unquoteUrl(rest) ?? rest;
  // A NUL ended the C string in ashd; here it would break the SCGI/FastCGI framing.
  if (pathInfo.includes('\0')) throw new AshdProtocolError('the request path decodes to a NUL byte');
  if (path === '/') return { scriptName: '', pathInfo: `/${pathInfo}` };
  return { scriptName: path, pathInfo };
}

/** `HTTP_` + the header name, alphanumerics upper-cased, anything else `_`. */
export function httpVariableName(header: string): string {
  return `HTTP_${header.replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}`;
}

/**
 * The variables, in ashd's order. Differences: SCGI=1 only for SCGI (the
 * SCGI encoder then moves CONTENT_LENGTH and SCGI to the front, as the spec
 * requires); repeated headers are joined into one HTTP_* variable (`, `,
 * or `; ` for Cookie) because both protocols' peers reject or drop
 * duplicates; a `Proxy` header is not passed on as HTTP_PROXY (httpoxy).
 */
export function ashdCgiParams(req: AshdRequest, opts: AshdEnvOptions): ParamList {
  const params: ParamList = [];
  const add = (name: string, value: string | undefined): void => {
    if (value !== undefined) params.push([name, value]);
  };
  const q = req.url.indexOf('?');
  const { scriptName, pathInfo } = splitScriptPath(req.url, req.rest);

  add('SERVER_SOFTWARE', opts.serverSoftware);
  add('GATEWAY_INTERFACE', 'CGI/1.1');
  if (opts.protocol === 'scgi') add('SCGI', '1');
  add('SERVER_PROTOCOL', req.version);
  add('REQUEST_METHOD', req.method);
  add('REQUEST_URI', req.url);
  add('PATH_INFO', pathInfo);
  add('SCRIPT_NAME', scriptName);
  add('QUERY_STRING', q >= 0 ? req.url.slice(q + 1) : '');
  add('SERVER_NAME', getHeader(req, 'Host'));
  add('SERVER_ADDR', getHeader(req, 'X-Ash-Server-Address'));
  add('SERVER_PORT', getHeader(req, 'X-Ash-Server-Port'));
  add('REMOTE_USER', getHeader(req, 'X-Ash-Remote-User'));
  if (getHeader(req, 'X-Ash-Protocol') === 'https') add('HTTPS', 'on');
  add('REMOTE_ADDR', getHeader(req, 'X-Ash-Address'));
  add('REMOTE_PORT', getHeader(req, 'X-Ash-Port'));
  add('CONTENT_TYPE', getHeader(req, 'Content-Type'));
  add('CONTENT_LENGTH', String(opts.contentLength));
  const file = getHeader(req, 'X-Ash-File');
  if (file !== undefined) add('SCRIPT_FILENAME', isAbsolute(file) ? file : `${opts.cwd.replace(/\/+$/, '')}/${file}`);

  const headerAt = new Map<string, number>();
  for (const [name, value] of req.headers) {
    const variable = httpVariableName(name);
    if (variable === 'HTTP_PROXY') continue;
    const at = headerAt.get(variable);
    if (at === undefined) {
      headerAt.set(variable, params.length);
      params.push([variable, value]);
    } else {
      const joiner = variable === 'HTTP_COOKIE' ? '; ' : ', ';
      params[at] = [variable, `${params[at]![1]}${joiner}${value}`];
    }
  }
  return params;
}
