// Runs the command given after `--` so that it is profiled from its first instruction: the
// command starts behind a gate (a shell waiting on a pipe), the caller adds its pid to the
// in-kernel filter, then opens the gate and the shell execs the command under the same pid.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';

export interface GatedCommand {
  pid: number;
  /** Lets the command run (exec). */
  release(): void;
  /** Resolves with the shell-style exit status: the code, or 128 + signal number. */
  exited: Promise<number>;
  /** True once the command has exited. */
  readonly done: boolean;
  kill(signal: NodeJS.Signals): void;
  child: ChildProcess;
}

// `read` returns when the gate pipe gets a line (or is closed: then we exit, not exec).
const GATE = 'IFS= read -r go <&3 || exit 126; exec 3<&-; exec "$@"';

export function spawnGated(command: string[]): GatedCommand {
  const child = spawn('/bin/sh', ['-c', GATE, 'flamewire-gate', ...command], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`cannot start ${command[0]}`);
  let done = false;
  const exited = new Promise<number>((resolve) => {
    child.once('error', () => {
      done = true;
      resolve(127);
    });
    child.once('exit', (code, signal) => {
      done = true;
      if (code !== null) resolve(code);
      else resolve(128 + (signal ? signalNumber(signal) : 0));
    });
  });
  const gate = child.stdio[3] as Writable;
  gate.on('error', () => {});
  return {
    pid: child.pid,
    child,
    exited,
    get done() {
      return done;
    },
    release() {
      gate.end('go\n');
    },
    kill(signal) {
      if (!done) child.kill(signal);
    },
  };
}

function signalNumber(signal: string): number {
  return (constants.signals as Record<string, number>)[signal] ?? 0;
}
