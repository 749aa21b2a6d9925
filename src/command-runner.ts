// Runs the command given after `--` so that it is profiled from its first instruction: the
// command starts behind a gate (a shell waiting on a pipe), the caller adds its pid to the
// in-kernel filter, then opens the gate and the shell execs the command under the same pid.
// findCommand looks the command up first, as the shell's exec will, so that a command that is
// not there (status 127) or cannot be run (126) is said in one line before anything starts.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';

/** The file the shell would run, or why it cannot: status 127 (not found) or 126 (found, not runnable), as shells say. */
export type CommandLookup = { path: string } | { status: 126 | 127; message: string };

/** dash's search path when PATH is unset. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Finds `name` the way execvp (and the gate shell's `exec`) does: a name with a slash is the
 * file itself; a bare name is searched in PATH (an empty entry is the current directory), and
 * a match that cannot be executed is only reported when no later entry has a runnable one.
 */
export function findCommand(name: string, path: string | undefined = process.env.PATH): CommandLookup {
  if (name.includes('/')) {
    const why = notRunnable(name);
    if (why === undefined) return { path: name };
    if (why === 'missing') return { status: 127, message: `command not found: ${name}` };
    return { status: 126, message: `cannot execute ${name}: ${why}` };
  }
  let found: string | undefined;
  if (name !== '') {
    for (const dir of (path ?? DEFAULT_PATH).split(':')) {
      const candidate = join(dir || '.', name);
      const why = notRunnable(candidate);
      if (why === undefined) return { path: candidate };
      if (why !== 'missing') found ??= `cannot execute ${candidate}: ${why}`;
    }
  }
  return found ? { status: 126, message: found } : { status: 127, message: `command not found: ${name}` };
}

/** Why execve would refuse `file`, in words; 'missing' when there is no such file; undefined when it would run it. */
function notRunnable(file: string): string | undefined {
  let st;
  try {
    st = statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    return code === 'EACCES' ? 'permission denied' : (e as Error).message.split('\n')[0];
  }
  if (st.isDirectory()) return 'it is a directory';
  if (!st.isFile()) return 'not a regular file';
  try {
    // X_OK also says no on a noexec mount, as execve would.
    accessSync(file, fsConstants.X_OK);
  } catch {
    return 'permission denied';
  }
  return undefined;
}

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
// If the exec still fails (the file went away since findCommand, a missing ELF interpreter),
// the shell says why as "flamewire: 1: exec: …" and exits 127 or 126.
const GATE = 'IFS= read -r go <&3 || exit 126; exec 3<&-; exec "$@"';

export function spawnGated(command: string[]): GatedCommand {
  const child = spawn('/bin/sh', ['-c', GATE, 'flamewire', ...command], {
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
