// Mutations of seed inputs, each described in words so that a failure says what was done:
// `shdr[28 .debug_info].sh_size@0x3d58 = 0xffffffffffffffff`, `fill .eh_frame+0x120..+0x220
// with 0x80`, `truncate at 0x1a2b3`. Binary seeds get structure-aware mutations (through
// elf-map.ts) and byte-level ones; text seeds (symbol names, /proc files) get edits that keep
// them close to real: characters replaced, substrings repeated or deleted, lines duplicated.

import type { ElfMap, Field, FieldKind } from './elf-map.js';
import type { Rng } from './rng.js';

export interface Mutated<T> {
  value: T;
  steps: string[];
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** Values worth writing into a field of this kind (the current value is `v`). */
function interesting(kind: FieldKind, v: bigint, width: number, size: number, rng: Rng, also?: readonly number[]): bigint {
  const bits = BigInt(width * 8);
  const max = (1n << bits) - 1n;
  const common: bigint[] = [0n, 1n, max, max >> 1n, 1n << (bits - 1n), v + 1n, v - 1n, v * 2n, v ^ 0x80n];
  const S = BigInt(size);
  const byKind: Record<FieldKind, bigint[]> = {
    offset: [S, S - 1n, S + 1n, S - 4n, S / 2n, BigInt(rng.int(size)), 0x7fffffffn, v + S, v - 4n, v + 4n],
    size: [S, S + 1n, S * 2n, v * 16n, v * 1000n, 0xfffffff0n, 0x7fffffffn, 0x40000000n, v + S, v - 1n],
    count: [0xffffn, 0x10000n, 1_000_000n, 20_000_000n, 0x7fffffffn, v * 1000n, v + 1n, 2n],
    index: [0n, 1n, 2n, v + 1n, 0xff00n, 0xfff1n, 0xffffn, 0xffffffffn, BigInt(rng.int(64))],
    entsize: [0n, 1n, 4n, 8n, 12n, 16n, 24n, 25n, 64n, 4096n, 0xffffffffn],
    addr: [0n, v + 1n, v - 1n, v + 4096n, 1n << 47n, 1n << 53n, (1n << 53n) - 1n, BigInt(rng.int(size))],
    value: [2n, 3n, 4n, 0x80n, 0xffn, BigInt(rng.u32())],
    magic: [],
    nameoff: [0n, v + 1n, v - 1n, BigInt(rng.int(size)), 0x7fffffffn, 0xfffffff0n],
  };
  const pool = [...common, ...byKind[kind], ...(also ?? []).map(BigInt)];
  const weightAlso = also && also.length > 0 && rng.chance(0.4);
  const x = weightAlso ? BigInt(rng.pick(also!)) : rng.pick(pool);
  return ((x % (max + 1n)) + (max + 1n)) % (max + 1n);
}

function readField(b: Buffer, f: Field): bigint {
  switch (f.width) {
    case 1:
      return BigInt(b[f.at]!);
    case 2:
      return BigInt(b.readUInt16LE(f.at));
    case 4:
      return BigInt(b.readUInt32LE(f.at));
    default:
      return b.readBigUInt64LE(f.at);
  }
}

function writeField(b: Buffer, at: number, width: number, v: bigint): void {
  if (at < 0 || at + width > b.length) return;
  if (width === 1) b[at] = Number(v & 0xffn);
  else if (width === 2) b.writeUInt16LE(Number(v & 0xffffn), at);
  else if (width === 4) b.writeUInt32LE(Number(v & 0xffffffffn), at);
  else b.writeBigUInt64LE(v & ((1n << 64n) - 1n), at);
}

const FILL_BYTES: ReadonlyArray<readonly [number, string]> = [
  [0x00, '0x00'],
  [0xff, '0xff'],
  [0x80, '0x80 (LEB128s that never end)'],
  [0x41, "'A' (names without a terminating zero)"],
  [0x7f, '0x7f'],
];

type BinaryOp = 'field' | 'clone' | 'bitflip' | 'word' | 'fill' | 'leb' | 'truncate' | 'splice' | 'shift';

const BINARY_OPS: ReadonlyArray<readonly [BinaryOp, number]> = [
  ['field', 40],
  ['clone', 5],
  ['bitflip', 12],
  ['word', 10],
  ['fill', 10],
  ['leb', 6],
  ['truncate', 6],
  ['splice', 6],
  ['shift', 5],
];

/** One to five mutations of an ELF seed. */
export function mutateElf(seed: Buffer, map: ElfMap, rng: Rng): Mutated<Buffer> {
  let b: Buffer = Buffer.from(seed);
  const steps: string[] = [];
  const n = rng.chance(0.7) ? 1 : rng.range(2, 5);
  for (let k = 0; k < n; k++) {
    const r = mutateOnce(b, map, rng);
    b = r.value;
    steps.push(r.steps[0]!);
  }
  return { value: b, steps };
}

function mutateOnce(b: Buffer, map: ElfMap, rng: Rng): Mutated<Buffer> {
  const op = rng.weighted(BINARY_OPS);
  const region = () => (map.regions.length > 0 && rng.chance(0.85) ? rng.pick(map.regions) : { label: 'file', start: 0, end: b.length, lebs: undefined });
  const clampRegion = (r: { start: number; end: number }) => ({ start: Math.min(r.start, b.length), end: Math.min(r.end, b.length) });
  switch (op) {
    case 'field': {
      const groups = map.groups;
      if (groups.length === 0) return mutateOnce(b, map, rng);
      const g = rng.weighted(groups.map((x) => [x, x.weight] as const));
      const fields = g.fields(rng.int(g.count));
      if (fields.length === 0) return { value: b, steps: [`(${g.label}: no field)`] };
      const f = rng.pick(fields);
      if (f.at + f.width > b.length) return { value: b, steps: [`(${f.label} is past the end)`] };
      const v = interesting(f.kind, readField(b, f), f.width, map.size, rng, f.also);
      writeField(b, f.at, f.width, v);
      return { value: b, steps: [`${f.label}@${hex(f.at)} = ${hex(v)}`] };
    }
    case 'clone': {
      // One header copied over others: many headers naming the same bytes (the amplification
      // of a scan per header), or the same section twice under other names.
      const groups = map.groups.filter((g) => g.entry && g.count > 1);
      if (groups.length === 0) return { value: b, steps: ['(no header table to clone in)'] };
      const g = rng.pick(groups);
      const from = rng.int(g.count);
      const src = g.entry!(from);
      if (src.at + src.size > b.length) return { value: b, steps: [`(${g.label}[${from}] is past the end)`] };
      const copy = Buffer.from(b.subarray(src.at, src.at + src.size));
      const n = rng.chance(0.5) ? g.count - 1 : rng.range(1, g.count - 1);
      let done = 0;
      for (let k = 0; k < g.count && done < n; k++) {
        if (k === from) continue;
        const dst = g.entry!(k);
        if (dst.at + dst.size > b.length) break;
        copy.copy(b, dst.at);
        done++;
      }
      return { value: b, steps: [`copy ${g.label}[${from}] over ${done} other entries`] };
    }
    case 'bitflip': {
      const r = clampRegion(region());
      if (r.end <= r.start) return { value: b, steps: ['(empty region)'] };
      const bits = rng.range(1, 8);
      const at: string[] = [];
      for (let i = 0; i < bits; i++) {
        const p = rng.range(r.start, r.end - 1);
        const bit = rng.int(8);
        b[p]! ^= 1 << bit;
        at.push(`${hex(p)}.${bit}`);
      }
      return { value: b, steps: [`flip bits ${at.join(' ')}`] };
    }
    case 'word': {
      const r = clampRegion(region());
      const width = rng.pick([1, 2, 4, 8] as const);
      if (r.end - r.start < width) return { value: b, steps: ['(region too small)'] };
      const p = r.start + (rng.int(r.end - r.start - width + 1) & ~(rng.chance(0.7) ? width - 1 : 0));
      const v = interesting('value', readFieldAt(b, p, width), width, b.length, rng);
      writeField(b, p, width, v);
      return { value: b, steps: [`u${width * 8}@${hex(p)} = ${hex(v)}`] };
    }
    case 'fill': {
      const r = clampRegion(region());
      if (r.end <= r.start) return { value: b, steps: ['(empty region)'] };
      const p = rng.range(r.start, r.end - 1);
      const len = Math.min(r.end - p, rng.chance(0.5) ? rng.range(1, 64) : rng.range(64, 1 << 16));
      const [byte, what] = rng.pick(FILL_BYTES);
      b.fill(byte, p, p + len);
      return { value: b, steps: [`fill ${hex(p)}..${hex(p + len)} with ${what}`] };
    }
    case 'leb': {
      const withLebs = map.regions.filter((x) => x.lebs && x.lebs.length > 0);
      const r = withLebs.length > 0 ? rng.pick(withLebs) : undefined;
      const p = r ? rng.pick(r.lebs!) : rng.int(b.length);
      const end = Math.min(b.length, r && rng.chance(0.5) ? r.end : p + rng.range(10, 80));
      if (p >= end) return { value: b, steps: ['(no room for a LEB128)'] };
      b.fill(0x80, p, end);
      return { value: b, steps: [`LEB128 at ${hex(p)}${r ? ` (${r.label})` : ''} never ends (0x80 up to ${hex(end)})`] };
    }
    case 'truncate': {
      const r = clampRegion(region());
      const p = rng.chance(0.6) && r.end > r.start ? rng.range(r.start, r.end) : rng.int(b.length);
      return { value: b.subarray(0, p), steps: [`truncate at ${hex(p)}`] };
    }
    case 'splice': {
      const len = rng.range(4, 1024);
      if (b.length <= len * 2) return { value: b, steps: ['(file too small to splice)'] };
      const from = rng.int(b.length - len);
      const r = clampRegion(region());
      const to = r.end - r.start > len ? rng.range(r.start, r.end - len) : rng.int(b.length - len);
      b.copy(b, to, from, from + len);
      return { value: b, steps: [`copy ${len} bytes from ${hex(from)} to ${hex(to)}`] };
    }
    case 'shift': {
      const r = clampRegion(region());
      const p = r.end > r.start ? rng.range(r.start, r.end - 1) : rng.int(b.length);
      const n = rng.range(1, 16);
      if (rng.chance(0.5)) {
        const ins = Buffer.alloc(n, rng.chance(0.5) ? 0 : rng.int(256));
        return { value: Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]), steps: [`insert ${n} bytes at ${hex(p)}`] };
      }
      return { value: Buffer.concat([b.subarray(0, p), b.subarray(Math.min(b.length, p + n))]), steps: [`delete ${n} bytes at ${hex(p)}`] };
    }
  }
}

