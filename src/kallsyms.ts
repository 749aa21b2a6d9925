// The kernel's symbol table from /proc/kallsyms, read once. Only text symbols (t T w W) are kept;
// symbols of modules (and BPF programs, ftrace trampolines) carry their `[module]` name.
// Without CAP_SYSLOG or with kptr_restrict every address reads as zero: the table is then
// marked restricted and every kernel frame is named `[kernel]`.

import { readFileSync } from 'node:fs';

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
  private readonly keys: Float64Array;
  private readonly names: string[];
  private readonly modules: Array<string | undefined>;
  private readonly highBits: bigint;

  private constructor(text: string, source: string) {
    const addrs: number[] = [];
    const names: string[] = [];
    const mods: Array<string | undefined> = [];
    const ranks: number[] = [];
    let nonZero = 0;
    let high = -1n;
    let pos = 0;
    const len = text.length;
    while (pos < len) {
      let eol = text.indexOf('\n', pos);
      if (eol < 0) eol = len;
      const line = text.slice(pos, eol);
      pos = eol + 1;
      // "ADDR T name" or "ADDR t name\t[module]"
      const sp1 = line.indexOf(' ');
      if (sp1 <= 0 || sp1 + 3 > line.length) continue;
      const type = line.charCodeAt(sp1 + 1);
      // t T w W
      if (type !== 0x74 && type !== 0x54 && type !== 0x77 && type !== 0x57) continue;
      if (line.charCodeAt(sp1 + 2) !== 0x20) continue;
      const hex = line.slice(0, sp1);
      if (hex.length > 16) continue;
      const tab = line.indexOf('\t', sp1 + 3);
      const name = line.slice(sp1 + 3, tab >= 0 ? tab : line.length);
      if (name.length === 0) continue;
      let mod: string | undefined;
      if (tab >= 0) {
        const m = line.slice(tab + 1).trim();
        if (m.startsWith('[') && m.endsWith(']')) mod = m.slice(1, -1);
      }
      const lowHex = hex.length > 12 ? hex.slice(hex.length - 12) : hex;
      const addr = parseInt(lowHex, 16);
      if (Number.isNaN(addr) || !/^[0-9a-fA-F]+$/.test(hex)) continue;
      if (addr !== 0 || (hex.length > 12 && parseInt(hex.slice(0, hex.length - 12), 16) !== 0)) {
        nonZero++;
        if (high < 0n && hex.length > 12) high = BigInt('0x' + hex.slice(0, hex.length - 12));
      }
      addrs.push(addr);
      names.push(name);
      mods.push(mod);
      ranks.push((type === 0x54 ? 4 : type === 0x57 ? 2 : 0) - (name.charCodeAt(0) === 0x5f ? 1 : 0));
    }
    this.restricted = addrs.length > 0 && nonZero === 0;
    this.highBits = high < 0n ? 0n : high;
    if (addrs.length === 0) this.problem = `${source}: no kernel text symbols`;
    else if (this.restricted) this.problem = `${source}: kernel addresses are hidden (kernel.kptr_restrict or missing CAP_SYSLOG); kernel frames will be named [kernel]`;
    else this.problem = '';

    const order = new Uint32Array(this.restricted ? 0 : addrs.length);
    for (let i = 0; i < order.length; i++) order[i] = i;
    // At one address (aliases like _text/_stext) the global, non-underscore name sorts first.
    order.sort((a, b) => addrs[a] - addrs[b] || ranks[b] - ranks[a] || a - b);
    const keys: number[] = [];
    this.names = [];
    this.modules = [];
    for (const i of order) {
      if (keys.length > 0 && keys[keys.length - 1] === addrs[i]) continue;
      keys.push(addrs[i]);
      this.names.push(names[i]);
      this.modules.push(mods[i]);
    }
    this.keys = Float64Array.from(keys);
  }

  /** Reads /proc/kallsyms (or `path`); throws only if the file cannot be read at all. */
  static load(path = '/proc/kallsyms'): Kallsyms {
    return new Kallsyms(readFileSync(path, 'latin1'), path);
  }

  /** Parses kallsyms text (for tests and saved snapshots). */
  static parse(text: string, source = 'kallsyms'): Kallsyms {
    return new Kallsyms(text, source);
  }

  get length(): number {
    return this.keys.length;
  }

  lookup(addr: bigint): KernelSymbol | undefined {
    if (this.keys.length === 0) return undefined;
    if (this.highBits !== 0n && addr >> 48n !== this.highBits) return undefined;
    const key = Number(addr & LOW48);
    const keys = this.keys;
    let lo = 0;
    let hi = keys.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] <= key) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return undefined;
    const offset = key - keys[found];
    if (offset >= MAX_FUNCTION_SIZE) return undefined;
    const module = this.modules[found];
    return module === undefined ? { name: this.names[found], offset } : { name: this.names[found], module, offset };
  }
}
