// Call frame information (DWARF CFI) from .eh_frame (found through .eh_frame_hdr's sorted table
// when present) or, as a fallback, .debug_frame. Given an ELF virtual address it answers the one
// question the unwinder asks: where is the canonical frame address (CFA), and where were the
// return address and the caller's frame pointer saved. Only the rows up to the address are
// interpreted, and nothing else of the file is decoded, so a lookup costs one binary search and a
// few dozen bytes of CFA program. Malformed tables throw CfiError; callers treat that as "no rule".

import type { ElfFile, ElfSection } from '../elf/elf-file.js';
import { SHF_COMPRESSED, SHT_NOBITS } from '../elf/elf-file.js';
import { ByteCursor } from '../elf/byte-cursor.js';
import { sectionContents } from '../elf/dwarf-sections.js';
import { BufferBytes, FileBytes, type Bytes } from '../elf/file-bytes.js';

export class CfiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CfiError';
  }
}

/** DWARF register numbers on x86-64 (System V psABI, figure 3.36). */
export const DW_REG_RBP = 6;
export const DW_REG_RSP = 7;
export const DW_REG_RIP = 16;

/** How the CFA (the caller's stack pointer before the call) is computed. */
export type CfaRule =
  | { kind: 'reg'; reg: number; offset: number }
  /** DW_CFA_def_cfa_expression: evaluate with evalDwarfExpr (PLT stubs use this). */
  | { kind: 'expr'; expr: Buffer };

/** Where a register of the caller is found, relative to the CFA. */
export type RegRule =
  /** Not recovered by this frame: the caller's value is the current one (callee-saved default). */
  | { kind: 'same' }
  /** DW_CFA_undefined: no value (for the return address: the outermost frame). */
  | { kind: 'undefined' }
  /** Saved in memory at CFA + offset. */
  | { kind: 'offset'; offset: number }
  /** The value is CFA + offset itself. */
  | { kind: 'val_offset'; offset: number }
  /** The value is in another register. */
  | { kind: 'register'; reg: number }
  /** Saved at the address computed by the expression (CFA pushed first). */
  | { kind: 'expr'; expr: Buffer }
  /** The value is what the expression computes (CFA pushed first). */
  | { kind: 'val_expr'; expr: Buffer };

export interface UnwindRule {
  cfa: CfaRule;
  /** The return address (the CIE's return-address column, rip on x86-64). */
  ra: RegRule;
  /** The caller's frame pointer (rbp). */
  bp: RegRule;
  /** The CIE says this is a signal trampoline ('S' augmentation): the usual rules do not apply. */
  signalFrame?: boolean;
}

const SAME: RegRule = Object.freeze({ kind: 'same' }) as RegRule;

// ---- byte reader -----------------------------------------------------------------------------

class Reader extends ByteCursor {
  protected truncated(n: number): never {
    throw new CfiError(`truncated CFI: need ${n} bytes at ${this.pos} (end ${this.end})`);
  }
  u64(): number {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return toNum(v);
  }
  s64(): number {
    this.need(8);
    const v = this.buf.readBigInt64LE(this.pos);
    this.pos += 8;
    return Number(v);
  }
  uleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new CfiError('ULEB128 too long');
  }
  sleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        if (b & 0x40) result -= mul;
        return result;
      }
    }
    throw new CfiError('SLEB128 too long');
  }
  cstr(): string {
    const e = this.buf.indexOf(0, this.pos);
    if (e < 0 || e >= this.end) throw new CfiError('unterminated string in CFI');
    const s = this.buf.toString('latin1', this.pos, e);
    this.pos = e + 1;
    return s;
  }
}

function toNum(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number(BigInt.asIntN(64, v)) : Number(v);
}

// ---- pointer encodings (LSB "DW_EH_PE_*") ------------------------------------------------------

const PE_OMIT = 0xff;
const PE_ABSPTR = 0x00;
const PE_PCREL = 0x10;
const PE_TEXTREL = 0x20;
const PE_DATAREL = 0x30;
const PE_FUNCREL = 0x40;
const PE_ALIGNED = 0x50;
const PE_INDIRECT = 0x80;
/** DW_EH_PE_datarel | DW_EH_PE_sdata4. */
const PE_DATAREL_SDATA4 = 0x3b;

interface PtrBases {
  /** Virtual address of buf[0]: pcrel pointers are relative to their own address. */
  sectionVaddr: number;
  /** Base for datarel (the start of .eh_frame_hdr in the header table). */
  dataBase?: number;
  textBase?: number;
  funcBase?: number;
}

