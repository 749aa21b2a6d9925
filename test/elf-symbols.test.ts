import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, fstatSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ElfError, ElfFile } from '../src/elf/elf-file.js';
import { fileCrc32, findDebugFile, readDebugLink } from '../src/elf/debug-file.js';
import { SymbolTable } from '../src/elf/elf-symbols.js';
import { MAX_NAME_LENGTH, NAME_CUT_MARK } from '../src/elf/names.js';
import * as demangler from '../src/demangle.js';
import { buildElf, functionSymbols, SHF_ALLOC, SHF_EXECINSTR, SHT_PROGBITS, SHT_STRTAB, SHT_SYMTAB } from './fuzz/elf-builder.js';
import { buildC, workDir } from './helpers.js';

const dir = workDir('elf-symbols');

const SOURCE = `
#include <stdio.h>
__attribute__((noinline)) int alpha_fn(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * 3; return s; }
__attribute__((noinline)) int beta_fn(int x) { return alpha_fn(x) * 2 + 1; }
static __attribute__((noinline)) int gamma_static(int x) { return beta_fn(x) - 7; }
__attribute__((weak)) int weak_fn(int x) { return x + 1; }
int main(int argc, char **argv) { printf("%d\\n", gamma_static(argc) + weak_fn(argc)); return 0; }
`;

interface NmSym {
  addr: number;
  size: number;
  type: string;
  name: string;
}

/** `nm -S --defined-only` as the oracle: function symbols with addresses and sizes. */
function nm(path: string, dynamic = false): NmSym[] {
  const args = ['-S', '--defined-only', ...(dynamic ? ['-D'] : []), path];
  const out = execFileSync('nm', args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const syms: NmSym[] = [];
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) ([TtWwi]) (\S+)$/.exec(line);
    if (m) syms.push({ addr: parseInt(m[1], 16), size: parseInt(m[2], 16), type: m[3], name: m[4].replace(/@.*$/, '') });
  }
  return syms;
}

function libcPath(): string {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  const m = /\s(\/\S*\/libc\.so\.6)$/m.exec(maps) ?? /\s(\/\S*\/libc[-.]\S*\.so\S*)$/m.exec(maps);
  assert.ok(m, 'node maps libc');
  return m[1];
}

