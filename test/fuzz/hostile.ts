// Hand-made hostile inputs, one per known pattern: the shapes an attacker would build on
// purpose and random mutation seldom hits. Each is made from a real seed (and judged against
// that seed's time, like any mutation) and run through every target it concerns, with the
// bounds of harness.ts.

import { readFileSync } from 'node:fs';
import { buildElf, chdr, functionSymbols, SHF_ALLOC, SHF_COMPRESSED, SHF_EXECINSTR, SHT_NOTE, SHT_PROGBITS, SHT_STRTAB, SHT_SYMTAB, zdebug, zlibBomb } from './elf-builder.js';
import { mapElf } from './elf-map.js';
import { GO_IMAGE_BASE } from './memory-seeds.js';
import type { Seed } from './seeds.js';

export interface HostileInput {
  name: string;
  /** The seed it is made from, whose time is the yardstick. */
  seed: string;
  targets: string[];
  make(seed: Seed, bytes: Buffer | string): Buffer | string;
  /**
   * A well-formed twin of the same shape and size, when the seed is no fair yardstick (a large
   * synthetic structure costs its parse even when it is well-formed).
   */
  benign?(seed: Seed, bytes: Buffer | string): Buffer | string;
}

function section(b: Buffer, name: string): { start: number; end: number } {
  const r = mapElf(b).regions.find((x) => x.label === name);
  if (!r) throw new Error(`no ${name} in the seed`);
  return r;
}

function fill(b: Buffer, name: string, byte: number, skip = 0): Buffer {
  const out = Buffer.from(b);
  const r = section(out, name);
  out.fill(byte, r.start + skip, r.end);
  return out;
}

function elfBytes(seed: Seed, bytes: Buffer | string): Buffer {
  return typeof bytes === 'string' ? readFileSync(seed.path!) : bytes;
}

/** The pclntab header's words (ptrSize 8): 0 nfunc … 3 funcnametab, 4 cutab, 5 filetab, 6 pctab, 7 functab. */
function pclnWord(b: Buffer, i: number): number {
  const r = section(b, '.gopclntab');
  return Number(b.readBigUInt64LE(r.start + 8 + i * 8));
}

/** The memory image with allgs = { array: itself, len }. */
function allgsOverItself(image: Buffer, len: bigint): Buffer {
  const b = Buffer.from(image);
  b.writeBigUInt64LE(BigInt(GO_IMAGE_BASE), 0);
  b.writeBigUInt64LE(len, 8);
  return b;
}

/** A copy with every "\xff Go buildinf:" magic spoiled. */
function withoutBuildInfo(bytes: Buffer): Buffer {
  const b = Buffer.from(bytes);
  const magic = Buffer.from('\xff Go buildinf:', 'latin1');
  for (let at = b.indexOf(magic); at >= 0; at = b.indexOf(magic, at + 1)) b[at + 1] = 0x58;
  return b;
}

function sub(i: number): string {
  return `S${i.toString(36).toUpperCase()}_`;
}

