// A small DWARF reader (versions 2–5, 32- and 64-bit DWARF, little-endian): enough to find a
// type by name in .debug_info, list a struct's members with their byte offsets, and follow a
// member's type through pointers, typedefs, arrays and Go's slices and maps. It is what user
// space needs to learn struct layouts (Go's runtime.g and runtime.m) from the binary itself.
//
// Only what is asked for is decoded. Unit headers are read up front; a unit's DIEs are walked
// only when a name is looked up, and then only the names of its top-level types (and of types
// inside C++ namespaces) are decoded, everything else is skipped by form size (or by
// DW_AT_sibling when the producer wrote one). Go puts a package's types in that package's
// compile unit, so `runtime.*` is found by walking the `runtime` unit alone.
//
// Malformed input never escapes the public API: lookups return undefined.

import type { ElfFile } from './elf-file.js';
import { readDebugSection } from './dwarf-sections.js';
import { ByteCursor } from './byte-cursor.js';
import { MAX_NAME_BYTES, decodeName } from './names.js';

export interface DwarfSections {
  info: Buffer;
  abbrev: Buffer;
  str?: Buffer;
  lineStr?: Buffer;
  strOffsets?: Buffer;
}

export type DwarfTypeKind =
  | 'struct'
  | 'union'
  | 'class'
  | 'pointer'
  | 'reference'
  | 'typedef'
  | 'qualifier'
  | 'base'
  | 'array'
  | 'enum'
  | 'func'
  | 'unspecified'
  /** Go: a struct DIE with DW_AT_go_kind Slice ({array, len, cap}); `elem` is the element. */
  | 'slice'
  /** Go: a struct DIE with DW_AT_go_kind String ({str, len}). */
  | 'string'
  /** Go: a struct DIE with DW_AT_go_kind Interface. */
  | 'interface'
  /** Go: a typedef with DW_AT_go_kind Map; `target` is the pointer to the runtime's map header. */
  | 'map';

export interface DwarfMember {
  name: string;
  /** Byte offset in the struct. */
  offset: number;
  /** The member's type: the offset of its DIE in .debug_info (see DwarfInfo.type). */
  type: number;
  /** DW_AT_name of the member's type DIE (anonymous types, such as C pointers, have none). */
  typeName: string | undefined;
  /** Byte size of the member's type, through typedefs and qualifiers. */
  typeSize: number | undefined;
  /** Go: an embedded field. */
  embedded: boolean;
}

export interface DwarfType {
  /** Offset of the type's DIE in .debug_info: its identity. */
  offset: number;
  kind: DwarfTypeKind;
  /** DW_AT_name, undefined for anonymous types. */
  name: string | undefined;
  /** Byte size (pointers: the address size; typedefs: their target's size). */
  size: number | undefined;
  /** pointer, reference, typedef, qualifier, array, enum, map: the type referred to. */
  target: number | undefined;
  /** Go: reflect.Kind from DW_AT_go_kind. */
  goKind: number | undefined;
  /** Go slices, arrays and maps: the element (value) type. */
  elem: number | undefined;
  /** Go maps: the key type. */
  key: number | undefined;
  /** Arrays: the element count (the product over all dimensions); undefined when unbounded. */
  count: number | undefined;
  /** struct, union, class, slice, string, interface: the members in declaration order. */
  members: DwarfMember[] | undefined;
  /** A declaration only (C/C++ forward declarations carry no size and no members). */
  declaration: boolean;
}

// Tags.
const TAG_ARRAY = 0x01;
const TAG_CLASS = 0x02;
const TAG_ENUM = 0x04;
const TAG_MEMBER = 0x0d;
const TAG_POINTER = 0x0f;
const TAG_REFERENCE = 0x10;
const TAG_STRUCT = 0x13;
const TAG_SUBROUTINE_TYPE = 0x15;
const TAG_TYPEDEF = 0x16;
const TAG_UNION = 0x17;
const TAG_INHERITANCE = 0x1c;
const TAG_SUBRANGE = 0x21;
const TAG_BASE = 0x24;
const TAG_CONST = 0x26;
const TAG_VOLATILE = 0x35;
const TAG_RESTRICT = 0x37;
const TAG_NAMESPACE = 0x39;
const TAG_UNSPECIFIED = 0x3b;
const TAG_RVALUE_REFERENCE = 0x42;
const TAG_ATOMIC = 0x47;

const TYPE_TAGS = new Set([
  TAG_ARRAY, TAG_CLASS, TAG_ENUM, TAG_POINTER, TAG_REFERENCE, TAG_STRUCT, TAG_SUBROUTINE_TYPE, TAG_TYPEDEF,
  TAG_UNION, TAG_BASE, TAG_CONST, TAG_VOLATILE, TAG_RESTRICT, TAG_UNSPECIFIED, TAG_RVALUE_REFERENCE, TAG_ATOMIC,
]);

// Attributes.
const AT_SIBLING = 0x01;
const AT_NAME = 0x03;
const AT_BYTE_SIZE = 0x0b;
const AT_LOWER_BOUND = 0x22;
const AT_UPPER_BOUND = 0x2f;
const AT_COUNT = 0x37;
const AT_DATA_MEMBER_LOCATION = 0x38;
const AT_DECLARATION = 0x3c;
const AT_TYPE = 0x49;
const AT_DATA_BIT_OFFSET = 0x6b;
const AT_STR_OFFSETS_BASE = 0x72;
const AT_GO_KIND = 0x2900;
const AT_GO_KEY = 0x2901;
const AT_GO_ELEM = 0x2902;
const AT_GO_EMBEDDED_FIELD = 0x2903;