/** Reads a pointer with encoding `enc`; `valueOnly` drops the application part (for ranges). */
function readEncoded(r: Reader, enc: number, bases: PtrBases, addrSize: number, valueOnly = false): number {
  if (enc === PE_OMIT) throw new CfiError('omitted pointer read');
  const at = r.pos;
  const app = enc & 0x70;
  if (app === PE_ALIGNED && !valueOnly) {
    const a = addrSize;
    r.pos = Math.ceil(r.pos / a) * a;
  }
  let v: number;
  switch (enc & 0x0f) {
    case 0x00:
      v = addrSize === 8 ? r.u64() : r.u32();
      break;
    case 0x01:
      v = r.uleb();
      break;
    case 0x02:
      v = r.u16();
      break;
    case 0x03:
      v = r.u32();
      break;
    case 0x04:
      v = r.u64();
      break;
    case 0x09:
      v = r.sleb();
      break;
    case 0x0a:
      v = r.s16();
      break;
    case 0x0b:
      v = r.s32();
      break;
    case 0x0c:
      v = r.s64();
      break;
    default:
      throw new CfiError(`unsupported pointer encoding 0x${enc.toString(16)}`);
  }
  if (valueOnly) return v;
  switch (app) {
    case PE_ABSPTR:
    case PE_ALIGNED:
      break;
    case PE_PCREL:
      v += bases.sectionVaddr + at;
      break;
    case PE_DATAREL:
      if (bases.dataBase === undefined) throw new CfiError('datarel pointer without a data base');
      v += bases.dataBase;
      break;
    case PE_TEXTREL:
      if (bases.textBase === undefined) throw new CfiError('textrel pointer without a text base');
      v += bases.textBase;
      break;
    case PE_FUNCREL:
      if (bases.funcBase === undefined) throw new CfiError('funcrel pointer without a function base');
      v += bases.funcBase;
      break;
    default:
      throw new CfiError(`unsupported pointer application 0x${app.toString(16)}`);
  }
  // Indirect pointers point at the real value in memory we do not have; they are only used for
  // personality routines, which the unwinder never needs.
  if (enc & PE_INDIRECT) return v;
  return v;
}

// ---- CIE / FDE ----------------------------------------------------------------------------------

interface Cie {
  codeAlign: number;
  dataAlign: number;
  raReg: number;
  fdeEnc: number;
  hasAugData: boolean;
  signalFrame: boolean;
  addrSize: number;
  initialInstructions: Buffer;
}

interface Fde {
  cie: Cie;
  start: number;
  end: number;
  instructions: Buffer;
}

/** One entry (CIE or FDE) of a section: its bytes from an 8-aligned start, so that aligned pointer
 * encodings stay aligned; positions in `d` are section offsets minus `base`. */
interface Entry {
  d: Buffer;
  base: number;
  /** Position after the length field, and the entry's end, in `d`. */
  pos: number;
  end: number;
  /** 8 for the 64-bit DWARF format (its length field was 0xffffffff), else 4. */
  idSize: number;
}

/** The longest CIE or FDE read: real ones are at most a few KB (node's, libLLVM's: 3 KB). */
const MAX_ENTRY = 64 << 10;

/**
 * One CFI section (.eh_frame or .debug_frame): in memory, or read from the file a page at a time
 * (file-bytes.ts). Only the entries a lookup needs are read, into buffers of their own size.
 */
class FrameSection {
  private cies = new Map<number, Cie>();
  /** Sorted FDE index: start addresses and entry offsets (built lazily when no hdr table). */
  private starts: Float64Array | undefined;
  private offsets: Float64Array | undefined;

  constructor(
    readonly data: Bytes,
    readonly vaddr: number,
    readonly isEh: boolean,
    readonly addrSize: number,
  ) {}

  /** Bytes this section holds in memory: the section when it was read whole, and the index. */
  get heldBytes(): number {
    return (this.data instanceof BufferBytes ? this.data.length : 0) + (this.starts ? this.starts.length * 16 : 0);
  }

  /** The entry at section offset `off`; undefined for a zero length (a terminator). */
  private entryAt(off: number, what: string): Entry | undefined {
    const s = this.data;
    if (off < 0 || off + 4 > s.length) throw new CfiError(`${what} at ${off} is outside the section`);
    let len = s.u32(off);
    if (len === 0) return undefined;
    let hdr = 4;
    if (len === 0xffffffff) {
      if (off + 12 > s.length) throw new CfiError(`${what} at ${off} runs past the section`);
      len = s.u64(off + 4);
      hdr = 12;
    }
    // Each lookup copies its FDE and CIE out of the section: an entry that claims megabytes (all
    // the FDEs of .eh_frame_hdr pointing at one that spans the section) would cost a copy of
    // the section per lookup.
    if (len > MAX_ENTRY) throw new CfiError(`${what} at ${off} is ${len} bytes long (at most ${MAX_ENTRY})`);
    const end = off + hdr + len;
    if (end > s.length) throw new CfiError(`${what} at ${off} runs past the section`);
    const base = off - (off % 8);
    return { d: s.bytes(base, end - base), base, pos: off - base + hdr, end: end - base, idSize: hdr === 12 ? 8 : 4 };
  }

