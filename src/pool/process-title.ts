/**
 * @module pool/process-title
 * What `ps` shows. The Perl original titles its manager `perl-fcgi-pm` (or
 * `pm_title`) and its workers `perl-fcgi`; ours are `gatehouse-pm [NAME]` and,
 * for Node workers in library mode, `gatehouse-worker [NAME]`. Foreign
 * workers (php-cgi, Perl) keep their own argv.
 */

export function managerTitle(name?: string): string {
  return name ? `gatehouse-pm [${name}]` : 'gatehouse-pm';
}

export function workerTitle(name?: string): string {
  return name ? `gatehouse-worker [${name}]` : 'gatehouse-worker';
}

/**
 * Sets the title. Node writes it over the original argv area (visible in
 * /proc/PID/cmdline and `ps -o args`) and truncates to that area's length,
 * so a very long title on a short command line is cut, never an error.
 */
export function setProcessTitle(title: string): void {
  process.title = title;
}
