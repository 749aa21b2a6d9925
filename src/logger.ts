// One pino logger for the process. `record` is a terminal tool: logs go to stderr, quiet unless
// --verbose, so stdout and the status line stay readable.

import { getHeapSpaceStatistics } from 'node:v8';
import { pino, type Logger } from 'pino';

let current: Logger = pino({ level: 'warn', base: undefined }, pino.destination({ fd: 2, sync: true }));

export function logger(): Logger {
  return current;
}

/** `fd`: 2 (stderr) for record; the agent logs JSON lines on stdout (1). */
export function configureLogger(level: 'debug' | 'info' | 'warn' | 'error', fd: 1 | 2 = 2): Logger {
  current = pino({ level, base: undefined }, pino.destination({ fd, sync: true }));
  return current;
}

/** Memory figures for debug logs, in MB (peakRss: the high-water mark so far). */
export function memoryFigures(): Record<string, number> {
  const m = process.memoryUsage();
  const mb = (n: number) => Math.round(n / 1048576);
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
  return { rss: mb(m.rss), heapTotal: mb(m.heapTotal), young: mb(young), heapUsed: mb(m.heapUsed), external: mb(m.external), peakRss: mb(process.resourceUsage().maxRSS * 1024) };
}

type Level = 'debug' | 'info' | 'warn' | 'error';

/** Distinct keys one limiter follows; a key past them shares one catch-all entry. */
const MAX_LIMITED_KEYS = 256;

/**
 * A log line that may repeat fast (a backend answering every request at once with an error, a
 * watch failing in a loop): lets each `key` through at most once per `intervalMs` and counts
 * the lines held back; the next line of that key that passes carries the count as `suppressed`
 * (flush() shows the last line held back of each key, with the count of the others). The key says which lines are "the same": it
 * must not be made of what a server chooses freely (a message body), or a hostile one makes
 * every line new; the number of keys is bounded anyway.
 */
export interface RateLimitedLog {
  log(level: Level, key: string, fields: Record<string, unknown>, msg: string): void;
  /** Logs one line for every key with lines held back since it last passed. */
  flush(): void;
}

export function rateLimitedLog(log: Logger, intervalMs = 10_000, now: () => number = Date.now): RateLimitedLog {
  const keys = new Map<string, { at: number; suppressed: number; level: Level; msg: string; fields: Record<string, unknown> }>();
  return {
    log(level, key, fields, msg) {
      const k = keys.has(key) || keys.size < MAX_LIMITED_KEYS ? key : '(other)';
      const e = keys.get(k);
      const t = now();
      if (e && t - e.at < intervalMs) {
        e.suppressed++;
        e.level = level;
        e.msg = msg;
        e.fields = fields;
        return;
      }
      keys.set(k, { at: t, suppressed: 0, level, msg, fields });
      log[level]({ ...fields, ...(e?.suppressed ? { suppressed: e.suppressed } : {}) }, msg);
    },
    flush() {
      // The last line held back is shown, with the count of the others.
      for (const e of keys.values()) {
        if (e.suppressed > 0) log[e.level]({ ...e.fields, ...(e.suppressed > 1 ? { suppressed: e.suppressed - 1 } : {}) }, e.msg);
        e.suppressed = 0;
      }
    },
  };
}

/** Secrets shorter than this are not looked for: they cannot be credentials, and would mangle text. */
const MIN_SECRET_LENGTH = 4;

/**
 * Replaces every configured secret (header values, tokens, passwords) in a message with
 * [redacted], as it is and as JSON or a URL would quote it: for messages that come from
 * libraries (grpc-js, node:http) or servers, before they reach a log line.
 */
export function redactor(secrets: Iterable<string | undefined>): (text: string) => string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s === undefined) continue;
    for (const f of [s, s.trim(), JSON.stringify(s).slice(1, -1), encodeURIComponent(s)]) if (f.length >= MIN_SECRET_LENGTH) forms.add(f);
  }
  // The longest first: a secret that contains another is replaced whole.
  const list = [...forms].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const f of list) if (out.includes(f)) out = out.split(f).join('[redacted]');
    return out;
  };
}
