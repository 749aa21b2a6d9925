// The bytes of a DWARF section, decompressed. Compilers and linkers compress debug sections two
// ways: SHF_COMPRESSED sections (a Chdr, then a zlib or zstd stream: gcc -gz, Go 1.20+) and the
// older GNU .zdebug_* sections ("ZLIB", a big-endian size, then a zlib stream: Go 1.11–1.19,
// objcopy --compress-debug-sections=zlib-gnu). zstd needs node's zstd bindings (node 23.8+);
// without them such sections are reported missing, like any other section that cannot be read.

//
// The sizes a compressed section claims are the file's to choose, and so is a stream that
// inflates to them: 64 KB of zlib make 64 MB of zeros, 1 MB make 1 GB. So a section is
// inflated to at most INFLATE_RATIO times its compressed size (debug sections compress 3 to
// 10 times; zlib cannot do better than about 1000), and never past MAX_SECTION_BYTES; a
// section that claims more is not there. The same bound applies to sections read as they are.

import * as zlib from 'node:zlib';
import { type ElfFile, type ElfSection, SHF_COMPRESSED, SHT_NOBITS } from './elf-file.js';

const ELFCOMPRESS_ZLIB = 1;
const ELFCOMPRESS_ZSTD = 2;
/** No section is read or inflated beyond this. */
export const MAX_SECTION_BYTES = 256 << 20;
/** Decompressed bytes per compressed byte at most... */
export const INFLATE_RATIO = 64;
/** ...except that a small section may always inflate to this. */
const MIN_INFLATE_LIMIT = 1 << 20;

type ZstdDecompress = (buf: Buffer, opts?: { maxOutputLength?: number }) => Buffer;
const zstdDecompressSync = (zlib as unknown as { zstdDecompressSync?: ZstdDecompress }).zstdDecompressSync;

/**
 * The contents of `.debug_<name>` (or `.zdebug_<name>`), decompressed; undefined when the file
 * has neither, or it cannot be read or decompressed. `name` is given without the prefix, e.g.
 * 'info'. Never throws.
 */
export function readDebugSection(elf: ElfFile, name: string): Buffer | undefined {
  const plain = elf.section(`.debug_${name}`);
  if (plain) return sectionContents(elf, plain);
  const gnu = elf.section(`.zdebug_${name}`);
  if (!gnu || gnu.type === SHT_NOBITS || gnu.size > MAX_SECTION_BYTES) return undefined;
  try {
    return decompressZdebug(elf.read(gnu.offset, gnu.size));
  } catch {
    // Unreadable (ElfError) or a corrupt stream (zlib's errors): the section is not there.
    return undefined;
  }
}

/**
 * The bytes of `sec`, inflated if it is SHF_COMPRESSED; undefined when it has none, cannot be
 * read or inflated, or is larger than the bounds above allow. Never throws.
 */
export function sectionContents(elf: ElfFile, sec: ElfSection): Buffer | undefined {
  if (sec.type === SHT_NOBITS || sec.size > MAX_SECTION_BYTES) return undefined;
  try {
    const raw = elf.read(sec.offset, sec.size);
    return sec.flags & SHF_COMPRESSED ? decompressChdr(raw, elf.is64) : raw;
  } catch {
    return undefined;
  }
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
  const limit = Math.min(MAX_SECTION_BYTES, Math.max(MIN_INFLATE_LIMIT, stream.length * INFLATE_RATIO));
  if (!Number.isSafeInteger(size) || size < 0 || size > limit) return undefined;
  if (size === 0) return Buffer.alloc(0);
  let out: Buffer;
  if (type === ELFCOMPRESS_ZLIB) out = zlib.inflateSync(stream, { maxOutputLength: size });
  else if (type === ELFCOMPRESS_ZSTD && zstdDecompressSync) out = zstdDecompressSync(stream, { maxOutputLength: size });
  else return undefined;
  return out.length === size ? out : undefined;
}
