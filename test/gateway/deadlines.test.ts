// The gateway's one-list deadlines (src/gateway/deadlines.ts): order, re-arming, disarming, close.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Deadlines, type Timed } from '../../src/gateway/deadlines.js';
import { waitUntil } from '../helpers/wait.js';

function timed(name: string, fired: string[]): Timed {
  return { deadline: 0, prevTimed: null, nextTimed: null, onDeadline: () => fired.push(name) };
}

describe('Deadlines', () => {
  it('fires each armed item once, oldest first; re-arming moves an item to the end; disarmed items never fire', async () => {
    const fired: string[] = [];
    const d = new Deadlines(40, 5);
    try {
      const [a, b, c, e] = ['a', 'b', 'c', 'e'].map((n) => timed(n, fired)) as [Timed, Timed, Timed, Timed];
      d.arm(a);
      d.arm(b);
      d.arm(c);
      d.arm(e);
      d.arm(a); // a again: now after e
      d.disarm(c);
      d.disarm(c); // twice is harmless
      await waitUntil(() => fired.length === 3, 5000, 'three deadlines');
      assert.deepEqual(fired, ['b', 'e', 'a']);
      assert.equal(a.nextTimed, null);
      assert.equal(a.prevTimed, null);
    } finally {
      d.close();
    }
  });

  it('an item re-armed from inside onDeadline fires again one length later; close() drops what is armed', async () => {
    const fired: string[] = [];
    const d = new Deadlines(20, 5);
    let again = 0;
    const item: Timed = {
      deadline: 0,
      prevTimed: null,
      nextTimed: null,
      onDeadline() {
        fired.push('x');
        if (++again < 3) d.arm(item);
      },
    };
    d.arm(item);
    await waitUntil(() => fired.length === 3, 5000, 'three firings');
    const late = timed('late', fired);
    d.arm(late);
    d.close();
    assert.equal(late.prevTimed, null, 'close() unlinks what was armed');
    assert.deepEqual(fired, ['x', 'x', 'x']);
  });
});
