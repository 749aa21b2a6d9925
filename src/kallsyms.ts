// The kernel's symbol table from /proc/kallsyms, read once. Only text symbols (t T w W) are kept;
// symbols of modules (and BPF programs, ftrace trampolines) carry their `[module]` name.
// Without CAP_SYSLOG or with kptr_restrict every address reads as zero: the table is then
// marked restricted and every kernel frame is named `[kernel]`.

import { closeSync, openSync, readSync } from 'node:fs';
import { lastAtOrBelow } from './sorted-search.js';

/** Kernel addresses share their top 16 bits; the low 48 bits fit a double exactly. */
const LOW48 = 0xffff_ffff_ffffn;
/** No kernel function is this long: beyond it an address is past the last known symbol. */
const MAX_FUNCTION_SIZE = 1 << 20;

export interface KernelSymbol {
  name: string;
  /** Module name without brackets, for symbols outside the core kernel image. */
  module?: string;
  offset: number;
}

export class Kallsyms {
  /** True when the addresses were hidden (all zero): kptr_restrict, or not privileged. */
  readonly restricted: boolean;
  /** Why lookups cannot work, for `flamewire doctor`; '' when they can. */
  readonly problem: string;
  // The table is kept compact: ~120k symbols would otherwise cost ~40 MB as JS strings and
  // arrays. The file is parsed as it is read, in chunks; only the text symbols' names are kept,
  // back to back in one buffer, and turned into strings when looked up.
  private readonly text: Buffer;
  private readonly keys: Float64Array;
  private readonly nameOff: Uint32Array;
  private readonly nameLen: Uint16Array;
  /** Index into moduleNames + 1, or 0 for the core kernel. */
  private readonly moduleIdx: Uint16Array;
  private readonly moduleNames: string[] = [];
  private readonly highBits: bigint;

  /** `keep`: only these keys (low 48 bits) are stored; every line still counts for the checks. */
  private constructor(chunks: Iterable<Buffer>, source: string, keep?: Set<number>) {
    const cap = keep ? Math.max(16, keep.size * 2) : 1 << 16;
    let addrs = new Float64Array(cap);
    let offs = new Uint32Array(cap);
    let lens = new Uint16Array(cap);
    let mods = new Uint16Array(cap);
    let ranks = new Int8Array(cap);
    const moduleIds = new Map<string, number>();
    let n = 0;
    let lines = 0;
    const bits = new AddressBits();
    let names = Buffer.allocUnsafe(keep ? 64 << 10 : 1 << 20);
    let namesLen = 0;
    forEachTextSymbol(chunks, (text, lowVal, highVal, hexLen, type, nameStart, nameEnd, eol) => {
      lines++;
      bits.see(lowVal, highVal, hexLen);
      if (keep && !keep.has(lowVal)) return;
      let mod = 0;
      if (nameEnd < eol) {
        const m = text.toString('latin1', nameEnd + 1, eol).trim();
        if (m.startsWith('[') && m.endsWith(']')) {
          const name = m.slice(1, -1);
          let id = moduleIds.get(name);
          if (id === undefined) {
            this.moduleNames.push(name);
            id = this.moduleNames.length;
            moduleIds.set(name, id);
          }
          mod = id;
        }
      }
      if (n === addrs.length) {
        addrs = grow(addrs);
        offs = grow(offs);
        lens = grow(lens);
        mods = grow(mods);
        ranks = grow(ranks);
      }
      const nameLen = nameEnd - nameStart;
      if (namesLen + nameLen > names.length) {
        const bigger = Buffer.allocUnsafe(names.length * 2 + nameLen);
        names.copy(bigger, 0, 0, namesLen);
        names = bigger;
      }
      text.copy(names, namesLen, nameStart, nameEnd);
      addrs[n] = lowVal;
      offs[n] = namesLen;
      lens[n] = nameLen;
      namesLen += nameLen;
      mods[n] = mod;
      ranks[n] = (type === 0x54 ? 4 : type === 0x57 ? 2 : 0) - (text[nameStart] === 0x5f ? 1 : 0);
      n++;
    });
    this.text = Buffer.from(names.subarray(0, namesLen));
    this.restricted = lines > 0 && !bits.nonZero;
    this.highBits = bits.high;
    if (lines === 0) this.problem = `${source}: no kernel text symbols`;
    else if (this.restricted) this.problem = `${source}: kernel addresses are hidden (kernel.kptr_restrict or missing CAP_SYSLOG); kernel frames will be named [kernel]`;
    else this.problem = '';

    const count = this.restricted ? 0 : n;
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[i] = i;
    // At one address (aliases like _text/_stext) the global, non-underscore name sorts first.
    order.sort((a, b) => addrs[a] - addrs[b] || ranks[b] - ranks[a] || a - b);
    let m = 0;
    for (let k = 0; k < count; k++) {
      const i = order[k];
      if (m > 0 && addrs[order[m - 1]] === addrs[i]) continue;
      order[m++] = i;
    }
    this.keys = new Float64Array(m);
    this.nameOff = new Uint32Array(m);
    this.nameLen = new Uint16Array(m);
    this.moduleIdx = new Uint16Array(m);
    for (let k = 0; k < m; k++) {
      const i = order[k];
      this.keys[k] = addrs[i];
      this.nameOff[k] = offs[i];
      this.nameLen[k] = lens[i];
      this.moduleIdx[k] = mods[i];
    }
  }

