// go-buildinfo and go-buildid on binaries from the local Go, including copies a tool has
// mutilated: no section headers, no note a header points at, no build info at all. The
// oracles are `go version -m` and `go tool buildid` on the intact binary. Every release from
// 1.16 on is compared in go-versions.test.ts.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile, PT_NOTE } from '../src/elf/elf-file.js';
import { formatGoBuildInfo, parseModInfo, readGoBuildId, readGoBuildInfo } from '../src/elf/go-buildinfo.js';
import { GoPclnTab } from '../src/elf/gopclntab.js';
import { buildGoModule, goToolBuildId, workDir } from './helpers.js';

const MAIN = `package main

import (
	"fmt"

	"example.com/dep"
)

var greeting = "unset"

func main() { fmt.Println(greeting, dep.Answer()) }
`;

const DEP = `package dep

func Answer() int { return 42 }
`;

const FILES = { 'main.go': MAIN, 'dep/dep.go': DEP, 'dep/go.mod': 'module example.com/dep\n\ngo 1.21\n' };
const GO_MOD = 'require example.com/dep v0.0.0\n\nreplace example.com/dep => ./dep\n';
// A setting whose value has spaces and quotes, so that go version -m quotes it.
const LDFLAGS = `-ldflags=-X 'main.greeting=hello "quoted" world'`;

function goVersionM(bin: string): string {
  const out = execFileSync('go', ['version', '-m', bin], { env: { ...process.env, GOTOOLCHAIN: 'local' } }).toString();
  return out.slice(out.indexOf(': ') + 2);
}

function read(bin: string) {
  return ElfFile.withFile(bin, (elf) => readGoBuildInfo(elf));
}

/** A copy of an ELF64 file with e_shoff, e_shnum and e_shstrndx cleared. */
function withoutSectionHeaders(src: string, dst: string): string {
  const b = readFileSync(src);
  b.writeBigUInt64LE(0n, 40);
  b.writeUInt16LE(0, 60);
  b.writeUInt16LE(0, 62);
  writeFileSync(dst, b);
  return dst;
}

/** A copy whose PT_NOTE program headers are PT_NULL (and no section headers). */
function withoutNoteHeaders(src: string, dst: string): string {
  withoutSectionHeaders(src, dst);
  const b = readFileSync(dst);
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  for (let i = 0; i < b.readUInt16LE(56); i++) if (b.readUInt32LE(phoff + i * phentsize) === PT_NOTE) b.writeUInt32LE(0, phoff + i * phentsize);
  writeFileSync(dst, b);
  return dst;
}

/** A copy with every "\xff Go buildinf:" magic overwritten. */
function withoutBuildInfo(src: string, dst: string): string {
  const b = readFileSync(src);
  const magic = Buffer.from('\xff Go buildinf:', 'latin1');
  for (let at = b.indexOf(magic); at >= 0; at = b.indexOf(magic, at + 1)) b[at + 1] = 0x58;
  writeFileSync(dst, b);
  return dst;
}

