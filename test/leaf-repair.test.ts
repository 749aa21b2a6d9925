import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ElfFile } from '../src/elf/elf-file.js';
import { GoPclnTab } from '../src/elf/gopclntab.js';
import { CfiTable } from '../src/unwind/eh-frame.js';
import { repairUserStack, type RepairInput, type RuleLookup } from '../src/unwind/leaf-repair.js';
import { ruleLookupFor, UnwindTables, type FileAddress } from '../src/unwind/unwind-tables.js';
import { buildC, buildGo, workDir } from './helpers.js';

// Stops every thread of a process with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT), and for each
// prints its registers, the 512 bytes at its stack pointer (what the BPF program snapshots) and
// the frame-pointer chain the kernel's walk would produce: ip, then [rbp+8] following [rbp].
const PTRACE_HELPER = `
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_GETREGS, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 12, 17, 0x4206, 0x4207
pid = int(sys.argv[1])
mem = open('/proc/%d/mem' % pid, 'rb', buffering=0)
def read(addr, n):
    try:
        mem.seek(addr)
        b = mem.read(n)
        return b if len(b) == n else None
    except (OSError, OverflowError, ValueError):
        return None
def u64(addr):
    b = read(addr, 8)
    return None if b is None else int.from_bytes(b, 'little')
out = []
tids = [int(t) for t in os.listdir('/proc/%d/task' % pid)]
seized = []
for tid in tids:
    if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0: continue
    seized.append(tid)
    libc.ptrace(PTRACE_INTERRUPT, tid, None, None)
    os.waitpid(tid, 0x40000000)
for tid in seized:
    regs = (ctypes.c_ulonglong * 27)()
    if libc.ptrace(PTRACE_GETREGS, tid, None, ctypes.byref(regs)) != 0: continue
    bp, ip, sp = regs[4], regs[16], regs[19]
    chain = [ip]
    fp = bp
    while len(chain) < 127 and fp:
        nxt, ra = u64(fp), u64(fp + 8)
        if nxt is None or ra is None: break
        chain.append(ra)
        if nxt <= fp: break
        fp = nxt
    snap = read(sp, 512) or b''
    out.append({'tid': tid, 'ip': hex(ip), 'sp': hex(sp), 'bp': hex(bp), 'snapshot': snap.hex(), 'fpChain': [hex(a) for a in chain]})
for tid in seized:
    libc.ptrace(PTRACE_DETACH, tid, None, None)
print(json.dumps(out))
`;

interface ThreadCapture {
  tid: number;
  input: RepairInput;
}

interface Mapping {
  start: bigint;
  end: bigint;
  offset: number;
  path: string;
}

function parseMaps(pid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(\/.*)$/.exec(line);
    if (m) out.push({ start: BigInt('0x' + m[1]), end: BigInt('0x' + m[2]), offset: parseInt(m[3], 16), path: m[4] });
  }
  return out;
}

/** Runtime address → file and ELF vaddr, like the process table will do. */
function resolverFor(maps: Mapping[]): (addr: bigint) => FileAddress | undefined {
  const elfs = new Map<string, ElfFile | null>();
  return (addr) => {
    const m = maps.find((x) => addr >= x.start && addr < x.end);
    if (!m) return undefined;
    let elf = elfs.get(m.path);
    if (elf === undefined) {
      try {
        elf = ElfFile.open(m.path);
      } catch {
        elf = null;
      }
      elfs.set(m.path, elf);
    }
    if (!elf) return undefined;
    const vaddr = elf.fileOffsetToVaddr(m.offset + Number(addr - m.start));
    return vaddr === undefined ? undefined : { fileKey: m.path, openPath: m.path, vaddr };
  };
}

function capture(dir: string, pid: number): ThreadCapture[] {
  const helper = join(dir, 'ptrace-capture.py');
  writeFileSync(helper, PTRACE_HELPER);
  const raw = JSON.parse(execFileSync('python3', [helper, String(pid)]).toString()) as Array<Record<string, unknown>>;
  return raw.map((t) => ({
    tid: t.tid as number,
    input: {
      userRegs: { ip: BigInt(t.ip as string), sp: BigInt(t.sp as string), bp: BigInt(t.bp as string) },
      stackSnapshot: Buffer.from(t.snapshot as string, 'hex'),
      userStack: BigUint64Array.from((t.fpChain as string[]).map((a) => BigInt(a))),
    },
  }));
}