  /** Reads /proc/kallsyms (or `path`); throws only if the file cannot be read at all. */
  static load(path = '/proc/kallsyms'): Kallsyms {
    return withFile(path, (fd) => new Kallsyms(lineChunks(fd), path));
  }

  /**
   * Reads /proc/kallsyms (or `path`) for a known set of addresses: one pass finds the symbol
   * start below each address, a second keeps only those symbols. Lookups of these addresses
   * answer exactly as with load(), for a fraction of the memory: what a one-shot record needs.
   */
  static loadFor(addrs: Iterable<bigint>, path = '/proc/kallsyms'): Kallsyms {
    let starts = new Float64Array(1 << 16);
    let n = 0;
    const bits = new AddressBits();
    withFile(path, (fd) =>
      forEachTextSymbol(lineChunks(fd), (_text, lowVal, highVal, hexLen) => {
        bits.see(lowVal, highVal, hexLen);
        if (n === starts.length) starts = grow(starts);
        starts[n++] = lowVal;
      }),
    );
    const keep = new Set<number>();
    if (bits.nonZero) {
      const sorted = starts.subarray(0, n).sort();
      for (const addr of addrs) {
        const key = keyOf(addr, bits.high);
        const i = key === undefined ? -1 : coveringStart(sorted, key);
        if (i >= 0) keep.add(sorted[i]);
      }
    }
    starts = new Float64Array(0);
    return withFile(path, (fd) => new Kallsyms(lineChunks(fd), path, keep));
  }

  /** Parses kallsyms text (for tests and saved snapshots). */
  static parse(text: string, source = 'kallsyms'): Kallsyms {
    return new Kallsyms([Buffer.from(text, 'latin1')], source);
  }

  get length(): number {
    return this.keys.length;
  }

  lookup(addr: bigint): KernelSymbol | undefined {
    if (this.keys.length === 0) return undefined;
    const key = keyOf(addr, this.highBits);
    const found = key === undefined ? -1 : coveringStart(this.keys, key);
    if (found < 0) return undefined;
    const offset = key! - this.keys[found];
    const name = this.text.toString('latin1', this.nameOff[found], this.nameOff[found] + this.nameLen[found]);
    const mod = this.moduleIdx[found];
    return mod === 0 ? { name, offset } : { name, module: this.moduleNames[mod - 1], offset };
  }
}

/**
 * Whether any address in the file is visible (all zero: kptr_restrict), and the high 16 bits
 * all kernel addresses share (0 when the file's addresses are 12 hex digits or fewer).
 */
class AddressBits {
  nonZero = false;
  private top = -1n;