  /** The FDE covering `addr` using our own index of all FDEs. */
  findFde(addr: number): Fde | undefined {
    if (!this.starts) this.buildIndex();
    const starts = this.starts!;
    let lo = 0;
    let hi = starts.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid] <= addr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // Overlapping or empty FDEs happen (zero-length ones for discarded code): look back a little.
    for (let i = best; i >= 0 && i > best - 4; i--) {
      const fde = this.parseFde(this.offsets![i]);
      if (fde && addr >= fde.start && addr < fde.end) return fde;
    }
    return undefined;
  }

  /** Parses the FDE at section offset `off` (undefined when it is a CIE or a terminator). */
  parseFde(off: number): Fde | undefined {
    const e = this.entryAt(off, 'CFI entry');
    if (!e) return undefined;
    const { d, base, end, idSize } = e;
    const r = new Reader(d, e.pos, end);
    const idPos = r.pos;
    const id = idSize === 8 ? r.u64() : r.u32();
    let cieOff: number;
    if (this.isEh) {
      if (id === 0) return undefined;
      cieOff = base + idPos - id;
    } else {
      if ((idSize === 4 && id === 0xffffffff) || (idSize === 8 && id === -1)) return undefined;
      cieOff = id;
    }
    const cie = this.parseCie(cieOff);
    const er = new Reader(d, r.pos, end);
    const bases: PtrBases = { sectionVaddr: this.vaddr + base };
    const start = this.isEh ? readEncoded(er, cie.fdeEnc, bases, cie.addrSize) : cie.addrSize === 8 ? er.u64() : er.u32();
    const range = this.isEh ? readEncoded(er, cie.fdeEnc, bases, cie.addrSize, true) : cie.addrSize === 8 ? er.u64() : er.u32();
    if (cie.hasAugData) {
      const n = er.uleb();
      er.bytes(n);
    }
    return { cie, start, end: start + range, instructions: d.subarray(er.pos, end) };
  }

  private parseCie(off: number): Cie {
    const cached = this.cies.get(off);
    if (cached) return cached;
    const e = this.entryAt(off, 'CIE');
    if (!e) throw new CfiError(`entry at ${off} is not a CIE`);
    const { d, base, end, idSize } = e;
    const rr = new Reader(d, e.pos, end);
    const id = idSize === 8 ? rr.u64() : rr.u32();
    const isCie = this.isEh ? id === 0 : id === 0xffffffff || id === -1;
    if (!isCie) throw new CfiError(`entry at ${off} is not a CIE`);
    const version = rr.u8();
    if (version !== 1 && version !== 3 && version !== 4) throw new CfiError(`unsupported CIE version ${version}`);
    const aug = rr.cstr();
    let addrSize = this.addrSize;
    if (version === 4) {
      addrSize = rr.u8();
      rr.u8(); // segment selector size
      if (addrSize !== 4 && addrSize !== 8) throw new CfiError(`bad CIE address size ${addrSize}`);
    }
    const codeAlign = rr.uleb();
    const dataAlign = rr.sleb();
    const raReg = version === 1 ? rr.u8() : rr.uleb();
    let fdeEnc = PE_ABSPTR;
    let signalFrame = false;
    const hasAugData = aug.startsWith('z');
    if (hasAugData) {
      const n = rr.uleb();
      const augEnd = rr.pos + n;
      rr.need(n);
      for (let i = 1; i < aug.length; i++) {
        const c = aug[i];
        if (c === 'R') fdeEnc = rr.u8();
        else if (c === 'L') rr.u8();
        else if (c === 'P') {
          const enc = rr.u8();
          readEncoded(rr, enc & 0x7f, { sectionVaddr: this.vaddr + base }, addrSize);
        } else if (c === 'S') signalFrame = true;
        else if (c === 'B' || c === 'G') {
          // AArch64 pointer authentication / MTE markers: no data.
        } else break; // unknown: the augmentation length lets us skip the rest
      }
      rr.pos = augEnd;
    } else if (aug !== '') {
      throw new CfiError(`unsupported CIE augmentation "${aug}"`);
    }
    const cie: Cie = {
      codeAlign,
      dataAlign,
      raReg,
      fdeEnc,
      hasAugData,
      signalFrame,
      addrSize,
      initialInstructions: d.subarray(rr.pos, end),
    };
    this.cies.set(off, cie);
    return cie;
  }

  private buildIndex(): void {
    const entries: Array<[number, number]> = [];
    this.forEachEntry((off) => {
      try {
        const fde = this.parseFde(off);
        if (fde && fde.end > fde.start) entries.push([fde.start, off]);
      } catch {
        // skip an entry we cannot read; the others are still good
      }
    });
    entries.sort((a, b) => a[0] - b[0]);
    this.starts = Float64Array.from(entries, (e) => e[0]);
    this.offsets = Float64Array.from(entries, (e) => e[1]);
  }

  /** The offset of every entry (CIE or FDE) in section order, up to the terminator. */
  private forEachEntry(fn: (off: number) => void): void {
    const d = this.data;
    let off = 0;
    while (off + 4 <= d.length) {
      let len = d.u32(off);
      let hdr = 4;
      if (len === 0) {
        if (this.isEh) break; // .eh_frame terminator
        off += 4;
        continue;
      }
      if (len === 0xffffffff) {
        if (off + 12 > d.length) break;
        len = d.u64(off + 4);
        hdr = 12;
      }
      const next = off + hdr + len;
      if (next > d.length || next <= off) break;
      fn(off);
      off = next;
    }
  }

  get fdeCount(): number {
    if (!this.starts) this.buildIndex();
    return this.starts!.length;
  }

  /**
   * Every FDE with code, in section order (not by address: no index is built, so that a
   * conversion of the whole section costs no more memory than the section); `onError` hears of
   * those that cannot be read.
   */
  forEachFde(fn: (fde: Fde) => void, onError: (e: unknown) => void): void {
    this.forEachEntry((off) => {
      let fde: Fde | undefined;
      try {
        fde = this.parseFde(off);
      } catch (e) {
        onError(e);
        return;
      }
      if (fde && fde.end > fde.start) fn(fde);
    });
  }
}

