// Where a Go binary keeps runtime.allgs, the slice of every goroutine the process ever created
// (dead ones included; it never shrinks): a []*g slice header, {array, len, cap}, 24 bytes.
// Walking it is how the whole set of goroutines is found, parked ones included, as the
// runtime's own forEachG does (see readAllGoroutines in goroutine-reader.ts).
//
// With a symbol table the address is the symbol's. Stripped binaries (-ldflags='-s -w') still
// have .gopclntab, so runtime.allgadd is found by name, and its machine code names the
// variable: `allgs = append(allgs, gp)` loads, and stores, all three words of the header with
// RIP-relative operands (MOVQ runtime.allgs+16(SB), CX … MOVQ BX, runtime.allgs+8(SB)). The
// code is scanned byte by byte for such operands, without decoding instructions; a byte that
// only looks like the start of one gives a random target, so the answer must pass three tests
// no random target passes together: T, T+8 and T+16 are all referenced (the slice header:
// allgadd's other variables, allglock, allglen and allgptr, are single words), T-8 is not (a
// longer run of referenced words would be ambiguous), and T lies in the binary's data or bss.
// Exactly one such T, or no answer.
//
// arm64 code builds addresses from ADRP + ADD/LDR pairs, which this scan does not follow: there
// the address is known only from the symbol table.

import { readlinkSync } from 'node:fs';
import { MAX_MAPS_BYTES, readBounded } from '../untrusted-file.js';
import { ElfFile, EM_X86_64, PT_LOAD } from '../elf/elf-file.js';
import { GoPclnTab } from '../elf/gopclntab.js';
import { symtabValue } from './runtime-offsets.js';

export interface AllgsAddress {
  /** Link-time virtual address of runtime.allgs (add the load bias for a PIE). */
  address: number;
  /** 'symtab': from .symtab; 'allgadd-code': from the code of runtime.allgadd. */
  how: 'symtab' | 'allgadd-code';
}

const STT_OBJECT = 1;
const PF_W = 2;
/** Sections a Go variable can live in (allgs holds pointers: .bss, or .data if initialized). */
const DATA_SECTIONS = ['.data', '.bss', '.noptrdata', '.noptrbss'];
/** runtime.allgadd is a few hundred bytes; more than this is not it. */
const MAX_FUNCTION_BYTES = 64 << 10;

/**
 * Immediate bytes after the disp32 for the opcodes (with REX.W: 64-bit operands) whose
 * ModRM can name a RIP-relative memory operand: the target is relative to the end of the
 * instruction, so the immediate counts. MOV, LEA, XCHG, ALU r/m,r and r,r/m, TEST, and the
 * immediate forms (group 1 with imm8 / imm32, MOV r/m,imm32).
 */
const IMMEDIATE_BYTES: ReadonlyMap<number, number> = new Map([
  [0x89, 0], [0x8b, 0], [0x8d, 0], [0x87, 0], [0x85, 0],
  [0x01, 0], [0x03, 0], [0x09, 0], [0x0b, 0], [0x21, 0], [0x23, 0],
  [0x29, 0], [0x2b, 0], [0x31, 0], [0x33, 0], [0x39, 0], [0x3b, 0],
  [0x83, 1], [0x81, 4], [0xc7, 4],
]);

/**
 * The link-time address of runtime.allgs: from .symtab when the binary has one, else (amd64
 * only) from the code of runtime.allgadd found through .gopclntab. `opts.pclntab` saves
 * reading the table again when the caller has it. Undefined when neither works; never throws.
 */
export function findAllgs(elf: ElfFile, opts: { pclntab?: GoPclnTab } = {}): AllgsAddress | undefined {
  try {
    const sym = symtabValue(elf, 'runtime.allgs', STT_OBJECT);
    if (sym) return { address: sym, how: 'symtab' };
    if (elf.machine !== EM_X86_64 || !elf.is64) return undefined;
    const tab = opts.pclntab ?? GoPclnTab.open(elf);
    const fn = tab && findFunction(tab, 'runtime.allgadd');
    if (!fn || fn.end <= fn.entry || fn.end - fn.entry > MAX_FUNCTION_BYTES) return undefined;
    const off = elf.vaddrToFileOffset(fn.entry);
    if (off === undefined) return undefined;
    const code = elf.read(off, fn.end - fn.entry);
    const address = sliceHeaderTarget(ripRelativeTargets(code, fn.entry), dataRanges(elf));
    return address === undefined ? undefined : { address, how: 'allgadd-code' };
  } catch {
    return undefined;
  }
}

