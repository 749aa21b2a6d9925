// The bytes of a DWARF section, decompressed. Compilers and linkers compress debug sections two
// ways: SHF_COMPRESSED sections (a Chdr, then a zlib or zstd stream: gcc -gz, Go 1.20+) and the
// older GNU .zdebug_* sections ("ZLIB", a big-endian size, then a zlib stream: Go 1.11–1.19,
// objcopy --compress-debug-sections=zlib-gnu). zstd needs node's zstd bindings (node 23.8+);
// without them such sections are reported missing, like any other section that cannot be read.

import * as zlib from 'node:zlib';
import { type ElfFile, SHF_COMPRESSED, SHT_NOBITS } from './elf-file.js';

const ELFCOMPRESS_ZLIB = 1;
const ELFCOMPRESS_ZSTD = 2;
/** Refuse to inflate a corrupt header's idea of a section size beyond this. */
const MAX_DEBUG_SECTION = 2 ** 31 - 1;

type ZstdDecompress = (buf: Buffer, opts?: { maxOutputLength?: number }) => Buffer;
const zstdDecompressSync = (zlib as unknown as { zstdDecompressSync?: ZstdDecompress }).zstdDecompressSync;

/**
 * The contents of `.debug_<name>` (or `.zdebug_<name>`), decompressed; undefined when the file
 * has neither, or it cannot be read or decompressed. `name` is given without the prefix, e.g.
 * 'info'. Never throws.
 */
export function readDebugSection(elf: ElfFile, name: string): Buffer | undefined {
  try {
    const plain = elf.section(`.debug_${name}`);
    if (plain) {
      if (plain.type === SHT_NOBITS) return undefined;
      const raw = elf.read(plain.offset, plain.size);
      return plain.flags & SHF_COMPRESSED ? decompressChdr(raw, elf.is64) : raw;
    }
    const gnu = elf.section(`.zdebug_${name}`);
    if (gnu && gnu.type !== SHT_NOBITS) return decompressZdebug(elf.read(gnu.offset, gnu.size));
  } catch {
    // Unreadable (ElfError) or a corrupt stream (zlib's errors): the section is not there.
  }
  return undefined;
}

/** An SHF_COMPRESSED section: Elf64_Chdr (24 bytes) or Elf32_Chdr (12 bytes), then the stream. */
function decompressChdr(raw: Buffer, is64: boolean): Buffer | undefined {
  const hdr = is64 ? 24 : 12;
  if (raw.length < hdr) return undefined;
  const type = raw.readUInt32LE(0);
  const size = is64 ? Number(raw.readBigUInt64LE(8)) : raw.readUInt32LE(4);
  return inflate(type, raw.subarray(hdr), size);
}

/** A .zdebug_ section: "ZLIB", the uncompressed size as a big-endian u64, then a zlib stream. */
function decompressZdebug(raw: Buffer): Buffer | undefined {
  if (raw.length < 12 || raw.toString('latin1', 0, 4) !== 'ZLIB') return undefined;
  return inflate(ELFCOMPRESS_ZLIB, raw.subarray(12), Number(raw.readBigUInt64BE(4)));
}

function inflate(type: number, stream: Buffer, size: number): Buffer | undefined {
  if (!Number.isSafeInteger(size) || size > MAX_DEBUG_SECTION) return undefined;
  if (size === 0) return Buffer.alloc(0);
  let out: Buffer;
  if (type === ELFCOMPRESS_ZLIB) out = zlib.inflateSync(stream, { maxOutputLength: size });
  else if (type === ELFCOMPRESS_ZSTD && zstdDecompressSync) out = zstdDecompressSync(stream, { maxOutputLength: size });
  else return undefined;
  return out.length === size ? out : undefined;
}