// Forms.
const FORM_ADDR = 0x01;
const FORM_BLOCK2 = 0x03;
const FORM_BLOCK4 = 0x04;
const FORM_DATA2 = 0x05;
const FORM_DATA4 = 0x06;
const FORM_DATA8 = 0x07;
const FORM_STRING = 0x08;
const FORM_BLOCK = 0x09;
const FORM_BLOCK1 = 0x0a;
const FORM_DATA1 = 0x0b;
const FORM_FLAG = 0x0c;
const FORM_SDATA = 0x0d;
const FORM_STRP = 0x0e;
const FORM_UDATA = 0x0f;
const FORM_REF_ADDR = 0x10;
const FORM_REF1 = 0x11;
const FORM_REF2 = 0x12;
const FORM_REF4 = 0x13;
const FORM_REF8 = 0x14;
const FORM_REF_UDATA = 0x15;
const FORM_INDIRECT = 0x16;
const FORM_SEC_OFFSET = 0x17;
const FORM_EXPRLOC = 0x18;
const FORM_FLAG_PRESENT = 0x19;
const FORM_STRX = 0x1a;
const FORM_ADDRX = 0x1b;
const FORM_REF_SUP4 = 0x1c;
const FORM_STRP_SUP = 0x1d;
const FORM_DATA16 = 0x1e;
const FORM_LINE_STRP = 0x1f;
const FORM_REF_SIG8 = 0x20;
const FORM_IMPLICIT_CONST = 0x21;
const FORM_LOCLISTX = 0x22;
const FORM_RNGLISTX = 0x23;
const FORM_REF_SUP8 = 0x24;
const FORM_STRX1 = 0x25;
const FORM_STRX2 = 0x26;
const FORM_STRX3 = 0x27;
const FORM_STRX4 = 0x28;
const FORM_ADDRX1 = 0x29;
const FORM_ADDRX2 = 0x2a;
const FORM_ADDRX3 = 0x2b;
const FORM_ADDRX4 = 0x2c;
const FORM_GNU_ADDR_INDEX = 0x1f01;
const FORM_GNU_STR_INDEX = 0x1f02;
const FORM_GNU_REF_ALT = 0x1f20;
const FORM_GNU_STRP_ALT = 0x1f21;

const OP_CONSTU = 0x10;
const OP_PLUS_UCONST = 0x23;

const DW_UT_COMPILE = 0x01;
const DW_UT_TYPE = 0x02;
const DW_UT_PARTIAL = 0x03;
const DW_UT_SKELETON = 0x04;
const DW_UT_SPLIT_COMPILE = 0x05;
const DW_UT_SPLIT_TYPE = 0x06;

const GO_KIND_INTERFACE = 20;
const GO_KIND_MAP = 21;
const GO_KIND_SLICE = 23;
const GO_KIND_STRING = 24;

/** Typedef chains, nested arrays: deeper than this is a cycle in a corrupt file. */
const MAX_TYPE_DEPTH = 64;
const MAX_DIE_DEPTH = 1024;

/**
 * Malformed input. Never escapes the public API, so it carries no stack: capturing one costs
 * microseconds, and a corrupt file can make thousands of them (a unit per few bytes).
 */
class DwarfFormatError extends Error {
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

function malformed(what: string): never {
  throw new DwarfFormatError(what);
}

/** Bounds-checked little-endian reads over one section. */
class Cursor extends ByteCursor {
  protected truncated(n: number): never {
    malformed(`read of ${n} bytes at ${this.pos} is past ${this.end}`);
  }

  u24(): number {
    this.need(3);
    const v = this.buf.readUIntLE(this.pos, 3);
    this.pos += 3;
    return v;
  }

  /** A u64 as a number; values past 2^53 only occur as garbage or as all-ones sentinels. */
  u64(): number {
    this.need(8);
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  uN(n: number): number {
    return n === 8 ? this.u64() : n === 4 ? this.u32() : n === 2 ? this.u16() : n === 1 ? this.u8() : malformed(`size ${n}`);
  }

  uleb(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= this.end) malformed('truncated LEB128');
      const b = this.buf[this.pos++];
      if (mul < 2 ** 64) result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) return result;
    }
  }

  sleb(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= this.end) malformed('truncated LEB128');
      const b = this.buf[this.pos++];
      if (mul < 2 ** 64) result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        if (b & 0x40 && mul < 2 ** 64) result -= mul;
        return result;
      }
    }
  }

  /** An inline string, cut as names.ts cuts names (the cursor still moves past all of it). */
  cstring(): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) malformed('unterminated string');
    const s = decodeName(this.buf, this.pos, nul);
    this.pos = nul + 1;
    return s;
  }

  skipCstring(): void {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) malformed('unterminated string');
    this.pos = nul + 1;
  }
}

interface AttrSpec {
  name: number;
  form: number;
  implicit: number;
}

