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
