/**
 * Unwind tables for the kernel's stack walk: a file's CFI (eh-frame.ts) turned into the compact
 * rows of bpf/oncpu.h (struct fw_unwind_row: a start address and one packed rule) and the page
 * index that narrows a lookup to a few of them; Go code, which has no CFI, gets rows from its
 * pclntab's stack-pointer deltas. kernel-tables.ts loads them into the maps the BPF walk reads.
 */
import type { GoPclnTab } from '../elf/gopclntab.js';
import { CfiTable, DW_REG_RBP, DW_REG_RSP, splitBreg, type RegRule, type UnwindRule } from './eh-frame.js';

// The rule encoding of bpf/oncpu.h (enum fw_cfa_kind, enum fw_rbp_kind, FW_RULE).
export const CFA_NONE = 0;
export const CFA_RSP = 1;
export const CFA_RBP = 2;
export const CFA_PLT = 3;
export const CFA_DEREF_RSP = 4;
export const CFA_DEREF_RBP = 5;
export const CFA_SIGNAL = 6;
export const CFA_END = 7;
export const CFA_UNSUPPORTED = 8;
export const CFA_STACK_SWITCH = 9;
export const RBP_SAME = 0;
export const RBP_SAVED = 1;
export const RBP_UNKNOWN = 2;
const CFA_OFF_MIN = -131072;
const CFA_OFF_MAX = 131071;
/** FW_UNWIND_MAX_BUCKET: the BPF binary search among a page's rows runs 16 halvings. */
export const MAX_BUCKET = 1 << 16;
/** Row addresses are 32 bits: code at ELF addresses past 4 GiB gets no table. */
const MAX_PC = 0xffffffff;

export function packRule(kind: number, rbpKind: number, rbpField: number, cfaOff: number): number {
  return (kind | (rbpKind << 4) | ((rbpField & 0xff) << 6) | (cfaOff << 14)) >>> 0;
}

export interface DecodedRule {
  kind: number;
  rbpKind: number;
  /** rbp_off (bytes) for RBP_SAVED; the PLT threshold for CFA_PLT. */
  rbpField: number;
  cfaOff: number;
}

export function unpackRule(rule: number): DecodedRule {
  const field = (rule >>> 6) & 0xff;
  return { kind: rule & 0xf, rbpKind: (rule >>> 4) & 3, rbpField: field, cfaOff: rule >> 14 };
}

/** rbp_off in bytes of a packed RBP_SAVED rule. */
export function ruleRbpOff(rule: number): number {
  return ((((rule >>> 6) & 0xff) << 24) >> 24) * 8;
}

const UNSUPPORTED = packRule(CFA_UNSUPPORTED, RBP_UNKNOWN, 0, 0);

const DW_OP_BREG_RIP = 0x80;
const DW_OP_DEREF = 0x06;

/**
 * The CFA expressions compilers and linkers emit, as packed rules: the PLT stub rule
 * (`breg7 N; breg16 0; lit15; and; litT; ge; lit3; shl; plus`) and gcc's realigned frames
 * (`breg6 N; deref`, also with rsp). Anything else is unsupported.
 */
function exprRule(expr: Uint8Array, rbp: [number, number]): number {
  const breg = splitBreg(expr);
  if (!breg || (breg.reg !== DW_REG_RSP && breg.reg !== DW_REG_RBP)) return UNSUPPORTED;
  const { reg, offset: off, rest } = breg;
  if (off < CFA_OFF_MIN || off > CFA_OFF_MAX) return UNSUPPORTED;
  if (rest.length === 1 && rest[0] === DW_OP_DEREF) return packRule(reg === DW_REG_RSP ? CFA_DEREF_RSP : CFA_DEREF_RBP, rbp[0], rbp[1], off);
  // breg16 0; lit15; and; litT; ge; lit3; shl; plus
  if (
    reg === DW_REG_RSP &&
    rest.length === 9 &&
    rest[0] === DW_OP_BREG_RIP &&
    rest[1] === 0 &&
    rest[2] === 0x3f &&
    rest[3] === 0x1a &&
    rest[4] >= 0x30 &&
    rest[4] <= 0x3f &&
    rest[5] === 0x2a &&
    rest[6] === 0x33 &&
    rest[7] === 0x24 &&
    rest[8] === 0x22
  ) {
    return packRule(CFA_PLT, RBP_SAME, rest[4] - 0x30, off);
  }
  return UNSUPPORTED;
}

