// The real files the fuzz harness mutates: programs built here by gcc, g++, clang, Go and rustc
// (with and without debug information, compressed both ways, stripped), the system's libc, and
// real /proc text. Each seed says what it has, and each target takes the seeds it can use.

import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildC, buildGoModule } from '../helpers.js';

export type SeedTag = 'elf' | 'c' | 'cxx' | 'go' | 'rust' | 'dwarf' | 'cfi' | 'symbols' | 'elf32' | 'compressed' | 'stripped' | 'maps' | 'cgroup' | 'names' | 'modinfo' | 'perfmap' | 'mountinfo' | 'status';

export interface Seed {
  name: string;
  tags: ReadonlySet<SeedTag>;
  /** ELF seeds: the file. */
  path?: string;
  /** Text seeds. */
  text?: string;
}

const C_SOURCE = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef unsigned long handle_t;
struct node { struct node *next; int key; double weight; char tag[12]; handle_t h; };
union shape { int i; float f; struct { short a, b; } pair; };
struct table { struct node *slots[64]; union shape shapes[4]; void (*visit)(struct node *); const volatile int flags; long tail[]; };
static volatile unsigned long sink;
__attribute__((noinline)) static unsigned long leaf(unsigned long n) { unsigned long x = n; for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1; return x; }
__attribute__((noinline)) void visit(struct node *n) { for (; n; n = n->next) sink += leaf((unsigned long)n->key); }
__attribute__((noinline)) int sum_shapes(struct table *t) { int s = 0; for (int i = 0; i < 4; i++) s += t->shapes[i].i; return s; }
__attribute__((noinline)) void *grow(size_t n) { void *p = malloc(n); if (p) memset(p, 1, n); return p; }
int main(int argc, char **argv) {
  struct table *t = calloc(1, sizeof *t + 8 * sizeof(long));
  struct node a = { 0, argc, 1.5, "a", 1 }, b = { &a, 2, 2.5, "b", 2 };
  t->slots[0] = &b; t->visit = visit; t->visit(t->slots[0]);
  free(grow((size_t)argc * 100));
  printf("%lu %d %s\\n", sink, sum_shapes(t), argv[0]);
  return 0;
}
`;

/** No system headers: the 32-bit build has no 32-bit libc to include. */
const C32_SOURCE = `
typedef unsigned long handle_t;
struct node { struct node *next; int key; double weight; char tag[12]; handle_t h; };
union shape { int i; float f; struct { short a, b; } pair; };
static volatile unsigned long sink;
__attribute__((noinline)) static unsigned long leaf(unsigned long n) { unsigned long x = n; for (unsigned long i = 0; i < n; i++) x = x * 1103515245UL + 1; return x; }
__attribute__((noinline)) void visit(struct node *n) { for (; n; n = n->next) sink += leaf((unsigned long)n->key); }
int sum_shapes(union shape *s, int n) { int t = 0; for (int i = 0; i < n; i++) t += s[i].i; return t; }
`;

const CXX_SOURCE = `
#include <cstdio>
#include <map>
#include <string>
#include <vector>
#include <functional>
namespace ns {
template <typename T, int N> struct widget { T items[N]; std::vector<std::string> names; int count() const { return N; } };
class engine {
 public:
  virtual ~engine() {}
  template <typename F> int run(F f, const std::map<std::string, std::vector<int>> &m) { int s = 0; for (auto &kv : m) for (int v : kv.second) s += f(v); return s; }
  virtual int spin(int n) { int s = 0; for (int i = 0; i < n; i++) s ^= i * 7; return s; }
};
}
int main(int argc, char **) {
  ns::widget<double, 3> w{};
  w.names.push_back("x");
  ns::engine e;
  std::map<std::string, std::vector<int>> m{{"a", {1, 2}}, {"b", {argc}}};
  std::function<int(int)> f = [&](int v) { return v * w.count(); };
  std::printf("%d %d\\n", e.run(f, m), e.spin(argc));
  return 0;
}
`;

const GO_MAIN = `package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
)

type Pair[K comparable, V any] struct {
	Key K
	Val V
}

//go:noinline
func SortedPairs[K comparable, V any](m map[K]V, less func(a, b K) bool) []Pair[K, V] {
	out := make([]Pair[K, V], 0, len(m))
	for k, v := range m {
		out = append(out, Pair[K, V]{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i].Key, out[j].Key) })
	return out
}

func square(x int) int { return x * x }

//go:noinline
func work(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += square(i)
	}
	return s
}