interface Abbrev {
  tag: number;
  children: boolean;
  attrs: AttrSpec[];
  /** Bytes of all attributes when every form has a fixed size in this unit format, else -1. */
  fixedSize: number;
  hasName: boolean;
  hasSibling: boolean;
}

/** The offset, in .debug_info, of the DIE a reference attribute names. */
class Ref {
  constructor(readonly offset: number) {}
}

type AttrValue = number | string | Ref | Buffer | undefined;

interface Unit {
  offset: number;
  end: number;
  version: number;
  unitType: number;
  offsetSize: 4 | 8;
  addressSize: number;
  abbrevOffset: number;
  diesStart: number;
  abbrevs?: Map<number, Abbrev>;
  /** DW_AT_name of the unit DIE; read on first use. */
  name?: string;
  strOffsetsBase: number;
  /** The unit DIE has been read (name, str_offsets_base). */
  headerRead: boolean;
  scanned: boolean;
}

interface Die {
  offset: number;
  tag: number;
  children: boolean;
  attrs: Map<number, AttrValue>;
  /** Offset just past this DIE's attributes: its first child, or its next sibling. */
  next: number;
  unit: Unit;
}

export class DwarfInfo {
  private readonly units: Unit[];
  /** Parsed abbreviation tables by offset and unit format; a string: why that table is malformed. */
  private readonly abbrevCache = new Map<string, Map<number, Abbrev> | string>();
  /** Bytes of .debug_abbrev parsed so far, over all tables. */
  private abbrevBytes = 0;
  /** Names of the types in the scanned units → their DIE offsets, in file order. */
  private readonly index = new Map<string, number[]>();
  private readonly types = new Map<number, DwarfType | null>();

  private constructor(private readonly s: DwarfSections) {
    this.units = readUnitHeaders(s.info);
  }

  /** The DWARF of `elf`, or undefined when it has no (readable) .debug_info and .debug_abbrev. */
  static fromElf(elf: ElfFile): DwarfInfo | undefined {
    const info = readDebugSection(elf, 'info');
    const abbrev = readDebugSection(elf, 'abbrev');
    if (!info || !abbrev) return undefined;
    return DwarfInfo.fromSections({
      info,
      abbrev,
      str: readDebugSection(elf, 'str'),
      lineStr: readDebugSection(elf, 'line_str'),
      strOffsets: readDebugSection(elf, 'str_offsets'),
    });
  }

  /** DWARF from decompressed section contents; undefined when no unit header is readable. */
  static fromSections(s: DwarfSections): DwarfInfo | undefined {
    try {
      const d = new DwarfInfo(s);
      return d.units.length > 0 ? d : undefined;
    } catch {
      return undefined;
    }
  }

  /** Number of units in .debug_info. */
  get unitCount(): number {
    return this.units.length;
  }

  /** The DWARF versions of the units, ascending. */
  get versions(): number[] {
    return [...new Set(this.units.map((u) => u.version))].sort((a, b) => a - b);
  }

  /** Whether any unit uses the 64-bit DWARF format. */
  get hasDwarf64(): boolean {
    return this.units.some((u) => u.offsetSize === 8);
  }

  /**
   * The first type named `name` (for C++, `ns::name`) that `accept` takes; definitions are
   * preferred over declarations. Go names are package-qualified (`runtime.g`,
   * `runtime/pprof.labelMap`); a Go named struct has both a struct DIE and a typedef DIE of the
   * same name, so pass `kind` to pick one.
   */
  findType(name: string, kind?: DwarfTypeKind): DwarfType | undefined {
    try {
      const accept = (t: DwarfType): boolean => kind === undefined || t.kind === kind;
      let declared: DwarfType | undefined;
      const check = (): DwarfType | undefined => {
        for (const off of this.index.get(name) ?? []) {
          const t = this.typeAt(off, 0);
          if (!t || !accept(t)) continue;
          if (!t.declaration) return t;
          declared ??= t;
        }
        return undefined;
      };
      let found = check();
      if (found) return found;
      for (const u of this.unitsFor(name)) {
        if (u.scanned) continue;
        if (!this.scanUnit(u)) continue;
        found = check();
        if (found) return found;
      }
      return declared;
    } catch {
      return undefined;
    }
  }

  /** The struct (or union, or class) named `name`, through typedefs; with its members. */
  findStruct(name: string): DwarfType | undefined {
    for (const kind of ['struct', 'union', 'class'] as const) {
      const t = this.findType(name, kind);
      if (t) return t;
    }
    const td = this.findType(name, 'typedef');
    const r = td && this.resolve(td);
    return r && (r.kind === 'struct' || r.kind === 'union' || r.kind === 'class') ? r : undefined;
  }

  /** The type whose DIE is at `offset` in .debug_info; undefined if that is no type DIE. */
  type(offset: number): DwarfType | undefined {
    try {
      return this.typeAt(offset, 0);
    } catch {
      return undefined;
    }
  }

  /**
   * `t` with typedefs and qualifiers (const, volatile, restrict, atomic) peeled off. Go maps
   * are typedefs too, but kind 'map', so they are kept.
   */
  resolve(t: DwarfType | number | undefined): DwarfType | undefined {
    let cur = typeof t === 'number' ? this.type(t) : t;
    for (let i = 0; cur && i < MAX_TYPE_DEPTH; i++) {
      if (cur.kind !== 'typedef' && cur.kind !== 'qualifier') return cur;
      if (cur.target === undefined) return undefined;
      cur = this.type(cur.target);
    }
    return undefined;
  }

