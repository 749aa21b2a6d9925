// One pino logger for the process. `record` is a terminal tool: logs go to stderr, quiet unless
// --verbose, so stdout and the status line stay readable.

import { pino, type Logger } from 'pino';

let current: Logger = pino({ level: 'warn', base: undefined }, pino.destination({ fd: 2, sync: true }));

export function logger(): Logger {
  return current;
}

export function configureLogger(level: 'debug' | 'info' | 'warn' | 'error'): Logger {
  current = pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
  return current;
}