function rbpOf(bp: RegRule): [number, number] {
  if (bp.kind === 'same') return [RBP_SAME, 0];
  if (bp.kind === 'offset' && bp.offset % 8 === 0 && bp.offset >= -1024 && bp.offset <= 1016) return [RBP_SAVED, bp.offset / 8];
  return [RBP_UNKNOWN, 0];
}

/** The packed rule for a CFI row (x86-64: the return address is always at CFA - 8). */
export function encodeRule(rule: UnwindRule): number {
  if (rule.signalFrame) return packRule(CFA_SIGNAL, RBP_SAME, 0, 0);
  if (rule.ra.kind === 'undefined') return packRule(CFA_END, RBP_SAME, 0, 0);
  if (rule.ra.kind !== 'offset' || rule.ra.offset !== -8) return UNSUPPORTED;
  const rbp = rbpOf(rule.bp);
  const cfa = rule.cfa;
  if (cfa.kind === 'expr') return exprRule(cfa.expr, rbp);
  if (cfa.offset < CFA_OFF_MIN || cfa.offset > CFA_OFF_MAX) return UNSUPPORTED;
  if (cfa.reg === DW_REG_RSP) return packRule(CFA_RSP, rbp[0], rbp[1], cfa.offset);
  if (cfa.reg === DW_REG_RBP) return packRule(CFA_RBP, rbp[0], rbp[1], cfa.offset);
  return UNSUPPORTED;
}

export interface UnwindTableStats {
  /** CFI rows read (before overlaps are dropped and equal neighbours merged). */
  cfiRows: number;
  /** Rows whose rule the kernel walk cannot follow (it ends the stack there). */
  unsupportedRows: number;
  /** CFI entries that could not be read (skipped: frame pointers there). */
  badEntries: number;
  /** Code past 4 GiB of ELF address space, left without rows. */
  highRows: number;
}

/** One file's table: bpf/oncpu.h struct fw_unwind_file without the map offsets. */
export interface UnwindTable {
  pcBase: number;
  pageShift: number;
  /** Row start addresses, sorted, unique; the last row is CFA_NONE (past the covered code). */
  pcs: Uint32Array;
  rules: Uint32Array;
  /** pages[p]: index of the last row whose pc <= pcBase + (p << pageShift). */
  pages: Uint32Array;
  stats: UnwindTableStats;
}

const NONE = packRule(CFA_NONE, RBP_SAME, 0, 0);

/**
 * The rule for Go code on amd64 with `spDelta` bytes pushed since entry: the return address is
 * at sp + spDelta, and once the frame exists the caller's BP is saved just below it (Go keeps
 * frame pointers on amd64).
 */
export function goRule(spDelta: number | 'end' | 'switch'): number {
  if (spDelta === 'end') return packRule(CFA_END, RBP_SAME, 0, 0);
  if (spDelta === 'switch') return packRule(CFA_STACK_SWITCH, RBP_SAME, 0, 0);
  if (spDelta < 0 || spDelta + 8 > CFA_OFF_MAX) return UNSUPPORTED;
  return spDelta > 0 ? packRule(CFA_RSP, RBP_SAVED, -2, spDelta + 8) : packRule(CFA_RSP, RBP_SAME, 0, 8);
}

/**
 * Converts `cfi` (and the Go functions of `go`) into rows. Overlaps resolve to the first that
 * claimed an address (Go code, then .eh_frame, then .debug_frame, as the lookups in
 * unwind-tables.ts and CfiTable do); gaps get CFA_NONE rows (frame pointers); consecutive rows
 * with the same rule are merged.
 */
export function buildUnwindTable(cfi: CfiTable | undefined, go?: GoPclnTab): UnwindTable {
  const stats: UnwindTableStats = { cfiRows: 0, unsupportedRows: 0, badEntries: 0, highRows: 0 };
  // Typed arrays, not an object per range: node's .eh_frame alone has ~400,000 of them, and
  // this runs in the agent's process.
  const ranges = new RangeList();
  go?.forEachSpDelta((from, to, spDelta) => {
    if (to > MAX_PC) {
      stats.highRows++;
      return;
    }
    ranges.push(from, to, goRule(spDelta));
  });
  cfi?.forEachRow(
    (from, to, rule) => {
      stats.cfiRows++;
      if (to > MAX_PC) {
        stats.highRows++;
        return;
      }
      const packed = encodeRule(rule);
      if ((packed & 0xf) === CFA_UNSUPPORTED) stats.unsupportedRows++;
      ranges.push(from, to, packed);
    },
    () => stats.badEntries++,
  );
  // At most two rows per range (the gap before it, and it) and the closing one.
  const out = new RowList(2 * ranges.length + 1);
  let covered = 0; // everything below this has its row
  for (const i of ranges.sortedByStart()) {
    const rto = ranges.to[i];
    const from = Math.max(ranges.from[i], covered);
    if (from >= rto) continue; // claimed by an earlier FDE
    if (out.length > 0 && from > covered) out.push(covered, NONE);
    out.push(from, ranges.rule[i]);
    covered = rto;
  }
  if (out.length > 0) out.push(covered, NONE);
  return withPages(out.pcs.slice(0, out.length), out.rules.slice(0, out.length), stats);
}

