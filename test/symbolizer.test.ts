import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ElfFile } from '../src/elf/elf-file.js';
import { Kallsyms } from '../src/kallsyms.js';
import { ProcessTable } from '../src/process-table.js';
import symbolizeFiles from '../src/symbolize-worker.js';
import { Symbolizer } from '../src/symbolizer.js';
import { buildC, buildGo, workDir, startAddressPrinter, type RunningProgram } from './helpers.js';

const dir = workDir('symbolizer');

const LIB = `
__attribute__((noinline)) int lib_work(int x) { int s = 0; for (int i = 0; i < x; i++) s ^= i * 7; return s; }
`;

// Prints runtime addresses (its functions, a library function, libc's getpid, an anonymous
// executable page for the JIT map test) and waits for stdin before exiting.
const PROGRAM = `
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
extern int lib_work(int);
__attribute__((noinline)) int alpha_fn(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * 3; return s; }
__attribute__((noinline)) int beta_fn(int x) { return alpha_fn(x) * 2 + lib_work(x); }
int main(void) {
  void *jit = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  printf("%p %p %p %p %p\\n", (void *)alpha_fn, (void *)beta_fn, (void *)lib_work, (void *)getpid, jit);
  fflush(stdout);
  char c;
  if (read(0, &c, 1) < 0) return 1;
  return beta_fn(3) > 0 ? 0 : 2;
}
`;

const CPP = `
#include <cstdio>
#include <unistd.h>
namespace geometry {
template <typename T> struct Box {
  __attribute__((noinline)) T area(T w, T h) const { return w * h + pad; }
  T pad;
};
__attribute__((noinline)) long spin(const char *label, int n) { long s = 0; for (int i = 0; i < n; i++) s += label[i % 3]; return s; }
}
int main() {
  geometry::Box<double> b{1.0};
  long (*sp)(const char *, int) = geometry::spin;
  double (geometry::Box<double>::*ar)(double, double) const = &geometry::Box<double>::area;
  (void)ar;
  printf("%p\\n", (void *)sp);
  fflush(stdout);
  char c;
  if (read(0, &c, 1) < 0) return 1;
  return (int)(b.area(2, 3) + sp("abc", 4)) & 1;
}
`;

const GO = `package main

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
)

//go:noinline
func work(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i
	}
	return s
}

func main() {
	fmt.Printf("%x\\n", reflect.ValueOf(work).Pointer())
	bufio.NewReader(os.Stdin).ReadByte()
	fmt.Println(work(3))
}
`;

const running: RunningProgram[] = [];
after(() => {
  for (const r of running) r.child.kill('SIGKILL');
});

async function start(bin: string, env: NodeJS.ProcessEnv = {}): Promise<RunningProgram> {
  const r = await startAddressPrinter(bin, env);
  running.push(r);
  return r;
}

function addr2line(bin: string, vaddr: number): string {
  return execFileSync('addr2line', ['-f', '-C', '-e', bin, '0x' + vaddr.toString(16)], { encoding: 'utf8' }).split('\n')[0];
}

/** Every name nm -D gives the address (libc exports aliases: getpid and __getpid). */
function libcNamesAt(r: { displayPath: string; vaddr?: number }): string[] {
  const out = execFileSync('nm', ['-D', '--defined-only', r.displayPath], { encoding: 'utf8' });
  const names = out.split('\n').filter((l) => parseInt(l.split(' ')[0], 16) === r.vaddr).map((l) => l.split(' ')[2].replace(/@.*$/, ''));
  assert.ok(names.includes('getpid'));
  return names;
}

function nmAddr(path: string, name: string): number {
  const out = execFileSync('nm', ['--defined-only', path], { encoding: 'utf8' });
  const m = new RegExp(`^([0-9a-f]+) [TtWw] ${name}$`, 'm').exec(out);
  assert.ok(m, `nm finds ${name} in ${path}`);
  return parseInt(m[1], 16);
}

