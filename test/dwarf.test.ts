// The DWARF reader against Go's debug/dwarf: struct members, their offsets, their types' DIEs,
// names, sizes and targets, for the Go runtime's structs in binaries of every supported Go
// release (DWARF 4 up to 1.24, DWARF 5 from 1.25, sections compressed with SHF_COMPRESSED) and
// for a C program built as DWARF 2 to 5, 64-bit DWARF, and with compressed (.zdebug_*,
// SHF_COMPRESSED) sections. Then corrupt and truncated DWARF, which must never throw.

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { ElfFile } from '../src/elf/elf-file.js';
import { DwarfInfo, type DwarfSections } from '../src/elf/dwarf.js';
import { readDebugSection } from '../src/elf/dwarf-sections.js';
import { CfiTable } from '../src/unwind/eh-frame.js';
import { buildElf, chdr, SHF_COMPRESSED, SHT_PROGBITS, zdebug, zlibBomb } from './fuzz/elf-builder.js';
import { buildC, buildGoModule, execAsync, GO_RELEASES, pool, workDir } from './helpers.js';


/** The runtime's structs (and pprof's) worth checking; each release has some of them. */
const GO_TYPES = [
  'runtime.g',
  'runtime.m',
  'runtime.p',
  'runtime.gobuf',
  'runtime.hmap',
  'hash<string,string>',
  'bucket<string,string>',
  'runtime/pprof.labelMap',
  'runtime/pprof.LabelSet',
  'runtime/pprof.label',
  'internal/runtime/pprof/label.Set',
  'internal/runtime/pprof/label.Label',
  'internal/runtime/maps.Map',
  'internal/abi.Type',
  'runtime.no_such_type',
];

// Uses runtime/pprof labels, so pprof's label types are linked in.
const GO_PROGRAM = `package main

import (
	"context"
	"fmt"
	"runtime/pprof"
)

func main() {
	pprof.Do(context.Background(), pprof.Labels("k", "v"), func(ctx context.Context) {
		fmt.Println(pprof.Label(ctx, "k"))
	})
}
`;

// The oracle: Go's debug/dwarf. For each name, the first struct/union/class definition of
// that name: its DIE offset, size and members; for each member its offset (bit offset for
// bitfields) and its type's DIE offset, tag, name, size, target and Go kind.
const ORACLE = `package main

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"os"
)

type member struct {
	Name       string \`json:"name"\`
	Offset     int64  \`json:"offset"\`
	BitOffset  int64  \`json:"bitOffset"\`
	Type       int64  \`json:"type"\`
	TypeTag    string \`json:"typeTag"\`
	TypeName   string \`json:"typeName"\`
	TypeSize   int64  \`json:"typeSize"\`
	TypeTarget int64  \`json:"typeTarget"\`
	TypeGoKind int64  \`json:"typeGoKind"\`
}

type result struct {
	Offset  int64    \`json:"offset"\`
	Tag     string   \`json:"tag"\`
	Size    int64    \`json:"size"\`
	Members []member \`json:"members"\`
}

func uleb(b []byte) int64 {
	var v int64
	for i, c := range b {
		v |= int64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			break
		}
	}
	return v
}

func main() {
	f, err := elf.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	d, err := f.DWARF()
	if err != nil {
		panic(err)
	}
	want := map[string]bool{}
	for _, n := range os.Args[2:] {
		want[n] = true
	}
	out := map[string]result{}
	r := d.Reader()
	look := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			panic(err)
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		isStruct := e.Tag == dwarf.TagStructType || e.Tag == dwarf.TagUnionType || e.Tag == dwarf.TagClassType
		if _, done := out[name]; !isStruct || !want[name] || done || e.Val(dwarf.AttrDeclaration) != nil {
			continue
		}
		size, _ := e.Val(dwarf.AttrByteSize).(int64)
		res := result{Offset: int64(e.Offset), Tag: e.Tag.String(), Size: size, Members: []member{}}
		for e.Children {
			c, err := r.Next()
			if err != nil {
				panic(err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			if c.Tag != dwarf.TagMember && c.Tag != dwarf.TagInheritance {
				r.SkipChildren()
				continue
			}
			m := member{BitOffset: -1, TypeTarget: -1, TypeGoKind: -1, TypeSize: -1}
			m.Name, _ = c.Val(dwarf.AttrName).(string)
			switch loc := c.Val(dwarf.AttrDataMemberLoc).(type) {
			case int64:
				m.Offset = loc
			case []byte:
				m.Offset = uleb(loc[1:])
			}
			if b, ok := c.Val(dwarf.AttrDataBitOffset).(int64); ok {
				m.BitOffset = b
			}
			t, _ := c.Val(dwarf.AttrType).(dwarf.Offset)
			m.Type = int64(t)
			look.Seek(t)
			te, err := look.Next()
			if err != nil || te == nil {
				panic("no type DIE")
			}
			m.TypeTag = te.Tag.String()
			m.TypeName, _ = te.Val(dwarf.AttrName).(string)
			if target, ok := te.Val(dwarf.AttrType).(dwarf.Offset); ok {
				m.TypeTarget = int64(target)
			}
			if k, ok := te.Val(dwarf.Attr(0x2900)).(int64); ok {
				m.TypeGoKind = k
			}
			if typ, err := d.Type(t); err == nil {
				m.TypeSize = typ.Size()
			}
			res.Members = append(res.Members, m)
			r.SkipChildren()
		}
		out[name] = res
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
`;

