import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { ElfFile } from '../src/elf/elf-file.js';
import { CfiTable } from '../src/unwind/eh-frame.js';
import {
  buildUnwindTable,
  CFA_END,
  CFA_NONE,
  CFA_PLT,
  CFA_RBP,
  CFA_DEREF_RBP,
  CFA_DEREF_RSP,
  CFA_RSP,
  CFA_SIGNAL,
  CFA_UNSUPPORTED,
  encodeRule,
  lookupRule,
  packRule,
  MAX_BUCKET,
  RBP_SAME,
  RBP_SAVED,
  ruleRbpOff,
  unpackRule,
  type UnwindTable,
} from '../src/unwind/table-builder.js';
import { join } from 'node:path';
import { buildC, repoRoot, workDir } from './helpers.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';
const LIBSTDCXX = '/usr/lib/x86_64-linux-gnu/libstdc++.so.6';

function tableOf(path: string): { cfi: CfiTable; table: UnwindTable } {
  return ElfFile.withFile(path, (elf) => {
    const cfi = CfiTable.fromElf(elf, true)!;
    return { cfi, table: buildUnwindTable(cfi) };
  });
}

/** Function addresses from nm (the test programs keep their symbol tables). */
function symbolsOf(path: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of execFileSync('nm', [path]).toString().split('\n')) {
    const m = /^([0-9a-f]+) [tT] (\S+)$/.exec(line);
    if (m) out.set(m[2], parseInt(m[1], 16));
  }
  return out;
}

/** Every address the table covers, sampled: each row's first and last byte and one between. */
function assertSameAsCfi(cfi: CfiTable, table: UnwindTable): number {
  let checked = 0;
  const step = Math.max(1, Math.floor(table.pcs.length / 30000));
  for (let i = 0; i + 1 < table.pcs.length; i += step) {
    const from = table.pcs[i];
    const to = table.pcs[i + 1];
    for (const a of new Set([from, to - 1, from + ((to - from) >> 1)])) {
      const rule = cfi.ruleAt(a);
      // Between FDEs the table holds a frame-pointer row (CFA_NONE, packed as 0).
      const want = rule ? encodeRule(rule) : packRule(CFA_NONE, RBP_SAME, 0, 0);
      assert.equal(lookupRule(table, a), want, `rule at 0x${a.toString(16)}`);
      checked++;
    }
  }
  return checked;
}

function assertPagesBounded(table: UnwindTable): void {
  assert.ok(table.pages.length <= Math.max(1, Math.ceil(table.pcs.length / 2)), `${table.pages.length} pages for ${table.pcs.length} rows`);
  for (let p = 1; p < table.pages.length; p++) assert.ok(table.pages[p] - table.pages[p - 1] + 1 <= MAX_BUCKET);
}