  /**
   * What a pointer (or reference) points to, through typedefs of the pointer; for a Go map,
   * the runtime's map header (hash<K,V> up to Go 1.23) that the map value points to.
   */
  pointee(t: DwarfType | number | undefined): DwarfType | undefined {
    let p = this.resolve(t);
    if (p?.kind === 'map') p = this.resolve(p.target);
    if (!p || (p.kind !== 'pointer' && p.kind !== 'reference') || p.target === undefined) return undefined;
    return this.type(p.target);
  }

  /** The member of struct `t` named `name`. */
  member(t: DwarfType | undefined, name: string): DwarfMember | undefined {
    return this.resolve(t)?.members?.find((m) => m.name === name);
  }

  // --- units and abbreviations ---

  /** Units to search for `name`: Go's package unit first, then every other unit in order. */
  private unitsFor(name: string): Unit[] {
    const pkg = goPackageOf(name);
    if (pkg === undefined) return this.units;
    const first: Unit[] = [];
    const rest: Unit[] = [];
    for (const u of this.units) {
      let n: string | undefined;
      try {
        n = this.unitName(u);
      } catch {
        n = undefined;
      }
      (n === pkg ? first : rest).push(u);
    }
    return first.concat(rest);
  }

  private unitName(u: Unit): string | undefined {
    this.readUnitDie(u);
    return u.name;
  }

  /** Reads the unit DIE's name and str_offsets_base (needed before any strx form). */
  private readUnitDie(u: Unit): void {
    if (u.headerRead) return;
    u.headerRead = true;
    u.strOffsetsBase = u.version >= 5 ? 8 : 0;
    const c = new Cursor(this.s.info, u.diesStart, u.end);
    const code = c.uleb();
    if (code === 0) return;
    const ab = this.abbrevs(u).get(code);
    if (!ab) malformed(`unknown abbreviation ${code}`);
    // str_offsets_base comes before a strx name can be decoded: read the plain values first.
    const attrs: Array<[AttrSpec, number]> = [];
    for (const a of ab.attrs) {
      attrs.push([a, c.pos]);
      if (a.name === AT_STR_OFFSETS_BASE) u.strOffsetsBase = this.readValue(c, u, a.form, a.implicit) as number;
      else this.skipValue(c, u, a.form);
    }
    for (const [a, pos] of attrs) {
      if (a.name !== AT_NAME) continue;
      c.pos = pos;
      const v = this.readValue(c, u, a.form, a.implicit);
      if (typeof v === 'string') u.name = v;
    }
  }

  private abbrevs(u: Unit): Map<number, Abbrev> {
    if (u.abbrevs) return u.abbrevs;
    const key = `${u.abbrevOffset}:${u.offsetSize}:${u.addressSize}:${u.version <= 2 ? 2 : 3}`;
    let table = this.abbrevCache.get(key);
    if (typeof table === 'string') malformed(table);
    if (!table) {
      // Each unit's table starts where its header says and runs to its terminating 0: real
      // tables follow one another, so together they are .debug_abbrev once (twice if two unit
      // formats share one). Units pointing into the middle of one long table would each parse
      // the rest of it, and keep it: 4000 units over a 120 KB table took the heap past 4 GB.
      // A table that fails to parse is charged too: it was read to where it failed.
      const budget = 2 * this.s.abbrev.length + (64 << 10) - this.abbrevBytes;
      const parsed = parseAbbrevs(this.s.abbrev, u.abbrevOffset, (form) => fixedFormSize(form, u), budget);
      this.abbrevBytes += parsed.end - u.abbrevOffset;
      if (parsed.error) {
        this.abbrevCache.set(key, parsed.error);
        malformed(parsed.error);
      }
      table = parsed.table;
      this.abbrevCache.set(key, table);
    }
    u.abbrevs = table;
    return table;
  }

