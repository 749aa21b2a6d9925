// The table walk against native programs built the way real ones are (compilers' defaults at
// -O2, `rustc -O`: no frame pointers), whose true split is known (test/native-workloads.ts):
// a hot leaf reached 3:1 from two callers through frames of a few hundred bytes each, so the
// walk must read every frame's size from the unwind tables. Through the real CLI: `record --
// cmd`, `record -p`, `record --off-cpu`, folded output.
//
// What each test asserts: the callers' shares among the hot path's samples within ±3 points of
// the truth, counted over the stacks that reach main; and that every hot stack which does not
// reach main is one flamewire owns up to in its summary (walked by frame pointers before the
// process's tables were loaded, or a truncated table walk). A stack that silently lost its
// root, or kept a wrong caller, fails.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { repoRoot, workDir } from './helpers.js';
import { buildNativeWorkloads, type NativeWorkloads } from './native-workloads.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('native-unwind');
const TOLERANCE = 3;
/** Seconds of each run: ~2,400 samples at 999 Hz, a binomial spread of about ±0.9 points. */
const SECONDS = '2.5';

interface Stack {
  frames: string[];
  count: number;
}

/** What the end-of-run summary said about the user stacks (see truncationSummary in src/capture.ts). */
interface Walks {
  truncated: number;
  tableWalks: number;
  frameCap: number;
  /** Stacks walked by frame pointers before their process's tables were loaded. */
  noTables: number;
}

interface Recorded {
  stacks: Stack[];
  walks: Walks;
  stdout: string;
  stderr: string;
}

function parseFolded(text: string): Stack[] {
  return text
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('#'))
    .map((l) => {
      const sp = l.lastIndexOf(' ');
      return { frames: l.slice(0, sp).split(';'), count: Number(l.slice(sp + 1)) };
    });
}