describe('elf-symbols', () => {
  const bin = buildC(dir, 'prog', SOURCE, ['-O1', '-g']);

  it('finds every function nm lists, at its start and at its last byte', () => {
    const table = ElfFile.withFile(bin, (elf) => SymbolTable.fromElf(elf));
    const syms = nm(bin).filter((s) => s.size > 0);
    for (const name of ['alpha_fn', 'beta_fn', 'gamma_static', 'weak_fn', 'main']) {
      assert.ok(syms.some((s) => s.name === name), `nm lists ${name}`);
    }
    for (const s of syms) {
      const a = table.lookup(s.addr);
      assert.deepEqual(a && { name: a.name, offset: a.offset }, { name: s.name, offset: 0 }, `start of ${s.name}`);
      const b = table.lookup(s.addr + s.size - 1);
      assert.equal(b?.name, s.name, `last byte of ${s.name}`);
    }
  });

  it('agrees with addr2line inside functions', () => {
    const table = ElfFile.withFile(bin, (elf) => SymbolTable.fromElf(elf));
    const alpha = nm(bin).find((s) => s.name === 'alpha_fn')!;
    const addr = alpha.addr + Math.floor(alpha.size / 2);
    const oracle = execFileSync('addr2line', ['-f', '-e', bin, '0x' + addr.toString(16)], { encoding: 'utf8' }).split('\n')[0];
    assert.equal(table.lookup(addr)?.name, oracle);
    assert.equal(table.lookup(addr)?.offset, addr - alpha.addr);
  });

  it('returns nothing outside functions', () => {
    const table = ElfFile.withFile(bin, (elf) => SymbolTable.fromElf(elf));
    assert.equal(table.lookup(0), undefined);
    assert.equal(table.lookup(0x7fff_ffff_0000), undefined);
  });

  it('reads only .dynsym of a stripped library, consistently with nm -D', () => {
    const libc = libcPath();
    const table = ElfFile.withFile(libc, (elf) => SymbolTable.fromElf(elf));
    const syms = nm(libc, true).filter((s) => s.size > 0 && (s.type === 'T' || s.type === 'W' || s.type === 'i'));
    assert.ok(syms.length > 500, `libc exports functions (${syms.length})`);
    const byAddr = new Map<number, Set<string>>();
    for (const s of syms) {
      if (!byAddr.has(s.addr)) byAddr.set(s.addr, new Set());
      byAddr.get(s.addr)!.add(s.name);
    }
    for (const s of syms) {
      const hit = table.lookup(s.addr + 1 < s.addr + s.size ? s.addr + 1 : s.addr);
      assert.ok(hit, `lookup of ${s.name}`);
      assert.ok(byAddr.get(hit.start)?.has(hit.name), `${hit.name} is one of the names at 0x${hit.start.toString(16)}`);
    }
    // Aliases (one function exported under several names): a global name wins over a weak one.
    const globals = new Set(syms.filter((s) => s.type !== 'W').map((s) => `${s.addr}:${s.name}`));
    let checked = 0;
    for (const [addr, names] of byAddr) {
      if (names.size < 2 || ![...names].some((n) => globals.has(`${addr}:${n}`))) continue;
      checked++;
      assert.ok(globals.has(`${addr}:${table.lookup(addr)!.name}`), `global name at 0x${addr.toString(16)}`);
    }
    assert.ok(checked > 10, `libc has aliases (${checked})`);
  });

  it('prefers a global name over a local or weak alias at the same address', () => {
    const src = `
int real_impl(int x) { return x * 5 + 3; }
int weak_alias(int) __attribute__((weak, alias("real_impl")));
static int local_alias(int) __attribute__((alias("real_impl"), used));
int main(void) { return weak_alias(2); }
`;
    const b = buildC(dir, 'alias', src, ['-O1']);
    const table = ElfFile.withFile(b, (elf) => SymbolTable.fromElf(elf));
    const addr = nm(b).find((s) => s.name === 'real_impl')!.addr;
    assert.equal(table.lookup(addr)?.name, 'real_impl');
  });

  it('applies the demangler given to it', () => {
    const table = ElfFile.withFile(bin, (elf) => SymbolTable.fromElf(elf, (n) => `<${n}>`));
    const alpha = nm(bin).find((s) => s.name === 'alpha_fn')!;
    assert.equal(table.lookup(alpha.addr)?.name, '<alpha_fn>');
  });

  it('throws ElfError on garbage and on a truncated file, never crashes', () => {
    const garbage = join(dir, 'garbage.bin');
    writeFileSync(garbage, Buffer.from('this is not an ELF file at all, just text'.repeat(10)));
    assert.throws(() => ElfFile.withFile(garbage, (elf) => SymbolTable.fromElf(elf)), ElfError);
    const whole = readFileSync(bin);
    for (const len of [10, 63, 64, 200, Math.floor(whole.length / 2), whole.length - 100]) {
      const cut = join(dir, `truncated-${len}`);
      writeFileSync(cut, whole.subarray(0, len));
      try {
        const t = ElfFile.withFile(cut, (elf) => SymbolTable.fromElf(elf));
        t.lookup(0x1000);
      } catch (e) {
        assert.ok(e instanceof ElfError, `truncated at ${len}: ${String(e)}`);
      }
    }
    // A symbol table whose string table index points nowhere: still no crash.
    const bad = Buffer.from(whole);
    const symtab = ElfFile.withFile(bin, (e) => e.section('.symtab'))!;
    const shoff = Number(bad.readBigUInt64LE(40));
    const link = shoff + symtab.index * 64 + 40;
    bad.writeUInt32LE(0xffff, link);
    const badPath = join(dir, 'bad-link');
    writeFileSync(badPath, bad);
    const t = ElfFile.withFile(badPath, (e) => SymbolTable.fromElf(e));
    assert.equal(typeof t.length, 'number');
  });
  it('cuts names at 4096 characters: a string table without zeros, a demangled name that grows past it', () => {
    const { demangle } = demangler;
    const n = 2000;
    // Every name runs into the next: no zero anywhere.
    const syms = functionSymbols(n, (i) => 1 + (i - 1) * 401);
    // One real mangled name whose demangling is longer than the bound: f(A<n::x…>, A<n::x…>),
    // the second argument a substitution of the first.
    const mangled = `_Z1f1AIN1n2500${'x'.repeat(2500)}EES2_`;
    const strtab = Buffer.concat([Buffer.from([0]), Buffer.alloc(1 << 20, 0x41), Buffer.from(`\0${mangled}\0`)]);
    syms.writeUInt32LE(strtab.length - mangled.length - 1, n * 24);
    const path = join(dir, 'endless-names');
    writeFileSync(
      path,
      buildElf({
        sections: [
          { name: '.text', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addr: 0x1000, data: Buffer.alloc(0x10000) },
          { name: '.strtab', type: SHT_STRTAB, data: strtab },
          { name: '.symtab', type: SHT_SYMTAB, link: 2, entsize: 24, data: syms },
        ],
      }),
    );
    assert.ok(demangle(mangled).length > MAX_NAME_LENGTH, 'the long name demangles past the bound');
    const table = ElfFile.withFile(path, (elf) => SymbolTable.fromElf(elf, demangle));
    try {
      for (let i = 1; i < n; i++) {
        const name = table.lookup(0x1000 + i * 16)!.name;
        assert.equal(name.length, MAX_NAME_LENGTH);
        assert.ok(name.startsWith('AAAA') && name.endsWith(NAME_CUT_MARK));
      }
      const long = table.lookup(0x1000 + n * 16)!.name;
      assert.equal(long.length, MAX_NAME_LENGTH);
      assert.ok(long.startsWith('f(A<n::xxx') && long.endsWith(NAME_CUT_MARK), long.slice(0, 20));
    } finally {
      table.release();
    }
  });

  it('reads symbol tables that together fit in the file: 190 headers naming one table are one', () => {
    // A 3.6 MB file whose 191 .symtab headers all name the same 100,000 symbols: 19 million
    // candidates, 7 s and 480 MB before (of them, 400 MB of typed arrays).
    const n = 100_000;
    const syms = functionSymbols(n);
    const path = join(dir, 'many-symtabs');
    writeFileSync(
      path,
      buildElf({
        sections: [
          { name: '.text', type: SHT_PROGBITS, flags: SHF_ALLOC | SHF_EXECINSTR, addr: 0x1000, data: Buffer.alloc(16) },
          { name: '.strtab', type: SHT_STRTAB, data: Buffer.from('\0f\0') },
          { name: '.symtab', type: SHT_SYMTAB, link: 2, entsize: 24, data: syms },
          ...Array.from({ length: 190 }, () => ({ name: '.symtab', type: SHT_SYMTAB, link: 2, entsize: 24, sameAs: 2 })),
        ],
      }),
    );
    const heap = process.memoryUsage().arrayBuffers;
    const table = ElfFile.withFile(path, (elf) => SymbolTable.fromElf(elf));
    assert.equal(table.lookup(0x1000 + 16 * 500)?.name, 'f');
    assert.ok(process.memoryUsage().arrayBuffers - heap < 64 << 20, 'the symbol store took more than 64 MiB');
    table.release();
  });

  it('reads names from the file on lookup, and never from a different file at the same path', () => {
    const copy = join(dir, 'moving');
    copyFileSync(bin, copy);
    const alpha = nm(bin).find((s) => s.name === 'alpha_fn')!;
    const beta = nm(bin).find((s) => s.name === 'beta_fn')!;
    const table = ElfFile.withFile(copy, (elf) => SymbolTable.fromElf(elf));
    assert.equal(table.lookup(alpha.addr)?.name, 'alpha_fn');
    table.release();
    // Another name for the same file (what the worker gets: a new /proc/self/fd path).
    const other = join(dir, 'moving-link');
    rmSync(other, { force: true });
    execFileSync('ln', [copy, other]);
    rmSync(copy);
    table.moveTo(other);
    assert.equal(table.lookup(beta.addr)?.name, 'beta_fn');
    table.release();
    // The path now names another binary: names it has not read yet are refused, not invented.
    rmSync(other);
    const impostor = buildC(dir, 'impostor', SOURCE.replace(/beta_fn/g, 'wrong_fn').replace(/gamma_static/g, 'wrong_static'), ['-O1', '-g']);
    copyFileSync(impostor, other);
    const gammaAddr = nm(bin).find((s) => s.name === 'gamma_static')!.addr;
    assert.equal(table.lookup(gammaAddr), undefined);
    // Names read before stay.
    assert.equal(table.lookup(alpha.addr)?.name, 'alpha_fn');
  });
});