function readFieldAt(b: Buffer, at: number, width: 1 | 2 | 4 | 8): bigint {
  return readField(b, { at, width, kind: 'value', label: '' });
}

/** Mutations of raw bytes without a known structure (a process's memory, a stack snapshot). */
export function mutateBytes(seed: Buffer, rng: Rng, hints: { pointers?: number[] } = {}): Mutated<Buffer> {
  const b = Buffer.from(seed);
  const steps: string[] = [];
  const n = rng.chance(0.6) ? 1 : rng.range(2, 8);
  for (let k = 0; k < n && b.length >= 8; k++) {
    const at = rng.int(b.length - 7) & ~(rng.chance(0.8) ? 7 : 0);
    const choice = rng.int(5);
    if (choice === 0) {
      const bit = rng.int(64);
      b[at + (bit >> 3)]! ^= 1 << (bit & 7);
      steps.push(`flip bit ${bit} of u64@${hex(at)}`);
    } else if (choice === 1 && hints.pointers && hints.pointers.length > 0) {
      // A pointer to somewhere else that is readable: loops, aliasing, structures in the wrong place.
      const p = rng.pick(hints.pointers) + rng.pick([0, 8, -8, 16, rng.int(256)]);
      b.writeBigUInt64LE(BigInt(Math.max(0, p)), at);
      steps.push(`u64@${hex(at)} = ${hex(p)} (a readable address)`);
    } else {
      const v = interesting(rng.pick(['count', 'size', 'addr', 'value'] as const), b.readBigUInt64LE(at), 8, b.length, rng);
      b.writeBigUInt64LE(v, at);
      steps.push(`u64@${hex(at)} = ${hex(v)}`);
    }
  }
  return { value: b, steps };
}

