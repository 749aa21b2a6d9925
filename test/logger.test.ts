// The logger's helpers for lines that come from outside: a rate limit for lines a backend can
// make repeat (with the count of those held back, and a bounded number of keys so that no
// server can make every line new), and a redactor of configured secrets in messages.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { rateLimitedLog, redactor } from '../src/logger.js';

/** A pino logger whose lines the test reads back. */
function capture(): { log: pino.Logger; lines: () => Array<Record<string, any>> } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      out.push(String(chunk));
      done();
    },
  });
  return { log: pino({ base: undefined, level: 'debug' }, stream), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

describe('rate-limited log lines', () => {
  it('lets a key through once per interval, and the next line that passes says how many were held back', () => {
    const { log, lines } = capture();
    let now = 0;
    const limited = rateLimitedLog(log, 10_000, () => now);
    for (let i = 0; i < 600; i++) {
      limited.log('warn', 'failed 429', { attempt: i }, 'export failed');
      now += 10; // 600 a second
    }
    assert.deepEqual(lines().map((l) => [l.attempt, l.suppressed]), [[0, undefined]]);
    now = 10_000;
    limited.log('warn', 'failed 429', { attempt: 600 }, 'export failed');
    assert.deepEqual(lines().map((l) => [l.attempt, l.suppressed]), [[0, undefined], [600, 599]]);
    // Another key is another line.
    limited.log('warn', 'failed ECONNRESET', { attempt: 601 }, 'export failed');
    assert.equal(lines().length, 3);
  });

  it('shows the last line held back of each key at flush, with the count of the others', () => {
    const { log, lines } = capture();
    const limited = rateLimitedLog(log, 10_000, () => 0);
    for (let i = 0; i < 5; i++) limited.log('warn', 'k', { attempt: i }, 'export failed');
    limited.log('warn', 'other', { attempt: 9 }, 'export failed');
    limited.flush();
    assert.deepEqual(lines().map((l) => [l.attempt, l.suppressed]), [[0, undefined], [9, undefined], [4, 3]]);
    limited.flush();
    assert.equal(lines().length, 3, 'nothing more held back');
  });

  it('follows a bounded number of keys: new ones past it share one', () => {
    const { log, lines } = capture();
    const limited = rateLimitedLog(log, 10_000, () => 0);
    for (let i = 0; i < 10_000; i++) limited.log('warn', `key ${i}`, {}, 'export failed');
    assert.ok(lines().length <= 257, `${lines().length} lines`);
  });
});

describe('redactor', () => {
  it('takes every configured secret out of a message, as it is, trimmed, JSON-quoted or URL-encoded', () => {
    const redact = redactor(['Bearer tok-123456\n', 'p@ss word', undefined, 'ab']);
    assert.equal(redact('Metadata string value "Bearer tok-123456\\n" contains illegal characters'), 'Metadata string value "[redacted]" contains illegal characters');
    assert.equal(redact('401: Bearer tok-123456 is not valid'), '401: [redacted] is not valid');
    assert.equal(redact('user=p%40ss%20word; p@ss word'), 'user=[redacted]; [redacted]');
    // Too short to be a secret: left alone rather than mangling the text.
    assert.equal(redact('about'), 'about');
  });
});