  see(lowVal: number, highVal: number, hexLen: number): void {
    if (lowVal === 0 && highVal === 0) return;
    this.nonZero = true;
    if (this.top < 0n && hexLen > 12) this.top = BigInt(highVal);
  }

  get high(): bigint {
    return this.top < 0n ? 0n : this.top;
  }
}

/** The table key of a kernel address (its low 48 bits), or undefined for another high part. */
function keyOf(addr: bigint, highBits: bigint): number | undefined {
  if (highBits !== 0n && addr >> 48n !== highBits) return undefined;
  return Number(addr & LOW48);
}

/** Index of the symbol start in sorted `keys` whose function covers `key`, or -1. */
function coveringStart(keys: Float64Array, key: number): number {
  const i = lastAtOrBelow(keys, key);
  return i >= 0 && key - keys[i] < MAX_FUNCTION_SIZE ? i : -1;
}

function withFile<T>(path: string, fn: (fd: number) => T): T {
  const fd = openSync(path, 'r');
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

type TextSymbolVisitor = (
  text: Buffer,
  lowVal: number,
  highVal: number,
  hexLen: number,
  type: number,
  nameStart: number,
  nameEnd: number,
  eol: number,
) => void;

/**
 * Calls `visit` for every text symbol line (t T w W): "ADDR T name" or "ADDR t name\t[module]".
 * The address comes in two parts: the low 48 bits (12 hex digits, exact in a double) and the
 * rest, which all kernel addresses share.
 */
function forEachTextSymbol(chunks: Iterable<Buffer>, visit: TextSymbolVisitor): void {
  for (const text of chunks) {
    let pos = 0;
    const len = text.length;
    while (pos < len) {
      let eol = text.indexOf(0x0a, pos);
      if (eol < 0) eol = len;
      const line = pos;
      pos = eol + 1;
      const sp1 = text.indexOf(0x20, line);
      if (sp1 <= line || sp1 >= eol || sp1 + 3 > eol) continue;
      const type = text[sp1 + 1];
      if (type !== 0x74 && type !== 0x54 && type !== 0x77 && type !== 0x57) continue;
      if (text[sp1 + 2] !== 0x20) continue;
      const hexLen = sp1 - line;
      if (hexLen > 16) continue;
      let lowVal = 0;
      let highVal = 0;
      let bad = false;
      for (let i = line; i < sp1; i++) {
        const d = hexDigit(text[i]);
        if (d < 0) {
          bad = true;
          break;
        }
        if (sp1 - i > 12) highVal = highVal * 16 + d;
        else lowVal = lowVal * 16 + d;
      }
      if (bad) continue;
      const nameStart = sp1 + 3;
      let nameEnd = nameStart;
      while (nameEnd < eol && text[nameEnd] !== 0x09) nameEnd++;
      if (nameEnd === nameStart || nameEnd - nameStart > 0xffff) continue;
      visit(text, lowVal, highVal, hexLen, type, nameStart, nameEnd, eol);
    }
  }
}

/** The file in chunks that end at a line end (the last one may not), reading 256 KiB at a time. */
function* lineChunks(fd: number): Generator<Buffer> {
  const buf = Buffer.allocUnsafe(256 << 10);
  let kept = 0;
  for (;;) {
    const got = readSync(fd, buf, kept, buf.length - kept, null);
    const end = kept + got;
    if (got === 0) {
      if (end > 0) yield buf.subarray(0, end);
      return;
    }
    const lastNl = buf.lastIndexOf(0x0a, end - 1);
    if (lastNl < 0) {
      if (end === buf.length) throw new Error('kallsyms: a line longer than 256 KiB');
      kept = end;
      continue;
    }
    yield buf.subarray(0, lastNl + 1);
    kept = end - (lastNl + 1);
    buf.copy(buf, 0, lastNl + 1, end);
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

function grow<T extends Float64Array | Uint32Array | Uint16Array | Int8Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(a.length * 2);
  b.set(a as never);
  return b;
}