const C_SOURCE = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) long leaf(long n) { volatile char buf[300]; memset((char *)buf, (int)n, sizeof buf); return buf[n % 300]; }
__attribute__((noinline)) long mid(long n) { long s = 0; for (long i = 0; i < n; i++) s += leaf(i); return s; }
__attribute__((noinline)) long aligned(long n) { char *p = __builtin_alloca(n); _Alignas(64) volatile char b[64]; b[0] = 1; memset(p, 0, n); return p[0] + b[0]; }
int main(int argc, char **argv) { printf("%ld %ld\\n", mid(argc * 1000), aligned(argc * 64)); return 0; }
`;

describe('unwind tables for the kernel walk', () => {
  const dir = workDir('unwind-table');

  for (const [name, path] of [
    ['libc', LIBC],
    ['libstdc++', LIBSTDCXX],
    ['node', process.execPath],
  ] as const) {
    it(`gives the same rule as the CFI interpreter everywhere in ${name}`, { skip: !existsSync(path) && `no ${path}` }, () => {
      const { cfi, table } = tableOf(realpathSync(path));
      assert.ok(table.pcs.length > 1000, `${table.pcs.length} rows`);
      assert.equal(table.stats.badEntries, 0);
      // Compiled code is all rsp/rbp rules; what the walk cannot follow is hand-written
      // assembly that keeps the CFA in another register (OpenSSL's in node: rax, rsi, r10, r11).
      assert.ok(table.stats.unsupportedRows * 200 < table.stats.cfiRows, `${table.stats.unsupportedRows} of ${table.stats.cfiRows} rows unsupported`);
      assert.equal(table.rules[table.rules.length - 1], 0, 'the last row ends the table');
      for (let i = 1; i < table.pcs.length; i++) {
        assert.ok(table.pcs[i] > table.pcs[i - 1], 'rows sorted and unique');
        assert.notEqual(table.rules[i], table.rules[i - 1], 'consecutive rows merged');
      }
      assertPagesBounded(table);
      assert.ok(assertSameAsCfi(cfi, table) > 3000);
    });
  }

  it('encodes a C program built with -O2: rsp rules in the body, PLT stubs, realigned frames', () => {
    const bin = buildC(dir, 'o2', C_SOURCE, ['-O2']);
    const { cfi, table } = tableOf(bin);
    const symbols = symbolsOf(bin);
    assertSameAsCfi(cfi, table);
    const at = (sym: string, off = 0) => unpackRule(lookupRule(table, symbols.get(sym)! + off)!);
    // At a function's first instruction the CFA is rsp + 8 (just the return address).
    assert.deepEqual([at('mid').kind, at('mid').cfaOff], [CFA_RSP, 8]);
    const plt = ElfFile.withFile(bin, (elf) => elf.section('.plt'))!;
    const pltRule = unpackRule(lookupRule(table, plt.addr + 16)!);
    assert.equal(pltRule.kind, CFA_PLT);
    assert.equal(pltRule.cfaOff, 8);
    assert.equal(pltRule.rbpField, 11);
    // alloca with an over-aligned local: gcc realigns the stack (DRAP) and finds the CFA through
    // the slot rbp points below, an expression the walk follows.
    const kinds = new Set<number>();
    const start = symbols.get('aligned')!;
    for (let a = start; a < start + 64; a++) kinds.add(unpackRule(lookupRule(table, a)!).kind);
    assert.ok(kinds.has(CFA_DEREF_RBP), `kinds in aligned(): ${[...kinds]}`);
  });

  it('marks the outermost frame and the signal trampoline of libc', { skip: !existsSync(LIBC) && 'no libc' }, () => {
    const { table } = tableOf(realpathSync(LIBC));
    const kinds = new Map<number, number>();
    for (const r of table.rules) kinds.set(unpackRule(r).kind, (kinds.get(unpackRule(r).kind) ?? 0) + 1);
    // __restore_rt's FDE comes from a CIE with the 'S' augmentation; clone and clone3 mark the
    // new thread's outermost frame with an undefined return address.
    assert.ok((kinds.get(CFA_SIGNAL) ?? 0) >= 1, `kinds: ${[...kinds]}`);
    assert.ok((kinds.get(CFA_END) ?? 0) >= 1, `kinds: ${[...kinds]}`);
    // Callee-saved rbp is found at a CFA offset that is a multiple of 8.
    let saved = 0;
    for (const r of table.rules) if (unpackRule(r).rbpKind === RBP_SAVED) saved += ruleRbpOff(r) < 0 && ruleRbpOff(r) % 8 === 0 ? 1 : 0;
    assert.ok(saved > 100, `${saved} rows save rbp`);
  });

  it('packs rules the way bpf/oncpu.h unpacks them', () => {
    const src = `