interface OracleMember {
  name: string;
  offset: number;
  bitOffset: number;
  type: number;
  typeTag: string;
  typeName: string;
  typeSize: number;
  typeTarget: number;
  typeGoKind: number;
}

type Oracle = Record<string, { offset: number; tag: string; size: number; members: OracleMember[] }>;

const C_PROGRAM = `#include <stdint.h>
struct node;
typedef struct node node_t;
struct inner { char c; double d; };
union number { int i; float f; char bytes[8]; };
struct node {
  uint64_t id;
  node_t *next;
  const volatile int cv;
  struct inner grid[2][3];
  union number num;
  unsigned flags : 3;
  unsigned more : 7;
  char name[16];
  struct { int x, y; } point;
  int (*fn)(int);
  long tail[];
};
struct node g_node;
union number g_number;
int main(void) { return (int)g_node.id + g_number.i; }
`;
const C_TYPES = ['node', 'inner', 'number', 'no_such_struct'];

/** debug/dwarf's tag names for the kinds of this reader. */
const TAG_OF: Record<string, string[]> = {
  struct: ['StructType'],
  slice: ['StructType'],
  string: ['StructType'],
  interface: ['StructType'],
  union: ['UnionType'],
  class: ['ClassType'],
  pointer: ['PointerType'],
  reference: ['ReferenceType', 'RvalueReferenceType'],
  typedef: ['Typedef'],
  map: ['Typedef'],
  qualifier: ['ConstType', 'VolatileType', 'RestrictType', 'AtomicType'],
  base: ['BaseType'],
  array: ['ArrayType'],
  enum: ['EnumerationType'],
  func: ['SubroutineType'],
  unspecified: ['UnspecifiedType'],
};

const dir = workDir('dwarf');

function buildGoProgram(name: string, source: string, toolchain: string): Promise<string> {
  return buildGoModule(dir, name, { 'main.go': source }, { env: { GOTOOLCHAIN: toolchain, CGO_ENABLED: '0', GOARCH: 'amd64' } });
}

function dwarfOf(bin: string): DwarfInfo {
  const d = ElfFile.withFile(bin, (elf) => DwarfInfo.fromElf(elf));
  assert.ok(d, `${bin}: no DWARF`);
  return d;
}

