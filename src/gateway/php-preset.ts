/**
 * @module gateway/php-preset
 * `--root DIR`: what nginx's usual PHP server block does, as one decision per
 * request —
 *
 *   location / { try_files $uri $uri/ /index.php?$query_string; }
 *   location ~ [^/]\.php(/|$) { fastcgi_split_path_info ^(.+?\.php)(/.*)$; … }
 *
 * A path with a `*.php` segment runs that script (PATH_INFO = the rest), an
 * existing file is served statically, a directory serves its index.php or
 * index.html, anything else goes to the front controller /index.php.
 * Nothing outside the root is reachable: the path is checked as text first
 * (request-path.ts), then every file is checked again after symlinks are
 * resolved.
 */
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readlinkSync, realpathSync, statSync, type Stats } from 'node:fs';
import { sep } from 'node:path';
import type { ParamList } from '../fastcgi/contract.js';
import type { OpenFile } from './static.js';
import { isRefusal, joinSegments, parseRequestPath } from './request-path.js';

/** Where a PHP request goes, as plain (not yet byte-encoded) strings. */
export interface ScriptTarget {
  /** `/info.php` */
  scriptName: string;
  /** `/extra/path`, decoded; '' when there is none. */
  pathInfo: string;
  /** root + scriptName (not symlink-resolved, as nginx's $document_root$fastcgi_script_name). */
  scriptFilename: string;
  documentRoot: string;
  /** The same as CGI values (byte strings), made once per target: what the gateway sends. */
  readonly params: ScriptParams;
}

/** A ScriptTarget's CGI variables as ParamList values (latin1 byte strings). */
export interface ScriptParams {
  scriptName: string;
  /** Still percent-encoded, as src/cgi takes it ('%' of the decoded path escaped). */
  pathInfo: string;
  scriptFilename: string;
  documentRoot: string;
  /** REDIRECT_STATUS, PATH_TRANSLATED (phpExtraParams()). */
  extra: ParamList;
}

export type PresetDecision =
  | { kind: 'script'; script: ScriptTarget }
  | { kind: 'static'; file: OpenFile }
  | { kind: 'redirect'; location: string }
  | { kind: 'refused'; status: 400 | 403 | 404; reason: string };

export interface PhpPreset {
  /** The document root, symlinks resolved. */
  readonly root: string;
  resolve(target: string): PresetDecision;
}

const SCRIPT_SUFFIX = '.php';
/**
 * A script found to be a regular file inside the root is taken as one for
 * this long without asking the file system again (php-cgi's own realpath
 * cache keeps such answers for 120 s). Only whole-path scripts (no
 * PATH_INFO) are kept, at most MAX_CACHED_SCRIPTS of them.
 */
const SCRIPT_CHECK_TTL_MS = 1000;
const MAX_CACHED_SCRIPTS = 256;
const FRONT_CONTROLLER = 'index.php';
const DIRECTORY_INDEXES = ['index.php', 'index.html'] as const;
/** O_NONBLOCK: opening a FIFO someone left in the root must not hang the gateway. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/**
 * Throws (ENOENT, ENOTDIR) when `root` is not a directory: a startup error, not a per-request one.
 *
 * Why the file system calls are synchronous: each request needs 2–4 metadata
 * calls (open, fstat, readlink, stat) that are page-cache hits costing a few
 * microseconds on a local disk, while each async call is a thread-pool round
 * trip; with 4 pool threads the async version capped a static file at ~5k
 * req/s on the benchmark machine with the event loop half idle.
 */
export function createPhpPreset(root: string): PhpPreset {
  const realRoot = realpathSync(root);
  if (!statSync(realRoot).isDirectory()) throw Object.assign(new Error(`--root ${root} is not a directory`), { code: 'ENOTDIR' });
  const scripts: ScriptCache = new Map();
  return { root: realRoot, resolve: (target) => resolve(realRoot, scripts, target) };
}

type ScriptCache = Map<string, { decision: PresetDecision; checkedAt: number }>;

function resolve(root: string, scripts: ScriptCache, target: string): PresetDecision {
  const path = parseRequestPath(target);
  if (isRefusal(path)) return { kind: 'refused', status: path.refused, reason: path.reason };
  const { segments } = path;

  // `/info.php/extra/path`: the first *.php segment is the script, the rest is PATH_INFO.
  const at = segments.findIndex((s) => s.endsWith(SCRIPT_SUFFIX) && s.length > SCRIPT_SUFFIX.length);
  if (at >= 0) {
    const scriptName = joinSegments(segments.slice(0, at + 1));
    const rest = segments.slice(at + 1);
    const pathInfo = rest.length === 0 ? '' : joinSegments(rest) + (path.trailingSlash ? '/' : '');
    return script(root, scripts, scriptName, pathInfo) ?? notFound('no such script');
  }

  const rel = joinSegments(segments);
  const found = openInside(root, under(root, rel));
  if (found === 'missing') {
    // Neither file nor directory: the front controller sees the original REQUEST_URI.
    return script(root, scripts, '/' + FRONT_CONTROLLER, '') ?? notFound('no such file and no front controller');
  }
  if (found === 'outside') return { kind: 'refused', status: 403, reason: 'symlink out of the root' };
  if (found.stat.isFile()) return { kind: 'static', file: found };
  closeSync(found.fd);
  if (!found.stat.isDirectory()) return notFound('not a regular file');
  // Relative links in an index page only work from `/dir/`, as nginx and Apache redirect.
  if (!path.trailingSlash) return { kind: 'redirect', location: `/${segments.map(encodeURIComponent).join('/')}/${query(target)}` };
  for (const index of DIRECTORY_INDEXES) {
    const name = (rel === '/' ? '' : rel) + '/' + index;
    if (index.endsWith(SCRIPT_SUFFIX)) {
      const decision = script(root, scripts, name, '');
      if (decision !== null) return decision;
      continue;
    }
    const file = openInside(root, under(root, name));
    if (typeof file !== 'string' && file.stat.isFile()) return { kind: 'static', file };
    if (typeof file !== 'string') closeSync(file.fd);
  }
  return { kind: 'refused', status: 403, reason: 'directory without an index' };
}