/** Symbol → [start, end) vaddr from nm. */
function symbols(bin: string): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const l of execFileSync('nm', ['-S', '--defined-only', bin]).toString().split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) [tT] (\S+)$/.exec(l);
    if (m) out.set(m[3], [parseInt(m[1], 16), parseInt(m[1], 16) + parseInt(m[2], 16)]);
  }
  return out;
}

/** Names of the frames (function of the binary containing each address, else '?'). */
function nameFrames(stack: BigUint64Array, maps: Mapping[], bin: string, syms: Map<string, [number, number]>): string[] {
  const resolve = resolverFor(maps);
  return Array.from(stack, (a, i) => {
    const r = resolve(i === 0 ? a : a - 1n);
    if (!r || r.fileKey !== maps.find((m) => m.path === bin)?.path) return r ? `?${r.fileKey.split('/').pop()}` : '?';
    for (const [name, [s, e]] of syms) if (r.vaddr >= s && r.vaddr < e) return name;
    return '?';
  });
}

const children: ChildProcess[] = [];
function start(bin: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(bin, args, { stdio: ['pipe', 'ignore', 'ignore'], env: { ...process.env, ...env } });
  children.push(c);
  return c;
}
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Captures until a thread's ip is inside `[s, e)` of `bin` (the program may still be starting). */
async function captureIn(dir: string, pid: number, bin: string, range: [number, number]): Promise<{ t: ThreadCapture; maps: Mapping[] }> {
  for (let attempt = 0; attempt < 100; attempt++) {
    await sleep(50);
    const maps = parseMaps(pid);
    const resolve = resolverFor(maps);
    for (const t of capture(dir, pid)) {
      const r = resolve(t.input.userRegs!.ip);
      if (r && r.fileKey === bin && r.vaddr >= range[0] && r.vaddr < range[1]) return { t, maps };
    }
  }
  throw new Error(`no thread of ${pid} stopped inside the range`);
}

const C_LEAF = `
#include <stdio.h>
volatile long sink, stop;
__attribute__((noinline, optimize("omit-frame-pointer"))) long leaf(long n) { while (!stop) { sink += n; n = n * 3 + 1; } return n; }
__attribute__((noinline, optimize("omit-frame-pointer"))) long mid(long n) { long r = leaf(n + 1); sink = r; return r + leaf(r); }
__attribute__((noinline)) long caller(long n) { long r = leaf(n * 2); sink = r; return r + 1; }
__attribute__((noinline)) long caller2(long n) { long r = mid(n * 2); sink = r; return r + 1; }
int main(int argc, char **argv) { printf("%ld\\n", argc > 1 ? caller2(argc) : caller(argc)); return 0; }
`;

const C_READ = `
#include <unistd.h>
volatile long sink;
__attribute__((noinline)) long reader(void) { char buf[16]; long n = read(0, buf, sizeof buf); sink = n; return n + 1; }
int main(void) { return (int)reader(); }
`;

const GO_LEAF = `package main

import "os"

var sink int

//go:noinline
func spin(n int) int {
	for n != -7 {
		n = n*3 + 1
	}
	return n
}

//go:noinline
func work(n int) int {
	var buf [64]byte
	buf[n%64] = byte(n)
	return spin(n) + int(buf[1])
}

func main() {
	sink = work(len(os.Args))
}
`;