/** Compares what this reader says about `names` in `bin` with the oracle, field by field. */
function compareWithOracle(oracle: string, bin: string, names: string[]): { structs: number; members: number } {
  const want = JSON.parse(execFileSync(oracle, [bin, ...names], { maxBuffer: 64 << 20 }).toString()) as Oracle;
  const d = dwarfOf(bin);
  let members = 0;
  for (const name of names) {
    const got = d.findStruct(name);
    const exp = want[name];
    if (!exp) {
      assert.equal(got, undefined, `${bin}: ${name} should not be found`);
      continue;
    }
    assert.ok(got, `${bin}: ${name} not found`);
    assert.equal(got.offset, exp.offset, `${name}: DIE offset`);
    assert.ok(TAG_OF[got.kind].includes(exp.tag), `${name}: kind ${got.kind} for ${exp.tag}`);
    assert.equal(got.size, exp.size, `${name}: size`);
    assert.ok(got.members);
    assert.equal(got.members.length, exp.members.length, `${name}: member count`);
    for (const [i, m] of got.members.entries()) {
      const e = exp.members[i];
      const where = `${name}.${e.name}`;
      assert.equal(m.name, e.name, `${name}: member ${i}`);
      assert.equal(m.offset, e.bitOffset >= 0 ? Math.floor(e.bitOffset / 8) : e.offset, `${where}: offset`);
      assert.equal(m.type, e.type, `${where}: type DIE`);
      assert.equal(m.typeName, e.typeName || undefined, `${where}: type name`);
      if (e.typeSize >= 0) assert.equal(m.typeSize, e.typeSize, `${where}: type size`);
      const t = d.type(m.type);
      assert.ok(t, `${where}: type`);
      assert.ok(TAG_OF[t.kind].includes(e.typeTag), `${where}: kind ${t.kind} for ${e.typeTag}`);
      assert.equal(t.target, e.typeTarget >= 0 ? e.typeTarget : undefined, `${where}: type target`);
      assert.equal(t.goKind, e.typeGoKind >= 0 ? e.typeGoKind : undefined, `${where}: Go kind`);
      members++;
    }
  }
  return { structs: Object.keys(want).length, members };
}