  private unitAt(offset: number): Unit | undefined {
    let lo = 0;
    let hi = this.units.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const u = this.units[mid];
      if (offset < u.offset) hi = mid - 1;
      else if (offset >= u.end) lo = mid + 1;
      else return offset >= u.diesStart ? u : undefined;
    }
    return undefined;
  }

  // --- walking DIEs ---

  /**
   * Adds the names of `u`'s top-level types (and of types in namespaces) to the index. A unit
   * that turns out malformed keeps what was indexed before the fault and is not walked again.
   */
  private scanUnit(u: Unit): boolean {
    u.scanned = true;
    try {
      this.readUnitDie(u);
      const table = this.abbrevs(u);
      const c = new Cursor(this.s.info, u.diesStart, u.end);
      // scope[d]: name prefix for types among the children at depth d, null when not indexed.
      const scope: Array<string | null> = [null];
      let depth = 0;
      while (c.pos < u.end) {
        const off = c.pos;
        const code = c.uleb();
        if (code === 0) {
          if (--depth <= 0) break;
          continue;
        }
        const ab = table.get(code);
        if (!ab) malformed(`unknown abbreviation ${code} at ${off}`);
        const indexed = depth >= 1 && scope[depth] !== null;
        const wantName = indexed && ab.hasName && (TYPE_TAGS.has(ab.tag) || ab.tag === TAG_NAMESPACE);
        let name: string | undefined;
        let sibling: number | undefined;
        if (wantName || (ab.children && ab.hasSibling)) {
          for (const a of ab.attrs) {
            if (wantName && a.name === AT_NAME) {
              const v = this.readValue(c, u, a.form, a.implicit);
              if (typeof v === 'string') name = v;
            } else if (a.name === AT_SIBLING && a.form !== FORM_REF_ADDR) {
              const v = this.readValue(c, u, a.form, a.implicit);
              if (v instanceof Ref) sibling = v.offset;
            } else {
              this.skipValue(c, u, a.form);
            }
          }
        } else if (ab.fixedSize >= 0) {
          c.skip(ab.fixedSize);
        } else {
          for (const a of ab.attrs) this.skipValue(c, u, a.form);
        }
        if (name !== undefined && TYPE_TAGS.has(ab.tag)) {
          const full = scope[depth] + name;
          const list = this.index.get(full);
          if (list) list.push(off);
          else this.index.set(full, [off]);
        }
        if (!ab.children) continue;
        let childScope: string | null = null;
        if (depth === 0) childScope = '';
        else if (ab.tag === TAG_NAMESPACE && indexed) childScope = `${scope[depth]}${name ?? '(anonymous namespace)'}::`;
        if (childScope === null && sibling !== undefined && sibling > c.pos && sibling <= u.end) {
          c.pos = sibling; // skip the children without decoding them
          continue;
        }
        if (++depth > MAX_DIE_DEPTH) malformed('DIEs nested too deep');
        scope[depth] = childScope;
      }
      return true;
    } catch (e) {
      if (e instanceof DwarfFormatError || e instanceof RangeError) return false;
      throw e;
    }
  }

  private readDie(offset: number): Die | undefined {
    const u = this.unitAt(offset);
    if (!u) return undefined;
    this.readUnitDie(u);
    const c = new Cursor(this.s.info, offset, u.end);
    const code = c.uleb();
    if (code === 0) return undefined;
    const ab = this.abbrevs(u).get(code);
    if (!ab) malformed(`unknown abbreviation ${code} at ${offset}`);
    const attrs = new Map<number, AttrValue>();
    for (const a of ab.attrs) {
      const v = this.readValue(c, u, a.form, a.implicit);
      if (!attrs.has(a.name)) attrs.set(a.name, v);
    }
    return { offset, tag: ab.tag, children: ab.children, attrs, next: c.pos, unit: u };
  }

  /** The children of `die` (which must have children), without their own children. */
  private children(die: Die): Die[] {
    const out: Die[] = [];
    if (!die.children) return out;
    const u = die.unit;
    const table = this.abbrevs(u);
    const c = new Cursor(this.s.info, die.next, u.end);
    let depth = 1;
    while (c.pos < u.end) {
      const off = c.pos;
      const code = c.uleb();
      if (code === 0) {
        if (--depth === 0) return out;
        continue;
      }
      const ab = table.get(code);
      if (!ab) malformed(`unknown abbreviation ${code} at ${off}`);
      if (depth === 1) {
        const d = this.readDie(off);
        if (!d) malformed(`bad DIE at ${off}`);
        out.push(d);
        c.pos = d.next;
      } else if (ab.fixedSize >= 0) {
        c.skip(ab.fixedSize);
      } else {
        for (const a of ab.attrs) this.skipValue(c, u, a.form);
      }
      if (ab.children && ++depth > MAX_DIE_DEPTH) malformed('DIEs nested too deep');
    }
    malformed('children run past the end of the unit');
  }

  // --- types ---

  private typeAt(offset: number, depth: number): DwarfType | undefined {
    const cached = this.types.get(offset);
    if (cached !== undefined) return cached ?? undefined;
    // Deeper than this is a cycle in a corrupt file: that type is left out (and not cached).
    if (depth > MAX_TYPE_DEPTH) return undefined;
    let t: DwarfType | undefined;
    try {
      t = this.buildType(offset, depth);
    } catch (e) {
      if (!(e instanceof DwarfFormatError || e instanceof RangeError)) throw e;
      t = undefined;
    }
    this.types.set(offset, t ?? null);
    return t;
  }

  private buildType(offset: number, depth: number): DwarfType | undefined {
    const die = this.readDie(offset);
    if (!die || !TYPE_TAGS.has(die.tag)) return undefined;
    const a = die.attrs;
    const goKind = num(a.get(AT_GO_KIND));
    const t: DwarfType = {
      offset,
      kind: kindOf(die.tag, goKind),
      name: str(a.get(AT_NAME)),
      size: num(a.get(AT_BYTE_SIZE)),
      target: ref(a.get(AT_TYPE)),
      goKind,
      elem: undefined,
      key: undefined,
      count: undefined,
      members: undefined,
      declaration: a.get(AT_DECLARATION) !== undefined && a.get(AT_DECLARATION) !== 0,
    };
    // Cache before following references: a struct that points to itself comes back here.
    this.types.set(offset, t);
    switch (t.kind) {
      case 'pointer':
      case 'reference':
        t.size ??= die.unit.addressSize;
        break;
      case 'map':
        t.key = ref(a.get(AT_GO_KEY));
        t.elem = ref(a.get(AT_GO_ELEM));
        t.size ??= die.unit.addressSize;
        break;
      case 'typedef':
      case 'qualifier':
        if (t.size === undefined && t.target !== undefined) t.size = this.typeAt(t.target, depth + 1)?.size;
        break;
      case 'array': {
        t.elem = t.target;
        let count: number | undefined;
        let incomplete = false;
        for (const sub of this.children(die)) {
          if (sub.tag !== TAG_SUBRANGE) continue;
          let n = num(sub.attrs.get(AT_COUNT));
          const upper = num(sub.attrs.get(AT_UPPER_BOUND));
          if (n === undefined && upper !== undefined) n = upper - (num(sub.attrs.get(AT_LOWER_BOUND)) ?? 0) + 1;
          if (n === undefined || n < 0) {
            // C's flexible array member (`long tail[]`): no bound, no bytes in the struct.
            incomplete = true;
            count = undefined;
            break;
          }
          count = (count ?? 1) * n;
        }
        t.count = count;
        if (incomplete) t.size ??= 0;
        if (t.size === undefined && count !== undefined && t.target !== undefined) {
          const es = this.typeAt(t.target, depth + 1)?.size;
          if (es !== undefined) t.size = es * count;
        }
        break;
      }
      case 'struct':
      case 'union':
      case 'class':
      case 'slice':
      case 'string':
      case 'interface':
        if (t.kind === 'slice') t.elem = ref(a.get(AT_GO_ELEM));
        t.members = this.membersOf(die, depth);
        break;
      default:
        break;
    }
    return t;
  }

  private membersOf(die: Die, depth: number): DwarfMember[] {
    const out: DwarfMember[] = [];
    for (const m of this.children(die)) {
      if (m.tag !== TAG_MEMBER && m.tag !== TAG_INHERITANCE) continue;
      const type = ref(m.attrs.get(AT_TYPE));
      if (type === undefined) continue;
      const offset = memberOffset(m);
      if (offset === undefined) continue;
      const mt = this.typeAt(type, depth + 1);
      const embedded = m.attrs.get(AT_GO_EMBEDDED_FIELD);
      out.push({
        name: str(m.attrs.get(AT_NAME)) ?? '',
        offset,
        type,
        typeName: mt?.name,
        typeSize: mt?.size,
        embedded: m.tag === TAG_INHERITANCE || (embedded !== undefined && embedded !== 0),
      });
    }
    return out;
  }

  // --- attribute values ---

  private readValue(c: Cursor, u: Unit, form: number, implicit: number): AttrValue {
    switch (form) {
      case FORM_ADDR:
        return c.uN(u.addressSize);
      case FORM_DATA1:
      case FORM_FLAG:
        return c.u8();
      case FORM_DATA2:
        return c.u16();
      case FORM_DATA4:
        return c.u32();
      case FORM_DATA8:
        return c.u64();
      case FORM_SDATA:
        return c.sleb();
      case FORM_UDATA:
        return c.uleb();
      case FORM_IMPLICIT_CONST:
        return implicit;
      case FORM_FLAG_PRESENT:
        return 1;
      case FORM_SEC_OFFSET:
        return c.uN(u.offsetSize);
      case FORM_STRING:
        return c.cstring();
      case FORM_STRP:
        return sectionString(this.s.str, c.uN(u.offsetSize));
      case FORM_LINE_STRP:
        return sectionString(this.s.lineStr, c.uN(u.offsetSize));
      case FORM_STRX:
      case FORM_GNU_STR_INDEX:
        return this.indexedString(u, c.uleb());
      case FORM_STRX1:
        return this.indexedString(u, c.u8());
      case FORM_STRX2:
        return this.indexedString(u, c.u16());
      case FORM_STRX3:
        return this.indexedString(u, c.u24());
      case FORM_STRX4:
        return this.indexedString(u, c.u32());
      case FORM_REF1:
        return new Ref(u.offset + c.u8());
      case FORM_REF2:
        return new Ref(u.offset + c.u16());
      case FORM_REF4:
        return new Ref(u.offset + c.u32());
      case FORM_REF8:
        return new Ref(u.offset + c.u64());
      case FORM_REF_UDATA:
        return new Ref(u.offset + c.uleb());
      case FORM_REF_ADDR:
        return new Ref(c.uN(u.version <= 2 ? u.addressSize : u.offsetSize));
      case FORM_BLOCK1:
        return this.block(c, c.u8());
      case FORM_BLOCK2:
        return this.block(c, c.u16());
      case FORM_BLOCK4:
        return this.block(c, c.u32());
      case FORM_BLOCK:
      case FORM_EXPRLOC:
        return this.block(c, c.uleb());
      case FORM_INDIRECT: {
        const f = c.uleb();
        if (f === FORM_INDIRECT) malformed('nested DW_FORM_indirect');
        return this.readValue(c, u, f, f === FORM_IMPLICIT_CONST ? c.sleb() : 0);
      }
      default:
        // Values this reader has no use for (indexes into other sections, supplementary
        // files, type signatures): skipped.
        this.skipValue(c, u, form);
        return undefined;
    }
  }

  private block(c: Cursor, n: number): Buffer {
    c.need(n);
    const b = c.buf.subarray(c.pos, c.pos + n);
    c.pos += n;
    return b;
  }

  private skipValue(c: Cursor, u: Unit, form: number): void {
    const fixed = fixedFormSize(form, u);
    if (fixed >= 0) {
      c.skip(fixed);
      return;
    }
    switch (form) {
      case FORM_STRING:
        c.skipCstring();
        return;
      case FORM_SDATA:
        c.sleb();
        return;
      case FORM_UDATA:
      case FORM_REF_UDATA:
      case FORM_STRX:
      case FORM_ADDRX:
      case FORM_LOCLISTX:
      case FORM_RNGLISTX:
      case FORM_GNU_ADDR_INDEX:
      case FORM_GNU_STR_INDEX:
        c.uleb();
        return;
      case FORM_BLOCK1:
        c.skip(c.u8());
        return;
      case FORM_BLOCK2:
        c.skip(c.u16());
        return;
      case FORM_BLOCK4:
        c.skip(c.u32());
        return;
      case FORM_BLOCK:
      case FORM_EXPRLOC:
        c.skip(c.uleb());
        return;
      case FORM_INDIRECT: {
        const f = c.uleb();
        if (f === FORM_INDIRECT) malformed('nested DW_FORM_indirect');
        if (f === FORM_IMPLICIT_CONST) c.sleb();
        this.skipValue(c, u, f);
        return;
      }
      default:
        malformed(`unknown form 0x${form.toString(16)}`);
    }
  }

  private indexedString(u: Unit, index: number): string | undefined {
    const so = this.s.strOffsets;
    if (!so) return undefined;
    const at = u.strOffsetsBase + index * u.offsetSize;
    if (at + u.offsetSize > so.length) return undefined;
    const off = u.offsetSize === 8 ? Number(so.readBigUInt64LE(at)) : so.readUInt32LE(at);
    return sectionString(this.s.str, off);
  }
}