/** The script target when `scriptName` is a regular file inside the root (symlinks resolved), else null. */
function script(root: string, scripts: ScriptCache, scriptName: string, pathInfo: string): PresetDecision | null {
  const filename = under(root, scriptName);
  const now = Date.now();
  if (pathInfo === '') {
    const cached = scripts.get(filename);
    if (cached !== undefined && now - cached.checkedAt < SCRIPT_CHECK_TTL_MS) return cached.decision;
  }
  if (!regularFileInside(root, filename)) {
    scripts.delete(filename);
    return null;
  }
  const decision: PresetDecision = { kind: 'script', script: scriptTarget(scriptName, pathInfo, filename, root) };
  if (pathInfo === '') {
    if (scripts.size >= MAX_CACHED_SCRIPTS) scripts.clear();
    scripts.set(filename, { decision, checkedAt: now });
  }
  return decision;
}

function scriptTarget(scriptName: string, pathInfo: string, scriptFilename: string, documentRoot: string): ScriptTarget {
  const plain = { scriptName, pathInfo, scriptFilename, documentRoot };
  const params: ScriptParams = {
    scriptName: asBytes(scriptName),
    // pathInfo is taken as still percent-encoded: escape '%' so a decoded '%' is not decoded twice.
    pathInfo: pathInfo === '' ? '' : asBytes(pathInfo).replaceAll('%', '%25'),
    scriptFilename: asBytes(scriptFilename),
    documentRoot: asBytes(documentRoot),
    extra: phpExtraParams(plain),
  };
  return { ...plain, params };
}

/**
 * Whether `file` (root + a relative path) is a regular file inside the root.
 * The components under the already resolved root are lstat'ed one by one
 * (one syscall for `/index.php`); only when one is a symlink is the whole
 * path resolved. php-cgi opens the script by name itself, so this is a path
 * check, not a descriptor check like openInside().
 */
function regularFileInside(root: string, file: string): boolean {
  let at = root.length;
  for (;;) {
    const next = file.indexOf(sep, at + 1);
    let st;
    try {
      st = lstatSync(next < 0 ? file : file.slice(0, next), { throwIfNoEntry: false });
    } catch {
      return false; // EACCES, ELOOP, …: not a script we may run
    }
    if (st === undefined) return false;
    if (st.isSymbolicLink()) {
      let real: string;
      try {
        real = realpathSync.native(file);
      } catch {
        return false;
      }
      return inside(root, real) && statSync(real, { throwIfNoEntry: false })?.isFile() === true;
    }
    if (next < 0) return st.isFile();
    if (!st.isDirectory()) return false;
    at = next;
  }
}

/**
 * The variables php-cgi expects beyond RFC 3875's, as nginx's fastcgi.conf
 * sends them. Values are byte strings (latin1), like every ParamList value.
 */
function phpExtraParams(script: Pick<ScriptTarget, 'pathInfo' | 'documentRoot'>): ParamList {
  // php-cgi built with --enable-force-cgi-redirect refuses to run without it.
  const extra: ParamList = [['REDIRECT_STATUS', '200']];
  if (script.pathInfo !== '') extra.push(['PATH_TRANSLATED', asBytes(script.documentRoot + script.pathInfo)]);
  return extra;
}

/** A JS string as the latin1 string of its UTF-8 bytes (how ParamList carries bytes). */
function asBytes(s: string): string {
  return /^[\x00-\x7f]*$/.test(s) ? s : Buffer.from(s, 'utf8').toString('latin1');
}

/**
 * Opens `file` and checks where the open descriptor really points (the
 * kernel's answer in /proc/self/fd): a symlink swapped in after a check
 * cannot redirect the read. 'missing' for ENOENT/ENOTDIR (and anything we
 * may not open), 'outside' when it resolves out of the root.
 */
function openInside(root: string, file: string): OpenFile | 'missing' | 'outside' {
  let fd: number;
  try {
    // A front-controller app makes "no such file" the common case: say so without an exception
    // (and without a Stats object: the descriptor is fstat'ed below).
    if (!existsSync(file)) return 'missing';
    fd = openSync(file, OPEN_FLAGS);
  } catch {
    return 'missing';
  }
  try {
    let real: string;
    try {
      real = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      real = realpathSync.native(file); // no /proc: the path check, with its small race
    }
    if (!inside(root, real)) {
      closeSync(fd);
      return 'outside';
    }
    const stat: Stats = fstatSync(fd);
    return { fd, stat, path: real };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * root + `rel`, as path.join would give it without its normalising pass:
 * `rel` is built from request-path segments (none empty, `.` or `..`, none
 * with a `/`) or fixed names, so it is normal already, and root is a
 * realpath (no trailing slash unless it is `/`).
 */
function under(root: string, rel: string): string {
  return root === sep ? rel : root + rel;
}

function inside(root: string, real: string): boolean {
  return real === root || real.startsWith(root === sep ? root : root + sep);
}

function query(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? '' : target.slice(q);
}

function notFound(reason: string): PresetDecision {
  return { kind: 'refused', status: 404, reason };
}