/** Ranges in the order they were claimed (the first claim of an address wins). */
class RangeList {
  from = new Uint32Array(1024);
  to = new Uint32Array(1024);
  rule = new Uint32Array(1024);
  length = 0;

  push(from: number, to: number, rule: number): void {
    if (this.length === this.from.length) {
      const grow = (a: Uint32Array) => {
        const b = new Uint32Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.from = grow(this.from);
      this.to = grow(this.to);
      this.rule = grow(this.rule);
    }
    this.from[this.length] = from;
    this.to[this.length] = to;
    this.rule[this.length] = rule;
    this.length++;
  }

  /** Indices by start address, claim order among equal starts. */
  sortedByStart(): Uint32Array {
    const idx = new Uint32Array(this.length);
    for (let i = 0; i < idx.length; i++) idx[i] = i;
    const from = this.from;
    return idx.sort((a, b) => from[a] - from[b] || a - b);
  }
}

/** The table's rows as they are made: consecutive rows with the same rule merged. */
class RowList {
  pcs: Uint32Array;
  rules: Uint32Array;
  length = 0;

  constructor(capacity: number) {
    this.pcs = new Uint32Array(capacity);
    this.rules = new Uint32Array(capacity);
  }

  push(pc: number, rule: number): void {
    const n = this.length;
    if (n > 0 && this.pcs[n - 1] === pc) {
      this.rules[n - 1] = rule;
      if (n > 1 && this.rules[n - 2] === rule) this.length--;
      return;
    }
    if (n > 0 && this.rules[n - 1] === rule) return;
    this.pcs[n] = pc;
    this.rules[n] = rule;
    this.length++;
  }
}

/** Adds the page index: the smallest page size that keeps it at most half the rows. */
function withPages(pcs: Uint32Array, rules: Uint32Array, stats: UnwindTableStats): UnwindTable {
  if (pcs.length === 0) return { pcBase: 0, pageShift: 0, pcs, rules, pages: new Uint32Array(0), stats };
  const base = pcs[0];
  const span = pcs[pcs.length - 1] - base + 1;
  const want = Math.max(1, Math.ceil(pcs.length / 2));
  let shift = 4;
  while (shift < 31 && Math.ceil(span / 2 ** shift) > want) shift++;
  for (;;) {
    const count = Math.ceil(span / 2 ** shift);
    const pages = new Uint32Array(count);
    let row = 0;
    let maxBucket = 0;
    for (let p = 0; p < count; p++) {
      const limit = base + p * 2 ** shift;
      while (row + 1 < pcs.length && pcs[row + 1] <= limit) row++;
      pages[p] = row;
      if (p > 0) maxBucket = Math.max(maxBucket, pages[p] - pages[p - 1] + 1);
    }
    maxBucket = Math.max(maxBucket, pcs.length - pages[count - 1]);
    if (maxBucket <= MAX_BUCKET) return { pcBase: base, pageShift: shift, pcs, rules, pages, stats };
    if (shift <= 4) throw new Error(`unwind table: a page holds ${maxBucket} rows`);
    shift--;
  }
}

/**
 * The rule for `vaddr` the way the BPF walk finds it (page, then a bounded binary search), or
 * undefined outside the table. Used by tests and to check a table before it is loaded.
 */
export function lookupRule(t: UnwindTable, vaddr: number): number | undefined {
  if (t.pcs.length === 0 || vaddr < t.pcBase) return undefined;
  const p = Math.floor((vaddr - t.pcBase) / 2 ** t.pageShift);
  if (p >= t.pages.length) return undefined;
  let lo = t.pages[p];
  let hi = p + 1 < t.pages.length ? t.pages[p + 1] : t.pcs.length - 1;
  for (let i = 0; i < 17 && lo < hi; i++) {
    const mid = (lo + hi + 1) >>> 1;
    if (t.pcs[mid] <= vaddr) lo = mid;
    else hi = mid - 1;
  }
  return t.rules[lo];
}

/** Bytes the table takes in the kernel's maps (8 per row, 4 per page). */
export function tableBytes(t: UnwindTable): number {
  return t.pcs.length * 8 + t.pages.length * 4;
}
