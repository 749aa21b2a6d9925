// What a Go binary says about its build: the Go release and module information that
// `go version -m` prints (the .go.buildinfo blob) and the Go build id that `go tool buildid`
// prints (the .note.go.buildid note). Both survive -ldflags=-s -w and strip(1).
//
// .go.buildinfo starts with a 32-byte header: the magic "\xff Go buildinf:", the pointer size,
// a flags byte, then either (before Go 1.18) two pointers to the version and module-info Go
// strings, or (1.18+, flags bit 1) nothing: the two strings follow the header inline, each
// prefixed with its uvarint length. The blob is found by section name, else by scanning the
// data segments for the magic at a 16-byte aligned address, as debug/buildinfo does.
// The build id comes from go-buildid.ts.
// When there is no build info at all (a stripped binary whose .go.buildinfo was cut out, as in
// esbuild's releases), the version comes from runtime.buildVersion in the symbol table, else
// from the only release named in the read-only data that fits the pclntab's layout, else it is
// the range of releases that write that layout.
// Malformed input gives undefined fields, never an exception.

import type { ElfFile } from './elf-file.js';
import { PF_X, PT_LOAD, SHT_NOBITS, withinBudget } from './elf-file.js';
import { readGoBuildId } from './go-buildid.js';
import { GoPclnTab } from './gopclntab.js';

export { readGoBuildId };

const PF_W = 2;

const BUILDINFO_MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
const BUILDINFO_ALIGN = 16;
const BUILDINFO_HEADER = 32;
const FLAG_BIG_ENDIAN = 0x1;
const FLAG_VERSION_INLINE = 0x2;
/** cmd/go frames the module info with 16-byte sentinels. */
const MODINFO_SENTINEL = 16;
const MAX_STRING = 1 << 20;
/** Segments larger than this are not scanned for the magic. */
const MAX_SCAN = 256 << 20;

export interface GoModule {
  path: string;
  version: string;
  sum: string;
  replace?: GoModule;
}

export interface GoBuildSetting {
  key: string;
  value: string;
}

export interface GoBuildInfo {
  /**
   * The release that built the binary, "go1.22.12"; a range ("go1.20-go1.25", "go1.27+")
   * when only the pclntab's layout could tell (see GoPclnTab.versionRange).
   */
  goVersion: string;
  /** Where goVersion came from. */
  versionFrom: 'buildinfo' | 'symbol' | 'strings' | 'pclntab';
  /** The main package's import path ('' before module mode or when unknown). */
  path: string;
  main: GoModule | undefined;
  deps: GoModule[];
  /** -buildmode, -ldflags, CGO_ENABLED, GOARCH, vcs.revision … (Go 1.18+). */
  settings: GoBuildSetting[];
  /** The Go build id as `go tool buildid` prints it, '' when the binary has none. */
  buildId: string;
}

/**
 * The build information of a Go binary, or undefined when nothing in the file says it is Go
 * (no build info, no Go build id, no pclntab).
 */
export function readGoBuildInfo(elf: ElfFile): GoBuildInfo | undefined {
  let raw: { version: string; mod: string } | undefined;
  try {
    raw = readRawBuildInfo(elf);
  } catch {
    raw = undefined;
  }
  const buildId = readGoBuildId(elf);
  const info: GoBuildInfo = { goVersion: '', versionFrom: 'buildinfo', path: '', main: undefined, deps: [], settings: [], buildId };
  if (raw) {
    info.goVersion = raw.version;
    Object.assign(info, parseModInfo(raw.mod));
    return info;
  }
  const sym = buildVersionSymbol(elf);
  if (sym) {
    info.goVersion = sym;
    info.versionFrom = 'symbol';
    return info;
  }
  const tab = GoPclnTab.open(elf);
  if (tab) {
    const range = tab.versionRange;
    const found = versionString(elf, range);
    info.goVersion = found ?? range;
    info.versionFrom = found ? 'strings' : 'pclntab';
    return info;
  }
  return buildId ? info : undefined;
}