// ---- CFA program interpreter ------------------------------------------------------------------

interface RowState {
  cfa: CfaRule;
  regs: Map<number, RegRule>;
}

function cloneState(s: RowState): RowState {
  return { cfa: s.cfa, regs: new Map(s.regs) };
}

const MAX_STATE_STACK = 64;

/**
 * Runs `instr` from location `loc`, stopping before the first row that starts after `target`.
 * Returns false when it stopped early (target reached), true when the program ran out.
 */
function execute(
  instr: Buffer,
  cie: Cie,
  state: RowState,
  initial: RowState | undefined,
  loc: number,
  target: number,
  fdeStart: number,
  onRow?: (from: number, to: number) => void,
): boolean {
  const r = new Reader(instr, 0, instr.length);
  const stack: RowState[] = [];
  const moveTo = (next: number): boolean => {
    if (next > target) return false;
    if (onRow && next > loc) onRow(loc, next);
    loc = next;
    return true;
  };
  const advance = (delta: number): boolean => moveTo(loc + delta * cie.codeAlign);
  const restore = (reg: number) => {
    const v = initial?.regs.get(reg);
    if (v) state.regs.set(reg, v);
    else state.regs.delete(reg);
  };
  while (r.pos < r.end) {
    const op = r.u8();
    const hi = op & 0xc0;
    const lo = op & 0x3f;
    if (hi === 0x40) {
      if (!advance(lo)) return false;
      continue;
    }
    if (hi === 0x80) {
      state.regs.set(lo, { kind: 'offset', offset: r.uleb() * cie.dataAlign });
      continue;
    }
    if (hi === 0xc0) {
      restore(lo);
      continue;
    }
    switch (op) {
      case 0x00: // nop
        break;
      case 0x01: {
        // set_loc: an encoded address
        const bases: PtrBases = { sectionVaddr: 0, funcBase: fdeStart };
        const next = cie.hasAugData ? readEncoded(r, cie.fdeEnc & 0x0f, bases, cie.addrSize) : cie.addrSize === 8 ? r.u64() : r.u32();
        if (!moveTo(next)) return false;
        break;
      }
      case 0x02:
        if (!advance(r.u8())) return false;
        break;
      case 0x03:
        if (!advance(r.u16())) return false;
        break;
      case 0x04:
        if (!advance(r.u32())) return false;
        break;
      case 0x05: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'offset', offset: r.uleb() * cie.dataAlign });
        break;
      }
      case 0x06:
        restore(r.uleb());
        break;
      case 0x07:
        state.regs.set(r.uleb(), { kind: 'undefined' });
        break;
      case 0x08:
        state.regs.set(r.uleb(), SAME);
        break;
      case 0x09: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'register', reg: r.uleb() });
        break;
      }
      case 0x0a:
        if (stack.length >= MAX_STATE_STACK) throw new CfiError('CFI remember_state nesting too deep');
        stack.push(cloneState(state));
        break;
      case 0x0b: {
        const s = stack.pop();
        if (!s) throw new CfiError('CFI restore_state without remember_state');
        // The CFA and the registers both come back (DWARF 5 §6.4.2.4).
        state.cfa = s.cfa;
        state.regs = s.regs;
        break;
      }
      case 0x0c: {
        const reg = r.uleb();
        state.cfa = { kind: 'reg', reg, offset: r.uleb() };
        break;
      }
      case 0x0d: {
        const reg = r.uleb();
        state.cfa = { kind: 'reg', reg, offset: state.cfa.kind === 'reg' ? state.cfa.offset : 0 };
        break;
      }
      case 0x0e: {
        const off = r.uleb();
        if (state.cfa.kind === 'reg') state.cfa = { kind: 'reg', reg: state.cfa.reg, offset: off };
        break;
      }
      case 0x0f: {
        const n = r.uleb();
        state.cfa = { kind: 'expr', expr: r.bytes(n) };
        break;
      }
      case 0x10: {
        const reg = r.uleb();
        const n = r.uleb();
        state.regs.set(reg, { kind: 'expr', expr: r.bytes(n) });
        break;
      }
      case 0x11: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'offset', offset: r.sleb() * cie.dataAlign });
        break;
      }
      case 0x12: {
        const reg = r.uleb();
        state.cfa = { kind: 'reg', reg, offset: r.sleb() * cie.dataAlign };
        break;
      }
      case 0x13: {
        const off = r.sleb() * cie.dataAlign;
        if (state.cfa.kind === 'reg') state.cfa = { kind: 'reg', reg: state.cfa.reg, offset: off };
        break;
      }
      case 0x14: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'val_offset', offset: r.uleb() * cie.dataAlign });
        break;
      }
      case 0x15: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'val_offset', offset: r.sleb() * cie.dataAlign });
        break;
      }
      case 0x16: {
        const reg = r.uleb();
        const n = r.uleb();
        state.regs.set(reg, { kind: 'val_expr', expr: r.bytes(n) });
        break;
      }
      case 0x2e: // GNU_args_size: only matters for exception landing pads
        r.uleb();
        break;
      case 0x2f: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'offset', offset: -r.uleb() * cie.dataAlign });
        break;
      }
      default:
        throw new CfiError(`unsupported CFA instruction 0x${op.toString(16)}`);
    }
  }
  return true;
}

