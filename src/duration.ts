// Durations on the command line: 500ms, 10s, 1.5s, 2m, 1h, 1m30s; a bare number means seconds.
// (A timer for one of any length: timers.ts longTimeout.)

const NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * Milliseconds, or undefined when `text` is not a duration or is too long to count in
 * milliseconds exactly (over Number.MAX_SAFE_INTEGER ms, 285 000 years).
 */
export function parseDuration(text: string): number | undefined {
  const ns = parseDurationNs(text, false);
  if (ns === undefined) return undefined;
  const ms = Math.round(ns / 1e6);
  return ms <= Number.MAX_SAFE_INTEGER ? ms : undefined;
}

/**
 * Nanoseconds, or undefined when `text` is not a duration. With `small`, the units under a
 * millisecond are accepted too: 100us (or 100µs), 5000ns.
 */
export function parseDurationNs(text: string, small = true): number | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1e9);
  const part = small ? /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy : /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  let m: RegExpExecArray | null;
  while ((m = part.exec(t)) !== null) {
    total += Number(m[1]) * NS[m[2]];
    end = part.lastIndex;
  }
  if (end !== t.length || end === 0 || !Number.isFinite(total)) return undefined;
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${m}m${String(s).padStart(2, '0')}s`;
}

/** Nanoseconds, in the unit that reads best: 1.2s, 350ms, 80us, 500ns. */
export function formatNs(ns: number): string {
  if (ns >= 1e9) return formatDuration(ns / 1e6);
  if (ns >= 1e6) return `${+(ns / 1e6).toFixed(1)}ms`;
  if (ns >= 1e3) return `${+(ns / 1e3).toFixed(1)}us`;
  return `${Math.round(ns)}ns`;
}
