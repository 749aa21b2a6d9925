#!/usr/bin/env -S node --max-semi-space-size=1 --expose-gc
// The `flamewire` command. Every failure ends in one line on stderr and a non-zero status.
// The #! line caps V8's young generation at 1 MB per semi-space: by default it grows to 16 MB
// while a profile is encoded, ~10 MB of peak RSS for nothing (a record does little allocation
// per second; the extra scavenges cost nothing measurable). --expose-gc lets the agent collect
// between windows (see gc.ts).

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
    case 'agent': {
      const { runAgent } = await import('./agent.js');
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      return runAgent(parsed.options, pkg.version);
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
    // A RecordError may carry its own status: 127/126 for a command that cannot run, as shells.
    const status = (e as { exitStatus?: unknown }).exitStatus;
    process.exitCode = e instanceof UsageError ? EXIT_USAGE : typeof status === 'number' ? status : 1;
  },
);
