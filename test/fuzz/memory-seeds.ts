// Seeds for the targets that read a process's memory rather than its files: a stack sample
// (registers, frame-pointer walk, stack snapshot) for the leaf repair, DWARF expressions as a
// CFA rule carries them, and a memory image of a Go process (runtime.allgs, its goroutines,
// their labels and stacks) for the goroutine reader. Built well-formed, then mutated.

import type { GoRuntimeOffsets } from '../../src/go/runtime-offsets.js';
import type { Rng } from './rng.js';

/** A stack sample whose return addresses lie in `text` (function addresses of the unwound file). */
export function stackSample(text: number[], rng: Rng): Buffer {
  const sp = 0x7ffd_1234_0000;
  const snapshot = Buffer.alloc(4096);
  const words = snapshot.length / 8;
  // Frames of 4 to 16 words: [locals…, saved rbp, return address].
  const rets: number[] = [];
  for (let w = rng.range(2, 6); w + 2 < words; w += rng.range(4, 16)) {
    const ret = rng.pick(text) + rng.range(1, 64);
    snapshot.writeBigUInt64LE(BigInt(sp + (w + 8) * 8), w * 8);
    snapshot.writeBigUInt64LE(BigInt(ret), (w + 1) * 8);
    rets.push(ret);
  }
  for (let w = 0; w < words; w++) if (snapshot.readBigUInt64LE(w * 8) === 0n && rng.chance(0.3)) snapshot.writeBigUInt64LE(BigInt(rng.u32()), w * 8);
  const head = Buffer.alloc(20 * 8);
  const ip = rng.pick(text) + rng.range(0, 32);
  head.writeBigUInt64LE(BigInt(ip), 0);
  head.writeBigUInt64LE(BigInt(sp), 8);
  head.writeBigUInt64LE(BigInt(sp + 0x40), 16);
  const fp = [ip, ...rets.slice(1, 12)];
  head.writeBigUInt64LE(BigInt(fp.length), 24);
  fp.forEach((a, i) => head.writeBigUInt64LE(BigInt(a), 32 + i * 8));
  return Buffer.concat([head, snapshot]);
}

/** Stack addresses worth planting in a mutated sample. */
export function stackPointers(text: number[]): number[] {
  const sp = 0x7ffd_1234_0000;
  return [sp, sp + 8, sp + 0x40, sp + 0x800, sp + 4088, sp - 8, ...text.slice(0, 16)];
}

/** Length-prefixed DWARF expressions of the kinds CFA rules use. */
export function dwarfExpressions(): Buffer {
  const exprs = [
    // PLT stubs: breg7 8; breg16 0; lit15; and; lit11; ge; lit3; shl; plus
    [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22],
    // Signal frames: breg7 160; deref
    [0x77, 0xa0, 0x01, 0x06],
    // breg6 16; deref; plus_uconst 8
    [0x76, 0x10, 0x06, 0x23, 0x08],
    // const4u 0x1000; dup; mul; const1u 32; shr; const8u …; xor
    [0x0c, 0x00, 0x10, 0x00, 0x00, 0x12, 0x1e, 0x08, 0x20, 0x25, 0x0e, 1, 2, 3, 4, 5, 6, 7, 8, 0x27],
    // consts -1; neg; not; swap; over; shra; lit2; shl
    [0x11, 0x7f, 0x1f, 0x20, 0x30, 0x16, 0x14, 0x26, 0x32, 0x24],
    // reg3; breg4 -8; minus; lit0; ne; over; or
    [0x53, 0x74, 0x78, 0x1c, 0x30, 0x2e, 0x14, 0x21],
  ];
  return Buffer.from(exprs.flatMap((e) => [e.length, ...e]));
}

export const GO_IMAGE_BASE = 0x1000_0000;

/** A Go process's memory: allgs → goroutines → m, labels, frame-pointer chains on their stacks. */
export function goImage(o: GoRuntimeOffsets): { image: Buffer; pointers: number[] } {
  const base = GO_IMAGE_BASE;
  const img = Buffer.alloc(256 << 10);
  const put = (addr: number, v: number) => img.writeBigUInt64LE(BigInt(v), addr - base);
  const n = 16;
  const array = base + 0x100;
  put(base, array);
  put(base + 8, n);
  put(base + 16, n);
  const strings = base + 0x38000;
  let strAt = strings;
  const goString = (at: number, s: string) => {
    img.write(s, strAt - base, 'latin1');
    put(at + o.labels.string.ptr, strAt);
    put(at + o.labels.string.len, s.length);
    strAt += s.length;
  };
  const pointers: number[] = [base, array];
  for (let i = 0; i < n; i++) {
    const g = base + 0x1000 + i * 0x800;
    const m = base + 0x20000 + i * 0x200;
    const lo = base + 0x28000 + i * 0x800;
    put(array + i * 8, g);
    put(g + o.g.goid, i + 1);
    put(g + o.g.m, m);
    put(m + o.m.curg, g);
    put(m + o.m.g0, g + 0x400);
    put(g + o.g.stackLo, lo);
    put(g + o.g.stackHi, lo + 0x800);
    img.writeUInt32LE(4, g + o.g.atomicstatus - base);
    img[g + o.g.waitreason - base] = 7;
    // Six frames: [next fp, return address].
    let fp = lo + 0x100;
    put(g + o.g.schedSp, fp - 16);
    put(g + o.g.schedPc, 0x40_1000 + i * 16);
    put(g + o.g.schedBp, fp);
    for (let f = 0; f < 6; f++) {
      const next = f === 5 ? 0 : fp + 0x40;
      put(fp, next);
      put(fp + 8, 0x40_2000 + f * 32);
      fp = next;
    }
    const labelMap = base + 0x10000 + i * 0x100;
    put(g + o.g.labels, labelMap);
    if (o.labels.format === 'slice') {
      const L = o.labels;
      const cells = base + 0x18000 + i * 0x200;
      put(labelMap + L.slice.array, cells);
      put(labelMap + L.slice.len, 3);
      put(labelMap + L.slice.cap, 3);
      for (let c = 0; c < 3; c++) {
        goString(cells + c * L.label.size + L.label.key, `key${c}`);
        goString(cells + c * L.label.size + L.label.value, `value-${i}-${c}`);
      }
    } else {
      const L = o.labels;
      const hmap = base + 0x18000 + i * 0x200;
      const bucket = base + 0x30000 + i * L.bucket.size;
      put(labelMap, hmap);
      put(hmap + L.hmap.count, 3);
      img[hmap + L.hmap.B - base] = 0;
      put(hmap + L.hmap.buckets, bucket);
      for (let c = 0; c < 3; c++) {
        img[bucket + L.bucket.tophash + c - base] = 0x80 + c;
        goString(bucket + L.bucket.keys + c * L.string.size, `key${c}`);
        goString(bucket + L.bucket.values + c * L.string.size, `value-${i}-${c}`);
      }
    }
    pointers.push(g, m, lo + 0x100, labelMap);
  }
  return { image: img, pointers };
}
