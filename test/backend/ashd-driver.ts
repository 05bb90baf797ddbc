/**
 * Drives test/fixtures/backend/ashd-parent.py, which plays ashd's parent
 * handler: it runs callscgi/callfcgi with a SOCK_SEQPACKET socketpair end as
 * fd 0 and passes one socketpair(SOCK_STREAM) end per request by
 * SCM_RIGHTS. Node cannot do either; Python's socket.send_fds can.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { SpawnOptions } from 'node:child_process';
import { distPath, fixture, spawnTracked, stopProcess } from '../helpers/peers.js';

export interface AshdRequestSpec {
  method?: string;
  url?: string;
  version?: string;
  rest?: string;
  headers?: Array<[string, string]>;
  body?: string;
}

export interface ParsedHttpResponse {
  raw: Buffer;
  statusLine: string;
  status: number;
  headers: Array<[string, string]>;
  header: (name: string) => string | undefined;
  body: Buffer;
}

/** Splits `HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody`. */
export function parseHttpResponse(raw: Buffer): ParsedHttpResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no complete head in ${JSON.stringify(raw.toString('latin1').slice(0, 300))}`);
  const lines = raw.toString('latin1', 0, end).split('\r\n');
  const statusLine = lines[0]!;
  const headers = lines.slice(1).map((l): [string, string] => {
    const c = l.indexOf(':');
    return [l.slice(0, c), l.slice(c + 1).trim()];
  });
  return {
    raw,
    statusLine,
    status: Number(statusLine.split(' ')[1]),
    headers,
    header: (name) => headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1],
    body: raw.subarray(end + 4),
  };
}

/** The compiled CLI entry (dist/src/cli/<name>.js). */
export function cliPath(name: 'callscgi' | 'callfcgi'): string {
  return distPath('src', 'cli', `${name}.js`);
}

export class AshdParent {
  readonly process: ChildProcess;
  readonly logs: { stdout: () => string; stderr: () => string };
  /** The handler's pid (callscgi/callfcgi), once started. */
  handlerPid = 0;
  readonly #replies: Array<(line: Record<string, unknown>) => void> = [];
  readonly #pending: Array<Record<string, unknown>> = [];
  #nextId = 1;

  private constructor(proc: ChildProcess) {
    this.process = proc;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (process.env.GH_TEST_VERBOSE) process.stderr.write(`[ashd] ${d.toString()}`);
    });
    this.logs = { stdout: () => '', stderr: () => stderr };
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      const msg = JSON.parse(line) as Record<string, unknown>;
      const waiter = this.#replies.shift();
      if (waiter) waiter(msg);
      else this.#pending.push(msg);
    });
  }

  /** Starts `node <cli> ...args` under the fake parent; resolves once it runs. */
  static async start(cli: 'callscgi' | 'callfcgi', args: string[], opts: SpawnOptions = {}): Promise<AshdParent> {
    const proc = spawnTracked('python3', [fixture('backend', 'ashd-parent.py'), process.execPath, cliPath(cli), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...opts,
    });
    const parent = new AshdParent(proc);
    const hello = await parent.#next(10000);
    parent.handlerPid = hello.pid as number;
    return parent;
  }

  #next(timeoutMs: number): Promise<Record<string, unknown>> {
    const ready = this.#pending.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ashd-parent gave no answer in ${timeoutMs} ms; stderr:\n${this.logs.stderr()}`)), timeoutMs);
      this.#replies.push((msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
    });
  }

  async command(cmd: Record<string, unknown>, timeoutMs = 20000): Promise<Record<string, unknown>> {
    this.process.stdin!.write(`${JSON.stringify(cmd)}\n`);
    const reply = await this.#next(timeoutMs);
    if (reply.error) throw new Error(`ashd-parent: ${String(reply.error)}`);
    return reply;
  }

  /** Sends a request; returns its id for recv(). */
  async send(req: AshdRequestSpec): Promise<number> {
    const id = this.#nextId++;
    await this.command({ cmd: 'send', id, ...req });
    return id;
  }

  async recv(id: number, timeoutS = 15): Promise<Buffer> {
    const reply = await this.command({ cmd: 'recv', id, timeout: timeoutS }, (timeoutS + 5) * 1000);
    if (reply.timeout) throw new Error(`no complete response for request ${id} in ${timeoutS} s; stderr:\n${this.logs.stderr()}`);
    return Buffer.from(reply.response as string, 'base64');
  }

  /** One request, its whole response. */
  async request(req: AshdRequestSpec): Promise<ParsedHttpResponse> {
    return parseHttpResponse(await this.recv(await this.send(req)));
  }

  /** A raw datagram, with or without a response socket; returns the id to recv() when it had one. */
  async raw(payload: Buffer, withFd: boolean): Promise<number | null> {
    const reply = await this.command({ cmd: 'raw', payload: payload.toString('base64'), fd: withFd });
    return (reply.id as number | null) ?? null;
  }

  async signal(sig: 'TERM' | 'INT' | 'KILL'): Promise<void> {
    await this.command({ cmd: 'signal', sig });
  }

  /** EOF on the handler's control socket. */
  async closeControl(): Promise<void> {
    await this.command({ cmd: 'close' });
  }

  /** The handler's exit code (null if it did not exit in time). */
  async wait(timeoutS = 15): Promise<number | null> {
    const reply = await this.command({ cmd: 'wait', timeout: timeoutS }, (timeoutS + 5) * 1000);
    return reply.exit as number | null;
  }

  async stop(): Promise<void> {
    this.process.stdin?.end();
    await stopProcess(this.process);
  }
}


