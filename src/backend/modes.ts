/**
 * @module backend/modes
 * callscgi's four modes, decided exactly as its man page says from the
 * address option, PROGRAM and -N, and the Connector for each.
 */
import type { BackendMode, BackendOptions } from './contract.js';
import { AddressDialer } from './connect.js';
import type { Connector, ConnectorContext } from './connector.js';
import { ClientConnector } from './client-mode.js';
import { AnonymousConnector, type AnonymousPool } from './anonymous-mode.js';
import { LaunchingConnector } from './launching-mode.js';
import { MixedConnector } from './mixed-mode.js';

/**
 * address, no PROGRAM → client; PROGRAM, no address → anonymous (whatever
 * -N says: ashd's "PROGRAM and -N without an address" fails on the first
 * request); both → launching, or mixed when retries > 0. Neither → an
 * error at once (ashd only noticed on the first request).
 */
export function decideMode(options: Pick<BackendOptions, 'address' | 'program' | 'retries'>): BackendMode {
  const hasProgram = options.program !== undefined && options.program.length > 0;
  const hasAddress = options.address !== undefined;
  if (hasAddress && !hasProgram) return 'client';
  if (!hasAddress && hasProgram) return 'anonymous';
  if (hasAddress && hasProgram) return (options.retries ?? 0) > 0 ? 'mixed' : 'launching';
  throw new TypeError('backend: need an address to connect to or a program to start (or both)');
}

export function createConnector(
  mode: BackendMode,
  options: BackendOptions,
  ctx: ConnectorContext,
  pool?: AnonymousPool,
): Connector {
  if (mode === 'anonymous') return new AnonymousConnector(ctx, pool);
  const dialer = new AddressDialer(options.address!, {
    connectTimeoutMs: ctx.connectTimeoutMs,
    ...(options.servicesFile !== undefined && { servicesFile: options.servicesFile }),
  });
  switch (mode) {
    case 'client':
      return new ClientConnector(dialer, ctx);
    case 'launching':
      return new LaunchingConnector(dialer, ctx);
    case 'mixed':
      return new MixedConnector(dialer, ctx);
  }
}