export const HOSTILE: HostileInput[] = [
  {
    name: 'zlib bombs: 256 KiB of stream claiming and holding 256 MiB (.debug_info, .zdebug_abbrev, .debug_frame)',
    seed: 'c-gz',
    targets: ['dwarf', 'eh-frame', 'symbolize-worker'],
    make() {
      const stream = zlibBomb(256);
      const size = 256 << 20;
      return buildElf({
        sections: [
          { name: '.debug_info', type: SHT_PROGBITS, flags: SHF_COMPRESSED, data: Buffer.concat([chdr(size), stream]) },
          { name: '.zdebug_abbrev', type: SHT_PROGBITS, data: zdebug(size, stream) },
          { name: '.debug_frame', type: SHT_PROGBITS, flags: SHF_COMPRESSED, data: Buffer.concat([chdr(size), stream]) },
        ],
      });
    },
  },
  {
    name: '20,000 section names pointing into 1 MiB without a zero',
    seed: 'c-dwarf5',
    targets: ['elf-file', 'elf-symbols', 'symbolize-worker'],
    make: () => buildElf({ sections: Array.from({ length: 20_000 }, () => ({ name: 'x', type: SHT_PROGBITS, nameOff: 0 })), shstrtab: Buffer.alloc(1 << 20, 0x41) }),
  },
  {
    name: 'extended section numbering that claims 65535 sections',
    seed: 'c-dwarf5',
    targets: ['elf-file', 'elf-symbols'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const shoff = Number(b.readBigUInt64LE(40));
      b.writeUInt16LE(0, 60);
      b.writeBigUInt64LE(65535n, shoff + 32);
      return b;
    },
  },
  {
    name: '191 symbol tables naming the same 100,000 symbols, 2001 note sections naming the same megabyte',
    seed: 'c-dwarf5',
    targets: ['elf-file', 'elf-symbols', 'symbolize-worker'],
    make() {
      const syms = functionSymbols(100_000);
      return buildElf({
        sections: [
          { name: '.text', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addr: 0x1000, data: Buffer.alloc(16) },
          { name: '.strtab', type: SHT_STRTAB, data: Buffer.from('\0f\0') },
          { name: '.symtab', type: SHT_SYMTAB, link: 2, entsize: 24, data: syms },
          ...Array.from({ length: 190 }, () => ({ name: '.symtab', type: SHT_SYMTAB, link: 2, entsize: 24, sameAs: 2 })),
          { name: '.note', type: SHT_NOTE, data: Buffer.alloc(1 << 20, 0x01) },
          ...Array.from({ length: 2000 }, () => ({ name: '.note', type: SHT_NOTE, sameAs: 193 })),
        ],
      });
    },
  },
  {
    name: '1024 PT_LOAD headers over the whole of a Go binary without build info',
    seed: 'go-stripped',
    targets: ['go-buildinfo', 'go-runtime', 'gopclntab', 'elf-file'],
    // The same binary without build info and with its own program headers: the same fallback
    // scans, once.
    benign: (seed, bytes) => withoutBuildInfo(elfBytes(seed, bytes)),
    make(seed, bytes) {
      const b = withoutBuildInfo(elfBytes(seed, bytes));
      const n = 1024;
      const table = Buffer.alloc(n * 56);
      for (let i = 0; i < n; i++) {
        table.writeUInt32LE(1, i * 56);
        table.writeUInt32LE(4, i * 56 + 4);
        table.writeBigUInt64LE(BigInt(0x400000 + i * 0x1000_0000), i * 56 + 16);
        table.writeBigUInt64LE(BigInt(b.length), i * 56 + 32);
        table.writeBigUInt64LE(BigInt(b.length), i * 56 + 40);
      }
      const out = Buffer.concat([b, table]);
      out.writeBigUInt64LE(BigInt(b.length), 32);
      out.writeUInt16LE(n, 56);
      return out;
    },
  },
  {
    name: 'a .strtab without a zero after its first byte (every symbol name runs to its end)',
    seed: 'c-dwarf5',
    targets: ['elf-symbols', 'symbolize-worker'],
    make: (seed, bytes) => fill(elfBytes(seed, bytes), '.strtab', 0x41, 1),
  },
  {
    name: 'a .gopclntab whose function-name and file tables have no zero (names of 40 KB and more)',
    seed: 'go',
    targets: ['gopclntab', 'symbolize-worker', 'go-runtime'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const base = section(b, '.gopclntab').start;
      b.fill(0x41, base + pclnWord(b, 3), base + pclnWord(b, 4));
      b.fill(0x42, base + pclnWord(b, 5), base + pclnWord(b, 6));
      return b;
    },
  },
  {
    name: 'a .gopclntab whose pc-value tables are varints that never end',
    seed: 'go-stripped',
    targets: ['gopclntab', 'unwind-tables', 'symbolize-worker'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const base = section(b, '.gopclntab').start;
      b.fill(0x80, base + pclnWord(b, 6), base + pclnWord(b, 7));
      return b;
    },
  },
  {
    name: 'a .gopclntab that claims 9,999,999 functions',
    seed: 'go',
    targets: ['gopclntab', 'go-buildinfo', 'symbolize-worker'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      b.writeBigUInt64LE(9_999_999n, section(b, '.gopclntab').start + 8);
      return b;
    },
  },
  {
    name: 'a .debug_str without a zero',
    seed: 'c-dwarf5',
    targets: ['dwarf'],
    make: (seed, bytes) => fill(elfBytes(seed, bytes), '.debug_str', 0x41),
  },
  {
    name: '1000 DWARF units naming successive entries of one 20,000-entry abbreviation table',
    seed: 'c-dwarf5',
    targets: ['dwarf'],
    make: () => unitsOverOneAbbrevTable(false),
    // The same units all at the table's start: it is parsed once.
    benign: () => unitsOverOneAbbrevTable(true),
  },
  {
    name: 'a .gopclntab whose pc-value entries never advance the pc',
    seed: 'go-stripped',
    targets: ['gopclntab', 'unwind-tables', 'symbolize-worker'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const base = section(b, '.gopclntab').start;
      for (let p = base + pclnWord(b, 6); p + 1 < base + pclnWord(b, 7); p += 2) {
        b[p] = 0x02; // value +1
        b[p + 1] = 0x00; // pc +0
      }
      return b;
    },
  },
  {
    name: 'a .debug_abbrev of LEB128s that never end',
    seed: 'c-dwarf5',
    targets: ['dwarf'],
    make: (seed, bytes) => fill(elfBytes(seed, bytes), '.debug_abbrev', 0x80),
  },
  {
    name: 'an .eh_frame_hdr whose every entry points at one FDE',
    seed: 'libc',
    targets: ['eh-frame', 'unwind-tables'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const r = section(b, '.eh_frame_hdr');
      const fde = b.readInt32LE(r.start + 16);
      for (let p = r.start + 12; p + 8 <= r.end; p += 8) b.writeInt32LE(fde, p + 4);
      return b;
    },
  },
  {
    name: 'an .eh_frame_hdr whose every entry points at one FDE that claims the whole section',
    seed: 'libc',
    targets: ['eh-frame', 'unwind-tables'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const r = section(b, '.eh_frame_hdr');
      const eh = section(b, '.eh_frame');
      const fde = b.readInt32LE(r.start + 16);
      for (let p = r.start + 12; p + 8 <= r.end; p += 8) b.writeInt32LE(fde, p + 4);
      // Table entries are relative to .eh_frame_hdr's address; both sections lie in one segment,
      // so the FDE's file offset is .eh_frame_hdr's plus the entry.
      const at = r.start + fde;
      if (!(at >= eh.start && at + 8 < eh.end)) throw new Error('the FDE is not in .eh_frame');
      b.writeUInt32LE(eh.end - at - 4, at);
      return b;
    },
  },
  {
    name: 'FDEs whose CIE pointer points back at themselves',
    seed: 'libc',
    targets: ['eh-frame', 'unwind-tables'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const r = section(b, '.eh_frame');
      for (let p = r.start; p + 8 <= r.end; ) {
        const len = b.readUInt32LE(p);
        if (len === 0 || len === 0xffffffff) break;
        if (b.readUInt32LE(p + 4) !== 0) b.writeUInt32LE(4, p + 4); // 4 back from the field: the entry's own start
        p += 4 + len;
      }
      return b;
    },
  },
  {
    name: 'CFA programs and augmentations of LEB128s that never end',
    seed: 'libc',
    targets: ['eh-frame', 'unwind-tables'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const r = section(b, '.eh_frame');
      for (let p = r.start; p + 8 <= r.end; ) {
        const len = b.readUInt32LE(p);
        if (len === 0 || len === 0xffffffff) break;
        if (b.readUInt32LE(p + 4) !== 0 && len > 12) b.fill(0x80, p + 16, p + 4 + len);
        p += 4 + len;
      }
      return b;
    },
  },
  {
    name: 'an .eh_frame whose first entry has a 64-bit length that wraps around to itself',
    seed: 'libc',
    targets: ['eh-frame', 'unwind-tables'],
    make(seed, bytes) {
      const b = Buffer.from(elfBytes(seed, bytes));
      const r = section(b, '.eh_frame');
      b.writeUInt32LE(0xffffffff, r.start);
      b.writeBigUInt64LE((1n << 64n) - 12n, r.start + 4);
      // .eh_frame_hdr would still find the others: make it useless too.
      const h = section(b, '.eh_frame_hdr');
      b[h.start] = 0;
      return b;
    },
  },
  {
    name: 'DWARF expressions shifting by 2^30 - 1, 125 times',
    seed: 'cfa-expressions',
    targets: ['dwarf-expr'],
    make() {
      const ops: number[] = [];
      for (let i = 0; i < 25; i++) ops.push(0x31, 0x0c, 0xff, 0xff, 0xff, 0x3f, 0x24, 0x13);
      const one = [ops.length + 1, ...ops, 0x30];
      return Buffer.from([...one, ...one, ...one, ...one, ...one]);
    },
  },
  {
    name: 'C++ names whose substitutions double the text with every argument',
    seed: 'names-cxx',
    targets: ['demangle'],
    make(_seed, text) {
      let s = '_Z1fI1BI1AS1_E';
      for (let k = 2; k <= 200; k++) s += `S0_I${sub(k)}${sub(k)}E`;
      s += 'E';
      const names = String(text).split('\n');
      // Every tenth name: as many names as the seed, of which 10% cost the most they can.
      return names.map((n, i) => (i % 10 === 0 ? s : n)).join('\n');
    },
  },
  {
    name: 'goroutine frame pointers that point at themselves, overflow buckets that point at themselves',
    seed: 'map-labels',
    targets: ['goroutines'],
    make(_seed, bytes) {
      const b = Buffer.from(bytes as Buffer);
      // Frames (0x28000…) and buckets (0x30000…): every word that points into either points
      // at itself instead.
      for (let o = 0x28000; o + 8 <= 0x38000; o += 8) {
        const v = Number(b.readBigUInt64LE(o));
        if (v >= GO_IMAGE_BASE + 0x28000 && v < GO_IMAGE_BASE + 0x38000) b.writeBigUInt64LE(BigInt(GO_IMAGE_BASE + o), o);
      }
      for (let o = 0x30000 + 264; o < 0x31100; o += 272) b.writeBigUInt64LE(BigInt(GO_IMAGE_BASE + o - 264), o);
      return b;
    },
  },
  {
    name: 'allgs claiming 2^40 goroutines, its array pointing at itself',
    seed: 'slice-labels',
    targets: ['goroutines'],
    make: (_seed, bytes) => allgsOverItself(bytes as Buffer, 1n << 40n),
    // The walk may take as many goroutines as the readable memory holds: the yardstick is an
    // allgs of exactly that many.
    benign: (_seed, bytes) => allgsOverItself(bytes as Buffer, BigInt((bytes as Buffer).length / 8)),
  },
  {
    name: '/proc/PID/maps of 65,530 mappings (vm.max_map_count), every 100th with a 4 KB path',
    seed: 'maps-self',
    targets: ['proc-maps'],
    make() {
      const long = '/' + 'p'.repeat(4000);
      const lines: string[] = [];
      for (let i = 0; i < 65_530; i++) {
        const start = 0x10000 + i * 0x1000;
        lines.push(`${start.toString(16)}-${(start + 0x1000).toString(16)} r-xp 00000000 08:01 ${i} ${i % 100 ? '/usr/lib/x86_64-linux-gnu/libexample.so.' : long}${i}`);
      }
      return lines.join('\n') + '\n';
    },
  },
  {
    name: 'a cgroup path of 2,000 levels, each almost a container id',
    seed: 'cgroup-samples',
    targets: ['proc-cgroup'],
    make: () => `0::/${Array.from({ length: 2000 }, (_, i) => `docker-${'a'.repeat(63)}${i % 10}x.scope`).join('/')}\n`,
  },
];

/** 1000 DWARF units over one 20,000-entry abbreviation table: at successive entries, or all at its start. */
function unitsOverOneAbbrevTable(shared: boolean): Buffer {
  const ab: number[] = [];
  for (let i = 1; i <= 20_000; i++) ab.push(0x80 | (i & 0x7f), (i >> 7) & 0x7f, 0x13, 0, 0, 0);
  const info = Buffer.alloc(1000 * 12);
  for (let k = 0; k < 1000; k++) {
    info.writeUInt32LE(8, k * 12);
    info.writeUInt16LE(4, k * 12 + 4);
    info.writeUInt32LE(shared ? 0 : k * 6, k * 12 + 6);
    info[k * 12 + 10] = 8;
  }
  return buildElf({ sections: [{ name: '.debug_info', type: SHT_PROGBITS, data: info }, { name: '.debug_abbrev', type: SHT_PROGBITS, data: Buffer.from(ab) }] });
}
