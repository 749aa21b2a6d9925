// Repairs the top of a frame-pointer user stack with unwind information.
//
// The kernel's frame-pointer walk (bpf_get_stack with BPF_F_USER_STACK) returns the user ip and
// then the return addresses found by following rbp. When the sampled function has not set up its
// own frame (a frameless leaf, a libc syscall wrapper such as write or read, a Go leaf, any
// function caught in its prologue or epilogue) rbp still points at its caller's frame, so the
// second entry is the caller's caller and the caller is lost. With the registers and the bytes
// at the top of the stack that the BPF program captured, the CFA rule at the leaf ip (from
// .eh_frame, .debug_frame or Go's pcsp) says where the return address is; we read it from the
// snapshot and put the caller back.
//
// The CFI walk continues for a few more frames while each step stays inside the snapshot and
// every address has a rule, and is then spliced onto the frame-pointer chain where the two agree:
// a frameless libc function called from another frameless function gets both callers back, and
// a garbage second entry (rbp used as a general register by the leaf) is dropped. When the two
// never agree, the CFI frames are put in front of the rest of the frame-pointer chain.
//
// The function does no I/O, keeps no caches and never throws for any input; a repaired stack
// is returned in a buffer the next call reuses (see concat).

import type { UserRegs } from '../sample.js';
import { DW_REG_RBP, DW_REG_RIP, DW_REG_RSP, evalDwarfExpr, type RegRule, type UnwindRule } from './eh-frame.js';

/**
 * Maps a runtime address to the unwind rule of the code at that address, or undefined when the
 * address is in no mapping or the file has no unwind information. Callers cache the answer per
 * (file, vaddr) (see UnwindTables.ruleAt).
 */
export type RuleLookup = (addr: bigint) => UnwindRule | undefined;

/** The parts of a decoded sample the repair needs (OnCpuSample fits). */
export interface RepairInput {
  /** Frame-pointer walk, leaf first (user ip first). */
  userStack: BigUint64Array;
  userRegs: UserRegs | null;
  /** Bytes starting at userRegs.sp. */
  stackSnapshot: Buffer;
}

export interface RepairOptions {
  /** Most frames unwound with CFI before splicing (default 8; 1 = the leaf only). */
  maxCfiFrames?: number;
}

const MASK64 = (1n << 64n) - 1n;
/** Past this a value is no user-space address (x86-64 user space ends at 2^47). */
const MAX_USER = 2 ** 53;
const TWO32 = 2 ** 32;

/**
 * The repaired user stack, leaf first. Returns `sample.userStack` itself (same object) when
 * nothing changes, so callers can detect a repair with `!==`. A repaired stack lives in a
 * buffer the next call reuses: copy it to keep it.
 *
 * This runs for every sample, so the walk is incremental: it stops at the first CFI frame that
 * meets the frame-pointer chain (for a leaf with its own frame that is the very first step), and
 * the arithmetic is on JS numbers (user addresses fit in 53 bits), with BigInt only for DWARF
 * expressions.
 */
export function repairUserStack(sample: RepairInput, lookup: RuleLookup, opts: RepairOptions = {}): BigUint64Array {
  const fp = sample.userStack;
  const regs = sample.userRegs;
  const snap = sample.stackSnapshot;
  if (!regs || !snap || snap.length < 8 || (fp.length > 0 && fp[0] !== regs.ip)) return fp;
  const maxFrames = Math.max(1, Math.min(opts.maxCfiFrames ?? 8, 64));
  try {
    if (fp.length >= 2 && hasOwnFrame(lookup(regs.ip))) {
      // The usual case in code built with frame pointers: the leaf set up its frame, and the
      // first CFI step would read the very word the frame-pointer walk read, at rbp + 8.
      const off = Number(regs.bp - regs.sp) + 8;
      if (off >= 8 && off + 8 <= snap.length && snap.readBigUInt64LE(off) === fp[1]) return fp;
    }
    const w = new Walker(snap, Number(regs.sp), Number(regs.ip), Number(regs.bp), lookup);
    const chain: number[] = [w.ip];
    for (let depth = 0; depth < maxFrames; depth++) {
      const step = w.step(depth);
      if (step === STOP) break;
      if (step === NO_RULE) {
        // The last address has no rule: an unverifiable deeper address is dropped.
        if (depth >= 2) chain.pop();
        break;
      }
      chain.push(w.ip);
      const i = chain.length - 1;
      // Earliest point where the CFI chain meets the frame-pointer chain (compared as BigInt:
      // one conversion per step instead of one per frame).
      const ip = BigInt(w.ip);
      for (let j = 1; j < fp.length; j++) {
        if (fp[j] === ip) {
          if (i === 1 && j === 1) return fp; // the leaf has its frame: nothing lost
          return concat(chain, i, fp, j);
        }
      }
    }
    if (chain.length < 2) return fp;
    return concat(chain, chain.length, fp, 1);
  } catch {
    return fp;
  }
}

/** frameKind() of a function inside its own rbp frame. */
export const OWN_FRAME = -1;

/**
 * The two shapes of code that nearly every sample lands in, as the repair sees them:
 * OWN_FRAME (see hasOwnFrame); k > 0 for a function without a frame of its own whose return
 * address is at CFA - 8 = rsp + k - 8 and which leaves rbp alone; 0 for anything else.
 */