describe('debug-file', () => {
  const base = join(dir, 'dbg');
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true });
  const full = buildC(base, 'withdebug', SOURCE, ['-O1', '-g', '-Wl,--build-id']);
  const alpha = nm(full).find((s) => s.name === 'alpha_fn')!;

  /** The path of the debug file findDebugFile opens for `bin`, closing it again. */
  function debugPath(bin: string, opts: Parameters<typeof findDebugFile>[1]): string | undefined {
    return ElfFile.withFile(bin, (e) => {
      const found = findDebugFile(e, opts);
      found?.elf.close();
      return found?.path;
    });
  }

  function stripped(name: string, link?: string): string {
    const out = join(base, name);
    copyFileSync(full, out);
    execFileSync('strip', ['--strip-all', out]);
    if (link) execFileSync('objcopy', [`--add-gnu-debuglink=${link}`, out], { cwd: base });
    return out;
  }

  it('finds the debug file by build id under a root prefix', () => {
    const root = join(base, 'root');
    const bin = stripped('by-build-id');
    const buildId = ElfFile.withFile(bin, (e) => e.buildId);
    assert.match(buildId, /^[0-9a-f]{40}$/);
    const idDir = join(root, 'usr/lib/debug/.build-id', buildId.slice(0, 2));
    mkdirSync(idDir, { recursive: true });
    execFileSync('objcopy', ['--only-keep-debug', full, join(idDir, buildId.slice(2) + '.debug')]);
    const stripTable = ElfFile.withFile(bin, (e) => SymbolTable.fromElf(e));
    assert.equal(stripTable.lookup(alpha.addr)?.name, undefined, 'stripped binary has no alpha_fn');
    const found = debugPath(bin, { root });
    assert.equal(found, `/usr/lib/debug/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`, 'the path inside the root');
    assert.equal(debugPath(bin, { root: join(base, 'nowhere') }), undefined);
    const table = ElfFile.withFile(join(root, found!), (e) => SymbolTable.fromElf(e));
    assert.equal(table.lookup(alpha.addr + 1)?.name, 'alpha_fn');
  });

  it('finds the debug file by .gnu_debuglink next to the binary and in .debug/, checking the CRC', () => {
    const debugName = 'by-link.debug';
    const dbg = join(base, debugName);
    execFileSync('objcopy', ['--only-keep-debug', full, dbg]);
    const bin = stripped('by-link', debugName);
    const link = ElfFile.withFile(bin, (e) => readDebugLink(e));
    const fd = openSync(dbg, 'r');
    assert.deepEqual(link, { name: debugName, crc: fileCrc32(fd, fstatSync(fd).size) });
    closeSync(fd);
    // The test runs on the host, so the root prefix is empty and the binary path is absolute.
    assert.equal(debugPath(bin, { binaryPath: bin }), dbg);
    // Moved into .debug/: still found.
    mkdirSync(join(base, '.debug'), { recursive: true });
    execFileSync('mv', [dbg, join(base, '.debug', debugName)]);
    assert.equal(debugPath(bin, { binaryPath: bin }), join(base, '.debug', debugName));
    // A file with the right name but the wrong contents (CRC mismatch) is refused.
    copyFileSync(full, join(base, '.debug', debugName));
    assert.equal(debugPath(bin, { binaryPath: bin }), undefined);
  });
});
