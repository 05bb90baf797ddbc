#!/usr/bin/env node
/**
 * @module cli/gatehouse
 * `gatehouse serve | manage | status`: flags → options; each subcommand lives
 * in its own module and returns the exit code.
 */
import { runManage } from './manage.js';
import { runServe } from './serve.js';
import { runStatus } from './status.js';

export const USAGE = `usage: gatehouse <command> [options]

commands:
  serve    HTTP gateway in front of a FastCGI/SCGI application (callscgi's modes)
  manage   process manager: own a listening socket, run N workers on it (FCGI::ProcManager)
  status   show a manager's pid, workers and socket from its pid file

Run 'gatehouse <command> -h' for a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return runServe(rest);
    case 'manage':
      return runManage(rest);
    case 'status':
      return runStatus(rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case undefined:
      process.stderr.write(`gatehouse: missing command\n${USAGE}`);
      return 2;
    default:
      process.stderr.write(`gatehouse: unknown command '${command}'\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`gatehouse: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
