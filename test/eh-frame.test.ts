import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile } from '../src/elf/elf-file.js';
import { closeFileRanges, dropCachedPages, fileBytesStats } from '../src/elf/file-bytes.js';
import { CfiError, CfiTable, evalDwarfExpr, type RegRule, type UnwindRule } from '../src/unwind/eh-frame.js';
import { buildC, workDir } from './helpers.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';
const REG_NAMES = ['rax', 'rdx', 'rcx', 'rbx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip'];

interface OracleRow {
  loc: number;
  end: number;
  cfa: string;
  rbp: string | undefined;
  ra: string | undefined;
}

/** Rows of `readelf --debug-dump=frames-interp` for one section, each with its end address. */
function readelfRows(path: string, section: '.eh_frame' | '.debug_frame'): { rows: OracleRow[]; emptyFdes: number[] } {
  // readelf exits 1 on libc for an unrelated warning about separate debug files: use its stdout.
  const out = spawnSync('readelf', ['--debug-dump=frames-interp', path], { maxBuffer: 256 << 20 }).stdout.toString();
  const rows: OracleRow[] = [];
  const emptyFdes: number[] = [];
  let inSection = false;
  let cols: string[] = [];
  let fdeRows: OracleRow[] = [];
  let fdeEnd = 0;
  let fdeStart = -1;
  const flush = () => {
    if (fdeStart < 0) return;
    if (fdeRows.length === 0) emptyFdes.push(fdeStart);
    for (let i = 0; i < fdeRows.length; i++) fdeRows[i].end = i + 1 < fdeRows.length ? fdeRows[i + 1].loc : fdeEnd;
    rows.push(...fdeRows);
    fdeRows = [];
    fdeStart = -1;
  };
  for (const line of out.split('\n')) {
    const sec = /^Contents of the (\S+) section/.exec(line);
    if (sec) {
      flush();
      inSection = sec[1] === section;
      continue;
    }
    if (!inSection) continue;
    const fde = /FDE cie=[0-9a-f]+ pc=([0-9a-f]+)\.\.([0-9a-f]+)/.exec(line);
    if (fde) {
      flush();
      fdeStart = parseInt(fde[1], 16);
      fdeEnd = parseInt(fde[2], 16);
      cols = [];
      continue;
    }
    if (/ CIE | ZERO terminator/.test(line)) {
      flush();
      continue;
    }
    if (fdeStart < 0) continue;
    if (/^\s+LOC\s+CFA/.test(line)) {
      cols = line.trim().split(/\s+/);
      continue;
    }
    const m = /^([0-9a-f]{8,16}) (.*)$/.exec(line);
    if (m && cols.length) {
      // Register-to-register rules print as "r9 (r9)": keep the number only.
      const vals = m[2].replace(/ \(\w+\)/g, '').trim().split(/\s+/);
      const get = (name: string) => {
        const i = cols.indexOf(name);
        return i < 0 ? undefined : vals[i - 1];
      };
      fdeRows.push({ loc: parseInt(m[1], 16), end: 0, cfa: vals[0], rbp: get('rbp'), ra: get('ra') });
    }
  }
  flush();
  return { rows, emptyFdes };
}

function cfaText(rule: UnwindRule): string {
  if (rule.cfa.kind === 'expr') return 'exp';
  const off = rule.cfa.offset;
  return `${REG_NAMES[rule.cfa.reg] ?? 'r' + rule.cfa.reg}${off >= 0 ? '+' : ''}${off}`;
}

/** Whether our rule matches readelf's column text (u = unchanged or undefined, c-N = at CFA-N). */
function regMatches(r: RegRule, text: string | undefined): boolean {
  if (text === undefined || text === 'u') return r.kind === 'same' || r.kind === 'undefined';
  if (text === 's') return r.kind === 'same';
  if (text === 'exp') return r.kind === 'expr';
  if (text === 'vexp') return r.kind === 'val_expr';
  const c = /^c([+-]\d+)$/.exec(text);
  if (c) return r.kind === 'offset' && r.offset === Number(c[1]);
  const g = /^r(\d+)$/.exec(text);
  if (g) return r.kind === 'register' && r.reg === Number(g[1]);
  const v = /^v([+-]\d+)$/.exec(text);
  if (v) return r.kind === 'val_offset' && r.offset === Number(v[1]);
  return false;
}

