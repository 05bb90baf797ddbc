import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RespawnBackoff } from '../../src/pool/backoff.js';

describe('RespawnBackoff', () => {
  it('respawns the first quick death at once, then doubles from 100 ms to the 15 s cap', () => {
    const b = new RespawnBackoff();
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) delays.push(b.recordQuickExit(1000 + i));
    assert.deepEqual(delays, [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000, 15000]);
    assert.equal(b.spawnNotBefore(), 1000 + 11 + 15000);
  });

  it('starts from zero again after 60 s without a quick death, not before', () => {
    const b = new RespawnBackoff();
    b.recordQuickExit(0);
    b.recordQuickExit(10);
    assert.equal(b.recordQuickExit(59_999), 200, 'third in a row, still inside the window');
    assert.equal(b.recordQuickExit(59_999 + 60_000), 0, 'a stable minute resets');
    assert.equal(b.consecutiveFailures, 1);
  });

  it('reset() (an operator reload) lifts the throttle at once', () => {
    const b = new RespawnBackoff({ initialMs: 50, maxMs: 200 });
    for (let i = 0; i < 5; i++) b.recordQuickExit(i);
    assert.equal(b.spawnNotBefore(), 4 + 200);
    b.reset();
    assert.equal(b.spawnNotBefore(), Number.NEGATIVE_INFINITY);
    assert.equal(b.recordQuickExit(10), 0);
  });
});
