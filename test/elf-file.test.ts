// ElfFile on files a profiled process could have made: headers that claim more than there is,
// string tables without a terminating zero, notes of absurd sizes. Each must give a bounded
// answer or an ElfError, never a huge allocation.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfError, ElfFile } from '../src/elf/elf-file.js';
import { readGoBuildId } from '../src/elf/go-buildid.js';
import { buildElf, SHT_NOTE, SHT_PROGBITS } from './fuzz/elf-builder.js';
import { workDir } from './helpers.js';

const dir = workDir('elf-file');

function write(name: string, bytes: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

describe('elf-file', () => {
  it('cuts section names at 256 bytes when the name table has no terminating zero', () => {
    // 20,000 section headers all naming offset 0 of a 1 MiB table of 'A's: 20 GB of names
    // before the bound, from a 2 MB file.
    const n = 20_000;
    const path = write(
      'unterminated-names',
      buildElf({ sections: Array.from({ length: n }, () => ({ name: 'x', type: SHT_PROGBITS, nameOff: 0 })), shstrtab: Buffer.alloc(1 << 20, 0x41) }),
    );
    const before = process.memoryUsage().heapUsed;
    const elf = ElfFile.open(path);
    try {
      assert.equal(elf.sections.length, n + 2);
      assert.equal(elf.sections[1]!.name, 'A'.repeat(256));
      assert.ok(process.memoryUsage().heapUsed - before < 64 << 20, 'section names took more than 64 MiB');
    } finally {
      elf.close();
    }
  });

  it('still finds sections by their real names', () => {
    const path = write('named', buildElf({ sections: [{ name: '.text', type: SHT_PROGBITS, data: Buffer.alloc(16) }, { name: '.data', type: SHT_PROGBITS, data: Buffer.alloc(8) }] }));
    ElfFile.withFile(path, (elf) => {
      assert.equal(elf.section('.text')?.size, 16);
      assert.equal(elf.section('.data')?.size, 8);
      assert.equal(elf.section('.shstrtab')?.type, 3);
    });
  });

  it('takes build ids of sane lengths only: a 1 MiB note is no build id, not a 2 MB key', () => {
    const note = (owner: string, type: number, desc: Buffer) => {
      const name = Buffer.alloc((owner.length + 4) & ~3);
      name.write(owner, 'latin1');
      const h = Buffer.alloc(12);
      h.writeUInt32LE(owner.length + 1, 0);
      h.writeUInt32LE(desc.length, 4);
      h.writeUInt32LE(type, 8);
      return Buffer.concat([h, name, desc, Buffer.alloc((4 - (desc.length % 4)) % 4)]);
    };
    const id = Buffer.from('0123456789abcdef01234567', 'hex');
    const huge = Buffer.alloc(1 << 20, 0x5a);
    const make = (name: string, gnu: Buffer, go: Buffer) =>
      write(name, buildElf({ sections: [{ name: '.note.gnu.build-id', type: SHT_NOTE, data: note('GNU', 3, gnu) }, { name: '.note.go.buildid', type: SHT_NOTE, data: note('Go', 4, go) }] }));
    ElfFile.withFile(make('sane-ids', id, Buffer.from('abc/def')), (elf) => {
      assert.equal(elf.buildId, id.toString('hex'));
      assert.equal(elf.goBuildId, 'abc/def');
    });
    ElfFile.withFile(make('huge-ids', huge, huge), (elf) => {
      assert.equal(elf.buildId, '');
      assert.equal(elf.goBuildId, '');
      assert.equal(readGoBuildId(elf), '');
    });
  });

  it('refuses header entries larger than 256 bytes rather than reading 4096 of them', () => {
    // A sparse 300 MB file whose 4096 program headers claim 65535 bytes each: a 268 MB read
    // (and as much memory) before. Sparse files cost their owner nothing.
    const b = buildElf({ sections: [{ name: '.text', type: SHT_PROGBITS, data: Buffer.alloc(16) }] });
    b.writeBigUInt64LE(64n, 32); // e_phoff
    b.writeUInt16LE(0xffff, 54); // e_phentsize
    b.writeUInt16LE(4096, 56); // e_phnum
    const path = write('huge-phentsize', b);
    truncateSync(path, 300 << 20);
    const before = process.memoryUsage().arrayBuffers;
    assert.throws(() => ElfFile.open(path), (e) => e instanceof ElfError && /program header size/.test(e.message));
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 << 20);
    rmSync(path);
    // Section headers likewise.
    const c = buildElf({ sections: [{ name: '.text', type: SHT_PROGBITS, data: Buffer.alloc(16) }] });
    c.writeUInt16LE(0xffff, 58); // e_shentsize
    assert.throws(() => ElfFile.open(write('huge-shentsize', c)), (e) => e instanceof ElfError && /section header size/.test(e.message));
  });
});