/** Bytes taken by a value of `form` in unit `u`, or -1 when it varies. */
function fixedFormSize(form: number, u: { offsetSize: number; addressSize: number; version: number }): number {
  switch (form) {
    case FORM_FLAG_PRESENT:
    case FORM_IMPLICIT_CONST:
      return 0;
    case FORM_DATA1:
    case FORM_FLAG:
    case FORM_REF1:
    case FORM_STRX1:
    case FORM_ADDRX1:
      return 1;
    case FORM_DATA2:
    case FORM_REF2:
    case FORM_STRX2:
    case FORM_ADDRX2:
      return 2;
    case FORM_STRX3:
    case FORM_ADDRX3:
      return 3;
    case FORM_DATA4:
    case FORM_REF4:
    case FORM_REF_SUP4:
    case FORM_STRX4:
    case FORM_ADDRX4:
      return 4;
    case FORM_DATA8:
    case FORM_REF8:
    case FORM_REF_SIG8:
    case FORM_REF_SUP8:
      return 8;
    case FORM_DATA16:
      return 16;
    case FORM_ADDR:
      return u.addressSize;
    case FORM_REF_ADDR:
      return u.version <= 2 ? u.addressSize : u.offsetSize;
    case FORM_STRP:
    case FORM_LINE_STRP:
    case FORM_SEC_OFFSET:
    case FORM_STRP_SUP:
    case FORM_GNU_REF_ALT:
    case FORM_GNU_STRP_ALT:
      return u.offsetSize;
    default:
      return -1;
  }
}