function parseWalks(stderr: string): Walks {
  const m = /user stacks truncated: (\d+) of (\d+) walked with unwind tables \(frame cap (\d+)/.exec(stderr);
  assert.ok(m, `no truncation summary in: ${stderr}`);
  const fp = /; (\d+) walked by frame pointers before/.exec(stderr);
  return { truncated: Number(m[1]), tableWalks: Number(m[2]), frameCap: Number(m[3]), noTables: fp ? Number(fp[1]) : 0 };
}

/** `flamewire record -F 999 -o <folded> ARGS`, not quiet: the summary on stderr is checked. */
function record(args: string[]): Recorded {
  const out = join(dir, `out-${Date.now()}-${Math.random().toString(36).slice(2)}.folded`);
  const r = spawnSync(process.execPath, [cli, 'record', '-F', '999', '-o', out, ...args], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `flamewire record failed: ${r.stderr}`);
  return { stacks: parseFolded(readFileSync(out, 'utf8')), walks: parseWalks(r.stderr), stdout: r.stdout, stderr: r.stderr };
}

/**
 * Whether a frame is function `name`: C names as they are, C++ with their parameters
 * (`major(unsigned long)`), Rust with their path (`deep_rust::major`).
 */
function named(name: string): (frame: string) => boolean {
  return (f) => f === name || f.startsWith(`${name}(`) || f.endsWith(`::${name}`);
}

const sum = (stacks: Stack[]) => stacks.reduce((n, s) => n + s.count, 0);

/**
 * The callers' shares of the hot path: among the stacks with a frame that `isHot`, those that
 * reach main, with each caller between main and the hot frame. `truth` maps callers to their
 * true share (percent). Returns the shares; the figures go to the test's diagnostics.
 */
function assertSplit(t: TestContext, r: Recorded, isHot: (f: string) => boolean, truth: Record<string, number>, minSamples = 1000, values: 'samples' | 'ns' = 'samples'): Record<string, number> {
  const hot = r.stacks.filter((s) => s.frames.some(isHot));
  const rooted = hot.filter((s) => s.frames.includes('main'));
  const total = sum(rooted);
  const lost = sum(hot) - total;
  const unit = values === 'samples' ? 'samples' : 'ns blocked';
  const summary = `${sum(hot)} hot ${unit}, ${lost} without main; flamewire says ${r.walks.noTables} walked before tables, ${r.walks.truncated} truncated`;
  t.diagnostic(summary);
  assert.ok(total >= minSamples, `too few samples: ${summary}`);
  // A hot stack that lost its root must be one the summary counts; the table walk drops none.
  // (Off-CPU values are nanoseconds, not stacks: there, only that some were counted.)
  const owned = r.walks.noTables + r.walks.truncated;
  assert.ok(values === 'samples' ? lost <= owned : lost === 0 || owned > 0, `stacks lost their root silently: ${summary}`);
  assert.ok(lost <= 0.05 * sum(hot), `too many stacks without their root: ${summary}`);
  const shares: Record<string, number> = {};
  for (const [caller, want] of Object.entries(truth)) {
    const isCaller = named(caller);
    const hit = sum(
      rooted.filter((s) => {
        const c = s.frames.findIndex(isCaller);
        return c > s.frames.indexOf('main') && c < s.frames.findIndex(isHot);
      }),
    );
    const pct = (100 * hit) / total;
    shares[caller] = pct;
    t.diagnostic(`${caller} ${pct.toFixed(1)}% (truth ${want.toFixed(1)}%)`);
    assert.ok(Math.abs(pct - want) <= TOLERANCE, `${caller}: ${pct.toFixed(1)}% of the hot path (truth ${want}%, ±${TOLERANCE}); ${summary}`);
  }
  return shares;
}

/** The disassembly of each function of `bin` (objdump -C names: `step_a`, `deep_rust::step_a::h…`). */
function functions(bin: string): Map<string, string> {
  const dis = execFileSync('objdump', ['-d', '-C', '--no-show-raw-insn', bin], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const out = new Map<string, string>();
  for (const part of dis.split(/\n(?=[0-9a-f]+ <)/)) {
    const m = /^[0-9a-f]+ <([^>]+)>:/.exec(part);
    if (m) out.set(m[1]!, part);
  }
  return out;
}

/** The body of function `name` in `fns` (exact, or Rust's `path::name::h<hash>`). */
function body(fns: Map<string, string>, name: string): string {
  for (const [k, v] of fns) if (k === name || new RegExp(`::${name}(::h[0-9a-f]+)?$`).test(k)) return v;
  assert.fail(`${name} not found`);
}

/** Stack bytes a function reserves: its `sub $N,%rsp` plus 8 per register pushed. */
function frameBytes(text: string): number {
  const sub = /sub\s+\$0x([0-9a-f]+),%rsp/.exec(text);
  return (sub ? parseInt(sub[1]!, 16) : 0) + 8 * (text.match(/\bpush\s+%/g)?.length ?? 0);
}

describe('native unwinding with unwind tables (no frame pointers)', (t) => {
  let w: NativeWorkloads;
  before((t) => {
    w = buildNativeWorkloads(dir);
  });

  it('the workloads have no frame pointers and over 512 bytes of stack between leaf and caller', (t) => {
    const chains: Array<[string, string[]]> = [
      [w.gccDeep, ['major', 'minor', 'step_a', 'step_b', 'spin']],
      [w.clangDeep, ['major', 'minor', 'step_a', 'step_b', 'spin']],
      [w.rustDeep, ['major', 'minor', 'step_a', 'step_b', 'spin']],
      [w.dlopenLib, ['lib_major', 'lib_minor', 'lib_step_a', 'lib_step_b', 'lib_spin']],
      [w.offCpu, ['major', 'minor', 'wait_a', 'wait_b']],
    ];
    for (const [bin, names] of chains) {
      const fns = functions(bin);
      for (const n of names) assert.doesNotMatch(body(fns, n), /mov\s+%rsp,%rbp/, `${n} in ${bin} sets up a frame pointer`);
      const between = frameBytes(body(fns, names[2]!)) + frameBytes(body(fns, names[3]!));
      assert.ok(between > 512, `${bin}: only ${between} bytes between the leaf and the callers`);
    }
    const cxx = functions(w.cxxExceptions);
    for (const n of ['major(unsigned long)', 'middle(unsigned long)', 'hot(unsigned long)']) assert.doesNotMatch(body(cxx, n), /mov\s+%rsp,%rbp/, n);
    const sig = functions(w.signal);
    for (const n of ['handler_major', 'on_prof', 'interrupted_work']) assert.doesNotMatch(body(sig, n), /mov\s+%rsp,%rbp/, n);
  });

  it('gcc -O2: keeps the callers of a deep chain (75/25)', (t) => {
    assertSplit(t, record(['--', w.gccDeep, SECONDS]), named('spin'), { major: 75, minor: 25 });
  });

  it('clang -O2: keeps the callers of a deep chain (75/25)', (t) => {
    assertSplit(t, record(['--', w.clangDeep, SECONDS]), named('spin'), { major: 75, minor: 25 });
  });

  it('g++ -O2 with exceptions thrown and caught in the path (75/25), the throw itself walked to main', (t) => {
    const r = record(['--', w.cxxExceptions, SECONDS]);
    assertSplit(t, r, named('spin'), { major: 75, minor: 25 });
    // Samples inside the throw: hot's .cold part, __cxa_throw (libstdc++), libgcc's unwinder.
    const throwing = r.stacks.filter((s) => s.frames.includes('__cxa_throw'));
    const rooted = throwing.filter((s) => s.frames.includes('main') && s.frames.some(named('middle')) && s.frames.some((f) => named('major')(f) || named('minor')(f)));
    t.diagnostic(`${sum(rooted)} of ${sum(throwing)} samples in __cxa_throw reach main`);
    assert.ok(sum(throwing) >= 5, `only ${sum(throwing)} samples in __cxa_throw`);
    assert.ok(sum(rooted) >= 0.9 * sum(throwing), `${sum(rooted)} of ${sum(throwing)} samples in __cxa_throw reach main through middle and a caller`);
  });

  it('rustc -O: keeps the callers of a deep chain (75/25)', (t) => {
    // rustc links with lld, whose text segment starts mid-page: the load bias must come from it.
    assertSplit(t, record(['--', w.rustDeep, SECONDS]), named('spin'), { major: 75, minor: 25 });
  });

  it("the system zlib: keeps the callers of zlib's frames (75/25)", (t) => {
    const ldd = execFileSync('ldd', [w.zlib], { encoding: 'utf8' });
    const libz = /libz\.so\.1 => (\S+)/.exec(ldd)?.[1];
    assert.ok(libz, `no libz in: ${ldd}`);
    // zlib's exported names; its static functions (deflate_slow, longest_match) show as libz.so.1…+0x….
    const exported = new Set(
      execFileSync('nm', ['-D', '--defined-only', libz], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.split(/\s+/)[2])
        .filter((n): n is string => !!n),
    );
    const inZlib = (f: string) => exported.has(f) || /^libz\.so[.\d]*\+0x/.test(f);
    const r = record(['--', w.zlib, SECONDS]);
    assertSplit(t, r, inZlib, { zlib_major: 75, zlib_minor: 25 });
    // The walk went through zlib's own frames, not just its entry points.
    const deep = r.stacks.filter((s) => s.frames.filter(inZlib).length >= 3);
    t.diagnostic(`${sum(deep)} of ${sum(r.stacks)} samples three zlib frames deep`);
    assert.ok(sum(deep) >= 0.3 * sum(r.stacks), `only ${sum(deep)} of ${sum(r.stacks)} samples three zlib frames deep`);
  });

  it('a library dlopen()ed after recording began: keeps the callers inside it (75/25)', (t) => {
    const r = record(['--', w.dlopenMain, w.dlopenLib, SECONDS]);
    assertSplit(t, r, named('lib_spin'), { lib_major: 75, lib_minor: 25 });
    assert.ok(r.stacks.some((s) => s.frames.includes('lib_run') && s.frames.includes('main')));
  });

  it('record -p of a process already running: keeps the callers (75/25)', async (t) => {
    const child = spawn(w.gccDeep, ['30'], { stdio: 'ignore' });
    try {
      await delay(300); // up, mapped and in its loop before flamewire starts
      const out = join(dir, `p-${Date.now()}.folded`);
      const r = await new Promise<Recorded>((resolve, reject) => {
        const p = spawn(process.execPath, [cli, 'record', '-F', '999', '-d', `${SECONDS}s`, '-p', String(child.pid), '-o', out]);
        let stderr = '';
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('exit', (code) =>
          code === 0 ? resolve({ stacks: parseFolded(readFileSync(out, 'utf8')), walks: parseWalks(stderr), stdout: '', stderr }) : reject(new Error(stderr)),
        );
      });
      assertSplit(t, r, named('spin'), { major: 75, minor: 25 });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('recursion deeper than the frame cap: reported as cut by the cap, and no made-up root', (t) => {
    const r = record(['--', w.recursion, SECONDS]);
    const deep = r.stacks.filter((s) => s.frames.includes('recurse'));
    const n = sum(deep);
    assert.ok(n >= 1000, `only ${n} samples in recurse`);
    t.diagnostic(`${n} samples in recurse; summary: truncated ${r.walks.truncated} of ${r.walks.tableWalks}, frame cap ${r.walks.frameCap}`);
    // Every stack 400 deep is cut: the summary must say so, by the frame cap.
    assert.ok(r.walks.frameCap >= 0.9 * n, `frame cap ${r.walks.frameCap} of ${n} samples in recurse: ${r.stderr}`);
    assert.ok(r.walks.truncated >= r.walks.frameCap && r.walks.tableWalks >= r.walks.truncated);
    // What is kept is the innermost frames: all recurse from the root side down to the leaf
    // (bottom, maybe the vDSO's clock under it), never main or _start under a cut stack.
    let cut = 0;
    for (const s of deep) {
      const user = s.frames.slice(1).filter((f) => !f.endsWith('_[k]'));
      assert.ok(!user.includes('main') && !user.includes('_start'), `a root under a cut stack: ${s.frames.slice(0, 4).join(';')}…`);
      const inner = user.findIndex((f) => f !== 'recurse');
      const run = inner < 0 ? user.length : inner;
      assert.ok(inner < 0 || user[inner] === 'bottom', `not recurse at the root side: ${user.slice(0, run + 2).join(';')}`);
      if (run >= 100) cut += s.count;
    }
    assert.ok(cut >= 0.9 * n, `only ${cut} of ${n} samples keep 100+ recurse frames`);
  });

  it('through a signal handler: past __restore_rt into the interrupted function and main (75/25 in the handler)', (t) => {
    const r = record(['--', w.signal, SECONDS]);
    assertSplit(t, r, named('spin'), { handler_major: 75, handler_minor: 25 }, 800);
    // The frame under on_prof is the signal trampoline (__restore_rt, unnamed when libc's
    // symbol table is stripped), then the interrupted instruction's function.
    const inHandler = r.stacks.filter((s) => s.frames.includes('on_prof'));
    const trampolines = new Set<string>();
    let through = 0;
    for (const s of inHandler) {
      const h = s.frames.indexOf('on_prof');
      if (s.frames[h - 2] === 'interrupted_work' && s.frames[h - 3] === 'main') {
        through += s.count;
        trampolines.add(s.frames[h - 1]!);
      }
    }
    t.diagnostic(`${through} of ${sum(inHandler)} handler samples reach interrupted_work and main, through ${[...trampolines].join(', ')}`);
    assert.ok(through >= 0.95 * sum(inHandler), `${through} of ${sum(inHandler)} handler samples reach interrupted_work and main`);
    assert.equal(trampolines.size, 1, `more than one frame under the handler: ${[...trampolines].join(', ')}`);
    const tramp = [...trampolines][0]!;
    const off = /^libc\.so\.6\+0x([0-9a-f]+)$/.exec(tramp);
    if (tramp !== '__restore_rt') {
      assert.ok(off, `the frame under the handler is ${tramp}`);
      // A return address minus one: the next byte must start rt_sigreturn (mov $0xf,%rax; syscall).
      const libc = /libc\.so\.6 => (\S+)/.exec(execFileSync('ldd', [w.signal], { encoding: 'utf8' }))![1]!;
      const at = parseInt(off[1]!, 16) + 1;
      const dis = execFileSync('objdump', ['-d', '--no-show-raw-insn', `--start-address=0x${at.toString(16)}`, `--stop-address=0x${(at + 9).toString(16)}`, libc], { encoding: 'utf8' });
      assert.match(dis, /mov\s+\$0xf,%rax\s*\n.*syscall/, `${tramp} is not __restore_rt:\n${dis}`);
    }
  });

  it('off-CPU: blocked time under the right caller of a deep no-FP chain (measured split, ±3)', (t) => {
    const r = record(['--off-cpu', '--value', 'off_cpu', '--', w.offCpu, SECONDS]);
    const major = Number(/^fn major (\d+)$/m.exec(r.stdout)?.[1]);
    const minor = Number(/^fn minor (\d+)$/m.exec(r.stdout)?.[1]);
    assert.ok(major > 0 && minor > 0, `the workload did not report its times: ${r.stdout}`);
    const truth = (100 * major) / (major + minor);
    // Wake-up delays on a loaded machine move it off 75, a little.
    assert.ok(Math.abs(truth - 75) <= 10, `the workload measured ${truth.toFixed(1)}% under major`);
    // Values are nanoseconds blocked, at least 1 ms per block: a second and more in total.
    assertSplit(t, r, named('block_once'), { major: truth, minor: 100 - truth }, 1e9, 'ns');
  });
});
