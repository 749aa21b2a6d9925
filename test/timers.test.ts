// Timers a delay from outside cannot break: setTimeout fires anything over 2^31-1 ms, NaN or a
// negative delay after 1 ms.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { longTimeout, MAX_TIMER_MS, timerDelay } from '../src/timers.js';

describe('timerDelay', () => {
  it('turns NaN and negative delays into 0 and caps the rest at what setTimeout honours', () => {
    assert.deepEqual([NaN, -5, 0, 1.4, 1000, 2 ** 40, Infinity].map(timerDelay), [0, 0, 0, 1, 1000, MAX_TIMER_MS, MAX_TIMER_MS]);
  });
});

describe('longTimeout', () => {
  const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('does not fire a delay past the setTimeout limit early, and cancels', async () => {
    let fired = false;
    const timer = longTimeout(() => (fired = true), MAX_TIMER_MS + 1000);
    // A plain setTimeout of that length would have fired (after 1 ms) before this peer.
    await tick(100);
    assert.equal(fired, false);
    timer.clear();
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