/** Edits of a text (a /proc file, a list of symbol names): the text stays mostly real. */
export function mutateText(seed: string, rng: Rng, alphabet: string): Mutated<string> {
  let s = seed;
  const steps: string[] = [];
  const n = rng.chance(0.6) ? 1 : rng.range(2, 6);
  const at = () => rng.int(s.length + 1);
  for (let k = 0; k < n; k++) {
    const op = rng.int(8);
    if (op === 0 && s.length > 0) {
      const p = rng.int(s.length);
      const c = rng.chance(0.7) ? alphabet[rng.int(alphabet.length)]! : String.fromCharCode(rng.int(0x100));
      s = s.slice(0, p) + c + s.slice(p + 1);
      steps.push(`replace char ${p} with ${JSON.stringify(c)}`);
    } else if (op === 1) {
      const p = at();
      const len = rng.range(1, 8);
      let ins = '';
      for (let i = 0; i < len; i++) ins += alphabet[rng.int(alphabet.length)];
      s = s.slice(0, p) + ins + s.slice(p);
      steps.push(`insert ${JSON.stringify(ins)} at ${p}`);
    } else if (op === 2 && s.length > 0) {
      const p = rng.int(s.length);
      const len = rng.range(1, 32);
      s = s.slice(0, p) + s.slice(p + len);
      steps.push(`delete ${len} chars at ${p}`);
    } else if (op === 3 && s.length > 0) {
      // A substring repeated many times: nesting, substitutions, very long lines.
      const p = rng.int(s.length);
      const len = rng.range(1, Math.min(64, s.length - p));
      const times = rng.pick([2, 16, 256, 4096]);
      s = s.slice(0, p) + s.slice(p, p + len).repeat(times) + s.slice(p + len);
      steps.push(`repeat chars ${p}..${p + len} ${times} times`);
    } else if (op === 4 && s.length > 0) {
      const p = rng.int(s.length);
      const q = rng.int(s.length);
      const len = rng.range(1, 64);
      s = s.slice(0, q) + s.slice(p, p + len) + s.slice(q);
      steps.push(`copy chars ${p}..${p + len} to ${q}`);
    } else if (op === 5) {
      const p = at();
      s = s.slice(0, p);
      steps.push(`truncate at ${p}`);
    } else if (op === 6) {
      const p = at();
      const c = rng.pick(['\0', '\r', '\t', ' ', '\u2028', '\uFFFD', '\\', ':', '/', '-', '(', ')', '\n']);
      const times = rng.pick([1, 1, 2, 1000]);
      s = s.slice(0, p) + c.repeat(times) + s.slice(p);
      steps.push(`insert ${JSON.stringify(c)}×${times} at ${p}`);
    } else {
      const p = at();
      const len = rng.pick([100, 5000, 70_000, 1 << 20]);
      s = s.slice(0, p) + alphabet[rng.int(alphabet.length)]!.repeat(len) + s.slice(p);
      steps.push(`insert a run of ${len} chars at ${p}`);
    }
  }
  return { value: s, steps };
}
