#!/usr/bin/env node
/**
 * @module cli/callfcgi
 * `callfcgi`: ashd's FastCGI request handler (or, with --http, a plain HTTP
 * front) in front of a FastCGI application; see docs/callscgi.md.
 */
import { runCallHandler } from './callhandler.js';

export function main(argv: string[]): Promise<number> {
  return runCallHandler({ name: 'callfcgi', protocol: 'fastcgi' }, argv);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`callfcgi: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
