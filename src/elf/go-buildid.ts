// The Go build id, as `go tool buildid` prints it: the descriptor of the ELF note with owner "Go"
// and type 4 (.note.go.buildid). The Go linker writes that owner as "Go\0\0" (namesz 4), so the
// name is compared without its NUL padding. The note is looked for in note sections, then in
// PT_NOTE segments, then (section and program headers both unhelpful) by scanning the start of
// the file for its header bytes; the linker puts it right after the program headers. Last, the
// raw copy `\xff Go build ID: "…"\n \xff` that Go writes at the start of the text for formats
// without notes is searched for, as cmd/internal/buildid does. '' when there is none.

import type { ElfFile } from './elf-file.js';
import { PF_X, PT_LOAD, SHT_NOBITS, withinBudget } from './elf-file.js';

const NOTE_GO_BUILDID = 4;
const NOTE_NAME = Buffer.from('Go\0\0', 'latin1');
const RAW_PREFIX = Buffer.from('\xff Go build ID: "', 'latin1');
const RAW_END = Buffer.from('"\n \xff', 'latin1');
/** How much of the file's start, and of each text segment's, is searched for the raw copy. */
const RAW_SCAN = 32 * 1024;
const MAX_ID = 1024;

/** The Go build id of `elf`, '' when it has none. Never throws. */
export function readGoBuildId(elf: ElfFile): string {
  try {
    const note = goNote(elf);
    if (note !== undefined) return note;
    const areas: Array<[number, number]> = [[0, Math.min(elf.size, RAW_SCAN)]];
    const text = elf.section('.text');
    if (text && text.type !== SHT_NOBITS) areas.push([text.offset, Math.min(text.size, RAW_SCAN)]);
    for (const p of elf.segments) if (p.type === PT_LOAD && p.flags & PF_X) areas.push([p.offset, Math.min(p.filesz, RAW_SCAN)]);
    for (const [off, len] of withinBudget(areas, (a) => a[1], elf.size)) {
      const id = rawBuildId(elf.read(off, len));
      if (id !== undefined) return id;
    }
  } catch {
    // unreadable: no build id
  }
  return '';
}

/** The "Go" type-4 note from note sections or PT_NOTE segments (ElfFile.findNote), else by scanning. */
function goNote(elf: ElfFile): string | undefined {
  const note = elf.findNote('Go', NOTE_GO_BUILDID, MAX_ID);
  if (note !== undefined) return note.toString('latin1');
  // namesz 4, descsz, type 4, "Go\0\0", 4-byte aligned.
  const head = elf.read(0, Math.min(elf.size, RAW_SCAN));
  for (let at = head.indexOf(NOTE_NAME); at >= 0; at = head.indexOf(NOTE_NAME, at + 1)) {
    const p = at - 12;
    if (p < 0 || p % 4 !== 0 || head.readUInt32LE(p) !== 4 || head.readUInt32LE(p + 8) !== NOTE_GO_BUILDID) continue;
    const descsz = head.readUInt32LE(p + 4);
    if (descsz > 0 && descsz <= MAX_ID && at + 4 + descsz <= head.length) return head.toString('latin1', at + 4, at + 4 + descsz);
  }
  return undefined;
}

function rawBuildId(data: Buffer): string | undefined {
  const i = data.indexOf(RAW_PREFIX);
  if (i < 0) return undefined;
  const start = i + RAW_PREFIX.length;
  const j = data.indexOf(RAW_END, start);
  if (j < 0 || j - start > MAX_ID) return undefined;
  // A Go-quoted string; build ids are base64url and '/', so only \" and \\ can occur.
  return data.toString('latin1', start, j).replace(/\\(.)/g, '$1');
}