describe('leaf-repair', () => {
  const dir = workDir('leaf-repair');
  const tables = new UnwindTables();

  it('puts back the caller of a frameless C leaf', async () => {
    const bin = buildC(dir, 'cleaf', C_LEAF, ['-O1', '-fno-omit-frame-pointer']);
    const syms = symbols(bin);
    const dis = execFileSync('objdump', ['-d', '--no-show-raw-insn', bin]).toString();
    assert.doesNotMatch(/<leaf>:[\s\S]*?\n\n/.exec(dis)![0], /push\s+%rbp/, 'leaf must be frameless');
    const child = start(bin);
    const { t, maps } = await captureIn(dir, child.pid!, bin, syms.get('leaf')!);
    const before = nameFrames(t.input.userStack, maps, bin, syms);
    assert.deepEqual(before.slice(0, 2), ['leaf', 'main'], `the frame-pointer walk loses the caller: ${before}`);
    const repaired = repairUserStack(t.input, ruleLookupFor(tables, resolverFor(maps)));
    const names = nameFrames(repaired, maps, bin, syms);
    assert.deepEqual(names.slice(0, 3), ['leaf', 'caller', 'main'], names.join(' '));
    assert.equal(repaired.length, t.input.userStack.length + 1);
    assert.deepEqual(Array.from(repaired.subarray(2)), Array.from(t.input.userStack.subarray(1)));
  });

  it('puts back two frameless frames by unwinding more than one frame with CFI', async () => {
    const bin = join(dir, 'cleaf');
    const syms = symbols(bin);
    const child = start(bin, ['x']);
    const { t, maps } = await captureIn(dir, child.pid!, bin, syms.get('leaf')!);
    const before = nameFrames(t.input.userStack, maps, bin, syms);
    assert.deepEqual(before.slice(0, 2), ['leaf', 'main'], before.join(' '));
    const lookup = ruleLookupFor(tables, resolverFor(maps));
    const repaired = repairUserStack(t.input, lookup);
    assert.deepEqual(nameFrames(repaired, maps, bin, syms).slice(0, 4), ['leaf', 'mid', 'caller2', 'main']);
    // With one CFI frame only, the leaf's caller comes back and nothing else is invented.
    const one = repairUserStack(t.input, lookup, { maxCfiFrames: 1 });
    assert.deepEqual(nameFrames(one, maps, bin, syms).slice(0, 3), ['leaf', 'mid', 'main']);
  });

  it('puts back the caller of libc read (a frameless syscall wrapper)', async () => {
    const bin = buildC(dir, 'cread', C_READ, ['-O1', '-fno-omit-frame-pointer']);
    const syms = symbols(bin);
    const child = start(bin); // stdin is a pipe nobody writes to: blocked in read
    let got: { t: ThreadCapture; maps: Mapping[] } | undefined;
    for (let i = 0; i < 100 && !got; i++) {
      await sleep(50);
      const maps = parseMaps(child.pid!);
      const libc = maps.find((m) => /\/libc[.-]/.test(m.path));
      if (!libc) continue;
      const t = capture(dir, child.pid!)[0];
      const r = resolverFor(maps)(t.input.userRegs!.ip);
      if (r && r.fileKey === libc.path) got = { t, maps };
    }
    assert.ok(got, 'process never blocked in libc');
    const { t, maps } = got;
    const before = nameFrames(t.input.userStack, maps, bin, syms);
    assert.notEqual(before[1], 'reader', `caller unexpectedly present: ${before}`);
    const repaired = repairUserStack(t.input, ruleLookupFor(tables, resolverFor(maps)));
    const names = nameFrames(repaired, maps, bin, syms);
    assert.equal(names[1], 'reader', names.join(' '));
    assert.equal(names[2], 'main', names.join(' '));
  });

  it('puts back the caller of a frameless Go leaf', async () => {
    const bin = buildGo(dir, 'goleaf', GO_LEAF);
    const tab = ElfFile.withFile(bin, (e) => GoPclnTab.open(e))!;
    const syms = symbols(bin);
    const spin = syms.get('main.spin')!;
    for (let pc = spin[0]; pc < spin[1]; pc++) assert.equal(tab.spDelta(pc), 0, 'spin must be frameless');
    const child = start(bin, [], { GOMAXPROCS: '1' });
    const { t, maps } = await captureIn(dir, child.pid!, bin, spin);
    const before = nameFrames(t.input.userStack, maps, bin, syms);
    assert.deepEqual(before.slice(0, 2), ['main.spin', 'main.main'], before.join(' '));
    const repaired = repairUserStack(t.input, ruleLookupFor(tables, resolverFor(maps)));
    const names = nameFrames(repaired, maps, bin, syms);
    assert.deepEqual(names.slice(0, 3), ['main.spin', 'main.work', 'main.main'], names.join(' '));
  });

  it('leaves the stack alone when the leaf has its frame', () => {
    // A real rule from a frame-pointer function body: CFA = rbp+16, return address at CFA-8.
    const bin = join(dir, 'cleaf');
    const table = ElfFile.withFile(bin, (e) => CfiTable.fromElf(e))!;
    const caller = symbols(bin).get('caller')!;
    const rows = objdumpRows(bin, caller);
    const body = rows[rows.findIndex((r) => /mov\s+%rsp,%rbp/.test(r.text)) + 1].pc;
    const rule = table.ruleAt(body)!;
    assert.deepEqual(rule.cfa, { kind: 'reg', reg: 6, offset: 16 });
    const sp = 0x7ffd_0000_1000n;
    const bp = sp + 0x20n;
    const snap = Buffer.alloc(512);
    snap.writeBigUInt64LE(0x7ffd_0000_2000n, 0x20); // saved rbp
    snap.writeBigUInt64LE(0x40_1234n, 0x28); // return address
    const input: RepairInput = { userRegs: { ip: 0x40_1000n, sp, bp }, stackSnapshot: snap, userStack: BigUint64Array.of(0x40_1000n, 0x40_1234n, 0x40_5678n) };
    const lookup: RuleLookup = (a) => (a === 0x40_1000n ? rule : undefined);
    assert.equal(repairUserStack(input, lookup), input.userStack);
  });

  it('repairs a function caught in its prologue (after push rbp) and epilogue (after pop rbp)', () => {
    const bin = join(dir, 'cleaf');
    const table = ElfFile.withFile(bin, (e) => CfiTable.fromElf(e))!;
    const rows = objdumpRows(bin, symbols(bin).get('caller')!);
    const afterPush = rows[rows.findIndex((r) => /push\s+%rbp/.test(r.text)) + 1].pc;
    const afterPop = rows[rows.findIndex((r) => /pop\s+%rbp/.test(r.text)) + 1].pc;
    const sp = 0x7ffd_0000_1000n;
    const outerBp = 0x7ffd_0000_3000n; // the caller's caller's frame
    // After push rbp: [sp] = saved rbp, [sp+8] = return address into our caller.
    const snap = Buffer.alloc(512);
    snap.writeBigUInt64LE(outerBp, 0);
    snap.writeBigUInt64LE(0x40_2222n, 8);
    const fpChain = BigUint64Array.of(0x40_0000n + BigInt(afterPush), 0x40_3333n, 0x40_4444n);
    const r1 = repairUserStack(
      { userRegs: { ip: fpChain[0], sp, bp: outerBp }, stackSnapshot: snap, userStack: fpChain },
      (a) => table.ruleAt(Number(a - 0x40_0000n)),
    );
    assert.deepEqual(Array.from(r1.subarray(0, 4)), [fpChain[0], 0x40_2222n, 0x40_3333n, 0x40_4444n]);
    // After pop rbp: only the return address is left at [sp].
    const snap2 = Buffer.alloc(64);
    snap2.writeBigUInt64LE(0x40_2222n, 0);
    const ip2 = 0x40_0000n + BigInt(afterPop);
    const r2 = repairUserStack(
      { userRegs: { ip: ip2, sp, bp: outerBp }, stackSnapshot: snap2, userStack: BigUint64Array.of(ip2, 0x40_3333n) },
      (a) => table.ruleAt(Number(a - 0x40_0000n)),
    );
    assert.deepEqual(Array.from(r2), [ip2, 0x40_2222n, 0x40_3333n]);
  });

  it('repairs a sample caught in a PLT stub (CFA from a DWARF expression)', () => {
    const bin = join(dir, 'cread');
    const plt = ElfFile.withFile(bin, (e) => e.section('.plt'))!;
    const table = ElfFile.withFile(bin, (e) => CfiTable.fromElf(e))!;
    const base = 0x5555_0000_0000n;
    const sp = 0x7ffd_0000_1000n;
    const lookup: RuleLookup = (a) => table.ruleAt(Number(a - base));
    // A PLT entry (after PLT0): jmp *GOT (bytes 0-5), push index (6-10), jmp PLT0 (11-15). Before
    // the push the return address is at [sp], after it at [sp+8]: the expression picks by ip & 15.
    const entry = base + BigInt(plt.addr + 16);
    assert.equal(table.ruleAt(plt.addr + 16)?.cfa.kind, 'expr');
    for (const [ip, raOff] of [[entry, 0], [entry + 11n, 8]] as const) {
      const snap = Buffer.alloc(64);
      snap.writeBigUInt64LE(0x5555_0000_9999n, raOff); // pushed by the call into the PLT
      const stack = BigUint64Array.of(ip, 0x5555_0000_7777n);
      const out = repairUserStack({ userRegs: { ip, sp, bp: 0x7ffd_0000_3000n }, stackSnapshot: snap, userStack: stack }, lookup, { maxCfiFrames: 1 });
      assert.deepEqual(Array.from(out), [ip, 0x5555_0000_9999n, 0x5555_0000_7777n], `ip & 15 = ${ip & 15n}`);
    }
  });

  it('gives up without change on bad or missing input, never throws', () => {
    const stack = BigUint64Array.of(0x1000n, 0x2000n);
    const rule = { cfa: { kind: 'reg', reg: 7, offset: 8 }, ra: { kind: 'offset', offset: -8 }, bp: { kind: 'same' } } as const;
    const snap = Buffer.alloc(16);
    snap.writeBigUInt64LE(0x3000n, 0);
    const regs = { ip: 0x1000n, sp: 0x7000n, bp: 0n };
    // return address outside the snapshot
    assert.equal(repairUserStack({ userRegs: { ...regs, sp: 0x7000n }, stackSnapshot: Buffer.alloc(4), userStack: stack }, () => rule), stack);
    // no registers (kernel thread), no rule (no unwind info), a throwing lookup
    assert.equal(repairUserStack({ userRegs: null, stackSnapshot: snap, userStack: stack }, () => rule), stack);
    assert.equal(repairUserStack({ userRegs: regs, stackSnapshot: snap, userStack: stack }, () => undefined), stack);
    assert.equal(repairUserStack({ userRegs: regs, stackSnapshot: snap, userStack: stack }, () => { throw new Error('boom'); }), stack);
    // a CFA on rbp while rbp is unknown to the walk, a signal frame, an undefined return address
    const onBp = { ...rule, cfa: { kind: 'reg', reg: 6, offset: 16 } } as const;
    assert.equal(repairUserStack({ userRegs: { ...regs, bp: 0x10n }, stackSnapshot: snap, userStack: stack }, () => onBp), stack);
    assert.equal(repairUserStack({ userRegs: regs, stackSnapshot: snap, userStack: stack }, () => ({ ...rule, signalFrame: true })), stack);
    assert.equal(repairUserStack({ userRegs: regs, stackSnapshot: snap, userStack: stack }, () => ({ ...rule, ra: { kind: 'undefined' } })), stack);
    // a stack that does not start at the registers' ip
    assert.equal(repairUserStack({ userRegs: { ...regs, ip: 0x5555n }, stackSnapshot: snap, userStack: stack }, () => rule), stack);
    // the frameless case with synthetic values: the return address is inserted
    assert.deepEqual(Array.from(repairUserStack({ userRegs: regs, stackSnapshot: snap, userStack: stack }, (a) => (a === 0x1000n ? rule : undefined))), [0x1000n, 0x3000n, 0x2000n]);
    // an empty frame-pointer stack gets the CFI frames
    assert.deepEqual(Array.from(repairUserStack({ userRegs: regs, stackSnapshot: snap, userStack: new BigUint64Array(0) }, (a) => (a === 0x1000n ? rule : undefined))), [0x1000n, 0x3000n]);
  });

  it('caches rules per file and address', () => {
    const bin = join(dir, 'cleaf');
    const t = new UnwindTables({ maxFiles: 1 });
    const leaf = symbols(bin).get('leaf')!;
    const a = t.ruleAt(bin, bin, leaf[0]);
    const b = t.ruleAt(bin, bin, leaf[0]);
    assert.ok(a);
    assert.equal(a, b);
    assert.equal(t.stats.hits, 1);
    assert.equal(t.ruleAt('missing', join(dir, 'does-not-exist'), 0x1000), undefined);
    assert.ok(t.errorOf('missing'));
    assert.equal(t.loadedFiles, 1, 'maxFiles evicts the least recently used file');
  });
});

function objdumpRows(bin: string, range: [number, number]): Array<{ pc: number; text: string }> {
  const out = execFileSync('objdump', ['-d', '--no-show-raw-insn', `--start-address=0x${range[0].toString(16)}`, `--stop-address=0x${range[1].toString(16)}`, bin]).toString();
  const rows: Array<{ pc: number; text: string }> = [];
  for (const l of out.split('\n')) {
    const m = /^\s*([0-9a-f]+):\s+(.*)$/.exec(l);
    if (m) rows.push({ pc: parseInt(m[1], 16), text: m[2] });
  }
  return rows;
}
