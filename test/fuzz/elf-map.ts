// Where the structure of a seed ELF file lies: the header fields, program and section headers,
// notes, symbol entries, .eh_frame entries, .eh_frame_hdr, the Go pclntab header and function
// table, DWARF unit headers and LEB128s, compressed-section headers, .go.buildinfo. The mutator
// aims at these (a size that points past the end, a count of 2^32-1, a LEB128 that never
// ends) far more often than a random bit flip would hit them.
// Written apart from src/elf on purpose: it reads only well-formed seeds, and it must not share
// a parser's mistakes with the parser it attacks.

export type FieldKind = 'offset' | 'size' | 'count' | 'index' | 'entsize' | 'addr' | 'value' | 'magic' | 'nameoff';

export interface Field {
  at: number;
  width: 1 | 2 | 4 | 8;
  kind: FieldKind;
  label: string;
  /** Other values worth trying for this field (alternative magics, encodings). */
  also?: readonly number[];
}

/** Fields of `count` similar elements (symbols, FDEs, functions), listed on demand. */
export interface FieldGroup {
  label: string;
  count: number;
  /** How often the mutator picks this group relative to the others. */
  weight: number;
  fields(i: number): Field[];
  /** Where element i lies, for groups of fixed-size entries (headers): the mutator copies them. */
  entry?(i: number): { at: number; size: number };
}

export interface Region {
  label: string;
  start: number;
  end: number;
  /** Positions of LEB128 values inside (DWARF, CFA programs), if known. */
  lebs?: number[];
}

export interface ElfMap {
  size: number;
  is64: boolean;
  groups: FieldGroup[];
  regions: Region[];
  /** Virtual addresses worth looking up: function starts, and points spread over the text. */
  probes: number[];
}

interface Shdr {
  index: number;
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
  hdrAt: number;
}

const SHT_SYMTAB = 2;
const SHT_NOTE = 7;
const SHT_NOBITS = 8;
const SHT_DYNSYM = 11;
const SHF_COMPRESSED = 0x800;
const PT_LOAD = 1;
const PF_X = 1;

const PCLN_MAGICS = [0xfffffff1, 0xfffffff0, 0xfffffffa, 0xfffffffb];