describe('dwarf', () => {
  let oracle = '';
  const goBins = new Map<string, string>();
  const missing: string[] = [];
  let cBins: Record<string, string> = {};

  before(async () => {
    const jobs: Array<() => Promise<unknown>> = [
      async () => (oracle = await buildGoProgram('oracle', ORACLE, 'local')),
      ...GO_RELEASES.map((r) => async () => {
        try {
          await execAsync('go', ['version'], { env: { GOTOOLCHAIN: `go${r}`, GOFLAGS: '' } });
        } catch {
          missing.push(r);
          return;
        }
        goBins.set(r, await buildGoProgram(`labels-${r}`, GO_PROGRAM, `go${r}`));
      }),
    ];
    await pool(Math.max(2, availableParallelism()), jobs);
    const c = (name: string, flags: string[]): string => buildC(dir, name, C_PROGRAM, flags);
    cBins = {
      dwarf2: c('c-dwarf2', ['-gdwarf-2']),
      dwarf3: c('c-dwarf3', ['-gdwarf-3']),
      dwarf4: c('c-dwarf4', ['-gdwarf-4']),
      dwarf5: c('c-dwarf5', ['-gdwarf-5']),
      dwarf64: c('c-dwarf64', ['-gdwarf-5', '-gdwarf64']),
      chdr: c('c-chdr', ['-gdwarf-5', '-gz=zlib']),
    };
    // clang's DWARF 5 names strings by index (DW_FORM_strx1 through .debug_str_offsets).
    cBins.clang = join(dir, 'c-clang');
    execFileSync('clang', ['-g', '-gdwarf-5', '-o', cBins.clang, join(dir, 'c-dwarf5.c')]);
    cBins.zdebug = join(dir, 'c-zdebug');
    execFileSync('objcopy', ['--compress-debug-sections=zlib-gnu', cBins.dwarf4, cBins.zdebug]);
  });

  it('agrees with debug/dwarf on the runtime structs of every supported Go release', (t) => {
    if (missing.length > 0) t.diagnostic(`toolchains not available: ${missing.join(', ')}`);
    assert.ok(goBins.size > 0, 'no Go release could be built');
    const versions = new Set<number>();
    for (const [release, bin] of goBins) {
      const { structs, members } = compareWithOracle(oracle, bin, GO_TYPES);
      assert.ok(structs >= 6 && members > 100, `${release}: only ${structs} structs, ${members} members`);
      for (const v of dwarfOf(bin).versions) versions.add(v);
    }
    if (goBins.has('1.21.13') && goBins.has('1.27.4')) assert.deepEqual([...versions].sort(), [4, 5]);
  });

  it('agrees with debug/dwarf on a C program as DWARF 2, 3, 4, 5 and 64-bit DWARF, compressed or not', () => {
    for (const [variant, bin] of Object.entries(cBins)) {
      const { structs, members } = compareWithOracle(oracle, bin, C_TYPES);
      assert.equal(structs, 3, variant);
      assert.ok(members >= 15, `${variant}: ${members} members`);
    }
    assert.deepEqual(dwarfOf(cBins.dwarf2).versions, [2]);
    assert.deepEqual(dwarfOf(cBins.dwarf3).versions, [3]);
    assert.deepEqual(dwarfOf(cBins.dwarf4).versions, [4]);
    assert.deepEqual(dwarfOf(cBins.dwarf5).versions, [5]);
    assert.equal(dwarfOf(cBins.dwarf64).hasDwarf64, true);
    assert.equal(dwarfOf(cBins.dwarf5).hasDwarf64, false);
  });

  it('reads compressed sections (SHF_COMPRESSED and .zdebug_*) as their uncompressed bytes', () => {
    const plain = ElfFile.withFile(cBins.dwarf4, (elf) => readDebugSection(elf, 'info'));
    const chdrElf = ElfFile.open(cBins.chdr);
    const zElf = ElfFile.open(cBins.zdebug);
    try {
      assert.ok(chdrElf.section('.debug_info')!.flags & 0x800, 'gcc -gz=zlib made SHF_COMPRESSED sections');
      assert.ok(zElf.section('.zdebug_info'), 'objcopy made .zdebug_ sections');
      assert.deepEqual(readDebugSection(zElf, 'info'), plain);
      assert.ok(readDebugSection(chdrElf, 'info')!.length > 0);
      assert.equal(readDebugSection(zElf, 'no_such_section'), undefined);
    } finally {
      chdrElf.close();
      zElf.close();
    }
    // Go compresses its sections too.
    const go = [...goBins.values()].at(-1)!;
    ElfFile.withFile(go, (elf) => assert.ok(elf.section('.debug_info')!.flags & 0x800));
  });

  it('follows member types through typedefs, pointers, arrays, Go slices and maps', () => {
    const c = dwarfOf(cBins.dwarf5);
    const node = c.findStruct('node')!;
    const next = c.member(node, 'next')!;
    assert.equal(c.pointee(next.type)?.name, 'node_t');
    assert.equal(c.resolve(c.pointee(next.type))?.offset, node.offset, 'node_t resolves to struct node');
    const grid = c.type(c.member(node, 'grid')!.type)!;
    assert.equal(grid.kind, 'array');
    assert.equal(grid.count, 6);
    assert.equal(grid.size, 6 * 16);
    assert.equal(c.resolve(grid.elem)?.name, 'inner');
    const cv = c.type(c.member(node, 'cv')!.type)!;
    assert.equal(cv.kind, 'qualifier');
    assert.equal(c.resolve(cv)?.name, 'int');
    assert.equal(c.findType('node_t', 'typedef')?.kind, 'typedef');
    assert.equal(c.findStruct('node_t')?.offset, node.offset, 'findStruct goes through typedefs');
    assert.equal(c.findType('node', 'struct')?.declaration, false);

    for (const [release, bin] of goBins) {
      const d = dwarfOf(bin);
      const g = d.findStruct('runtime.g')!;
      const m = d.pointee(d.member(g, 'm')!.type)!;
      assert.equal(d.resolve(m)?.offset, d.findStruct('runtime.m')?.offset, `${release}: g.m → runtime.m`);
      assert.equal(d.type(d.member(g, 'labels')!.type)?.name, 'unsafe.Pointer');
      const minor = Number(release.split('.')[1]);
      const labelMap = d.findType('runtime/pprof.labelMap', minor <= 23 ? 'map' : 'typedef');
      assert.ok(labelMap, `${release}: labelMap`);
      if (minor <= 23) {
        // map[string]string: a typedef of kind map to *hash<string,string>.
        assert.equal(labelMap.kind, 'map');
        assert.equal(d.type(labelMap.key!)?.kind, 'string');
        assert.equal(d.type(labelMap.elem!)?.name, 'string');
        const hash = d.pointee(labelMap)!;
        assert.equal(hash.name, 'hash<string,string>');
        const buckets = d.pointee(d.member(hash, 'buckets')!.type)!;
        assert.equal(buckets.name, 'bucket<string,string>');
        assert.equal(buckets.size, 272);
      } else {
        // struct { LabelSet } (1.24–1.25) or struct { label.Set } (1.26+), then []label.
        const lm = d.resolve(labelMap)!;
        assert.equal(lm.kind, 'struct');
        const set = d.resolve(lm.members![0].type)!;
        const list = d.resolve(set.members![0].type)!;
        assert.equal(list.kind, 'slice');
        assert.deepEqual(list.members!.map((x) => [x.name, x.offset]), [['array', 0], ['len', 8], ['cap', 16]]);
        const label = d.resolve(list.elem)!;
        assert.equal(label.size, 32);
        assert.deepEqual(label.members!.map((x) => [x.name.toLowerCase(), x.offset, d.resolve(x.type)?.kind]), [['key', 0, 'string'], ['value', 16, 'string']]);
      }
    }
  });

  it('finds the runtime types quickly, walking only the runtime units', (t) => {
    const bin = [...goBins.values()].at(-1)!;
    const elf = ElfFile.open(bin);
    try {
      const t0 = performance.now();
      const d = DwarfInfo.fromElf(elf)!;
      const t1 = performance.now();
      assert.ok(d.findStruct('runtime.g') && d.findStruct('runtime.m'));
      const t2 = performance.now();
      t.diagnostic(`${d.unitCount} units; sections ${(t1 - t0).toFixed(1)} ms, runtime.g and runtime.m ${(t2 - t1).toFixed(1)} ms`);
    } finally {
      elf.close();
    }
  });

  it('never throws on truncated or corrupted DWARF', () => {
    const sectionsOf = (bin: string): DwarfSections =>
      ElfFile.withFile(bin, (elf) => ({
        info: readDebugSection(elf, 'info')!,
        abbrev: readDebugSection(elf, 'abbrev')!,
        str: readDebugSection(elf, 'str'),
        lineStr: readDebugSection(elf, 'line_str'),
        strOffsets: readDebugSection(elf, 'str_offsets'),
      }));
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const probe = (s: DwarfSections, names: string[]): void => {
      const d = DwarfInfo.fromSections(s);
      if (!d) return;
      for (const n of names) {
        const t = d.findStruct(n);
        for (const m of t?.members ?? []) {
          d.resolve(m.type);
          d.pointee(m.type);
          d.type(m.type);
        }
        d.findType(n, 'typedef');
      }
      d.type(rand(s.info.length + 16));
    };
    const inputs: Array<[DwarfSections, string[]]> = [
      [sectionsOf(cBins.dwarf5), C_TYPES],
      [sectionsOf(cBins.dwarf2), C_TYPES],
      [sectionsOf(cBins.dwarf64), C_TYPES],
      [sectionsOf([...goBins.values()][0]), ['runtime.g', 'runtime.m']],
    ];
    let runs = 0;
    for (const [s, names] of inputs) {
      const full = DwarfInfo.fromSections(s)!.findStruct(names[0]);
      assert.ok(full);
      // Truncations: what is still there is read right, or not at all.
      for (let i = 0; i < 40; i++) {
        const cut = rand(s.info.length);
        probe({ ...s, info: s.info.subarray(0, cut) }, names);
        probe({ ...s, abbrev: s.abbrev.subarray(0, rand(s.abbrev.length)) }, names);
        const t = DwarfInfo.fromSections({ ...s, info: s.info.subarray(0, cut) })?.findStruct(names[0]);
        if (t) assert.equal(t.members?.length, full.members?.length);
        runs += 3;
      }
      // Bit flips and garbage bytes anywhere.
      for (let i = 0; i < 150; i++) {
        const info = Buffer.from(s.info);
        const abbrev = Buffer.from(s.abbrev);
        for (let k = 0; k < 1 + rand(8); k++) info[rand(info.length)] ^= 1 << rand(8);
        if (i % 3 === 0) abbrev[rand(abbrev.length)] = rand(256);
        if (i % 5 === 0) info.fill(0xff, rand(info.length), rand(info.length));
        probe({ ...s, info, abbrev }, names);
        runs++;
      }
    }
    for (const garbage of [Buffer.alloc(0), Buffer.alloc(64, 0xff), Buffer.from('not dwarf at all, not at all'), Buffer.alloc(4096, 0)]) {
      probe({ info: garbage, abbrev: garbage }, C_TYPES);
      runs++;
    }
    assert.ok(runs > 800);
  });

  it('reports no DWARF for a file without it or with a corrupt compressed section', () => {
    const stripped = join(dir, 'c-stripped');
    execFileSync('strip', ['-o', stripped, cBins.dwarf5]);
    assert.equal(ElfFile.withFile(stripped, (elf) => DwarfInfo.fromElf(elf)), undefined);
    // Garble the zlib stream of .debug_info, and separately claim a wrong uncompressed size.
    const [off, size] = ElfFile.withFile(cBins.chdr, (elf) => [elf.section('.debug_info')!.offset, elf.section('.debug_info')!.size]);
    const bytes = readFileSync(cBins.chdr);
    const garbled = Buffer.from(bytes);
    garbled.fill(0x5a, off + 24 + 2, off + size);
    const wrongSize = Buffer.from(bytes);
    wrongSize.writeBigUInt64LE(BigInt(1 << 30), off + 8);
    for (const [name, data] of [['c-garbled', garbled], ['c-wrong-size', wrongSize]] as const) {
      const path = join(dir, name);
      writeFileSync(path, data);
      ElfFile.withFile(path, (elf) => {
        assert.equal(readDebugSection(elf, 'info'), undefined, name);
        assert.equal(DwarfInfo.fromElf(elf), undefined, name);
      });
    }
  });

  it('refuses a zlib bomb instead of inflating it: SHF_COMPRESSED, .zdebug_ and .debug_frame', () => {
    // 256 KiB of stream that really inflate to the 256 MiB they claim (1000:1).
    const mib = 256;
    const stream = zlibBomb(mib);
    const claimed = mib << 20;
    const path = join(dir, 'zlib-bomb');
    writeFileSync(
      path,
      buildElf({
        sections: [
          { name: '.debug_info', type: SHT_PROGBITS, flags: SHF_COMPRESSED, data: Buffer.concat([chdr(claimed), stream]) },
          { name: '.zdebug_abbrev', type: SHT_PROGBITS, data: zdebug(claimed, stream) },
          { name: '.debug_frame', type: SHT_PROGBITS, flags: SHF_COMPRESSED, data: Buffer.concat([chdr(claimed), stream]) },
        ],
      }),
    );
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    ElfFile.withFile(path, (elf) => {
      assert.equal(readDebugSection(elf, 'info'), undefined);
      assert.equal(readDebugSection(elf, 'abbrev'), undefined);
      assert.equal(DwarfInfo.fromElf(elf), undefined);
      assert.equal(CfiTable.fromElf(elf), undefined);
    });
    assert.ok(process.memoryUsage().rss - rss < 64 << 20, 'the bomb was inflated');
    assert.ok(performance.now() - t0 < 2000);
    // Within the ratio a section inflates: 1 MiB of zeros from ~1 KiB is a small section's allowance.
    const small = join(dir, 'zlib-small');
    writeFileSync(small, buildElf({ sections: [{ name: '.debug_str', type: SHT_PROGBITS, flags: SHF_COMPRESSED, data: Buffer.concat([chdr(1 << 20), zlibBomb(1)]) }] }));
    assert.equal(ElfFile.withFile(small, (elf) => readDebugSection(elf, 'str'))?.length, 1 << 20);
  });

  it('cuts names at 4096 characters when thousands of DIEs point into one string without an end', () => {
    // A unit of 2000 structs, each named by DW_FORM_strp at its own offset of a 4 MiB
    // .debug_str of 'A's: 2000 distinct names of ~4 MiB each (8 GB) before the bound.
    const n = 2000;
    const abbrev = Buffer.from([1, 0x11, 1, 0, 0, 2, 0x13, 0, 0x03, 0x0e, 0, 0, 0]);
    const dies: number[] = [1];
    for (let i = 0; i < n; i++) dies.push(2, ...u32(i * 7));
    dies.push(0);
    const body = Buffer.from([4, 0, ...u32(0), 8, ...dies]); // version 4, abbrev offset 0, address size 8
    const info = Buffer.concat([Buffer.from(u32(body.length)), body]);
    const str = Buffer.alloc(4 << 20, 0x41);
    const heap = process.memoryUsage().heapUsed;
    const d = DwarfInfo.fromSections({ info, abbrev, str })!;
    assert.equal(d.findType('runtime.g'), undefined); // walks and indexes every name
    const t = d.type(info.indexOf(Buffer.from([2, 0, 0, 0, 0])));
    assert.equal(t?.name?.length, 4096);
    assert.ok(t?.name?.endsWith('\u2026'));
    assert.ok(process.memoryUsage().heapUsed - heap < 128 << 20, 'names took more than 128 MiB');
  });

  it('parses .debug_abbrev about once, however many units point into the middle of one table', () => {
    // 1000 units at successive entries of one 20,000-entry table: each parsed (and kept) the
    // rest of it, 5 s for this, and past 4 GB of heap (a crash) for 4000 units.
    const time = (sections: DwarfSections) => {
      let best = Infinity;
      for (let r = 0; r < 3; r++) {
        const t0 = performance.now();
        DwarfInfo.fromSections(sections)!.findType('runtime.g');
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    const heap = process.memoryUsage().heapUsed;
    const hostile = time(overlappingAbbrevs(1000, 20_000, false));
    const shared = time(overlappingAbbrevs(1000, 20_000, true));
    assert.ok(hostile < 25 * shared, `${hostile.toFixed(1)} ms, ${shared.toFixed(1)} ms when the units share the table`);
    assert.ok(process.memoryUsage().heapUsed - heap < 256 << 20);
  });
});

/** `units` units whose headers point at successive entries of one abbreviation table of `entries` (or all at its start). */
function overlappingAbbrevs(units: number, entries: number, shared: boolean): DwarfSections {
  const ab: number[] = [];
  for (let i = 1; i <= entries; i++) ab.push(0x80 | (i & 0x7f), (i >> 7) & 0x7f, 0x13, 0, 0, 0);
  const info = Buffer.alloc(units * 12);
  for (let k = 0; k < units; k++) {
    const o = k * 12;
    info.writeUInt32LE(8, o);
    info.writeUInt16LE(4, o + 4);
    info.writeUInt32LE(shared ? 0 : (k % entries) * 6, o + 6);
    info[o + 10] = 8;
  }
  return { info, abbrev: Buffer.from(ab) };
}

function u32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}
