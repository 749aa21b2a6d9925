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
// The function is pure: no I/O, no caches, never throws for any input.

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

/**
 * The repaired user stack, leaf first. Returns `sample.userStack` itself (same object) when
 * nothing changes, so callers can detect a repair with `!==`.
 */
export function repairUserStack(sample: RepairInput, lookup: RuleLookup, opts: RepairOptions = {}): BigUint64Array {
  const fp = sample.userStack;
  try {
    const chain = cfiChain(sample, lookup, Math.max(1, Math.min(opts.maxCfiFrames ?? 8, 64)));
    if (!chain || chain.length < 2) return fp;
    if (fp.length > 0 && fp[0] !== chain[0]) return fp; // not the stack these registers belong to
    if (fp.length > 1 && fp[1] === chain[1]) return fp; // the leaf has its frame: nothing lost
    // Earliest point where the CFI chain meets the frame-pointer chain.
    for (let i = 1; i < chain.length; i++) {
      for (let j = 1; j < fp.length; j++) {
        if (fp[j] === chain[i]) return concat(chain, i, fp, j);
      }
    }
    return concat(chain, chain.length, fp, 1);
  } catch {
    return fp;
  }
}

/** chain[0..i) followed by fp[j..]. */
function concat(chain: bigint[], i: number, fp: BigUint64Array, j: number): BigUint64Array {
  const rest = Math.max(0, fp.length - j);
  const out = new BigUint64Array(i + rest);
  for (let k = 0; k < i; k++) out[k] = chain[k];
  if (rest > 0) out.set(fp.subarray(j), i);
  return out;
}

/**
 * [ip, return address, ...] from CFI while each step is readable. Addresses after the first
 * return address are kept only when they have a rule themselves (a plausible code address).
 */
function cfiChain(sample: RepairInput, lookup: RuleLookup, maxFrames: number): bigint[] | undefined {
  const regs = sample.userRegs;
  const snap = sample.stackSnapshot;
  if (!regs || !snap || snap.length < 8) return undefined;
  const base = regs.sp;
  const read = (addr: bigint): bigint | undefined => {
    const off = addr - base;
    if (off < 0n || off + 8n > BigInt(snap.length)) return undefined;
    return snap.readBigUInt64LE(Number(off));
  };
  let ip = regs.ip;
  let sp: bigint | undefined = regs.sp;
  let bp: bigint | undefined = regs.bp;
  const chain: bigint[] = [ip];
  for (let depth = 0; depth < maxFrames; depth++) {
    // A return address points after the call; the call itself may be the last instruction of
    // the function (noreturn callees), so look up the byte before it.
    const rule = lookup(depth === 0 ? ip : ip - 1n);
    if (!rule || rule.signalFrame) {
      if (depth >= 2) chain.pop(); // unverifiable deeper address: drop it
      break;
    }
    const cfa = computeCfa(rule, ip, sp, bp, read);
    if (cfa === undefined || sp === undefined || cfa <= sp) break; // CFA is always above sp
    const ra = recover(rule.ra, cfa, read);
    if (ra === undefined || ra === 0n) break;
    let nextBp: bigint | undefined;
    if (rule.bp.kind === 'same') nextBp = bp;
    else nextBp = recover(rule.bp, cfa, read);
    chain.push(ra);
    ip = ra;
    sp = cfa;
    bp = nextBp;
  }
  return chain;
}

function computeCfa(
  rule: UnwindRule,
  ip: bigint,
  sp: bigint | undefined,
  bp: bigint | undefined,
  read: (a: bigint) => bigint | undefined,
): bigint | undefined {
  const c = rule.cfa;
  if (c.kind === 'reg') {
    const r = c.reg === DW_REG_RSP ? sp : c.reg === DW_REG_RBP ? bp : undefined;
    return r === undefined ? undefined : (r + BigInt(c.offset)) & MASK64;
  }
  return evalDwarfExpr(c.expr, (n) => (n === DW_REG_RSP ? sp : n === DW_REG_RBP ? bp : n === DW_REG_RIP ? ip : undefined), read);
}

/** A caller's register value from its rule, or undefined when not recoverable. */
function recover(r: RegRule, cfa: bigint, read: (a: bigint) => bigint | undefined): bigint | undefined {
  switch (r.kind) {
    case 'offset':
      return read((cfa + BigInt(r.offset)) & MASK64);
    case 'val_offset':
      return (cfa + BigInt(r.offset)) & MASK64;
    case 'expr': {
      const addr = evalDwarfExpr(r.expr, () => undefined, read, cfa);
      return addr === undefined ? undefined : read(addr);
    }
    case 'val_expr':
      return evalDwarfExpr(r.expr, () => undefined, read, cfa);
    default:
      return undefined;
  }
}