#include <stdio.h>
#include "oncpu.h"
int main(void) {
  int offs[] = {8, 16, -8, 4096, -4096, FW_RULE_CFA_OFF_MIN, FW_RULE_CFA_OFF_MAX};
  for (unsigned i = 0; i < sizeof offs / sizeof offs[0]; i++) {
    __u32 r = FW_RULE(FW_CFA_RBP, FW_RBP_SAVED, -2, offs[i]);
    printf("%u %d %d %d %d\\n", r, FW_RULE_CFA_KIND(r), FW_RULE_RBP_KIND(r), FW_RULE_RBP_OFF(r), FW_RULE_CFA_OFF(r));
  }
  printf("%d %d %d %d %d %d %d %d %d\\n", FW_CFA_NONE, FW_CFA_RSP, FW_CFA_RBP, FW_CFA_PLT, FW_CFA_DEREF_RSP,
         FW_CFA_DEREF_RBP, FW_CFA_SIGNAL, FW_CFA_END, FW_CFA_UNSUPPORTED);
  printf("%zu %zu %u\\n", sizeof(struct fw_unwind_row), sizeof(struct fw_unwind_file), FW_UNWIND_MAX_BUCKET);
  return 0;
}`;
    const bin = buildC(dir, 'rule-layout', src, ['-O0', '-I', join(repoRoot, 'bpf')]);
    const lines = execFileSync(bin).toString().trim().split('\n');
    const offs = [8, 16, -8, 4096, -4096, -131072, 131071];
    offs.forEach((off, i) => {
      const packed = packRule(CFA_RBP, RBP_SAVED, -2, off);
      const d = unpackRule(packed);
      assert.equal(lines[i], `${packed} ${CFA_RBP} ${RBP_SAVED} ${ruleRbpOff(packed)} ${d.cfaOff}`);
      assert.equal(d.cfaOff, off);
      assert.equal(ruleRbpOff(packed), -16);
    });
    assert.equal(lines[offs.length], [CFA_NONE, CFA_RSP, CFA_RBP, CFA_PLT, CFA_DEREF_RSP, CFA_DEREF_RBP, CFA_SIGNAL, CFA_END, CFA_UNSUPPORTED].join(' '));
    assert.equal(lines[offs.length + 1], `8 24 ${MAX_BUCKET}`);
  });

  it('converts what it can of a corrupted .eh_frame and counts the entries it skipped', () => {
    const bin = buildC(dir, 'o2', C_SOURCE, ['-O2']);
    const eh = ElfFile.withFile(bin, (elf) => elf.section('.eh_frame'))!;
    const bytes = readFileSync(bin);
    let bad = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const copy = Buffer.from(bytes);
      // Overwrite a run of bytes inside the section with junk (a deterministic pattern per seed).
      const at = eh.offset + ((seed * 7919) % Math.max(1, eh.size - 8));
      for (let i = 0; i < 6; i++) copy[at + i] = (seed * 31 + i * 17) & 0xff;
      const path = join(dir, `corrupt-${seed}`);
      writeFileSync(path, copy);
      const table = ElfFile.withFile(path, (elf) => {
        const cfi = CfiTable.fromElf(elf, true);
        return cfi ? buildUnwindTable(cfi) : undefined;
      });
      if (!table) continue;
      bad += table.stats.badEntries;
      for (let i = 1; i < table.pcs.length; i++) assert.ok(table.pcs[i] > table.pcs[i - 1]);
      if (table.pcs.length) assert.equal(table.rules[table.rules.length - 1], 0);
    }
    assert.ok(bad > 0, 'some corruptions make entries unreadable');
  });

  it('leaves addresses outside every FDE to the frame pointer', () => {
    const bin = buildC(dir, 'o2', C_SOURCE, ['-O2']);
    const { table } = tableOf(bin);
    assert.equal(lookupRule(table, 0), undefined);
    assert.equal(lookupRule(table, table.pcBase - 1), undefined);
    assert.equal(unpackRule(lookupRule(table, table.pcs[table.pcs.length - 1] + 100) ?? 0).kind, CFA_NONE);
  });
});