describe('go-buildinfo', () => {
  const dir = workDir('go-buildinfo');
  let bin = '';
  let stripped = '';
  let release = '';

  before(async () => {
    [bin, stripped] = await Promise.all([
      buildGoModule(dir, 'prog', FILES, { flags: [LDFLAGS], goMod: GO_MOD }),
      buildGoModule(dir, 'prog-stripped', FILES, { flags: ['-ldflags=-s -w'], goMod: GO_MOD, module: 'example.com/prog' }),
    ]);
    release = execFileSync('go', ['env', 'GOVERSION'], { env: { ...process.env, GOTOOLCHAIN: 'local' } }).toString().trim();
  });

  it('reads the version, modules, replacements and settings as go version -m prints them', () => {
    for (const b of [bin, stripped]) {
      const info = read(b);
      assert.ok(info);
      assert.equal(info.goVersion, release);
      assert.equal(info.versionFrom, 'buildinfo');
      assert.equal(formatGoBuildInfo(info), goVersionM(b));
    }
    const info = read(bin)!;
    assert.equal(info.path, 'example.com/prog');
    assert.deepEqual(info.main, { path: 'example.com/prog', version: '(devel)', sum: '' });
    assert.deepEqual(info.deps, [{ path: 'example.com/dep', version: 'v0.0.0', sum: '', replace: { path: './dep', version: '(devel)', sum: '' } }]);
    assert.deepEqual(
      info.settings.find((s) => s.key === '-ldflags'),
      { key: '-ldflags', value: `-X 'main.greeting=hello "quoted" world'` },
    );
    assert.ok(info.settings.some((s) => s.key === 'GOARCH' && s.value === 'amd64'));
  });

  it('reads the Go build id as go tool buildid does', () => {
    for (const b of [bin, stripped]) {
      const id = goToolBuildId(b);
      assert.match(id, /^[\w-]{20}\/[\w-]{20}\/[\w-]{20}\/[\w-]{20}$/);
      assert.equal(read(b)!.buildId, id);
      assert.equal(ElfFile.withFile(b, readGoBuildId), id);
      // ElfFile's own note lookup (used by the symbolizer's caches) finds it too: Go pads the
      // note's owner to "Go\0\0".
      assert.equal(ElfFile.withFile(b, (e) => e.goBuildId), id);
    }
  });

  it('finds both by scanning when the section headers are gone', () => {
    const bare = withoutSectionHeaders(stripped, join(dir, 'no-sections'));
    const noNote = withoutNoteHeaders(stripped, join(dir, 'no-note-headers'));
    const want = read(stripped)!;
    for (const b of [bare, noNote]) {
      ElfFile.withFile(b, (elf) => assert.equal(elf.sections.length, 0));
      assert.deepEqual(read(b), want, b);
    }
  });

  it('falls back to runtime.buildVersion, then to the version text, then to the pclntab, without build info', () => {
    const noInfo = withoutBuildInfo(bin, join(dir, 'no-buildinfo'));
    const fromSymbol = read(noInfo)!;
    assert.equal(fromSymbol.versionFrom, 'symbol');
    assert.equal(fromSymbol.goVersion, release);
    assert.equal(fromSymbol.path, '');
    assert.equal(fromSymbol.buildId, goToolBuildId(bin));

    const noInfoStripped = withoutBuildInfo(stripped, join(dir, 'no-buildinfo-stripped'));
    const fromText = read(noInfoStripped)!;
    assert.equal(fromText.versionFrom, 'strings');
    assert.equal(fromText.goVersion, release);

    // With the version text gone too, only the table's layout is left.
    const noText = join(dir, 'no-version-text');
    const b = readFileSync(noInfoStripped);
    const v = Buffer.from(release, 'latin1');
    for (let at = b.indexOf(v); at >= 0; at = b.indexOf(v, at + 1)) b[at] = 0x58;
    writeFileSync(noText, b);
    const fromTable = read(noText)!;
    assert.equal(fromTable.versionFrom, 'pclntab');
    const minor = Number(/^go1\.(\d+)/.exec(release)![1]);
    const range = ElfFile.withFile(noText, (elf) => GoPclnTab.open(elf))!.versionRange;
    assert.equal(fromTable.goVersion, range);
    assert.match(range, minor >= 27 ? /^go1\.27\+$/ : minor === 26 ? /^go1\.26$/ : /^go1\.2[0-5]-go1\.25$/);
  });

  it('parses module info with quoted keys and values', () => {
    const text = 'path\tx.io/cmd\nmod\tx.io\tv1.2.3\th1:abc=\ndep\ty.io\tv0.1.0\nbuild\t"a key"=`raw value`\nbuild\tk="v\\tw"\n';
    assert.deepEqual(parseModInfo(text), {
      path: 'x.io/cmd',
      main: { path: 'x.io', version: 'v1.2.3', sum: 'h1:abc=' },
      deps: [{ path: 'y.io', version: 'v0.1.0', sum: '' }],
      settings: [
        { key: 'a key', value: 'raw value' },
        { key: 'k', value: 'v\tw' },
      ],
    });
  });

  it('answers undefined for files that are not Go', () => {
    assert.equal(read(process.execPath), undefined);
    assert.equal(ElfFile.withFile(process.execPath, readGoBuildId), '');
  });

  it('scans each byte of the file once however many program headers cover it', () => {
    // 1024 PT_LOAD headers, each over the whole file, in a copy without build info (so that the
    // segments are scanned for it and for the version text): 2.5 s and counting before.
    const plain = withoutBuildInfo(stripped, join(dir, 'no-buildinfo'));
    const seed = readFileSync(plain);
    const n = 1024;
    const table = Buffer.alloc(n * 56);
    for (let i = 0; i < n; i++) {
      table.writeUInt32LE(1, i * 56); // PT_LOAD
      table.writeUInt32LE(4, i * 56 + 4); // readable
      table.writeBigUInt64LE(BigInt(0x400000 + i * 0x1000_0000), i * 56 + 16);
      table.writeBigUInt64LE(BigInt(seed.length), i * 56 + 32);
      table.writeBigUInt64LE(BigInt(seed.length), i * 56 + 40);
    }
    const many = Buffer.concat([seed, table]);
    many.writeBigUInt64LE(BigInt(seed.length), 32);
    many.writeUInt16LE(n, 56);
    const manyPath = join(dir, 'many-segments');
    writeFileSync(manyPath, many);
    const time = (path: string) => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        read(path);
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    const base = time(plain);
    const hostile = time(manyPath);
    assert.ok(hostile < 20 * base, `${hostile.toFixed(1)} ms with 1024 program headers, ${base.toFixed(1)} ms without`);
    assert.equal(read(plain)?.goVersion, release);
  });
});