/** The text `go version -m` prints for a binary, without the "<file>: " before the version. */
export function formatGoBuildInfo(info: GoBuildInfo): string {
  const lines = [info.goVersion];
  if (info.path) lines.push(`\tpath\t${info.path}`);
  const mod = (word: string, m: GoModule) => {
    if (m.replace) {
      lines.push(`\t${word}\t${m.path}\t${m.version}`);
      mod('=>', m.replace);
      lines.push('\t'); // BuildInfo.String ends a replaced module with an empty line
    } else lines.push(`\t${word}\t${m.path}\t${m.version}\t${m.sum}`);
  };
  if (info.main && (info.main.path || info.main.version || info.main.sum)) mod('mod', info.main);
  for (const d of info.deps) mod('dep', d);
  for (const s of info.settings) {
    const k = s.key === '' || /[= \t\r\n"`]/.test(s.key) ? goQuote(s.key) : s.key;
    const v = /[ \t\r\n"`]/.test(s.value) ? goQuote(s.value) : s.value;
    lines.push(`\tbuild\t${k}=${v}`);
  }
  return lines.join('\n') + '\n';
}

/** Parses module info text (runtime/debug.BuildInfo.String without its "go" line). */
export function parseModInfo(text: string): Pick<GoBuildInfo, 'path' | 'main' | 'deps' | 'settings'> {
  const res: Pick<GoBuildInfo, 'path' | 'main' | 'deps' | 'settings'> = { path: '', main: undefined, deps: [], settings: [] };
  let last: GoModule | undefined;
  const module = (cols: string[]): GoModule | undefined =>
    cols.length === 2 || cols.length === 3 ? { path: cols[0], version: cols[1], sum: cols[2] ?? '' } : undefined;
  for (const line of text.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    const word = line.slice(0, tab);
    const rest = line.slice(tab + 1);
    if (word === 'path') res.path = rest;
    else if (word === 'mod') last = res.main = module(rest.split('\t'));
    else if (word === 'dep') {
      last = module(rest.split('\t'));
      if (last) res.deps.push(last);
    } else if (word === '=>') {
      const cols = rest.split('\t');
      if (last && cols.length === 3) last.replace = { path: cols[0], version: cols[1], sum: cols[2] };
      last = undefined;
    } else if (word === 'build') {
      const s = parseSetting(rest);
      if (s) res.settings.push(s);
    }
  }
  return res;
}

// ---- internals --------------------------------------------------------------------------------

function readRawBuildInfo(elf: ElfFile): { version: string; mod: string } | undefined {
  const found = findBlob(elf);
  if (!found) return undefined;
  const { data, at } = found;
  const ptrSize = data[at + 14];
  const flags = data[at + 15];
  let version: string | undefined;
  let mod: string | undefined;
  if (flags & FLAG_VERSION_INLINE) {
    const v = uvarintString(data, at + BUILDINFO_HEADER);
    if (!v) return undefined;
    version = v.s;
    mod = uvarintString(data, v.next)?.s;
  } else {
    if ((ptrSize !== 4 && ptrSize !== 8) || flags & FLAG_BIG_ENDIAN) return undefined;
    const word = (b: Buffer, o: number) => (ptrSize === 8 ? Number(b.readBigUInt64LE(o)) : b.readUInt32LE(o));
    const goString = (p: number): string | undefined => {
      const hdr = readVaddr(elf, p, 2 * ptrSize);
      if (!hdr) return undefined;
      const len = word(hdr, ptrSize);
      if (len > MAX_STRING) return undefined;
      return readVaddr(elf, word(hdr, 0), len)?.toString('utf8');
    };
    version = goString(word(data, at + 16));
    mod = goString(word(data, at + 16 + ptrSize));
  }
  if (!version) return undefined;
  mod ??= '';
  // The framing sentinels, checked as debug/buildinfo does.
  mod = mod.length >= 2 * MODINFO_SENTINEL + 1 && mod[mod.length - MODINFO_SENTINEL - 1] === '\n' ? mod.slice(MODINFO_SENTINEL, -MODINFO_SENTINEL) : '';
  return { version, mod };
}

/** The buffer holding the blob and the blob's offset in it. */
function findBlob(elf: ElfFile): { data: Buffer; at: number } | undefined {
  const sec = elf.section('.go.buildinfo');
  if (sec && sec.type !== SHT_NOBITS && sec.size >= BUILDINFO_HEADER) {
    const data = elf.read(sec.offset, Math.min(sec.size, MAX_STRING));
    const at = searchMagic(data, sec.addr);
    if (at >= 0) return { data, at };
  }
  // Writable data first (where the linker puts it), then anything loaded.
  const segs = elf.segments.filter((p) => p.type === PT_LOAD && p.filesz > 0 && p.filesz <= MAX_SCAN);
  const order = [...segs.filter((p) => (p.flags & (PF_W | PF_X)) === PF_W), ...segs.filter((p) => (p.flags & (PF_W | PF_X)) !== PF_W)];
  for (const p of withinBudget(order, (x) => x.filesz, elf.size)) {
    const data = elf.read(p.offset, p.filesz);
    const at = searchMagic(data, p.vaddr);
    if (at >= 0) return { data, at };
  }
  return undefined;
}

/** The first offset of the magic in `data` (at vaddr `base`) that is 16-byte aligned in memory. */
function searchMagic(data: Buffer, base: number): number {
  let at = data.indexOf(BUILDINFO_MAGIC);
  while (at >= 0) {
    if ((base + at) % BUILDINFO_ALIGN === 0 && at + BUILDINFO_HEADER <= data.length) return at;
    at = data.indexOf(BUILDINFO_MAGIC, at + 1);
  }
  return -1;
}

function uvarintString(data: Buffer, off: number): { s: string; next: number } | undefined {
  let len = 0;
  let mul = 1;
  let p = off;
  for (;;) {
    if (p >= data.length || mul > 2 ** 28) return undefined;
    const b = data[p++];
    len += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) break;
    mul *= 128;
  }
  if (len > MAX_STRING || p + len > data.length) return undefined;
  return { s: data.toString('utf8', p, p + len), next: p + len };
}

function readVaddr(elf: ElfFile, vaddr: number, len: number): Buffer | undefined {
  const off = elf.vaddrToFileOffset(vaddr);
  if (off === undefined || elf.vaddrToFileOffset(vaddr + len - 1) === undefined) return len === 0 ? Buffer.alloc(0) : undefined;
  return elf.read(off, len);
}

/**
 * The one Go release named in the read-only data (runtime.buildVersion's text, or a GOROOT in
 * file names) that lies in `range` ("go1.20-go1.25", "go1.27+", "go1.26"): a full one
 * (go1.22.12, go1.21rc2) if there is exactly one, else a bare minor (go1.20) if there is exactly
 * one; undefined otherwise. Go packs string data without separators, so a version may touch
 * other text on both sides: digits are taken greedily and the range and uniqueness checks do the
 * rest.
 */
function versionString(elf: ElfFile, range: string): string | undefined {
  const r = /^go1\.(\d+)(?:(\+)|-go1\.(\d+))?$/.exec(range);
  if (!r) return undefined;
  const lo = Number(r[1]);
  const hi = r[2] ? Infinity : r[3] ? Number(r[3]) : lo;
  const full = new Set<string>();
  const bare = new Set<string>();
  try {
    const readOnly = elf.segments.filter((p) => p.type === PT_LOAD && !(p.flags & (PF_W | PF_X)) && p.filesz > 0 && p.filesz <= MAX_SCAN);
    for (const p of withinBudget(readOnly, (x) => x.filesz, elf.size)) {
      const text = elf.read(p.offset, p.filesz).toString('latin1');
      for (const m of text.matchAll(/go1\.(\d+)(\.\d+|(?:rc|beta)\d+)?/g)) {
        const minor = Number(m[1]);
        if (minor < lo || minor > hi) continue;
        // Two of a kind settle it: keep no more (a segment of distinct "go1.N" would fill a set).
        if (m[2]) full.add(m[0]);
        else if (bare.size < 2) bare.add(m[0]);
        if (full.size > 1) return undefined;
      }
    }
  } catch {
    return undefined;
  }
  if (full.size === 1) return [...full][0];
  return bare.size === 1 ? [...bare][0] : undefined;
}

/** runtime.buildVersion from the symbol table (a Go string header in data). */
function buildVersionSymbol(elf: ElfFile): string | undefined {
  try {
    const symtab = elf.section('.symtab');
    const strtab = symtab && elf.sections[symtab.link];
    if (!symtab || !strtab || symtab.type === SHT_NOBITS) return undefined;
    const names = elf.read(strtab.offset, strtab.size);
    const want = names.indexOf(Buffer.from('\0runtime.buildVersion\0', 'latin1'));
    if (want < 0) return undefined;
    const syms = elf.read(symtab.offset, symtab.size);
    const ent = elf.is64 ? 24 : 16;
    const ps = elf.is64 ? 8 : 4;
    for (let o = 0; o + ent <= syms.length; o += ent) {
      if (syms.readUInt32LE(o) !== want + 1) continue;
      const value = elf.is64 ? Number(syms.readBigUInt64LE(o + 8)) : syms.readUInt32LE(o + 4);
      const hdr = readVaddr(elf, value, 2 * ps);
      if (!hdr) return undefined;
      const ptr = ps === 8 ? Number(hdr.readBigUInt64LE(0)) : hdr.readUInt32LE(0);
      const len = ps === 8 ? Number(hdr.readBigUInt64LE(8)) : hdr.readUInt32LE(4);
      if (len === 0 || len > 64) return undefined;
      const s = readVaddr(elf, ptr, len)?.toString('latin1');
      return s && /^go\d/.test(s) ? s : undefined;
    }
  } catch {
    // no symbol
  }
  return undefined;
}

function parseSetting(kv: string): GoBuildSetting | undefined {
  let key: string;
  let raw: string;
  if (kv[0] === '"' || kv[0] === '`') {
    const end = quotedPrefix(kv);
    if (end < 0 || kv[end] !== '=') return undefined;
    key = goUnquote(kv.slice(0, end)) ?? '';
    raw = kv.slice(end + 1);
  } else {
    const eq = kv.indexOf('=');
    if (eq <= 0) return undefined;
    key = kv.slice(0, eq);
    raw = kv.slice(eq + 1);
  }
  const value = raw[0] === '"' || raw[0] === '`' ? goUnquote(raw) : raw;
  return value === undefined ? undefined : { key, value };
}

/** Length of the Go quoted string at the start of s, or -1. */
function quotedPrefix(s: string): number {
  const q = s[0];
  for (let i = 1; i < s.length; i++) {
    if (q === '"' && s[i] === '\\') i++;
    else if (s[i] === q) return i + 1;
  }
  return -1;
}

const ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', "'": "'", '"': '"' };

/** strconv.Unquote for "…" and `…` strings; undefined when malformed. */
function goUnquote(s: string): string | undefined {
  if (s.length < 2 || s[0] !== s[s.length - 1]) return undefined;
  if (s[0] === '`') return s.slice(1, -1).includes('`') ? undefined : s.slice(1, -1).replaceAll('\r', '');
  if (s[0] !== '"') return undefined;
  const body = s.slice(1, -1);
  const bytes: number[] = [];
  const push = (str: string) => bytes.push(...Buffer.from(str, 'utf8'));
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '"' || c === '\n') return undefined;
    if (c !== '\\') {
      const cp = body.codePointAt(i)!;
      push(String.fromCodePoint(cp));
      if (cp > 0xffff) i++;
      continue;
    }
    const e = body[++i];
    if (e === undefined) return undefined;
    if (e in ESCAPES) push(ESCAPES[e]);
    else if (e === 'x' || e === 'u' || e === 'U') {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + n);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== n) return undefined;
      i += n;
      if (e === 'x') bytes.push(parseInt(hex, 16));
      else push(String.fromCodePoint(parseInt(hex, 16)));
    } else if (e >= '0' && e <= '7') {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct)) return undefined;
      i += 2;
      bytes.push(parseInt(oct, 8) & 0xff);
    } else return undefined;
  }
  return Buffer.from(bytes).toString('utf8');
}

/** strconv.Quote for the strings build settings hold (printable text). */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + '"';
}