function ruleOf(cie: Cie, state: RowState): UnwindRule {
  return {
    cfa: state.cfa,
    ra: state.regs.get(cie.raReg) ?? { kind: 'undefined' },
    bp: state.regs.get(DW_REG_RBP) ?? SAME,
    ...(cie.signalFrame ? { signalFrame: true } : {}),
  };
}

function initialState(cie: Cie, fde: Fde): RowState {
  const state: RowState = { cfa: { kind: 'reg', reg: DW_REG_RSP, offset: 0 }, regs: new Map() };
  execute(cie.initialInstructions, cie, state, undefined, fde.start, Number.MAX_SAFE_INTEGER, fde.start);
  return state;
}

function ruleForFde(fde: Fde, addr: number): UnwindRule {
  const state = initialState(fde.cie, fde);
  execute(fde.instructions, fde.cie, state, cloneState(state), fde.start, addr, fde.start);
  return ruleOf(fde.cie, state);
}

/** Every row of `fde`'s program in address order: [from, to) and the rule that holds there. */
function rowsOfFde(fde: Fde, emit: (from: number, to: number, rule: UnwindRule) => void): void {
  const state = initialState(fde.cie, fde);
  let last = fde.start;
  // execute() never moves past its target (fde.end): every row it reports lies inside the FDE.
  execute(fde.instructions, fde.cie, state, cloneState(state), fde.start, fde.end, fde.start, (from, to) => {
    emit(from, to, ruleOf(fde.cie, state));
    last = to;
  });
  if (last < fde.end) emit(last, fde.end, ruleOf(fde.cie, state));
}

// ---- the table --------------------------------------------------------------------------------

/** Sorted (initial location, FDE address) pairs from .eh_frame_hdr. */
interface HdrTable {
  data: Bytes;
  vaddr: number;
  tablePos: number;
  count: number;
  enc: number;
  entrySize: number;
}

export class CfiTable {
  private constructor(
    private readonly eh: FrameSection | undefined,
    private readonly hdr: HdrTable | undefined,
    private readonly debug: FrameSection | undefined,
  ) {}