function readUnitHeaders(info: Buffer): Unit[] {
  const units: Unit[] = [];
  let pos = 0;
  while (pos + 11 <= info.length) {
    try {
      const c = new Cursor(info, pos, info.length);
      let length = c.u32();
      let offsetSize: 4 | 8 = 4;
      if (length === 0xffffffff) {
        length = c.u64();
        offsetSize = 8;
      } else if (length >= 0xfffffff0) {
        break; // reserved values
      }
      const end = c.pos + length;
      if (length === 0 || end > info.length) break;
      const version = c.u16();
      if (version < 2 || version > 5) {
        pos = end; // a unit of a version we cannot read: skip it
        continue;
      }
      let unitType = DW_UT_COMPILE;
      let addressSize: number;
      let abbrevOffset: number;
      if (version >= 5) {
        unitType = c.u8();
        addressSize = c.u8();
        abbrevOffset = c.uN(offsetSize);
        if (unitType === DW_UT_SKELETON || unitType === DW_UT_SPLIT_COMPILE) c.skip(8);
        else if (unitType === DW_UT_TYPE || unitType === DW_UT_SPLIT_TYPE) c.skip(8 + offsetSize);
        else if (unitType !== DW_UT_COMPILE && unitType !== DW_UT_PARTIAL) {
          pos = end;
          continue;
        }
      } else {
        abbrevOffset = c.uN(offsetSize);
        addressSize = c.u8();
      }
      if (addressSize !== 4 && addressSize !== 8) {
        pos = end;
        continue;
      }
      if (c.pos > end) break;
      units.push({
        offset: pos,
        end,
        version,
        unitType,
        offsetSize,
        addressSize,
        abbrevOffset,
        diesStart: c.pos,
        strOffsetsBase: 0,
        headerRead: false,
        scanned: false,
      });
      pos = end;
    } catch (e) {
      if (e instanceof DwarfFormatError) break;
      throw e;
    }
  }
  return units;
}