export function frameKind(rule: UnwindRule | undefined): number {
  if (hasOwnFrame(rule)) return OWN_FRAME;
  if (rule === undefined || rule.signalFrame || rule.cfa.kind !== 'reg' || rule.cfa.reg !== DW_REG_RSP) return 0;
  if (rule.ra.kind !== 'offset' || rule.ra.offset !== -8 || rule.bp.kind !== 'same') return 0;
  return rule.cfa.offset > 0 && rule.cfa.offset % 8 === 0 ? rule.cfa.offset : 0;
}

/** CFA = rbp + 16 and the return address just below it: a function inside its own frame. */
function hasOwnFrame(rule: UnwindRule | undefined): boolean {
  return (
    rule !== undefined &&
    !rule.signalFrame &&
    rule.cfa.kind === 'reg' &&
    rule.cfa.reg === DW_REG_RBP &&
    rule.cfa.offset === 16 &&
    rule.ra.kind === 'offset' &&
    rule.ra.offset === -8
  );
}

/**
 * Repaired stacks are built here: a typed array of their own per sample costs a malloc, a
 * backing-store registration and a sweep, more than the repair itself. Room for the longest
 * chain (64 CFI frames) plus the whole frame-pointer walk.
 */
let scratch = new BigUint64Array(256);

/** chain[0..i) followed by fp[j..], in the scratch buffer: valid until the next repair. */
function concat(chain: number[], i: number, fp: BigUint64Array, j: number): BigUint64Array {
  const rest = Math.max(0, fp.length - j);
  if (i + rest > scratch.length) scratch = new BigUint64Array(i + rest);
  for (let k = 0; k < i; k++) scratch[k] = BigInt(chain[k]);
  if (rest > 0) scratch.set(fp.subarray(j), i);
  return scratch.subarray(0, i + rest);
}

const STOP = 0;
const NO_RULE = 1;
const STEPPED = 2;

/**
 * One CFI unwind step at a time over the captured registers and snapshot. Addresses after the
 * first return address are kept only when they have a rule themselves (checked by the caller
 * through NO_RULE on the next step).
 */
class Walker {
  sp: number | undefined;
  bp: number | undefined;

  constructor(
    private readonly snap: Buffer,
    private readonly base: number,
    public ip: number,
    bp: number,
    private readonly lookup: RuleLookup,
  ) {
    this.sp = base;
    this.bp = bp;
  }

  read(addr: number): number | undefined {
    const off = addr - this.base;
    if (!(off >= 0) || off + 8 > this.snap.length) return undefined;
    const hi = this.snap.readUInt32LE(off + 4);
    if (hi >= 1 << 21) return undefined; // ≥ 2^53: not a user-space address or stack value
    return hi * TWO32 + this.snap.readUInt32LE(off);
  }

  step(depth: number): number {
    // A return address points after the call; the call itself may be the last instruction of
    // the function (noreturn callees), so look up the byte before it.
    const rule = this.lookup(BigInt(depth === 0 ? this.ip : this.ip - 1));
    if (!rule || rule.signalFrame) return NO_RULE;
    const sp = this.sp;
    const cfa = this.cfa(rule);
    if (cfa === undefined || sp === undefined || cfa <= sp) return STOP; // CFA is always above sp
    const ra = this.recover(rule.ra, cfa);
    if (ra === undefined || ra === 0) return STOP;
    this.bp = rule.bp.kind === 'same' ? this.bp : this.recover(rule.bp, cfa);
    this.ip = ra;
    this.sp = cfa;
    return STEPPED;
  }

  private cfa(rule: UnwindRule): number | undefined {
    const c = rule.cfa;
    if (c.kind === 'reg') {
      const r = c.reg === DW_REG_RSP ? this.sp : c.reg === DW_REG_RBP ? this.bp : undefined;
      return r === undefined ? undefined : valid(r + c.offset);
    }
    return fromBig(evalDwarfExpr(c.expr, (n) => toBig(n === DW_REG_RSP ? this.sp : n === DW_REG_RBP ? this.bp : n === DW_REG_RIP ? this.ip : undefined), this.readBig));
  }

  /** A caller's register value from its rule, or undefined when not recoverable. */
  private recover(r: RegRule, cfa: number): number | undefined {
    switch (r.kind) {
      case 'offset':
        return this.read(cfa + r.offset);
      case 'val_offset':
        return valid(cfa + r.offset);
      case 'expr': {
        const addr = fromBig(evalDwarfExpr(r.expr, () => undefined, this.readBig, BigInt(cfa)));
        return addr === undefined ? undefined : this.read(addr);
      }
      case 'val_expr':
        return fromBig(evalDwarfExpr(r.expr, () => undefined, this.readBig, BigInt(cfa)));
      default:
        return undefined;
    }
  }

  private readonly readBig = (addr: bigint): bigint | undefined => {
    const a = fromBig(addr & MASK64);
    if (a === undefined) return undefined;
    const v = this.read(a);
    return v === undefined ? undefined : BigInt(v);
  };
}

function valid(n: number): number | undefined {
  return n >= 0 && n < MAX_USER ? n : undefined;
}

function toBig(n: number | undefined): bigint | undefined {
  return n === undefined ? undefined : BigInt(n);
}

function fromBig(b: bigint | undefined): number | undefined {
  return b === undefined || b < 0n || b >= BigInt(MAX_USER) ? undefined : Number(b);
}
