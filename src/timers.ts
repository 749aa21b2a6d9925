// Timers that a delay from outside (a server's Retry-After or RetryInfo, a flag) cannot break:
// Node's setTimeout takes at most 2^31-1 ms, and fires after 1 ms for anything longer, for NaN
// and for a negative delay: a huge delay would become a tight loop.

export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms` as a delay setTimeout honours: NaN or negative is 0, longer than MAX_TIMER_MS is MAX_TIMER_MS. */
export function timerDelay(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.min(Math.round(ms), MAX_TIMER_MS);
}

export interface LongTimeout {
  clear(): void;
}

/**
 * Calls `fn` once, `ms` from now on the monotonic clock, however long that is: past
 * MAX_TIMER_MS (or `stepMs`, for tests) the timer re-arms until the time has come.
 */
export function longTimeout(fn: () => void, ms: number, stepMs = MAX_TIMER_MS): LongTimeout {
  const end = performance.now() + (ms > 0 ? ms : 0);
  let t: NodeJS.Timeout;
  const arm = () => {
    const left = end - performance.now();
    t = setTimeout(left > stepMs ? arm : fn, Math.min(timerDelay(Math.ceil(left)), stepMs));
  };
  arm();
  return { clear: () => clearTimeout(t) };
}

/**
 * The wait before attempt `attempt` + 1 (0: after the first failure): min(cap, initial ×
 * multiplier^attempt), less up to half of it at random, so never less than half a step and
 * never a busy loop, with jitter that keeps many clients apart.
 */
export function backoffDelay(attempt: number, opts: { initialMs: number; capMs: number; multiplier?: number; random?: () => number }): number {
  const step = Math.min(opts.capMs, opts.initialMs * (opts.multiplier ?? 2) ** Math.min(attempt, 64));
  return Math.round(step / 2 + ((opts.random ?? Math.random)() * step) / 2);
}
