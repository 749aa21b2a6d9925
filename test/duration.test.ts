// Durations as the command line and the config file give them (their timer: timers.test.ts).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration, parseDurationNs } from '../src/duration.js';

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