/** Checks the rule at the start, middle and last byte of every row; returns the count checked. */
function compareWithReadelf(path: string, section: '.eh_frame' | '.debug_frame'): number {
  const { rows, emptyFdes } = readelfRows(path, section);
  assert.ok(rows.length > 0, `readelf printed no rows for ${path}`);
  const table = ElfFile.withFile(path, (elf) => CfiTable.fromElf(elf));
  assert.ok(table, `no CFI table for ${path}`);
  let checked = 0;
  for (const row of rows) {
    for (const addr of new Set([row.loc, row.loc + ((row.end - row.loc) >> 1), row.end - 1])) {
      if (addr < row.loc || addr >= row.end) continue;
      const rule = table.ruleAt(addr);
      assert.ok(rule, `no rule at 0x${addr.toString(16)} in ${path}`);
      const where: string = `${path} at 0x${addr.toString(16)}: ours ${JSON.stringify(rule)} vs readelf ${JSON.stringify(row)}`;
      assert.equal(cfaText(rule), row.cfa, where);
      assert.ok(regMatches(rule.ra, row.ra), where);
      assert.ok(regMatches(rule.bp, row.rbp), where);
      checked++;
    }
  }
  for (const start of emptyFdes) {
    // FDEs without instructions use the CIE's initial row (rsp+8, ra at c-8 on x86-64).
    const rule = table.ruleAt(start);
    if (!rule) continue; // readelf lists zero-length FDEs too
    assert.equal(cfaText(rule), 'rsp+8');
    checked++;
  }
  return checked;
}