export function mapElf(b: Buffer): ElfMap {
  const is64 = b[4] === 2;
  const u16 = (o: number) => b.readUInt16LE(o);
  const u32 = (o: number) => b.readUInt32LE(o);
  const word = (o: number) => (is64 ? Number(b.readBigUInt64LE(o)) : b.readUInt32LE(o));
  const groups: FieldGroup[] = [];
  const regions: Region[] = [];
  const probes: number[] = [];
  const f = (at: number, width: Field['width'], kind: FieldKind, label: string, also?: number[]): Field => ({ at, width, kind, label, also });

  // ELF header.
  const ehdr: Field[] = is64
    ? [
        f(4, 1, 'value', 'e_ident[EI_CLASS]', [1, 2, 3]), f(5, 1, 'value', 'e_ident[EI_DATA]', [1, 2]),
        f(16, 2, 'value', 'e_type', [1, 2, 3, 4]), f(18, 2, 'value', 'e_machine', [3, 62, 183]),
        f(24, 8, 'addr', 'e_entry'), f(32, 8, 'offset', 'e_phoff'), f(40, 8, 'offset', 'e_shoff'),
        f(54, 2, 'entsize', 'e_phentsize'), f(56, 2, 'count', 'e_phnum'), f(58, 2, 'entsize', 'e_shentsize'),
        f(60, 2, 'count', 'e_shnum'), f(62, 2, 'index', 'e_shstrndx', [0xffff]),
      ]
    : [
        f(4, 1, 'value', 'e_ident[EI_CLASS]', [1, 2]), f(16, 2, 'value', 'e_type'), f(24, 4, 'addr', 'e_entry'),
        f(28, 4, 'offset', 'e_phoff'), f(32, 4, 'offset', 'e_shoff'), f(42, 2, 'entsize', 'e_phentsize'),
        f(44, 2, 'count', 'e_phnum'), f(46, 2, 'entsize', 'e_shentsize'), f(48, 2, 'count', 'e_shnum'),
        f(50, 2, 'index', 'e_shstrndx', [0xffff]),
      ];
  groups.push({ label: 'ehdr', count: 1, weight: 3, fields: () => ehdr });

  // Program headers.
  const phoff = is64 ? word(32) : u32(28);
  const phentsize = is64 ? u16(54) : u16(42);
  const phnum = is64 ? u16(56) : u16(44);
  const segs: Array<{ type: number; flags: number; offset: number; vaddr: number; filesz: number }> = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (o + phentsize > b.length) break;
    segs.push(
      is64
        ? { type: u32(o), flags: u32(o + 4), offset: word(o + 8), vaddr: word(o + 16), filesz: word(o + 32) }
        : { type: u32(o), flags: u32(o + 24), offset: u32(o + 4), vaddr: u32(o + 8), filesz: u32(o + 16) },
    );
  }
  if (phnum > 0) {
    groups.push({
      label: 'phdr',
      count: segs.length,
      weight: 3,
      entry: (i) => ({ at: phoff + i * phentsize, size: phentsize }),
      fields: (i) => {
        const o = phoff + i * phentsize;
        const l = `phdr[${i}]`;
        return is64
          ? [f(o, 4, 'value', `${l}.p_type`, [1, 2, 3, 4, 7]), f(o + 4, 4, 'value', `${l}.p_flags`, [0, 1, 2, 4, 5, 6]), f(o + 8, 8, 'offset', `${l}.p_offset`),
             f(o + 16, 8, 'addr', `${l}.p_vaddr`), f(o + 32, 8, 'size', `${l}.p_filesz`), f(o + 40, 8, 'size', `${l}.p_memsz`), f(o + 48, 8, 'value', `${l}.p_align`)]
          : [f(o, 4, 'value', `${l}.p_type`, [1, 4, 7]), f(o + 4, 4, 'offset', `${l}.p_offset`), f(o + 8, 4, 'addr', `${l}.p_vaddr`),
             f(o + 16, 4, 'size', `${l}.p_filesz`), f(o + 20, 4, 'size', `${l}.p_memsz`), f(o + 24, 4, 'value', `${l}.p_flags`)];
      },
    });
  }
  for (const s of segs) {
    if (s.type !== PT_LOAD || !(s.flags & PF_X) || s.filesz === 0) continue;
    for (let k = 0; k < 64; k++) probes.push(s.vaddr + Math.floor((s.filesz * k) / 64));
  }

  // Section headers.
  const shoff = is64 ? word(40) : u32(32);
  const shentsize = is64 ? u16(58) : u16(46);
  const shnum = is64 ? u16(60) : u16(48);
  const shstrndx = is64 ? u16(62) : u16(50);
  const shdrs: Shdr[] = [];
  for (let i = 0; shoff > 0 && i < shnum; i++) {
    const o = shoff + i * shentsize;
    if (o + shentsize > b.length) break;
    shdrs.push(
      is64
        ? { index: i, name: '', type: u32(o + 4), flags: word(o + 8), addr: word(o + 16), offset: word(o + 24), size: word(o + 32), link: u32(o + 40), entsize: word(o + 56), hdrAt: o, nameOff: u32(o) } as Shdr & { nameOff: number }
        : { index: i, name: '', type: u32(o + 4), flags: u32(o + 8), addr: u32(o + 12), offset: u32(o + 16), size: u32(o + 20), link: u32(o + 24), entsize: u32(o + 36), hdrAt: o, nameOff: u32(o) } as Shdr & { nameOff: number },
    );
  }
  const strs = shdrs[shstrndx];
  for (const s of shdrs as Array<Shdr & { nameOff: number }>) {
    if (!strs) break;
    const at = strs.offset + s.nameOff;
    const end = b.indexOf(0, at);
    s.name = end > at ? b.toString('latin1', at, end) : '';
  }
  if (shdrs.length > 0) {
    groups.push({
      label: 'shdr',
      count: shdrs.length,
      weight: 8,
      entry: (i) => ({ at: shdrs[i]!.hdrAt, size: shentsize }),
      fields: (i) => {
        const s = shdrs[i]!;
        const o = s.hdrAt;
        const l = `shdr[${i} ${s.name}]`;
        return is64
          ? [f(o, 4, 'nameoff', `${l}.sh_name`), f(o + 4, 4, 'value', `${l}.sh_type`, [1, 2, 3, 7, 8, 11]), f(o + 8, 8, 'value', `${l}.sh_flags`, [SHF_COMPRESSED, 0x6, 0x806]),
             f(o + 16, 8, 'addr', `${l}.sh_addr`), f(o + 24, 8, 'offset', `${l}.sh_offset`), f(o + 32, 8, 'size', `${l}.sh_size`),
             f(o + 40, 4, 'index', `${l}.sh_link`), f(o + 44, 4, 'value', `${l}.sh_info`), f(o + 56, 8, 'entsize', `${l}.sh_entsize`, [0, 1, 16, 23, 24, 25])]
          : [f(o, 4, 'nameoff', `${l}.sh_name`), f(o + 4, 4, 'value', `${l}.sh_type`, [1, 2, 3, 7, 8, 11]), f(o + 8, 4, 'value', `${l}.sh_flags`, [SHF_COMPRESSED]),
             f(o + 12, 4, 'addr', `${l}.sh_addr`), f(o + 16, 4, 'offset', `${l}.sh_offset`), f(o + 20, 4, 'size', `${l}.sh_size`),
             f(o + 24, 4, 'index', `${l}.sh_link`), f(o + 36, 4, 'entsize', `${l}.sh_entsize`, [0, 1, 16])];
      },
    });
  }
  for (const s of shdrs) {
    if (s.type === SHT_NOBITS || s.size === 0 || s.offset + s.size > b.length) continue;
    regions.push({ label: s.name || `section ${s.index}`, start: s.offset, end: s.offset + s.size });
  }
  const byName = (n: string) => shdrs.find((s) => s.name === n && s.type !== SHT_NOBITS && s.offset + s.size <= b.length);

  // Symbols.
  for (const s of shdrs) {
    if ((s.type !== SHT_SYMTAB && s.type !== SHT_DYNSYM) || s.offset + s.size > b.length) continue;
    const ent = is64 ? 24 : 16;
    const n = Math.floor(s.size / ent);
    groups.push({
      label: s.name,
      count: n,
      weight: 4,
      fields: (i) => {
        const o = s.offset + i * ent;
        const l = `${s.name}[${i}]`;
        return is64
          ? [f(o, 4, 'nameoff', `${l}.st_name`), f(o + 4, 1, 'value', `${l}.st_info`, [0x12, 0x02, 0x00, 0x1a, 0x22]), f(o + 6, 2, 'index', `${l}.st_shndx`, [0, 0xfff1, 0xffff]),
             f(o + 8, 8, 'addr', `${l}.st_value`), f(o + 16, 8, 'size', `${l}.st_size`)]
          : [f(o, 4, 'nameoff', `${l}.st_name`), f(o + 4, 4, 'addr', `${l}.st_value`), f(o + 8, 4, 'size', `${l}.st_size`), f(o + 12, 1, 'value', `${l}.st_info`), f(o + 14, 2, 'index', `${l}.st_shndx`)];
      },
    });
    const STT_FUNC = 2;
    for (let i = 1; i < n && probes.length < 2048; i++) {
      const o = s.offset + i * ent;
      const info = b[o + (is64 ? 4 : 12)]!;
      const value = is64 ? Number(b.readBigUInt64LE(o + 8)) : u32(o + 4);
      if ((info & 0xf) === STT_FUNC && value > 0) probes.push(value, value + 1);
    }
  }

  // Notes.
  for (const s of shdrs.filter((x) => x.type === SHT_NOTE && x.offset + x.size <= b.length)) {
    const notes: number[] = [];
    for (let p = s.offset; p + 12 <= s.offset + s.size; ) {
      notes.push(p);
      const namesz = u32(p);
      const descsz = u32(p + 4);
      p += 12 + align4(namesz) + align4(descsz);
    }
    groups.push({
      label: s.name,
      count: notes.length,
      weight: 2,
      fields: (i) => {
        const p = notes[i]!;
        return [f(p, 4, 'size', `${s.name}[${i}].n_namesz`), f(p + 4, 4, 'size', `${s.name}[${i}].n_descsz`), f(p + 8, 4, 'value', `${s.name}[${i}].n_type`, [1, 3, 4])];
      },
    });
  }

  // Compressed sections: the Chdr, or the .zdebug header.
  for (const s of shdrs) {
    if (s.type === SHT_NOBITS || s.offset + s.size > b.length || s.size < 12) continue;
    if (s.flags & SHF_COMPRESSED) {
      const l = `${s.name}.chdr`;
      const fields = is64
        ? [f(s.offset, 4, 'value', `${l}.ch_type`, [1, 2, 3]), f(s.offset + 8, 8, 'size', `${l}.ch_size`), f(s.offset + 16, 8, 'value', `${l}.ch_addralign`)]
        : [f(s.offset, 4, 'value', `${l}.ch_type`, [1, 2]), f(s.offset + 4, 4, 'size', `${l}.ch_size`)];
      groups.push({ label: l, count: 1, weight: 3, fields: () => fields });
    } else if (s.name.startsWith('.zdebug') && b.toString('latin1', s.offset, s.offset + 4) === 'ZLIB') {
      // The size is big-endian: written as two halves so that "huge" stays huge.
      const fields = [f(s.offset + 4, 4, 'value', `${s.name}.size_hi(BE)`, [0, 0x7f, 0xffffffff]), f(s.offset + 8, 4, 'value', `${s.name}.size_lo(BE)`, [0, 0xffffffff, 0x01000000])];
      groups.push({ label: `${s.name}.hdr`, count: 1, weight: 3, fields: () => fields });
    }
  }

  // .eh_frame entries and .eh_frame_hdr.
  const eh = byName('.eh_frame');
  if (eh) {
    const entries: Array<{ at: number; isCie: boolean; end: number }> = [];
    for (let p = eh.offset; p + 8 <= eh.offset + eh.size; ) {
      const len = u32(p);
      if (len === 0 || len === 0xffffffff) break;
      entries.push({ at: p, isCie: u32(p + 4) === 0, end: p + 4 + len });
      p += 4 + len;
    }
    groups.push({
      label: '.eh_frame',
      count: entries.length,
      weight: 6,
      fields: (i) => {
        const e = entries[i]!;
        const l = `.eh_frame[${i} ${e.isCie ? 'CIE' : 'FDE'}@0x${(e.at - eh.offset).toString(16)}]`;
        const out = [f(e.at, 4, 'size', `${l}.length`, [0xffffffff, 0]), f(e.at + 4, 4, e.isCie ? 'value' : 'offset', `${l}.${e.isCie ? 'cie_id' : 'cie_pointer'}`)];
        if (e.isCie) out.push(f(e.at + 8, 1, 'value', `${l}.version`, [1, 3, 4]));
        else if (e.at + 16 <= e.end) out.push(f(e.at + 8, 4, 'addr', `${l}.pc_begin`), f(e.at + 12, 4, 'size', `${l}.pc_range`));
        return out;
      },
    });
    regions.push({ label: '.eh_frame entries', start: eh.offset, end: eh.offset + eh.size, lebs: entries.flatMap((e) => (e.isCie ? [] : [e.at + 16])) });
  }
  const hdr = byName('.eh_frame_hdr');
  if (hdr && hdr.size >= 12) {
    const o = hdr.offset;
    const count = u32(o + 8);
    const head = [f(o, 1, 'value', '.eh_frame_hdr.version', [0, 2]), f(o + 1, 1, 'value', '.eh_frame_hdr.eh_frame_ptr_enc', [0xff, 0x1b, 0x03]),
      f(o + 2, 1, 'value', '.eh_frame_hdr.fde_count_enc', [0xff, 0x03, 0x0c, 0x01]), f(o + 3, 1, 'value', '.eh_frame_hdr.table_enc', [0xff, 0x3b, 0x03, 0x1b, 0x09]),
      f(o + 4, 4, 'offset', '.eh_frame_hdr.eh_frame_ptr'), f(o + 8, 4, 'count', '.eh_frame_hdr.fde_count')];
    groups.push({ label: '.eh_frame_hdr', count: 1, weight: 3, fields: () => head });
    groups.push({
      label: '.eh_frame_hdr.table',
      count: Math.min(count, Math.floor((hdr.size - 12) / 8)),
      weight: 3,
      fields: (i) => [f(o + 12 + i * 8, 4, 'addr', `.eh_frame_hdr.table[${i}].initial_loc`), f(o + 16 + i * 8, 4, 'offset', `.eh_frame_hdr.table[${i}].fde`)],
    });
  }

  // The Go pclntab: header words, the function table, and each function's _func fields.
  const pcln = byName('.gopclntab') ?? byName('.data.rel.ro.gopclntab');
  if (pcln && pcln.size > 64) {
    const o = pcln.offset;
    const ps = b[o + 7] === 4 ? 4 : 8;
    const wd = (i: number) => (ps === 8 ? Number(b.readBigUInt64LE(o + 8 + i * 8)) : u32(o + 8 + i * 4));
    const names = ['nfunc', 'nfiles', 'textStart', 'funcnameOffset', 'cuOffset', 'filetabOffset', 'pctabOffset', 'pclnOffset'];
    const kinds: FieldKind[] = ['count', 'count', 'addr', 'offset', 'offset', 'offset', 'offset', 'offset'];
    const head = [f(o, 4, 'magic', '.gopclntab.magic', PCLN_MAGICS), f(o + 6, 1, 'value', '.gopclntab.minLC', [0, 1, 2, 3, 4]), f(o + 7, 1, 'value', '.gopclntab.ptrSize', [0, 4, 8]),
      ...names.map((n, i) => f(o + 8 + i * ps, ps as 4 | 8, kinds[i]!, `.gopclntab.${n}`))];
    groups.push({ label: '.gopclntab header', count: 1, weight: 5, fields: () => head });
    const nfunc = wd(0);
    const funcname = wd(3);
    const pctab = wd(6);
    const functab = wd(7);
    if (functab > 0 && functab + (nfunc + 1) * 8 <= pcln.size) {
      groups.push({
        label: '.gopclntab.functab',
        count: nfunc + 1,
        weight: 5,
        fields: (i) => [f(o + functab + i * 8, 4, 'addr', `.gopclntab.functab[${i}].entryoff`), f(o + functab + i * 8 + 4, 4, 'offset', `.gopclntab.functab[${i}].funcoff`)],
      });
      groups.push({
        label: '.gopclntab._func',
        count: nfunc,
        weight: 6,
        fields: (i) => {
          const fo = o + functab + u32(o + functab + i * 8 + 4);
          if (fo + 48 > o + pcln.size) return [];
          const l = `.gopclntab._func[${i}]`;
          return [f(fo, 4, 'addr', `${l}.entryOff`), f(fo + 4, 4, 'nameoff', `${l}.nameOff`), f(fo + 16, 4, 'offset', `${l}.pcsp`), f(fo + 20, 4, 'offset', `${l}.pcfile`),
            f(fo + 24, 4, 'offset', `${l}.pcln`), f(fo + 28, 4, 'count', `${l}.npcdata`), f(fo + 32, 4, 'index', `${l}.cuOffset`), f(fo + 43, 1, 'count', `${l}.nfuncdata`),
            f(fo + 44, 4, 'offset', `${l}.pcdata[0]`), f(fo + 52, 4, 'offset', `${l}.pcdata[2]`)];
        },
      });
      if (funcname > 0 && funcname < pctab && pctab < pcln.size) {
        regions.push({ label: '.gopclntab funcnametab', start: o + funcname, end: o + Math.min(pctab, wd(4)) });
        regions.push({ label: '.gopclntab pctab', start: o + pctab, end: o + functab });
      }
    }
  }

  // DWARF, when not compressed: unit headers, and every abbreviation's LEB128s.
  const info = byName('.debug_info');
  if (info && !(info.flags & SHF_COMPRESSED)) {
    const units: number[] = [];
    for (let p = info.offset; p + 11 <= info.offset + info.size && units.length < 4096; ) {
      const len = u32(p);
      if (len === 0 || len >= 0xfffffff0) break;
      units.push(p);
      p += 4 + len;
    }
    groups.push({
      label: '.debug_info units',
      count: units.length,
      weight: 4,
      fields: (i) => {
        const p = units[i]!;
        const v = u16(p + 4);
        const l = `.debug_info.unit[${i}]`;
        const out = [f(p, 4, 'size', `${l}.unit_length`, [0xffffffff, 0xfffffff0]), f(p + 4, 2, 'value', `${l}.version`, [1, 2, 3, 4, 5, 6])];
        if (v >= 5) out.push(f(p + 6, 1, 'value', `${l}.unit_type`, [1, 2, 3, 4, 5, 6, 0x80]), f(p + 7, 1, 'value', `${l}.address_size`, [0, 4, 8, 2]), f(p + 8, 4, 'offset', `${l}.debug_abbrev_offset`));
        else out.push(f(p + 6, 4, 'offset', `${l}.debug_abbrev_offset`), f(p + 10, 1, 'value', `${l}.address_size`, [0, 4, 8]));
        return out;
      },
    });
    regions.push({ label: '.debug_info DIEs', start: info.offset, end: info.offset + info.size, lebs: units.map((p) => p + (u16(p + 4) >= 5 ? 12 : 11)) });
  }
  const abbrev = byName('.debug_abbrev');
  if (abbrev && !(abbrev.flags & SHF_COMPRESSED)) {
    // Every byte of an abbreviation table is part of a LEB128 (codes, tags, names, forms) but
    // the children flag.
    const lebs: number[] = [];
    for (let p = abbrev.offset; p < abbrev.offset + abbrev.size && lebs.length < 8192; p++) if (p === abbrev.offset || (b[p - 1]! & 0x80) === 0) lebs.push(p);
    regions.push({ label: '.debug_abbrev', start: abbrev.offset, end: abbrev.offset + abbrev.size, lebs });
  }

  // .go.buildinfo: the header, and the inline version's varint lengths.
  const bi = byName('.go.buildinfo');
  if (bi && bi.size >= 32) {
    const o = bi.offset;
    const fields = [f(o + 14, 1, 'value', '.go.buildinfo.ptrSize', [0, 4, 8]), f(o + 15, 1, 'value', '.go.buildinfo.flags', [0, 1, 2, 3]), f(o + 16, 8, 'addr', '.go.buildinfo.versionPtr'), f(o + 32, 4, 'value', '.go.buildinfo.versionLen+')];
    groups.push({ label: '.go.buildinfo', count: 1, weight: 2, fields: () => fields });
    regions.push({ label: '.go.buildinfo', start: o, end: o + bi.size, lebs: [o + 32] });
  }
  const link = byName('.gnu_debuglink');
  if (link && link.size >= 8) {
    const fields = [f(link.offset + link.size - 4, 4, 'value', '.gnu_debuglink.crc')];
    groups.push({ label: '.gnu_debuglink', count: 1, weight: 1, fields: () => fields });
  }

  return { size: b.length, is64, groups: groups.filter((g) => g.count > 0), regions, probes: [...new Set(probes)].sort((x, y) => x - y) };
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
