// Finds the separate debug file of a stripped binary, the way gdb does: first by GNU build id
// under /usr/lib/debug/.build-id/, then by the .gnu_debuglink name (next to the binary, in its
// .debug/ subfolder, under /usr/lib/debug/<dir>/) with the CRC32 the link records. Every path is
// resolved under a root prefix so a container's files are found through /proc/PID/root.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import { crc32 } from 'node:zlib';
import { ElfFile, SHT_NOBITS } from './elf-file.js';

const DEBUG_ROOT = '/usr/lib/debug';

export interface DebugLink {
  name: string;
  crc: number;
}

export interface FindDebugFileOptions {
  /** Path prefix for every candidate, e.g. `/proc/1234/root`; '' or '/' for the host. */
  root?: string;
  /** The binary's path as the process sees it (inside `root`); needed for debuglink lookups. */
  binaryPath?: string;
}

/** The .gnu_debuglink of `elf`, or undefined when it has none or it is malformed. */
export function readDebugLink(elf: ElfFile): DebugLink | undefined {
  const sec = elf.section('.gnu_debuglink');
  if (!sec || sec.type === SHT_NOBITS || sec.size < 5 || sec.size > 4096) return undefined;
  const data = elf.sectionData(sec);
  const end = data.indexOf(0);
  if (end <= 0) return undefined;
  const crcOff = (end + 4) & ~3;
  if (crcOff + 4 > data.length) return undefined;
  const name = data.toString('utf8', 0, end);
  // A link is a file name, never a path: refuse anything that could escape the search folders.
  if (name.includes('/') || name === '.' || name === '..') return undefined;
  return { name, crc: data.readUInt32LE(crcOff) };
}

/** CRC32 (the zlib polynomial, as in .gnu_debuglink) of a whole file, read in chunks. */
export function fileCrc32(path: string): number {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let crc = 0;
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      crc = crc32(buf.subarray(0, n), crc);
      pos += n;
    }
    return crc >>> 0;
  } finally {
    closeSync(fd);
  }
}

/**
 * Path of the separate debug file for `elf`, or undefined. A build-id candidate must carry the
 * same build id; a debuglink candidate must match the recorded CRC32. Files that carry no
 * .symtab are skipped (a debug file without symbols does not help symbolization).
 */
export function findDebugFile(elf: ElfFile, opts: FindDebugFileOptions = {}): string | undefined {
  const root = opts.root && opts.root !== '/' ? opts.root.replace(/\/+$/, '') : '';
  const under = (p: string) => root + p;
  const buildId = elf.buildId;
  if (buildId.length > 2) {
    const cand = under(`${DEBUG_ROOT}/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`);
    if (acceptable(cand, (d) => d.buildId === buildId)) return cand;
  }
  const link = readDebugLink(elf);
  if (link && opts.binaryPath) {
    const dir = posix.dirname(posix.normalize(opts.binaryPath));
    const cands = [posix.join(dir, link.name), posix.join(dir, '.debug', link.name), posix.join(DEBUG_ROOT, dir, link.name)];
    for (const c of cands) {
      const p = under(c);
      if (p === elf.path) continue;
      if (acceptable(p, (d) => !buildId || !d.buildId || d.buildId === buildId, link.crc)) return p;
    }
  }
  return undefined;
}

function acceptable(path: string, check: (d: ElfFile) => boolean, crc?: number): boolean {
  let ok = false;
  try {
    const fd = openSync(path, 'r');
    try {
      if (!fstatSync(fd).isFile()) return false;
    } finally {
      closeSync(fd);
    }
    ok = ElfFile.withFile(path, (d) => check(d) && d.sections.some((s) => s.name === '.symtab' && s.size > 0));
    if (ok && crc !== undefined) ok = fileCrc32(path) === crc;
  } catch {
    return false;
  }
  return ok;
}