const C_SOURCE = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <alloca.h>
__attribute__((noinline)) long leaf(long x) { return x * 3 + 1; }
__attribute__((noinline)) long with_locals(long n) {
  volatile long a[32];
  for (long i = 0; i < 32; i++) a[i] = i * n;
  long s = 0;
  for (long i = 0; i < 32; i++) s += a[i] + leaf(i);
  return s;
}
__attribute__((noinline)) long many_regs(long a, long b, long c, long d) {
  long r = 0;
  for (long i = 0; i < a; i++) { r += with_locals(i ^ b) * c; r ^= leaf(d + i); if (r > 1000000) r -= b; }
  return r;
}
__attribute__((noinline)) long dynamic(long n) {
  char *p = alloca(n + 16);
  memset(p, (int)n, n + 16);
  return p[n / 2] + leaf(n);
}
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 5;
  printf("%ld %ld\\n", many_regs(n, 3, 7, 11), dynamic(n));
  return 0;
}
`;

describe('eh-frame', () => {
  const dir = workDir('eh-frame');

  it('matches readelf on a C program built with -O2 (no frame pointers)', () => {
    const bin = buildC(dir, 'omitfp', C_SOURCE, ['-O2', '-fomit-frame-pointer']);
    const n = compareWithReadelf(bin, '.eh_frame');
    assert.ok(n >= 10, `only ${n} rows checked`);
  });

  it('matches readelf on a C program built with frame pointers (CFA on rbp)', () => {
    const bin = buildC(dir, 'withfp', C_SOURCE, ['-O2', '-fno-omit-frame-pointer']);
    compareWithReadelf(bin, '.eh_frame');
    const table = ElfFile.withFile(bin, (elf) => CfiTable.fromElf(elf))!;
    // Inside a function body with a frame the CFA is rbp+16 and rbp is saved at CFA-16.
    const addr = symbolAddress(bin, 'with_locals');
    const range = table.fdeRange(addr)!;
    const rule = table.ruleAt(range[0] + ((range[1] - range[0]) >> 1))!;
    assert.deepEqual(rule.cfa, { kind: 'reg', reg: 6, offset: 16 });
    assert.deepEqual(rule.bp, { kind: 'offset', offset: -16 });
    assert.deepEqual(rule.ra, { kind: 'offset', offset: -8 });
  });

  it('reads .debug_frame when the binary has no .eh_frame', () => {
    const bin = buildC(dir, 'debugframe', C_SOURCE, ['-O2', '-g', '-fno-asynchronous-unwind-tables', '-fno-unwind-tables', '-fno-exceptions']);
    const has = execFileSync('readelf', ['-S', bin]).toString();
    assert.match(has, /\.debug_frame/);
    const table = ElfFile.withFile(bin, (elf) => CfiTable.fromElf(elf))!;
    assert.ok(table.sources.includes('.debug_frame'));
    const n = compareWithReadelf(bin, '.debug_frame');
    assert.ok(n > 0);
  });

  it('matches readelf on every row of the system libc', { skip: !existsSync(LIBC) && 'no libc' }, () => {
    const n = compareWithReadelf(LIBC, '.eh_frame');
    assert.ok(n > 1000, `only ${n} rows`);
  });

  it('reads .eh_frame a page at a time: the same rules as from memory, without holding the section', { skip: !existsSync(LIBC) && 'no libc' }, () => {
    dropCachedPages();
    const paged = ElfFile.withFile(LIBC, (elf) => CfiTable.fromElf(elf))!;
    const whole = ElfFile.withFile(LIBC, (elf) => CfiTable.fromElf(elf, true))!;
    const [eh, hdr] = ElfFile.withFile(LIBC, (e) => [e.section('.eh_frame')!, e.section('.eh_frame_hdr')!]);
    assert.equal(whole.byteSize, eh.size + hdr.size);
    assert.ok(paged.byteSize < 4096, `paged table holds ${paged.byteSize} bytes`);
    const text = ElfFile.withFile(LIBC, (e) => e.section('.text')!);
    let withRule = 0;
    for (let a = text.addr; a < text.addr + text.size; a += 97) {
      const p = paged.ruleAt(a);
      assert.deepEqual(p, whole.ruleAt(a), `at 0x${a.toString(16)}`);
      if (p) withRule++;
    }
    assert.ok(withRule > 10_000, `only ${withRule} addresses with a rule`);
    // Whatever it read stays in the thread's bounded page cache (file-bytes.ts).
    assert.ok(fileBytesStats().bytes <= 4 << 20, `${fileBytesStats().bytes} bytes of pages`);
    closeFileRanges();
  });

  it('gives the frameless rule at the syscall in libc write and read', { skip: !existsSync(LIBC) && 'no libc' }, () => {
    const table = ElfFile.withFile(LIBC, (elf) => CfiTable.fromElf(elf))!;
    for (const name of ['write', 'read']) {
      const start = symbolAddress(LIBC, name);
      const range = table.fdeRange(start)!;
      assert.ok(range, `no FDE for ${name}`);
      const dis = execFileSync('objdump', ['-d', '--no-show-raw-insn', `--start-address=0x${range[0].toString(16)}`, `--stop-address=0x${range[1].toString(16)}`, LIBC]).toString();
      const sys = /^\s*([0-9a-f]+):\s+syscall/m.exec(dis);
      assert.ok(sys, `no syscall instruction in ${name}`);
      const after = parseInt(sys[1], 16) + 2; // the user ip while blocked in the syscall
      const rule = table.ruleAt(after)!;
      assert.deepEqual(rule.cfa, { kind: 'reg', reg: 7, offset: 8 }, `${name} at 0x${after.toString(16)}`);
      assert.deepEqual(rule.ra, { kind: 'offset', offset: -8 });
    }
  });

  it('evaluates the PLT CFA expression', () => {
    // DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_lit11; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus
    const expr = Buffer.from([0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22]);
    const regs = (ip: bigint) => (n: number) => (n === 7 ? 0x7ffc_0000_1000n : n === 16 ? ip : undefined);
    assert.equal(evalDwarfExpr(expr, regs(0x1020n), () => undefined), 0x7ffc_0000_1008n);
    assert.equal(evalDwarfExpr(expr, regs(0x102bn), () => undefined), 0x7ffc_0000_1010n);
    // Unknown registers and garbage give undefined instead of throwing.
    assert.equal(evalDwarfExpr(expr, () => undefined, () => undefined), undefined);
    assert.equal(evalDwarfExpr(Buffer.from([0x22]), regs(0n), () => undefined), undefined);
    assert.equal(evalDwarfExpr(Buffer.from([0x08]), regs(0n), () => undefined), undefined);
  });

  it('shifts by 64 bits or more as a 64-bit register would, without a huge BigInt', () => {
    const none = () => undefined;
    // lit1; const4u n; shl|shr|shra — the count comes from the file (or, through deref, the stack).
    const shift = (op: number, n: number) => {
      const b = Buffer.from([0x31, 0x0c, 0, 0, 0, 0, op]);
      b.writeUInt32LE(n, 2);
      return evalDwarfExpr(b, none, none);
    };
    assert.equal(shift(0x24, 63), 1n << 63n);
    assert.equal(shift(0x24, 64), 0n);
    assert.equal(shift(0x25, 0xffffffff), 0n);
    // consts -1; const4u 2^30-1; shra: the sign fills the register.
    assert.equal(evalDwarfExpr(Buffer.from([0x11, 0x7f, 0x0c, 0xff, 0xff, 0xff, 0x3f, 0x26]), none, none), (1n << 64n) - 1n);
    // 125 shifts by 2^30 - 1 took over 10 s before; now they are as cheap as any operation.
    const ops: number[] = [];
    for (let i = 0; i < 125; i++) ops.push(0x31, 0x0c, 0xff, 0xff, 0xff, 0x3f, 0x24, 0x13);
    const t0 = performance.now();
    assert.equal(evalDwarfExpr(Buffer.from([...ops, 0x30]), none, none), 0n);
    assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`);
  });

  it('finds the PLT rule of a real binary and it is an expression', () => {
    const bin = buildC(dir, 'withfp', C_SOURCE, ['-O2', '-fno-omit-frame-pointer']);
    const plt = ElfFile.withFile(bin, (elf) => elf.section('.plt'));
    assert.ok(plt);
    const table = ElfFile.withFile(bin, (elf) => CfiTable.fromElf(elf))!;
    const rule = table.ruleAt(plt.addr + 16)!;
    assert.equal(rule.cfa.kind, 'expr');
  });

  it('rejects malformed sections with CfiError or no rule, never a crash', () => {
    const bin = buildC(dir, 'omitfp', C_SOURCE, ['-O2', '-fomit-frame-pointer']);
    const table = ElfFile.withFile(bin, (elf) => CfiTable.fromElf(elf))!;
    assert.equal(table.ruleAt(0), undefined);
    assert.equal(table.ruleAt(Number.MAX_SAFE_INTEGER), undefined);
    // Corrupt random bytes of .eh_frame and .eh_frame_hdr: only CfiError may come out.
    const orig = readFileSync(bin);
    const secs = ElfFile.withFile(bin, (e) => [e.section('.eh_frame')!, e.section('.eh_frame_hdr')!]);
    const text = ElfFile.withFile(bin, (e) => e.section('.text')!);
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    const fuzzed = join(dir, 'fuzzed');
    for (let it = 0; it < 400; it++) {
      const b = Buffer.from(orig);
      const s = secs[it % 2];
      for (let k = 0; k <= it % 8; k++) b[s.offset + Math.floor(rnd() * s.size)] = Math.floor(rnd() * 256);
      writeFileSync(fuzzed, b);
      try {
        const t = ElfFile.withFile(fuzzed, (e) => CfiTable.fromElf(e));
        for (let a = text.addr; a < text.addr + text.size; a += 5) t?.ruleAt(a);
      } catch (e) {
        assert.ok(e instanceof CfiError, `iteration ${it}: ${(e as Error).stack}`);
      }
    }
  });

  it('refuses a CIE or FDE longer than 64 KiB instead of copying it per lookup', () => {
    // libc with every .eh_frame_hdr entry naming one FDE whose length claims the rest of the
    // section: each lookup copied the section before.
    const b = readFileSync(LIBC);
    const [eh, hdr] = ElfFile.withFile(LIBC, (e) => [e.section('.eh_frame')!, e.section('.eh_frame_hdr')!]);
    const fde = b.readInt32LE(hdr.offset + 16);
    for (let p = hdr.offset + 12; p + 8 <= hdr.offset + hdr.size; p += 8) b.writeInt32LE(fde, p + 4);
    const at = hdr.offset + fde; // both sections are in one segment: the same address-to-offset shift
    assert.ok(at > eh.offset && at < eh.offset + eh.size);
    b.writeUInt32LE(eh.offset + eh.size - at - 4, at);
    const path = join(dir, 'libc-one-long-fde');
    writeFileSync(path, b);
    const table = ElfFile.withFile(path, (e) => CfiTable.fromElf(e))!;
    const write = symbolAddress(LIBC, 'write');
    assert.throws(() => table.ruleAt(write), (e) => e instanceof CfiError && /bytes long/.test(e.message));
  });
});


function symbolAddress(path: string, name: string): number {
  const out = execFileSync('nm', ['-D', '--defined-only', path]).toString() + safeNm(path);
  const re = new RegExp(`^([0-9a-f]+) [TtWi] ${name}(@@?\\S+)?$`, 'm');
  const m = re.exec(out);
  assert.ok(m, `no symbol ${name} in ${path}`);
  return parseInt(m[1], 16);
}

function safeNm(path: string): string {
  try {
    return execFileSync('nm', ['--defined-only', path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  } catch {
    return '';
  }
}
