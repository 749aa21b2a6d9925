// Finds the separate debug file of a stripped binary, the way gdb does: first by GNU build id
// under /usr/lib/debug/.build-id/, then by the .gnu_debuglink name (next to the binary, in its
// .debug/ subfolder, under /usr/lib/debug/<dir>/) with the CRC32 the link records. Every path is
// resolved inside a root (a container's files through /proc/PID/root), and opened as an
// untrusted file: the binary names the link, and its owner may have put a FIFO, a device or a
// link out of the root where the debug file should be (untrusted-file.ts).

import { closeSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import { crc32 } from 'node:zlib';
import { tryOpenUntrusted } from '../untrusted-file.js';
import { ElfFile, SHT_NOBITS } from './elf-file.js';

const DEBUG_ROOT = '/usr/lib/debug';
/** A debug file found by its .gnu_debuglink is checked by a CRC of all of it: at most this big. */
export const MAX_DEBUGLINK_FILE = 4 * 1024 ** 3;

export interface DebugLink {
  name: string;
  crc: number;
}

export interface FindDebugFileOptions {
  /** The root the binary's process sees, e.g. `/proc/1234/root`; '' or '/' for the host. */
  root?: string;
  /** The binary's path as the process sees it (inside `root`); needed for debuglink lookups. */
  binaryPath?: string;
}

/** A debug file found: `path` inside the root, `elf` open (the caller closes it). */
export interface DebugFile {
  path: string;
  elf: ElfFile;
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

/** CRC32 (the zlib polynomial, as in .gnu_debuglink) of the first `size` bytes behind `fd`. */
export function fileCrc32(fd: number, size: number): number {
  const buf = Buffer.allocUnsafe(1 << 20);
  let crc = 0;
  for (let pos = 0; pos < size; ) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
    if (n <= 0) break;
    crc = crc32(buf.subarray(0, n), crc);
    pos += n;
  }
  return crc >>> 0;
}

/**
 * The separate debug file for `elf`, open, or undefined. A build-id candidate must carry the
 * same build id; a debuglink candidate must match the recorded CRC32. Files that carry no
 * .symtab are skipped (a debug file without symbols does not help symbolization).
 */
export function findDebugFile(elf: ElfFile, opts: FindDebugFileOptions = {}): DebugFile | undefined {
  const root = opts.root && opts.root !== '/' ? opts.root.replace(/\/+$/, '') : '/';
  const buildId = elf.buildId;
  if (buildId.length > 2) {
    const cand = `${DEBUG_ROOT}/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`;
    const found = candidate(root, cand, (d) => d.buildId === buildId);
    if (found) return found;
  }
  const link = readDebugLink(elf);
  if (link && opts.binaryPath) {
    const binary = posix.normalize(opts.binaryPath);
    const dir = posix.dirname(binary);
    const cands = [posix.join(dir, link.name), posix.join(dir, '.debug', link.name), posix.join(DEBUG_ROOT, dir, link.name)];
    for (const c of cands) {
      if (c === binary) continue;
      const found = candidate(root, c, (d) => !buildId || !d.buildId || d.buildId === buildId, link.crc);
      if (found) return found;
    }
  }
  return undefined;
}

function candidate(root: string, path: string, check: (d: ElfFile) => boolean, crc?: number): DebugFile | undefined {
  const opened = tryOpenUntrusted(path, { root });
  if (!opened) return undefined;
  if (crc !== undefined && opened.stats.size > MAX_DEBUGLINK_FILE) {
    closeSync(opened.fd);
    return undefined;
  }
  // The table's names are read later through this path (by identity): the host's name for it.
  const hostPath = root === '/' ? path : root + path;
  let elf: ElfFile;
  try {
    elf = ElfFile.fromDescriptor(opened.fd, hostPath);
  } catch {
    return undefined;
  }
  try {
    const ok = check(elf) && elf.sections.some((s) => s.name === '.symtab' && s.size > 0) && (crc === undefined || fileCrc32(opened.fd, opened.stats.size) === crc);
    if (ok) return { path, elf };
  } catch {
    // unreadable: not the debug file
  }
  elf.close();
  return undefined;
}
