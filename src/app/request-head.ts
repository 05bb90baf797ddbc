/**
 * @module app/request-head
 * CGI meta-variables (RFC 3875 §4.1) → what node:http's IncomingMessage
 * carries: method, url, HTTP version, header lines, and the addresses its
 * socket would report. One pass over the params, no per-request regexes.
 */
import type { ParamList } from '../fastcgi/contract.js';

export interface RequestHead {
  method: string;
  url: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  /** Header names and values alternating, like IncomingMessage#rawHeaders (names lowercase). */
  rawHeaders: string[];
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  /** HTTPS=on (or 1): the client spoke TLS to the web server. */
  encrypted: boolean;
}

/**
 * `HTTP_USER_AGENT` → `user-agent`. Names repeat on every request, so the
 * conversions are remembered (bounded: a peer cannot grow it without limit).
 */
const headerNames = new Map<string, string>();
const MAX_REMEMBERED_NAMES = 512;

function headerName(param: string): string {
  let name = headerNames.get(param);
  if (name === undefined) {
    name = param.slice(5).toLowerCase().replaceAll('_', '-');
    if (headerNames.size < MAX_REMEMBERED_NAMES) headerNames.set(param, name);
  }
  return name;
}

function port(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

/** Reads the request line, headers and peer addresses out of CGI params. */
export function readRequestHead(params: ParamList): RequestHead {
  let method = 'GET';
  let requestUri: string | undefined;
  let scriptName = '';
  let pathInfo = '';
  let queryString = '';
  let protocol: string | undefined;
  let remoteAddr: string | undefined;
  let remotePort: string | undefined;
  let serverAddr: string | undefined;
  let serverPort: string | undefined;
  let https: string | undefined;
  let contentType: string | undefined;
  let contentLength: string | undefined;
  const raw: string[] = [];

  for (let i = 0; i < params.length; i++) {
    const pair = params[i]!;
    const name = pair[0];
    const value = pair[1];
    if (name.charCodeAt(0) === 0x48 /* H */ && name.startsWith('HTTP_')) {
      // CONTENT_TYPE/CONTENT_LENGTH are authoritative; a server that also sends the HTTP_ copies must not duplicate them.
      if (name === 'HTTP_CONTENT_TYPE' || name === 'HTTP_CONTENT_LENGTH') continue;
      raw.push(headerName(name), value);
      continue;
    }
    switch (name) {
      case 'REQUEST_METHOD':
        if (value !== '') method = value;
        break;
      case 'REQUEST_URI':
        requestUri = value;
        break;
      case 'SCRIPT_NAME':
        scriptName = value;
        break;
      case 'PATH_INFO':
        pathInfo = value;
        break;
      case 'QUERY_STRING':
        queryString = value;
        break;
      case 'SERVER_PROTOCOL':
        protocol = value;
        break;
      case 'REMOTE_ADDR':
        remoteAddr = value;
        break;
      case 'REMOTE_PORT':
        remotePort = value;
        break;
      case 'SERVER_ADDR':
        serverAddr = value;
        break;
      case 'SERVER_PORT':
        serverPort = value;
        break;
      case 'HTTPS':
        https = value;
        break;
      case 'CONTENT_TYPE':
        contentType = value;
        break;
      case 'CONTENT_LENGTH':
        contentLength = value;
        break;
    }
  }
  // nginx sends CONTENT_TYPE/CONTENT_LENGTH empty when the request has none: no header then.
  if (contentType) raw.push('content-type', contentType);
  if (contentLength) raw.push('content-length', contentLength);

  let major = 1;
  let minor = 1;
  if (protocol === 'HTTP/1.0') minor = 0;
  else if (protocol !== undefined && protocol !== 'HTTP/1.1') {
    // "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", also "HTTP/2" and "HTTP/3".
    const m = /^HTTP\/(\d)(?:\.(\d))?$/i.exec(protocol);
    if (m) {
      major = Number(m[1]);
      minor = m[2] === undefined ? 0 : Number(m[2]);
    }
  }

  return {
    method,
    url: requestUri || scriptName + pathInfo + (queryString ? '?' + queryString : '') || '/',
    httpVersionMajor: major,
    httpVersionMinor: minor,
    rawHeaders: raw,
    remoteAddress: remoteAddr || undefined,
    remotePort: port(remotePort),
    localAddress: serverAddr || undefined,
    localPort: port(serverPort),
    encrypted: https !== undefined && (https.toLowerCase() === 'on' || https === '1'),
  };
}

/** A CGI param list as a plain lookup object (later duplicates win, as in an environment). */
export function paramsObject(params: ParamList): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of params) out[name] = value;
  return out;
}
