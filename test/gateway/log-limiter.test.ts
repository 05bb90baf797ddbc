/**
 * Failure lines under overload: a fixed number per kind and window, a count
 * of what was left out, and end to end a gateway in front of a backend that
 * is down logging a bounded number of 503 lines for many requests.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { LogLimiter } from '../../src/gateway/log-limiter.js';
import { httpRequest, tmpDir } from '../helpers/peers.js';
import { Harness } from './support.js';

describe('LogLimiter', () => {
  it('lets `burst` lines per kind through per window, counts the rest, reports them at the next window', () => {
    const lines: string[] = [];
    let now = 1000;
    let built = 0;
    const limiter = new LogLimiter((l) => lines.push(l), { burst: 2, windowMs: 100, now: () => now });
    const line = (text: string) => () => (built++, text);
    for (let i = 0; i < 5; i++) limiter.log('503', line(`503 #${i}`));
    limiter.log('502', line('502 #0'));
    assert.deepEqual(lines, ['503 #0', '503 #1', '502 #0']);
    assert.equal(built, 3, 'a line left out is never built');
    now += 100;
    limiter.log('503', line('503 #5'));
    assert.deepEqual(lines.slice(3), ['3 more "503" lines left out (over 2 per 100 ms)', '503 #5']);
    now += 100;
    limiter.log('502', line('502 #1'));
    assert.deepEqual(lines.slice(5), ['502 #1'], 'nothing was left out of "502": no summary');
  });
});

describe('gateway: failure lines under overload', () => {
  const h = new Harness();
  after(() => h.closeAll());

  it('200 requests to a backend that is down: 200 × 503, at most 20 "503" lines in a second', async () => {
    const backend = h.backend({ protocol: 'fastcgi', address: { kind: 'unix', path: join(tmpDir('gh-gw-down-'), 'nobody.sock') } });
    const gw = await h.gateway(backend);
    const started = Date.now();
    const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => httpRequest(`${gw.url}/r${i}`).then((r) => r.status)));
    assert.deepEqual(new Set(statuses), new Set([503]));
    const lines503 = gw.logs.filter((l) => l.startsWith('503 '));
    // One window per second: as many windows as seconds the burst took, 20 lines each at most.
    const windows = Math.floor((Date.now() - started) / 1000) + 1;
    assert.ok(lines503.length <= 20 * windows, `${lines503.length} lines in ${windows} window(s)`);
    assert.ok(lines503.length >= 20, 'the first ones are all there');
  });
});