/** The function named `name` in the pclntab, by walking the function table in address order. */
export function findFunction(tab: GoPclnTab, name: string): { entry: number; end: number } | undefined {
  const [start, end] = tab.textRange;
  for (let pc = start; pc < end; ) {
    const f = tab.funcAt(pc);
    if (!f || f.end <= pc) return undefined;
    if (f.name === name) return { entry: f.entry, end: f.end };
    pc = f.end;
  }
  return undefined;
}

/**
 * Every address that a RIP-relative 64-bit operand would name, were an instruction to start at
 * each byte of `code` (loaded at `vaddr`): REX.W, one of IMMEDIATE_BYTES' opcodes, ModRM with
 * mod=00 rm=101, disp32. Target = end of the instruction + disp32.
 */
export function ripRelativeTargets(code: Buffer, vaddr: number): Set<number> {
  const out = new Set<number>();
  for (let i = 0; i + 7 <= code.length; i++) {
    if ((code[i] & 0xf8) !== 0x48) continue;
    const imm = IMMEDIATE_BYTES.get(code[i + 1]);
    if (imm === undefined || (code[i + 2] & 0xc7) !== 0x05) continue;
    const length = 7 + imm;
    if (i + length > code.length) continue;
    out.add(vaddr + i + length + code.readInt32LE(i + 3));
  }
  return out;
}

/** The one 8-aligned T in `ranges` with T, T+8, T+16 referenced and T-8 not; else undefined. */
function sliceHeaderTarget(targets: Set<number>, ranges: Array<[number, number]>): number | undefined {
  const inData = (a: number): boolean => ranges.some(([lo, hi]) => a >= lo && a + 24 <= hi);
  const found = [...targets].filter((t) => t % 8 === 0 && targets.has(t + 8) && targets.has(t + 16) && !targets.has(t - 8) && inData(t));
  return found.length === 1 ? found[0] : undefined;
}

/** [start, end) of the sections that hold Go variables, else of the writable PT_LOAD segments. */
function dataRanges(elf: ElfFile): Array<[number, number]> {
  const secs = elf.sections.filter((s) => DATA_SECTIONS.includes(s.name) && s.addr !== 0);
  if (secs.length > 0) return secs.map((s) => [s.addr, s.addr + s.size]);
  return elf.segments.filter((p) => p.type === PT_LOAD && p.flags & PF_W).map((p) => [p.vaddr, p.vaddr + p.memsz]);
}

/**
 * What to add to a link-time address of `exePath` to get the address in process `pid`: the
 * start of its mapping at file offset 0 minus the link-time address of that file offset. 0 for
 * executables linked at a fixed address; for a PIE, where the kernel put it. The mapping is
 * the one whose path is `exePath` (the text of a /proc/PID/exe link). Undefined when the process does
 * not map the file or cannot be read.
 */
export function loadBias(pid: number, exePath: string, elf?: ElfFile): number | undefined {
  let maps: string;
  let want: string;
  try {
    maps = readBounded(`/proc/${pid}/maps`, MAX_MAPS_BYTES).text;
    want = mappedPath(exePath);
  } catch {
    return undefined;
  }
  let start: number | undefined;
  for (const line of maps.split('\n')) {
    // start-end perms offset dev inode path
    const m = /^([0-9a-f]+)-[0-9a-f]+ \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (!m || parseInt(m[2], 16) !== 0) continue;
    if (m[3].replace(/ \(deleted\)$/, '') !== want) continue;
    const s = parseInt(m[1], 16);
    if (start === undefined || s < start) start = s;
  }
  if (start === undefined) return undefined;
  const first = elf ? firstLoad(elf) : firstLoadOf(exePath);
  return first === undefined ? undefined : start - first;
}

/**
 * The path maps shows for `exePath`: the text of a /proc/PID/exe link (never resolved further:
 * that would walk the process's path through our root, not its own), else the path itself.
 */
function mappedPath(exePath: string): string {
  try {
    return readlinkSync(exePath).replace(/ \(deleted\)$/, '');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') return exePath;
    throw e;
  }
}

/** The link-time address of file offset 0: the first PT_LOAD's vaddr minus its offset. */
function firstLoad(elf: ElfFile): number | undefined {
  const p = elf.segments.filter((s) => s.type === PT_LOAD).sort((a, b) => a.offset - b.offset)[0];
  return p && p.vaddr - p.offset;
}

function firstLoadOf(path: string): number | undefined {
  try {
    return ElfFile.withFile(path, firstLoad);
  } catch {
    return undefined;
  }
}
