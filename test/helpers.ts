// Shared test helpers: real programs built by the tests, in a scratch folder per test file.

import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A scratch folder under test/.work/<name>, created if missing. */
export function workDir(name: string): string {
  const dir = join(repoRoot, 'test', '.work', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Compiles one C (or C++, by extension) source file; returns the binary's path. */
export function buildC(dir: string, name: string, source: string, flags: string[] = []): string {
  const ext = /\.(cc|cpp)$/.test(name) ? '' : '.c';
  const src = join(dir, name + ext);
  const out = join(dir, name.replace(/\.(c|cc|cpp)$/, ''));
  writeFileSync(src, source);
  const cc = /\.(cc|cpp)$/.test(name) ? 'g++' : 'gcc';
  execFileSync(cc, ['-o', out, src, ...flags], { stdio: 'pipe' });
  return out;
}

/** Builds a Go main package from one source file; returns the binary's path. */
export function buildGo(dir: string, name: string, source: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}): string {
  const pkg = join(dir, name + '-src');
  mkdirSync(pkg, { recursive: true });
  writeFileSync(join(pkg, 'main.go'), source);
  writeFileSync(join(pkg, 'go.mod'), `module example.com/${name}\n\ngo 1.21\n`);
  const out = join(dir, name);
  execFileSync('go', ['build', '-o', out, ...flags, '.'], {
    cwd: pkg,
    stdio: 'pipe',
    env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', ...env },
  });
  return out;
}

/** A test program that printed one line of hex addresses and waits for a byte on stdin to exit. */
export interface RunningProgram {
  child: ChildProcessWithoutNullStreams;
  addrs: number[];
  exit(): Promise<void>;
}

/**
 * Starts `bin`, waits for its first output line (hex addresses, `0x` optional) and returns it
 * parsed; `exit()` writes to its stdin and waits. Callers kill leftovers in an after() hook.
 */
export async function startAddressPrinter(bin: string, env: NodeJS.ProcessEnv = {}): Promise<RunningProgram> {
  const child = spawn(bin, [], { stdio: 'pipe', env: { ...process.env, ...env } });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${bin} exited early (${code})`)));
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    child,
    addrs: line.trim().split(/\s+/).map((h) => parseInt(h.replace(/^0x/, ''), 16)),
    exit: async () => {
      child.stdin.end('x');
      await exited;
    },
  };
}
