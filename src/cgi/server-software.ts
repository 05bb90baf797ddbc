/**
 * @module cgi/server-software
 * SERVER_SOFTWARE's value, `gatehouse/<version>`, with the version read once
 * from our own package.json (found by walking up from this file, so it works
 * from dist/ in the repository and from an installed package alike).
 */
import { readFileSync } from 'node:fs';

function packageVersion(): string {
  let dir = new URL('.', import.meta.url);
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'gatehouse' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json at this level (or not ours): keep walking up.
    }
    dir = new URL('..', dir);
  }
  return '0.0.0';
}

export const SERVER_SOFTWARE = `gatehouse/${packageVersion()}`;