func main() {
	m := map[string]int{"a": 1, "b": 2}
	pprof.Do(context.Background(), pprof.Labels("k", "v"), func(context.Context) {
		ps := SortedPairs(m, func(a, b string) bool { return strings.Compare(a, b) < 0 })
		fmt.Fprintln(os.Stdout, len(ps), work(len(os.Args)+10))
	})
}
`;

const RUST_SOURCE = `
use std::collections::HashMap;
#[inline(never)]
fn tally<T: std::hash::Hash + Eq + Clone>(items: &[T]) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items { *m.entry(i.clone()).or_insert(0) += 1; }
    m
}
fn main() {
    let v: Vec<String> = std::env::args().collect();
    let t = tally(&v);
    println!("{}", t.len());
}
`;

/** Real cgroup files of the shapes container-id.ts handles (and one line of each other kind). */
const CGROUP_SAMPLES = [
  '0::/system.slice/docker-3f6c1b2f8e1d9f0a7c4b2e5d6a8f9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a.scope\n',
  '0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3c6e1b2a_4d5f_4a6b_8c7d_9e0f1a2b3c4d.slice/cri-containerd-9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a.scope\n',
  '12:pids:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n11:memory:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n1:name=systemd:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n',
  '4:memory:/kubepods/burstable/pod3c6e1b2a-4d5f-4a6b-8c7d-9e0f1a2b3c4d/aaaabbbbccccddddeeeeffff00001111aaaabbbbccccddddeeeeffff00001111\n',
  '0::/user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service\n',
  '0::/machine.slice/libpod-1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff.scope/container\n',
];

/** FUSE mounts of users and of root, as mountinfo shows them (untrusted-file.ts tells them apart). */
const MOUNTINFO_FUSE = [
  '45 27 0:40 / /home/u/remote rw,nosuid,nodev,relatime - fuse.sshfs u@host: rw,user_id=1000,group_id=1000\n',
  '46 27 0:41 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other\n',
  '47 27 0:42 / /tmp/my\\040disk rw shared:9 master:2 - fuse hangfs rw,user_id=65534,group_id=65534\n',
];

/** Builds (or reuses) every seed in `dir`. Seeds whose tool is missing are left out. */
export async function buildSeeds(dir: string): Promise<Seed[]> {
  const seeds: Seed[] = [];
  const add = (name: string, tags: SeedTag[], more: Partial<Seed>) => seeds.push({ name, tags: new Set(tags), ...more });
  const have = (tool: string) => {
    try {
      execFileSync(tool, ['--version'], { stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  };

  // C: DWARF 5 plain, compressed (SHF_COMPRESSED), and the GNU .zdebug form; a stripped copy.
  const c = buildC(dir, 'seed-c', C_SOURCE, ['-O2', '-g', '-fno-omit-frame-pointer']);
  add('c-dwarf5', ['elf', 'c', 'dwarf', 'cfi', 'symbols'], { path: c });
  add('c-gz', ['elf', 'c', 'dwarf', 'cfi', 'symbols', 'compressed'], { path: buildC(dir, 'seed-c-gz', C_SOURCE, ['-O1', '-g', '-gz=zlib']) });
  const zdebug = join(dir, 'seed-c-zdebug');
  execFileSync('gcc', ['-O1', '-gdwarf-4', '-o', join(dir, 'seed-c-dwarf4'), join(dir, 'seed-c.c')]);
  execFileSync('objcopy', ['--compress-debug-sections=zlib-gnu', join(dir, 'seed-c-dwarf4'), zdebug]);
  add('c-zdebug', ['elf', 'c', 'dwarf', 'cfi', 'symbols', 'compressed'], { path: zdebug });
  const stripped = join(dir, 'seed-c-stripped');
  execFileSync('strip', ['--strip-all', '-o', stripped, c]);
  add('c-stripped', ['elf', 'c', 'cfi', 'symbols', 'stripped'], { path: stripped });
  // ELF32: a 32-bit relocatable object (clang can target i386 without a 32-bit libc).
  if (have('clang')) {
    const obj = join(dir, 'seed-c32.o');
    writeFileSync(join(dir, 'seed-c32.c'), C32_SOURCE);
    execFileSync('clang', ['-m32', '-O1', '-g', '-c', '-o', obj, join(dir, 'seed-c32.c')], { stdio: 'pipe' });
    add('c-elf32', ['elf', 'c', 'dwarf', 'cfi', 'symbols', 'elf32'], { path: obj });
  }
  // C++: long mangled names, namespaces, templates.
  const cxx = buildC(dir, 'seed-cxx.cc', CXX_SOURCE, ['-O1', '-g', '-std=c++17']);
  add('cxx', ['elf', 'cxx', 'dwarf', 'cfi', 'symbols'], { path: cxx });
  // The system's libc: big tables, hand-written assembly, PLT expressions in its CFI.
  const libc = ['/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/lib64/libc.so.6'].find((p) => existsSync(p));
  if (libc) {
    const copy = join(dir, 'seed-libc.so.6');
    copyFileSync(libc, copy);
    add('libc', ['elf', 'c', 'cfi', 'symbols'], { path: copy });
  }
  // Go: with DWARF (compressed by the linker), and stripped (-s -w: the pclntab only).
  const files = { 'main.go': GO_MAIN };
  const [go, goStripped] = await Promise.all([
    buildGoModule(dir, 'seed-go', files),
    buildGoModule(dir, 'seed-go-stripped', files, { flags: ['-ldflags=-s -w'] }),
  ]);
  add('go', ['elf', 'go', 'dwarf', 'symbols', 'compressed'], { path: go });
  add('go-stripped', ['elf', 'go', 'stripped'], { path: goStripped });
  // Rust: legacy and v0 manglings.
  if (have('rustc')) {
    const src = join(dir, 'seed-rust.rs');
    writeFileSync(src, RUST_SOURCE);
    for (const [name, flags] of [['rust-legacy', []], ['rust-v0', ['-C', 'symbol-mangling-version=v0']]] as const) {
      const out = join(dir, `seed-${name}`);
      if (!existsSync(out)) execFileSync('rustc', ['-C', 'opt-level=1', ...flags, '-o', out, src], { stdio: 'pipe' });
      add(name, ['elf', 'rust', 'cfi', 'symbols'], { path: out });
    }
  }

  // Symbol names, one per line: what the demangler is given (the process's bytes).
  for (const s of seeds.filter((x) => x.tags.has('cxx') || x.tags.has('rust'))) {
    const names = execFileSync('nm', ['--defined-only', s.path!], { maxBuffer: 64 << 20 })
      .toString()
      .split('\n')
      .map((l) => l.split(' ')[2] ?? '')
      .filter((n) => n.startsWith('_Z') || n.startsWith('_R'));
    add(`names-${s.name}`, ['names'], { text: [...new Set(names)].slice(0, 400).join('\n') });
  }

  // /proc text: the maps of this process (node: hundreds of lines) and of init, cgroup files.
  add('maps-self', ['maps'], { text: readFileSync('/proc/self/maps', 'latin1') });
  const other = readdirSync('/proc').find((p) => /^\d+$/.test(p) && p !== String(process.pid) && tryRead(`/proc/${p}/maps`));
  if (other) add('maps-other', ['maps'], { text: tryRead(`/proc/${other}/maps`)! });
  add('cgroup-self', ['cgroup'], { text: readFileSync('/proc/self/cgroup', 'latin1') });
  add('cgroup-samples', ['cgroup'], { text: CGROUP_SAMPLES.join('') });
  add('mountinfo-self', ['mountinfo'], { text: readFileSync('/proc/self/mountinfo', 'latin1') + MOUNTINFO_FUSE.join('') });
  add('status-self', ['status'], { text: readFileSync('/proc/self/status', 'latin1') });
  // A JIT's perf map as V8 writes it (--perf-basic-prof), with code space reused, and a JVM's.
  const v8 = Array.from({ length: 600 }, (_, i) => `${(0x3a2b00000 + (i % 400) * 0x140).toString(16)} ${(0x40 + (i % 7) * 0x18).toString(16)} ${i % 3 ? 'LazyCompile:*' : 'Builtin:'}fn_${i} /srv/app/lib/mod${i % 13}.js:${i}:${i % 80}\n`);
  add('perfmap-v8', ['perfmap'], { text: v8.join('') });
  add('perfmap-jvm', ['perfmap'], { text: Array.from({ length: 200 }, (_, i) => `7f12${(i * 0x1a0).toString(16).padStart(8, '0')} 1a0 Lcom/example/Service;::handle${i}\n`).join('') });

  // Module info text, as go-buildinfo.ts reads it from a Go binary.
  const modinfo = execFileSync('go', ['version', '-m', go], { env: { ...process.env, GOTOOLCHAIN: 'local' } }).toString();
  add('modinfo', ['modinfo'], { text: modinfo.split('\n').slice(1).map((l) => l.replace(/^\t/, '')).join('\n') });
  return seeds;
}

function tryRead(path: string): string | undefined {
  try {
    const t = readFileSync(path, 'latin1');
    return t.length > 0 ? t : undefined;
  } catch {
    return undefined;
  }
}
