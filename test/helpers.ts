// Shared test helpers: real programs built by the tests, in a scratch folder per test file.

import { execFile, execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The newest patch of every supported Go minor release (FLAMEWIRE_GO_RELEASES overrides). */
export const GO_RELEASES: readonly string[] = process.env.FLAMEWIRE_GO_RELEASES?.split(/[\s,]+/).filter(Boolean) ?? [
  '1.21.13',
  '1.22.12',
  '1.23.12',
  '1.24.13',
  '1.25.14',
  '1.26.11',
  '1.27.4',
];

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

/** What `go tool buildid` (the local Go) says of `bin`. */
export function goToolBuildId(bin: string): string {
  return execFileSync('go', ['tool', 'buildid', bin], { env: { ...process.env, GOTOOLCHAIN: 'local' } }).toString().trim();
}

/**
 * Builds a Go module from several files (`files` maps paths inside the module, such as
 * `main.go` or `util/util.go`, to their text) without blocking, so that builds can run side by
 * side; resolves to the binary's path. The module is `module` (default example.com/<name>)
 * with go.mod's go directive `go` (default 1.21), then the lines `goMod` (require, replace).
 * Environment defaults as in buildGo (GOTOOLCHAIN=local unless env says otherwise). A failed
 * build rejects with the compiler's output in the message.
 */
export function buildGoModule(
  dir: string,
  name: string,
  files: Record<string, string>,
  opts: { flags?: string[]; env?: NodeJS.ProcessEnv; module?: string; go?: string; goMod?: string } = {},
): Promise<string> {
  const pkg = join(dir, name + '-src');
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(dirname(join(pkg, file)), { recursive: true });
    writeFileSync(join(pkg, file), text);
  }
  writeFileSync(join(pkg, 'go.mod'), `module ${opts.module ?? `example.com/${name}`}\n\ngo ${opts.go ?? '1.21'}\n${opts.goMod ?? ''}`);
  const out = join(dir, name);
  return new Promise((resolve, reject) => {
    execFile(
      'go',
      ['build', '-o', out, ...(opts.flags ?? []), '.'],
      { cwd: pkg, maxBuffer: 16 << 20, env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', ...opts.env } },
      (err, _stdout, stderr) => (err ? reject(new Error(`go build ${name}: ${stderr.trim() || err.message}`)) : resolve(out)),
    );
  });
}

// ---- debug/gosym as an oracle ------------------------------------------------------------------
// A Go program that prints, for each binary named on its command line, "B path", then per
// function "F entry end name" and, at its entry, three inner addresses and its last byte,
// "L pc line function file" (debug/gosym knows nothing of inlining: the function is the physical
// one, file:line the innermost position). The text start is runtime.text when the symbol table
// has it, else .text; the table is .gopclntab, else .data.rel.ro.gopclntab, else
// runtime.pclntab–runtime.epclntab (as cmd/internal/objfile does).

const GOSYM_ORACLE = `package main

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
)

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, path := range os.Args[1:] {
		fmt.Fprintf(out, "B\\t%s\\n", path)
		if err := dump(out, path); err != nil {
			fmt.Fprintf(out, "E\\t%v\\n", err)
		}
	}
}

func dump(out *bufio.Writer, path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	text := f.Section(".text").Addr
	var pclntab, epclntab uint64
	if syms, err := f.Symbols(); err == nil {
		for _, s := range syms {
			switch s.Name {
			case "runtime.text":
				text = s.Value
			case "runtime.pclntab":
				pclntab = s.Value
			case "runtime.epclntab":
				epclntab = s.Value
			}
		}
	}
	var pcln []byte
	sect := f.Section(".gopclntab")
	if sect == nil {
		sect = f.Section(".data.rel.ro.gopclntab") // PIE before Go 1.26
	}
	if sect != nil {
		if pcln, err = sect.Data(); err != nil {
			return err
		}
	} else {
		// Externally linked PIE: inside .data.rel.ro, between two symbols.
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && pclntab >= p.Vaddr && epclntab <= p.Vaddr+p.Filesz && pclntab < epclntab {
				pcln = make([]byte, epclntab-pclntab)
				if _, err := p.ReadAt(pcln, int64(pclntab-p.Vaddr)); err != nil {
					return err
				}
			}
		}
		if pcln == nil {
			return fmt.Errorf("no pclntab")
		}
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pcln, text))
	if err != nil {
		return err
	}
	for _, fn := range tab.Funcs {
		fmt.Fprintf(out, "F\\t%x\\t%x\\t%s\\n", fn.Entry, fn.End, fn.Name)
		size := fn.End - fn.Entry
		for _, pc := range []uint64{fn.Entry, fn.Entry + size/4, fn.Entry + size/2, fn.Entry + size*3/4, fn.End - 1} {
			file, line, g := tab.PCToLine(pc)
			name := ""
			if g != nil {
				name = g.Name
			}
			fmt.Fprintf(out, "L\\t%x\\t%d\\t%s\\t%s\\n", pc, line, name, file)
		}
	}
	return nil
}
`;

export interface GosymAnswer {
  funcs: Array<{ entry: number; end: number; name: string }>;
  lines: Array<{ pc: number; line: number; name: string; file: string }>;
}

/**
 * Builds the debug/gosym oracle in `dir` (with the Go `env` selects: GOTOOLCHAIN) and returns a
 * function that runs it over binaries: per path, its answer, or an Error saying why it had none.
 */
export async function buildGosymOracle(dir: string, env: NodeJS.ProcessEnv = {}): Promise<(paths: string[]) => Promise<Map<string, GosymAnswer | Error>>> {
  const bin = await buildGoModule(dir, 'gosym-oracle', { 'main.go': GOSYM_ORACLE }, { env });
  return (paths) =>
    new Promise((resolve, reject) => {
      execFile(bin, paths, { maxBuffer: 1 << 30 }, (err, stdout) => (err ? reject(err) : resolve(parseGosym(stdout))));
    });
}

function parseGosym(out: string): Map<string, GosymAnswer | Error> {
  const res = new Map<string, GosymAnswer | Error>();
  let path = '';
  let cur: GosymAnswer | undefined;
  for (const l of out.split('\n')) {
    const p = l.split('\t');
    if (p[0] === 'B') {
      path = p[1];
      cur = { funcs: [], lines: [] };
      res.set(path, cur);
    } else if (p[0] === 'E') res.set(path, new Error(p[1]));
    else if (p[0] === 'F') cur!.funcs.push({ entry: parseInt(p[1], 16), end: parseInt(p[2], 16), name: p[3] });
    else if (p[0] === 'L') cur!.lines.push({ pc: parseInt(p[1], 16), line: Number(p[2]), name: p[3], file: p[4] });
  }
  return res;
}

/** The first line `child` (running `bin`) prints; rejects if it exits or fails first. */
export function firstLine(child: ChildProcessWithoutNullStreams, bin: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${bin} exited early (${code})`)));
  });
}

/** Runs a command without blocking; resolves with its stdout, rejects with its stderr. */
export function execAsync(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** Runs jobs with at most `limit` at a time; results in job order. */
export async function pool<T>(limit: number, jobs: Array<() => Promise<T>>): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
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
  const line = await firstLine(child, bin);
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

/** Reads the memory of `pid` through /proc/PID/mem (as root, or as its parent). */
export function memoryOf(pid: number): { read: (addr: number, length: number) => Buffer | undefined; close(): void } {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  return {
    read: (addr, length) => {
      if (addr <= 0 || length <= 0 || length > 1 << 20) return undefined;
      const b = Buffer.alloc(length);
      try {
        return readSync(fd, b, 0, length, addr) === length ? b : undefined;
      } catch {
        return undefined;
      }
    },
    close: () => closeSync(fd),
  };
}
