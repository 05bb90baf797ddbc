#!/usr/bin/env node
/**
 * @module cli/callscgi
 * `callscgi`: ashd's SCGI request handler (or, with --http, a plain HTTP
 * front) in front of an SCGI application; see docs/callscgi.md.
 */
import { runCallHandler } from './callhandler.js';

export function main(argv: string[]): Promise<number> {
  return runCallHandler({ name: 'callscgi', protocol: 'scgi' }, argv);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`callscgi: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