  /** Bytes held in memory (for cache accounting); pages read from the file are in a shared,
   * bounded cache (file-bytes.ts). */
  get byteSize(): number {
    const hdr = this.hdr?.data instanceof BufferBytes ? this.hdr.data.length : 0;
    return (this.eh?.heldBytes ?? 0) + hdr + (this.debug?.heldBytes ?? 0);
  }

  /** Reads through `path` from now on (another name for the same file). */
  moveTo(path: string): void {
    if (this.eh?.data instanceof FileBytes) this.eh.data.moveTo(path);
    if (this.hdr?.data instanceof FileBytes) this.hdr.data.moveTo(path);
  }

  /** Which sections this table uses (for diagnostics and tests). */
  get sources(): string[] {
    const out: string[] = [];
    if (this.hdr) out.push('.eh_frame_hdr');
    if (this.eh) out.push('.eh_frame');
    if (this.debug) out.push('.debug_frame');
    return out;
  }

  /**
   * The unwind sections of `elf`. .eh_frame and .eh_frame_hdr are read from the file a page at a
   * time when a lookup needs them (through the path `elf` was opened with, see moveTo), unless
   * `inMemory`; .debug_frame (often compressed) is read whole. Returns undefined when the file
   * has neither .eh_frame nor .debug_frame. Throws CfiError/ElfError only for unreadable sections.
   */
  static fromElf(elf: ElfFile, inMemory = false): CfiTable | undefined {
    const addrSize = elf.is64 ? 8 : 4;
    const ehSec = elf.section('.eh_frame');
    const hdrSec = elf.section('.eh_frame_hdr');
    const dbgSec = elf.section('.debug_frame');
    let eh: FrameSection | undefined;
    let hdr: HdrTable | undefined;
    let debug: FrameSection | undefined;
    if (ehSec && ehSec.type !== SHT_NOBITS && ehSec.size > 0) {
      const bytes = (sec: ElfSection): Bytes =>
        inMemory || sec.offset + sec.size > elf.size ? new BufferBytes(elf.sectionData(sec)) : new FileBytes(elf.path, elf.identity, sec.offset, sec.size);
      eh = new FrameSection(bytes(ehSec), ehSec.addr, true, addrSize);
      if (hdrSec && hdrSec.type !== SHT_NOBITS && hdrSec.size > 0) {
        try {
          hdr = parseHdr(bytes(hdrSec), hdrSec.addr, addrSize);
        } catch {
          hdr = undefined; // fall back to our own index of .eh_frame
        }
      }
    }
    if (dbgSec && dbgSec.type !== SHT_NOBITS && dbgSec.size > 0) {
      try {
        debug = new FrameSection(new BufferBytes(readMaybeCompressed(elf, dbgSec)), 0, false, addrSize);
      } catch {
        debug = undefined;
      }
    }
    if (!eh && !debug) return undefined;
    return new CfiTable(eh, hdr, debug);
  }

  /** The unwind rule at ELF virtual address `vaddr`, or undefined when no FDE covers it. */
  ruleAt(vaddr: number): UnwindRule | undefined {
    const fde = this.findFde(vaddr);
    return fde ? ruleForFde(fde, vaddr) : undefined;
  }

  /**
   * Every row of every FDE, .eh_frame's first and then .debug_frame's, each FDE's rows in address
   * order: the unwind tables the kernel walks (table-builder.ts). A program that cannot be run
   * (an unsupported instruction, a truncated entry) goes to `onError` and its FDE is skipped.
   */
  forEachRow(emit: (from: number, to: number, rule: UnwindRule) => void, onError: (e: unknown) => void): void {
    for (const sec of [this.eh, this.debug]) {
      sec?.forEachFde((fde) => {
        // Rows are handed out only once the whole program ran: a failing one leaves no half.
        const rows: Array<[number, number, UnwindRule]> = [];
        try {
          rowsOfFde(fde, (from, to, rule) => rows.push([from, to, rule]));
        } catch (e) {
          onError(e);
          return;
        }
        for (const [from, to, rule] of rows) emit(from, to, rule);
      }, onError);
    }
  }

  /** The [start, end) range of the FDE covering vaddr (for tests and diagnostics). */
  fdeRange(vaddr: number): [number, number] | undefined {
    const fde = this.findFde(vaddr);
    return fde ? [fde.start, fde.end] : undefined;
  }

  private findFde(vaddr: number): Fde | undefined {
    if (this.eh) {
      const f = this.hdr ? this.findViaHdr(vaddr) : this.eh.findFde(vaddr);
      if (f) return f;
    }
    return this.debug?.findFde(vaddr);
  }