describe('symbolizer', () => {
  const lib = join(dir, 'libwork.so');
  execFileSync('gcc', ['-O1', '-shared', '-fPIC', '-Wl,--build-id', '-o', lib, '-x', 'c', '-'], { input: LIB });
  const pie = buildC(dir, 'pie', PROGRAM, ['-O1', '-g', '-fPIE', '-pie', `-L${dir}`, '-lwork', `-Wl,-rpath,${dir}`]);

  it('names functions of a running PIE program, its shared library and libc, as addr2line does', async () => {
    const p = await start(pie);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const pid = p.child.pid!;
      procs.ensure(pid);
      const [alpha, beta, libWork, getpid] = p.addrs;
      const alphaV = nmAddr(pie, 'alpha_fn');
      const inside = alpha + 5;
      const res = await sym.symbolizeUser(pid, [alpha, inside, beta, libWork + 2, getpid, 8]);
      assert.equal(res.get(alpha)!.frames[0].name, addr2line(pie, alphaV));
      assert.equal(res.get(inside)!.frames[0].name, addr2line(pie, alphaV + 5));
      assert.deepEqual(res.get(beta)!.frames, [{ name: 'beta_fn', kind: 'native' }]);
      assert.equal(res.get(libWork + 2)!.frames[0].name, addr2line(lib, nmAddr(lib, 'lib_work') + 2));
      assert.ok(libcNamesAt(procs.resolve(pid, getpid)!).includes(res.get(getpid)!.frames[0].name));
      assert.deepEqual(res.get(8)!.frames, [{ name: '[unknown]', kind: 'unknown' }]);
      const m = res.get(alpha)!.mapping!;
      assert.equal(m.file, pie);
      assert.equal(m.buildId, ElfFile.withFile(pie, (e) => e.buildId));
      assert.ok(m.start <= BigInt(alpha) && BigInt(alpha) < m.end);
      assert.equal(m.key, `${pid}:${m.start.toString(16)}`);
      assert.equal(res.get(libWork + 2)!.mapping!.file, lib);
    } finally {
      await sym.close();
      procs.close();
      await p.exit();
    }
  });

  it('symbolizes each (file, address) once and answers later windows from the cache', async () => {
    const a = await start(pie);
    const b = await start(pie);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs, workers: 2 });
    try {
      const r1 = await sym.symbolize({ user: new Map([[a.child.pid!, [BigInt(a.addrs[0]), BigInt(a.addrs[3])]], [b.child.pid!, [BigInt(b.addrs[0]), BigInt(b.addrs[3])]]]) });
      assert.equal(r1.user.get(a.child.pid!)!.get(BigInt(a.addrs[0]))!.frames[0].name, 'alpha_fn');
      assert.ok(libcNamesAt(procs.resolve(b.child.pid!, b.addrs[3])!).includes(r1.user.get(b.child.pid!)!.get(BigInt(b.addrs[3]))!.frames[0].name));
      // Two processes, two files (the program, libc): each file handed to a worker once.
      assert.equal(sym.stats.filesParsed, 2);
      assert.equal(sym.stats.cacheMisses, 4);
      const r2 = await sym.symbolize({ user: new Map([[b.child.pid!, [BigInt(b.addrs[0])]]]) });
      assert.equal(r2.user.get(b.child.pid!)!.get(BigInt(b.addrs[0]))!.frames[0].name, 'alpha_fn');
      assert.equal(sym.stats.filesParsed, 2);
      assert.equal(sym.stats.cacheHits, 1);
    } finally {
      await sym.close();
      procs.close();
      await a.exit();
      await b.exit();
    }
  });

  it('symbolizes a deleted binary of a process that exited after ensure', async () => {
    const copy = join(dir, 'gone');
    copyFileSync(pie, copy);
    const p = await start(copy);
    const pid = p.child.pid!;
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      procs.ensure(pid);
      unlinkSync(copy);
      await p.exit();
      const res = await sym.symbolizeUser(pid, [p.addrs[0], p.addrs[2]]);
      assert.equal(res.get(p.addrs[0])!.frames[0].name, 'alpha_fn');
      assert.equal(res.get(p.addrs[2])!.frames[0].name, 'lib_work');
    } finally {
      await sym.close();
      procs.close();
    }
  });

  it('uses the .gnu_debuglink file of a stripped binary, and falls back to file+0xoffset without it', async () => {
    const sub = join(dir, 'debuglink');
    rmSync(sub, { recursive: true, force: true });
    mkdirSync(sub, { recursive: true });
    const linked = join(sub, 'linked');
    const bare = join(sub, 'bare');
    copyFileSync(pie, linked);
    execFileSync('objcopy', ['--only-keep-debug', linked, join(sub, 'linked.debug')]);
    execFileSync('strip', ['--strip-all', linked]);
    execFileSync('objcopy', ['--add-gnu-debuglink=linked.debug', linked], { cwd: sub });
    // A different program: the same build id would (rightly) share the debug-file symbols.
    execFileSync('gcc', ['-O1', '-fPIE', '-pie', '-o', bare, '-x', 'c', '-', `-L${dir}`, '-lwork', `-Wl,-rpath,${dir}`, '-s'], { input: PROGRAM + '\nint bare_marker = 1;\n' });
    const p1 = await start(linked);
    const p2 = await start(bare);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const r1 = await sym.symbolizeUser(p1.child.pid!, [p1.addrs[0]]);
      assert.equal(r1.get(p1.addrs[0])!.frames[0].name, 'alpha_fn');
      const r2 = await sym.symbolizeUser(p2.child.pid!, [p2.addrs[0] + 3]);
      const off = procs.resolve(p2.child.pid!, p2.addrs[0] + 3)!.fileOffset;
      assert.deepEqual(r2.get(p2.addrs[0] + 3)!.frames, [{ name: `bare+0x${off.toString(16)}`, kind: 'native' }]);
    } finally {
      await sym.close();
      procs.close();
      await p1.exit();
      await p2.exit();
    }
  });

  it('worker: finds a debug file by build id under a root prefix', async () => {
    const sub = join(dir, 'buildid');
    rmSync(sub, { recursive: true, force: true });
    mkdirSync(sub, { recursive: true });
    const bin = join(sub, 'stripped');
    copyFileSync(pie, bin);
    execFileSync('strip', ['--strip-all', bin]);
    const id = ElfFile.withFile(bin, (e) => e.buildId);
    const root = join(sub, 'root');
    mkdirSync(join(root, 'usr/lib/debug/.build-id', id.slice(0, 2)), { recursive: true });
    execFileSync('objcopy', ['--only-keep-debug', pie, join(root, 'usr/lib/debug/.build-id', id.slice(0, 2), id.slice(2) + '.debug')]);
    const alphaV = nmAddr(pie, 'alpha_fn');
    const [res] = await symbolizeFiles({ files: [{ fileKey: `test-build-id:${id}`, openPath: bin, displayPath: '/usr/bin/stripped', root, vaddrs: [alphaV + 1, 1] }] });
    assert.equal(res.error, undefined);
    assert.deepEqual(res.frames, [[{ name: 'alpha_fn', kind: 'native' }], null]);
  });

  it('worker: reports garbage and truncated files as errors, not crashes', async () => {
    const garbage = join(dir, 'garbage');
    writeFileSync(garbage, Buffer.alloc(4096, 0x41));
    const truncated = join(dir, 'truncated');
    writeFileSync(truncated, readFileSync(pie).subarray(0, 700));
    const res = await symbolizeFiles({
      files: [
        { fileKey: 'garbage', openPath: garbage, displayPath: garbage, root: '', vaddrs: [0x1000] },
        { fileKey: 'truncated', openPath: truncated, displayPath: truncated, root: '', vaddrs: [0x1000] },
        { fileKey: 'missing', openPath: join(dir, 'no-such-file'), displayPath: 'x', root: '', vaddrs: [0x1000] },
      ],
    });
    for (const r of res) {
      assert.match(r.error ?? '', /.+/, `${r.fileKey} reports an error`);
      assert.deepEqual(r.frames, [null]);
    }
  });

  it('names code in a mapped non-ELF file file+0xoffset', async () => {
    const mapper = buildC(dir, 'mapper', `
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int fd = open(argv[1], O_RDONLY);
  void *p = mmap(0, 8192, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 4096);
  printf("%p\\n", p);
  fflush(stdout);
  char c;
  return read(0, &c, 1) < 0;
}
`);
    const junk = join(dir, 'junk.bin');
    writeFileSync(junk, Buffer.alloc(16384, 0x5a));
    const child = spawn(mapper, [junk], { stdio: 'pipe' });
    const line = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
    const addr = parseInt(line.trim(), 16);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const res = await sym.symbolizeUser(child.pid!, [addr + 0x10]);
      assert.deepEqual(res.get(addr + 0x10)!.frames, [{ name: 'junk.bin+0x1010', kind: 'native' }]);
      assert.match(procs.resolve(child.pid!, addr)!.file!.error ?? '', /not an ELF/);
    } finally {
      await sym.close();
      procs.close();
      child.stdin.end('x');
    }
  });

  it('demangles C++ names', async () => {
    const bin = buildC(dir, 'cpp.cc', CPP, ['-O1', '-fPIE', '-pie']);
    const p = await start(bin);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const res = await sym.symbolizeUser(p.child.pid!, [p.addrs[0]]);
      const vaddr = procs.resolve(p.child.pid!, p.addrs[0])!.vaddr!;
      const oracle = addr2line(bin, vaddr);
      assert.equal(oracle, 'geometry::spin(char const*, int)');
      assert.equal(res.get(p.addrs[0])!.frames[0].name, oracle);
    } finally {
      await sym.close();
      procs.close();
      await p.exit();
    }
  });

  it('names JIT code from /tmp/perf-PID.map and anonymous code without one [unknown]', async () => {
    const p = await start(pie);
    const pid = p.child.pid!;
    const jit = p.addrs[4];
    const mapPath = `/tmp/perf-${pid}.map`;
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const before = await sym.symbolizeUser(pid, [jit + 0x10]);
      assert.deepEqual(before.get(jit + 0x10)!.frames, [{ name: '[unknown]', kind: 'unknown' }]);
      writeFileSync(mapPath, `${jit.toString(16)} 40 LazyCompile:*hot_loop app.js:3\n${(jit + 0x40).toString(16)} 20 other\n`);
      const res = await sym.symbolizeUser(pid, [jit + 0x11, jit + 0x41, jit + 0x100]);
      assert.equal(res.get(jit + 0x11)!.frames[0].name, 'LazyCompile:*hot_loop app.js:3');
      assert.equal(res.get(jit + 0x41)!.frames[0].name, 'other');
      assert.equal(res.get(jit + 0x100)!.frames[0].name, '[unknown]');
    } finally {
      rmSync(mapPath, { force: true });
      await sym.close();
      procs.close();
      await p.exit();
    }
  });

  it('names Go functions through .gopclntab, also in a stripped binary', async () => {
    const full = buildGo(dir, 'gowork', GO);
    const stripped = buildGo(dir, 'gowork-stripped', GO, ['-ldflags=-s -w']);
    for (const bin of [full, stripped]) {
      const p = await start(bin);
      const procs = new ProcessTable();
      const sym = new Symbolizer({ processes: procs });
      try {
        const res = await sym.symbolizeUser(p.child.pid!, [p.addrs[0] + 4]);
        const frames = res.get(p.addrs[0] + 4)!.frames;
        assert.equal(frames[frames.length - 1].name, 'main.work', basename(bin));
        assert.equal(frames[frames.length - 1].kind, 'go');
        assert.match(frames[frames.length - 1].file ?? '', /main\.go$/);
        assert.ok((frames[frames.length - 1].line ?? 0) > 0);
      } finally {
        await sym.close();
        procs.close();
        await p.exit();
      }
    }
  });

  it('names vdso functions from the image copied out of the process', async (t) => {
    const p = await start(pie);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const pid = p.child.pid!;
      const vdso = procs.ensure(pid)!.mappings.find((m) => m.kind === 'vdso');
      if (!vdso) return t.skip('no [vdso] mapping');
      assert.ok(vdso.file && !vdso.file.error, 'vdso image captured');
      // nm runs in another process: reach our descriptor through our own pid.
      const ours = vdso.file.openPath.replace('/proc/self/', `/proc/${process.pid}/`);
      const out = execFileSync('nm', ['-D', '--defined-only', ours], { encoding: 'utf8' });
      const m = /^([0-9a-f]+) T (__vdso_clock_gettime|__vdso_gettimeofday)\b/m.exec(out);
      assert.ok(m, 'the vdso exports clock_gettime');
      const vaddr = parseInt(m[1], 16);
      const seg = vdso.file.segments.find((sg) => vaddr >= sg.vaddr && vaddr < sg.vaddr + sg.memsz)!;
      const addr = vdso.start + (vaddr - seg.vaddr + seg.offset) - vdso.offset;
      const res = await sym.symbolizeUser(pid, [addr + 1]);
      assert.equal(res.get(addr + 1)!.frames[0].name, m[2]);
      assert.equal(res.get(addr + 1)!.mapping!.file, '[vdso]');
    } finally {
      await sym.close();
      procs.close();
      await p.exit();
    }
  });

  it('names kernel addresses through kallsyms', (t) => {
    const ks = Kallsyms.load();
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs, kallsyms: ks });
    const noKs = new Symbolizer({ processes: procs });
    try {
      const line = readFileSync('/proc/kallsyms', 'latin1').split('\n').find((l) => / [tT] do_sys_openat2$/.test(l));
      if (ks.restricted || !line) return t.skip('kernel addresses are hidden or do_sys_openat2 is missing');
      const addr = BigInt('0x' + line.split(' ')[0]);
      const res = sym.symbolizeKernel([addr + 3n, 0x10n]);
      assert.deepEqual(res.get(addr + 3n)!.frames, [{ name: 'do_sys_openat2', kind: 'kernel' }]);
      assert.equal(res.get(0x10n)!.frames[0].name, '[unknown]');
      assert.deepEqual(noKs.symbolizeKernel([addr]).get(addr)!.frames, [{ name: '[kernel]', kind: 'kernel' }]);
    } finally {
      void sym.close();
      void noKs.close();
      procs.close();
    }
  });

  it('answers cached addresses fast (prints addresses per second)', async () => {
    const p = await start(pie);
    const procs = new ProcessTable();
    const sym = new Symbolizer({ processes: procs });
    try {
      const pid = p.child.pid!;
      const [alpha, , libWork, getpid] = p.addrs;
      const addrs: bigint[] = [];
      for (let i = 0; i < 100_000; i++) addrs.push(BigInt([alpha, libWork, getpid][i % 3] + (i % 40)));
      await sym.symbolizeUser(pid, addrs);
      const t0 = performance.now();
      const res = await sym.symbolizeUser(pid, addrs);
      const ms = performance.now() - t0;
      assert.equal(res.size, 120);
      console.log(`# symbolizer: ${addrs.length} cached user addresses in ${ms.toFixed(1)} ms (${Math.round(addrs.length / (ms / 1000))}/s)`);
    } finally {
      await sym.close();
      procs.close();
      await p.exit();
    }
  });
});
