/**
 * @module gateway/request-path
 * The request-target's path as segments a file lookup can trust: decoded
 * once, `.` and empty segments dropped, and everything that could step out
 * of the document root or reach a hidden file refused before any file system
 * call. Refusal is a value (a status), not an exception.
 */

export interface RequestPath {
  /** Decoded segments, none empty, none `.` or `..`. */
  segments: string[];
  /** The original path ended in `/` (directories are addressed that way; true for `/`). */
  trailingSlash: boolean;
}

export type PathRefusal = { refused: 400 | 403; reason: string };

/** The one dot-directory a web root may expose (RFC 8615: ACME challenges, security.txt). */
const WELL_KNOWN = '.well-known';

/**
 * Parses the path part of `target` (the raw request-target, query included).
 * 400: not origin-form, a malformed %-escape or a NUL byte.
 * 403: a `..` segment (even encoded, as %2e%2e) or a dotfile outside /.well-known/.
 */
export function parseRequestPath(target: string): RequestPath | PathRefusal {
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  if (!raw.startsWith('/')) return { refused: 400, reason: 'request-target is not an absolute path' };
  let decoded = raw;
  // Without a '%' there is nothing to decode (and nothing malformed).
  if (raw.includes('%')) {
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      return { refused: 400, reason: 'malformed %-escape in path' };
    }
  }
  // A NUL ends the name in C (php-cgi, the kernel) but not in JS: a classic way to hide a suffix.
  if (decoded.includes('\0')) return { refused: 400, reason: 'NUL byte in path' };
  const segments: string[] = [];
  for (const seg of decoded.split('/')) {
    if (seg === '' || seg === '.') continue;
    // Refused, not resolved: `/a/../b` from a browser was already normalised, so `..` here is a probe.
    if (seg === '..') return { refused: 403, reason: "'..' in path" };
    if (seg.startsWith('.') && !(segments.length === 0 && seg === WELL_KNOWN)) {
      return { refused: 403, reason: 'hidden file' };
    }
    segments.push(seg);
  }
  return { segments, trailingSlash: decoded.endsWith('/') };
}

export function isRefusal(p: RequestPath | PathRefusal): p is PathRefusal {
  return 'refused' in p;
}

/** `/a/b` for ['a', 'b']; `/` for []. */
export function joinSegments(segments: readonly string[]): string {
  return '/' + segments.join('/');
}
