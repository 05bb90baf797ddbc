/**
 * The request-body spool (chunked uploads learn their CONTENT_LENGTH on disk).
 * Pins: a temp file is never left to the garbage collector — on Node 24+ a
 * FileHandle closed by GC is an uncaught error that would take the gateway down.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { readdirSync, readlinkSync } from 'node:fs';
import { spoolBody } from '../../src/gateway/spool.js';
import { tmpDir } from '../helpers/peers.js';

/** Our open descriptors that point at a spool file (unlinked files read "… (deleted)"). */
function openSpoolFds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.includes('gatehouse-body-')) out.push(target);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

async function waitForNoSpoolFds(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (openSpoolFds().length > 0) {
    if (Date.now() > deadline) throw new Error(`spool files still open: ${openSpoolFds().join(', ')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('spoolBody', () => {
  it('closes the temp file when the client goes away while the file is still being opened', async () => {
    const dir = tmpDir();
    const body = new PassThrough();
    const spooled = spoolBody(body, { limit: 1 << 20, memoryLimit: 4, dir });
    body.write(Buffer.alloc(64, 1)); // past memoryLimit: the temp file is being opened
    body.destroy(); // 'close' before the open finished
    await assert.rejects(spooled, { code: 'ERR_GATEWAY_BODY_ABORTED' });
    await waitForNoSpoolFds(5000);
  });

  it('closes the temp file when the body goes over the limit', async () => {
    const dir = tmpDir();
    const body = new PassThrough();
    const spooled = spoolBody(body, { limit: 100, memoryLimit: 4, dir });
    body.write(Buffer.alloc(64, 1));
    body.write(Buffer.alloc(64, 2));
    await assert.rejects(spooled, { code: 'ERR_GATEWAY_BODY_TOO_LARGE' });
    await waitForNoSpoolFds(5000);
  });

  it('a spooled body reads back whole, and reading it to the end frees the file', async () => {
    const dir = tmpDir();
    const body = new PassThrough();
    const spooled = spoolBody(body, { limit: 1 << 20, memoryLimit: 4, dir });
    const parts = [Buffer.alloc(1000, 1), Buffer.alloc(3000, 2)];
    for (const p of parts) body.write(p);
    body.end();
    const s = await spooled;
    assert.equal(s.length, 4000);
    const chunks: Buffer[] = [];
    for await (const c of s.stream()) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat(parts));
    await waitForNoSpoolFds(5000);
  });
});
