#!/usr/bin/env node
// The `flamewire` command. Every failure ends in one line on stderr and a non-zero status.

import { readFileSync } from 'node:fs';
import { HELP, parseArgs, UsageError } from './cli-args.js';
import { configureLogger } from './logger.js';

const EXIT_USAGE = 2;

async function main(argv: string[]): Promise<number> {
  const parsed = parseArgs(argv);
  switch (parsed.kind) {
    case 'help':
      process.stdout.write((HELP[parsed.topic ?? 'main'] ?? HELP.main) + '\n');
      return 0;
    case 'version': {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(`flamewire ${pkg.version}\n`);
      return 0;
    }
    case 'doctor': {
      const { runChecks, formatChecks } = await import('./doctor.js');
      const checks = await runChecks();
      process.stdout.write(parsed.json ? JSON.stringify(checks, null, 2) + '\n' : formatChecks(checks) + '\n');
      return checks.some((c) => c.status === 'fail') ? 1 : 0;
    }
    case 'record': {
      configureLogger(parsed.options.verbose ? 'debug' : 'warn');
      const { record } = await import('./record.js');
      return record(parsed.options);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error;
    process.stderr.write(`flamewire: ${err.message}\n`);
    if (process.env.FLAMEWIRE_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = e instanceof UsageError ? EXIT_USAGE : 1;
  },
);
