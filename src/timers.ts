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

/** setTimeout for a delay of any length (chained timers of at most MAX_TIMER_MS). */
export function longTimeout(fn: () => void, ms: number): LongTimeout {
  const end = Date.now() + (ms > 0 ? ms : 0);
  let t: NodeJS.Timeout;
  const arm = () => {
    const left = end - Date.now();
    t = setTimeout(left > MAX_TIMER_MS ? arm : fn, timerDelay(left));
  };
  arm();
  return { clear: () => clearTimeout(t) };
}
