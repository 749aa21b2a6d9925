// ElfFile on files a profiled process could have made: headers that claim more than there is,
// string tables without a terminating zero, notes of absurd sizes. Each must give a bounded
// answer or an ElfError, never a huge allocation.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile } from '../src/elf/elf-file.js';
import { buildElf, SHT_PROGBITS } from './fuzz/elf-builder.js';
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
});