  private findViaHdr(vaddr: number): Fde | undefined {
    const h = this.hdr!;
    const eh = this.eh!;
    const entry = (i: number): [number, number] => {
      const at = h.tablePos + i * h.entrySize;
      // What every linker writes: signed 4-byte offsets from the start of .eh_frame_hdr.
      if (h.enc === PE_DATAREL_SDATA4) return [h.data.i32(at) + h.vaddr, h.data.i32(at + 4) + h.vaddr];
      const r = new Reader(h.data.bytes(at, h.entrySize), 0, h.entrySize);
      const bases: PtrBases = { sectionVaddr: h.vaddr + at, dataBase: h.vaddr };
      const loc = readEncoded(r, h.enc, bases, 8);
      const fde = readEncoded(r, h.enc, bases, 8);
      return [loc, fde];
    };
    let lo = 0;
    let hi = h.count - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (entry(mid)[0] <= vaddr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (best < 0) return undefined;
    const off = entry(best)[1] - eh.vaddr;
    if (off < 0 || off >= eh.data.length) throw new CfiError(`.eh_frame_hdr points outside .eh_frame (${off})`);
    const fde = eh.parseFde(off);
    return fde && vaddr >= fde.start && vaddr < fde.end ? fde : undefined;
  }
}

function parseHdr(data: Bytes, vaddr: number, addrSize: number): HdrTable | undefined {
  // The header: version, three encodings, the .eh_frame pointer and the count (8 bytes at most each).
  const head = data.bytes(0, Math.min(data.length, 24));
  const r = new Reader(head, 0, head.length);
  const version = r.u8();
  if (version !== 1) throw new CfiError(`unsupported .eh_frame_hdr version ${version}`);
  const ehPtrEnc = r.u8();
  const countEnc = r.u8();
  const tableEnc = r.u8();
  const bases: PtrBases = { sectionVaddr: vaddr, dataBase: vaddr };
  if (ehPtrEnc !== PE_OMIT) readEncoded(r, ehPtrEnc, bases, addrSize);
  if (countEnc === PE_OMIT || tableEnc === PE_OMIT) return undefined;
  const count = readEncoded(r, countEnc, bases, addrSize);
  const sizes: Record<number, number> = { 0x02: 2, 0x03: 4, 0x04: 8, 0x0a: 2, 0x0b: 4, 0x0c: 8 };
  const entrySize = sizes[tableEnc & 0x0f];
  if (!entrySize) return undefined; // variable-size entries cannot be binary searched
  if (count < 0 || r.pos + count * entrySize * 2 > data.length) throw new CfiError('.eh_frame_hdr table runs past the section');
  return { data, vaddr, tablePos: r.pos, count, enc: tableEnc, entrySize: entrySize * 2 };
}

/**
 * Section bytes, inflating SHF_COMPRESSED sections such as Go's .debug_frame, within the bounds
 * of dwarf-sections.ts (a zlib bomb is refused, not inflated).
 */
function readMaybeCompressed(elf: ElfFile, sec: ElfSection): Buffer {
  const data = sectionContents(elf, sec);
  if (!data) throw new CfiError(`section ${sec.name} cannot be read${sec.flags & SHF_COMPRESSED ? ' or inflated within bounds' : ''}`);
  return data;
}

// ---- DWARF expressions ------------------------------------------------------------------------

/**
 * An expression that starts with DW_OP_bregN: the register, its signed offset and the operations
 * after it (table-builder.ts matches the CFA expressions compilers emit). Undefined otherwise.
 */
export function splitBreg(expr: Uint8Array): { reg: number; offset: number; rest: Uint8Array } | undefined {
  const op = expr[0];
  if (op === undefined || op < 0x70 || op > 0x8f) return undefined;
  const buf = Buffer.from(expr.buffer, expr.byteOffset, expr.byteLength);
  const r = new Reader(buf, 1, buf.length);
  try {
    const offset = r.sleb();
    return { reg: op - 0x70, offset, rest: expr.subarray(r.pos) };
  } catch {
    return undefined;
  }
}

const MASK64 = (1n << 64n) - 1n;

/**
 * Evaluates the subset of DWARF expressions that appears in CFA rules (PLT stubs:
 * `breg7 8; breg16 0; lit15; and; lit11; ge; lit3; shl; plus`, signal frames with deref).
 * `reg` returns a register's value or undefined when unknown; `mem` reads 8 bytes. Returns
 * undefined when anything needed is unknown or the expression uses an unsupported operation.
 */
export function evalDwarfExpr(
  expr: Uint8Array,
  reg: (n: number) => bigint | undefined,
  mem: (addr: bigint) => bigint | undefined,
  initial?: bigint,
): bigint | undefined {
  const st: bigint[] = initial === undefined ? [] : [initial];
  const buf = Buffer.from(expr.buffer, expr.byteOffset, expr.byteLength);
  const r = new Reader(buf, 0, buf.length);
  const pop = (): bigint => {
    const v = st.pop();
    if (v === undefined) throw new CfiError('DWARF expression stack underflow');
    return v;
  };
  const signed = (v: bigint) => BigInt.asIntN(64, v);
  try {
    let steps = 0;
    while (r.pos < r.end) {
      if (++steps > 1000 || st.length > 64) return undefined;
      const op = r.u8();
      if (op >= 0x30 && op <= 0x4f) {
        st.push(BigInt(op - 0x30)); // lit0..lit31
      } else if (op >= 0x50 && op <= 0x6f) {
        const v = reg(op - 0x50); // reg0..reg31
        if (v === undefined) return undefined;
        st.push(v);
      } else if (op >= 0x70 && op <= 0x8f) {
        const v = reg(op - 0x70); // breg0..breg31
        if (v === undefined) return undefined;
        st.push((v + BigInt(r.sleb())) & MASK64);
      } else {
        switch (op) {
          case 0x06: {
            const v = mem(pop());
            if (v === undefined) return undefined;
            st.push(v);
            break;
          }
          case 0x08:
            st.push(BigInt(r.u8()));
            break;
          case 0x09:
            st.push(BigInt.asUintN(64, BigInt((r.u8() << 24) >> 24)));
            break;
          case 0x0a:
            st.push(BigInt(r.u16()));
            break;
          case 0x0b:
            st.push(BigInt.asUintN(64, BigInt(r.s16())));
            break;
          case 0x0c:
            st.push(BigInt(r.u32()));
            break;
          case 0x0d:
            st.push(BigInt.asUintN(64, BigInt(r.s32())));
            break;
          case 0x0e:
            st.push(BigInt.asUintN(64, BigInt(r.u64())));
            break;
          case 0x10:
            st.push(BigInt(r.uleb()));
            break;
          case 0x11:
            st.push(BigInt.asUintN(64, BigInt(r.sleb())));
            break;
          case 0x12: // dup
            st.push(st[st.length - 1] ?? pop());
            break;
          case 0x13:
            pop();
            break;
          case 0x14: // over
            if (st.length < 2) return undefined;
            st.push(st[st.length - 2]);
            break;
          case 0x16: {
            const a = pop();
            const b = pop();
            st.push(a, b);
            break;
          }
          case 0x1a:
            st.push(pop() & pop());
            break;
          case 0x1c: {
            const b = pop();
            st.push((pop() - b) & MASK64);
            break;
          }
          case 0x1e:
            st.push((pop() * pop()) & MASK64);
            break;
          case 0x1f:
            st.push(-pop() & MASK64);
            break;
          case 0x20:
            st.push(~pop() & MASK64);
            break;
          case 0x21:
            st.push(pop() | pop());
            break;
          case 0x22:
            st.push((pop() + pop()) & MASK64);
            break;
          case 0x23:
            st.push((pop() + BigInt(r.uleb())) & MASK64);
            break;
          // Shifts by the width or more give what a 64-bit machine register would hold (0, or
          // the sign for shra), without making a BigInt of 2^b bits: a shift count comes from
          // the file or the stack, and `x << (2^30 - 1)` allocates 128 MB and takes ~100 ms.
          case 0x24: {
            const b = pop();
            const a = pop();
            st.push(b >= 64n ? 0n : (a << b) & MASK64);
            break;
          }
          case 0x25: {
            const b = pop();
            const a = pop();
            st.push(b >= 64n ? 0n : a >> b);
            break;
          }
          case 0x26: {
            const b = pop();
            st.push(BigInt.asUintN(64, signed(pop()) >> (b >= 64n ? 63n : b)));
            break;
          }
          case 0x27:
            st.push(pop() ^ pop());
            break;
          case 0x29:
          case 0x2a:
          case 0x2b:
          case 0x2c:
          case 0x2d:
          case 0x2e: {
            const b = signed(pop());
            const a = signed(pop());
            const res =
              op === 0x29 ? a === b : op === 0x2a ? a >= b : op === 0x2b ? a > b : op === 0x2c ? a <= b : op === 0x2d ? a < b : a !== b;
            st.push(res ? 1n : 0n);
            break;
          }
          case 0x96: // nop
            break;
          default:
            return undefined;
        }
      }
    }
  } catch {
    return undefined;
  }
  return st.length > 0 ? st[st.length - 1] : undefined;
}
