// Durations as the command line and the config file give them, and the timer that honours
// any of them: setTimeout fires a delay over 2^31 - 1 ms after 1 ms (a 1000h -d stopped at once).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { longTimeout, MAX_TIMER_MS, parseDuration, parseDurationNs } from '../src/duration.js';

describe('parseDuration', () => {
  it('reads units, sums and bare seconds', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('2'), 2000);
    assert.equal(parseDuration('1000h'), 3_600_000_000);
    assert.equal(parseDurationNs('100us'), 100_000);
  });

  it('refuses what is no duration, and what no millisecond count holds exactly', () => {
    for (const t of ['', '10x', '1h30', '-5s', '1e3s', '5us']) assert.equal(parseDuration(t), undefined, t);
    assert.equal(parseDuration(`${'9'.repeat(400)}h`), undefined);
    assert.equal(parseDurationNs(`${'9'.repeat(400)}s`), undefined);
    assert.equal(parseDuration(`${Number.MAX_SAFE_INTEGER}s`), undefined);
  });
});

describe('longTimeout', () => {
  const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('does not fire a delay past the setTimeout limit early, and cancels', async () => {
    let fired = false;
    const cancel = longTimeout(() => (fired = true), MAX_TIMER_MS + 1000);
    // A plain setTimeout of that length would have fired (after 1 ms) before this peer.
    await tick(100);
    assert.equal(fired, false);
    cancel();
  });

  it('re-arms until its time has come, then fires once', async () => {
    const order: string[] = [];
    setTimeout(() => order.push('peer at half'), 80);
    // Steps of 20 ms: it re-arms 8 times, and fires after the peer of half its delay.
    await new Promise<void>((resolve) =>
      longTimeout(() => {
        order.push('long');
        resolve();
      }, 160, 20),
    );
    await tick(50);
    assert.deepEqual(order, ['peer at half', 'long']);
  });

  it('fires a zero or short delay like setTimeout', async () => {
    const order: string[] = [];
    longTimeout(() => order.push('zero'), 0);
    longTimeout(() => order.push('short'), 5);
    await tick(50);
    assert.deepEqual(order, ['zero', 'short']);
  });
});