/**
 * The abbreviation table at `offset` and the offset just past it, or why it could not be read
 * (with the offset where that became clear): malformed, or longer than `budget` bytes.
 */
function parseAbbrevs(
  data: Buffer,
  offset: number,
  sizeOf: (form: number) => number,
  budget: number,
): { table: Map<number, Abbrev>; end: number; error?: string } {
  const table = new Map<number, Abbrev>();
  if (offset >= data.length) return { table, end: offset };
  const c = new Cursor(data, offset, data.length);
  try {
    readAbbrevs(c, offset, sizeOf, budget, table);
  } catch (e) {
    if (!(e instanceof DwarfFormatError)) throw e;
    return { table, end: c.pos, error: e.message };
  }
  return { table, end: c.pos };
}

function readAbbrevs(c: Cursor, offset: number, sizeOf: (form: number) => number, budget: number, table: Map<number, Abbrev>): void {
  const data = c.buf;
  while (c.pos < data.length) {
    if (c.pos - offset > budget) malformed('abbreviation tables overlap');
    const code = c.uleb();
    if (code === 0) break;
    const tag = c.uleb();
    const children = c.u8() !== 0;
    const attrs: AttrSpec[] = [];
    let fixedSize = 0;
    let hasName = false;
    let hasSibling = false;
    for (;;) {
      const name = c.uleb();
      const form = c.uleb();
      if (name === 0 && form === 0) break;
      const implicit = form === FORM_IMPLICIT_CONST ? c.sleb() : 0;
      attrs.push({ name, form, implicit });
      if (name === AT_NAME) hasName = true;
      if (name === AT_SIBLING) hasSibling = true;
      const n = sizeOf(form);
      fixedSize = fixedSize < 0 || n < 0 ? -1 : fixedSize + n;
    }
    if (!table.has(code)) table.set(code, { tag, children, attrs, fixedSize, hasName, hasSibling });
  }
}

function kindOf(tag: number, goKind: number | undefined): DwarfTypeKind {
  switch (tag) {
    case TAG_STRUCT:
      if (goKind === GO_KIND_SLICE) return 'slice';
      if (goKind === GO_KIND_STRING) return 'string';
      if (goKind === GO_KIND_INTERFACE) return 'interface';
      return 'struct';
    case TAG_UNION:
      return 'union';
    case TAG_CLASS:
      return 'class';
    case TAG_POINTER:
      return 'pointer';
    case TAG_REFERENCE:
    case TAG_RVALUE_REFERENCE:
      return 'reference';
    case TAG_TYPEDEF:
      return goKind === GO_KIND_MAP ? 'map' : 'typedef';
    case TAG_CONST:
    case TAG_VOLATILE:
    case TAG_RESTRICT:
    case TAG_ATOMIC:
      return 'qualifier';
    case TAG_BASE:
      return 'base';
    case TAG_ARRAY:
      return 'array';
    case TAG_ENUM:
      return 'enum';
    case TAG_SUBROUTINE_TYPE:
      return 'func';
    default:
      return 'unspecified';
  }
}

/** DW_AT_data_member_location as a constant or a DW_OP_plus_uconst expression; 0 in unions. */
function memberOffset(m: Die): number | undefined {
  const loc = m.attrs.get(AT_DATA_MEMBER_LOCATION);
  if (typeof loc === 'number') return loc;
  if (loc instanceof Uint8Array) {
    const c = new Cursor(loc as Buffer, 0, loc.length);
    const op = c.u8();
    if (op !== OP_PLUS_UCONST && op !== OP_CONSTU) return undefined;
    const v = c.uleb();
    return c.pos === loc.length ? v : undefined;
  }
  if (loc !== undefined) return undefined;
  const bits = m.attrs.get(AT_DATA_BIT_OFFSET);
  if (typeof bits === 'number') return Math.floor(bits / 8);
  return 0;
}

/** Go's package path of a qualified name: `runtime/pprof.labelMap` → `runtime/pprof`. */
function goPackageOf(name: string): string | undefined {
  const head = name.split(/[[<]/, 1)[0];
  const slash = head.lastIndexOf('/');
  const dot = head.indexOf('.', slash + 1);
  if (dot <= 0 || head.startsWith('*') || head.startsWith('[') || head.includes(' ')) return undefined;
  return head.slice(0, dot);
}

/**
 * The string at `off` of .debug_str or .debug_line_str, cut as names.ts cuts names: every DIE
 * may point into one long run without zeros, and each name is kept (the type index's keys).
 * Only the bytes a name may take are searched for its end.
 */
function sectionString(sec: Buffer | undefined, off: number): string | undefined {
  if (!sec || off >= sec.length) return undefined;
  const nul = sec.subarray(off, off + MAX_NAME_BYTES + 1).indexOf(0);
  const end = nul < 0 ? Math.min(sec.length, off + MAX_NAME_BYTES + 1) : off + nul;
  return decodeName(sec, off, end, nul < 0 && end < sec.length);
}

function num(v: AttrValue): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

function str(v: AttrValue): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function ref(v: AttrValue): number | undefined {
  return v instanceof Ref ? v.offset : undefined;
}

