// What every sampled process has mapped, captured from /proc as early as possible (on its first
// sample) and kept after the process exits: a short-lived process must still be symbolized when
// the window closes seconds later. The executable files behind the mappings are opened once per
// identity and kept open until close(), so deleted binaries, exited processes and files inside
// containers stay readable. Workers read them through /proc/self/fd/N, which reopens the very
// same inode from any thread of this process.

import { closeSync, fstatSync, openSync, readFileSync, readlinkSync, readSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ElfFile, PT_LOAD, type ElfSegment } from './elf/elf-file.js';
import { PerfMap } from './perf-map.js';

export type MappingKind = 'file' | 'vdso' | 'vsyscall' | 'heap' | 'stack' | 'anon' | 'special';

/** An executable file (or the vdso image) opened once and shared by every process mapping it. */
export interface MappedFile {
  /** Identity for caches: `b:<gnu build id>`, else `f:<dev>:<inode>:<size>:<mtime>`. */
  key: string;
  buildId: string;
  /** Go's build id note, '' for non-Go files. */
  goBuildId: string;
  /** Readable from any thread of this process while the table is open (`/proc/self/fd/N`). */
  openPath: string;
  /** The path of the first process that mapped it, as that process sees it. */
  displayPath: string;
  /** Root prefix of that process (`/proc/PID/root`), for separate debug files. */
  root: string;
  /** PT_LOAD segments, to turn file offsets into ELF virtual addresses. */
  segments: ElfSegment[];
  /** Set when the file could not be read as ELF; lookups then fall back to `file+0xoffset`. */
  error?: string;
}

export interface ProcessMapping {
  start: number;
  end: number;
  /** File offset of `start`. */
  offset: number;
  perms: string;
  dev: string;
  inode: number;
  /** Path as the process sees it, without the ` (deleted)` suffix; `[heap]` etc. for special ones. */
  path: string;
  deleted: boolean;
  kind: MappingKind;
  /** The opened file, for executable file mappings and the vdso. */
  file?: MappedFile;
}

export interface ProcessInfo {
  pid: number;
  /** The pid inside the process's own pid namespace (containers). */
  nsPid: number;
  comm: string;
  exePath: string;
  /** Start time in clock ticks after boot (/proc/PID/stat field 22): tells pid reuse apart. */
  startTime: number;
  mappings: ProcessMapping[];
  /** Set once a refresh found the process gone; its mappings are kept. */
  exited: boolean;
}

export interface ResolvedAddress {
  mapping: ProcessMapping;
  /** The mapped file (undefined for heap, stack, anonymous memory). */
  file?: MappedFile;
  fileKey?: string;
  openPath?: string;
  displayPath: string;
  /** Offset of the address in the mapped file (for anonymous memory: in the mapping). */
  fileOffset: number;
  /** ELF virtual address (what symbol tables use), when the file's segments cover it. */
  vaddr?: number;
}

export interface ProcessTableOptions {
  /** Where /proc is; tests may point it elsewhere. */
  procRoot?: string;
  /** A miss on a live process re-reads its maps (dlopen), at most this often per process. */
  rereadIntervalMs?: number;
}

interface ProcState {
  info: ProcessInfo;
  lastRead: number;
  perfMap?: PerfMap;
}

export class ProcessTable {
  private readonly procRoot: string;
  private readonly rereadIntervalMs: number;
  private readonly procs = new Map<number, ProcState>();
  /** `dev:inode` (from maps) → file: a file is opened once however many processes map it. */
  private readonly byInode = new Map<string, MappedFile>();
  /** File key → file: the same build id reached through another inode reuses the first one. */
  private readonly byKey = new Map<string, MappedFile>();
  /** The descriptor behind each open file. */
  private readonly fds = new Map<MappedFile, number>();
  private vdso?: { bytes: Buffer; file: MappedFile };
  /** Pids that could not be captured (gone before we saw them) → when we last tried. */
  private readonly missing = new Map<number, number>();
  private closed = false;

  constructor(opts: ProcessTableOptions = {}) {
    this.procRoot = (opts.procRoot ?? '/proc').replace(/\/+$/, '');
    this.rereadIntervalMs = opts.rereadIntervalMs ?? 1000;
  }

  /** Captures the process if it is not known yet. Undefined if it is gone and was never seen. */
  ensure(pid: number): ProcessInfo | undefined {
    const st = this.procs.get(pid);
    if (st) return st.info;
    // A pid that was already gone is asked about for every one of its samples: look again at
    // most once per re-read interval instead of hitting /proc each time.
    const tried = this.missing.get(pid);
    if (tried !== undefined && performance.now() - tried < this.rereadIntervalMs) return undefined;
    const info = this.refresh(pid);
    if (info) this.missing.delete(pid);
    else this.missing.set(pid, performance.now());
    return info;
  }

  /**
   * Re-reads the process (after exec or dlopen). If it has exited, the old capture is kept and
   * marked exited.
   */
  refresh(pid: number): ProcessInfo | undefined {
    if (this.closed) throw new Error('process table is closed');
    const old = this.procs.get(pid);
    const info = this.capture(pid);
    if (!info) {
      if (old) old.info.exited = true;
      return old?.info;
    }
    this.procs.set(pid, { info, lastRead: performance.now(), perfMap: old?.perfMap });
    return info;
  }

  get(pid: number): ProcessInfo | undefined {
    return this.procs.get(pid)?.info;
  }

  /**
   * Keeps the current capture of `pid` under `alias` (a number no real pid has, e.g. a
   * negative one) and forgets it under `pid`: after an exec, the samples taken before it are
   * still resolved against the old image's maps through the alias.
   */
  retire(pid: number, alias: number): boolean {
    const st = this.procs.get(pid);
    if (!st) return false;
    st.info.exited = true; // the alias never changes again: no re-reads of /proc
    this.procs.set(alias, st);
    this.procs.delete(pid);
    return true;
  }

  /** Drops a process (files stay open: other processes or caches may still use them). */
  forget(pid: number): void {
    this.procs.delete(pid);
  }

  get pids(): number[] {
    return [...this.procs.keys()];
  }

  /** Where `addr` of `pid` points; undefined when no mapping covers it. */
  resolve(pid: number, addr: number | bigint): ResolvedAddress | undefined {
    let st = this.procs.get(pid);
    if (!st) {
      this.ensure(pid);
      st = this.procs.get(pid);
      if (!st) return undefined;
    }
    const a = typeof addr === 'bigint' ? Number(addr) : addr;
    let m = findMapping(st.info.mappings, a);
    if (!m && !st.info.exited && performance.now() - st.lastRead >= this.rereadIntervalMs) {
      this.refresh(pid);
      st = this.procs.get(pid)!;
      m = findMapping(st.info.mappings, a);
    }
    if (!m) return undefined;
    const fileOffset = a - m.start + m.offset;
    const file = m.file;
    if (!file) return { mapping: m, displayPath: m.path, fileOffset: a - m.start };
    const vaddr = file.error ? undefined : offsetToVaddr(file.segments, fileOffset);
    return { mapping: m, file, fileKey: file.key, openPath: file.openPath, displayPath: m.path, fileOffset, vaddr };
  }

  /** The JIT map of a process (/tmp/perf-PID.map inside its root), refreshed; undefined if none. */
  perfMap(pid: number): PerfMap | undefined {
    const st = this.procs.get(pid);
    if (!st) return undefined;
    if (!st.perfMap) st.perfMap = new PerfMap(`${this.procRoot}/${pid}/root/tmp/perf-${st.info.nsPid}.map`);
    return st.perfMap.refresh() ? st.perfMap : undefined;
  }

  /** Processes (and aliases of replaced images) whose maps are kept. */
  get size(): number {
    return this.procs.size;
  }

  /** Files open right now (tests, diagnostics). */
  get openFiles(): number {
    return this.fds.size;
  }

  /**
   * Closes the files no known process maps any more, and forgets old misses. A long-running
   * capture calls this after forgetting exited processes; nothing may be resolving then.
   */
  sweep(): void {
    const used = new Set<MappedFile>();
    for (const st of this.procs.values()) for (const m of st.info.mappings) if (m.file) used.add(m.file);
    if (this.vdso) used.add(this.vdso.file);
    for (const [file, fd] of this.fds) {
      if (used.has(file)) continue;
      closeQuietly(fd);
      this.fds.delete(file);
      if (this.byKey.get(file.key) === file) this.byKey.delete(file.key);
    }
    for (const [k, file] of this.byInode) if (!this.fds.has(file)) this.byInode.delete(k);
    const now = performance.now();
    for (const [pid, tried] of this.missing) if (now - tried >= this.rereadIntervalMs) this.missing.delete(pid);
  }

  /** Closes every file kept open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) closeQuietly(fd);
    this.fds.clear();
    this.procs.clear();
    this.byInode.clear();
    this.byKey.clear();
  }

  private capture(pid: number): ProcessInfo | undefined {
    const dir = `${this.procRoot}/${pid}`;
    let mapsText: string;
    let statText: string;
    try {
      statText = readFileSync(`${dir}/stat`, 'latin1');
      mapsText = readFileSync(`${dir}/maps`, 'latin1');
    } catch {
      return undefined;
    }
    const info: ProcessInfo = {
      pid,
      nsPid: pid,
      comm: '',
      exePath: '',
      startTime: parseStartTime(statText),
      mappings: [],
      exited: false,
    };
    const lp = statText.indexOf('(');
    const rp = statText.lastIndexOf(')');
    if (lp >= 0 && rp > lp) info.comm = statText.slice(lp + 1, rp);
    try {
      info.exePath = stripDeleted(readlinkSync(`${dir}/exe`)).path;
    } catch {
      // kernel threads have no exe
    }
    try {
      const status = readFileSync(`${dir}/status`, 'latin1');
      const m = /^NSpid:\s*([\d\s]+)$/m.exec(status);
      if (m) {
        const ids = m[1].trim().split(/\s+/);
        const last = Number(ids[ids.length - 1]);
        if (Number.isInteger(last) && last > 0) info.nsPid = last;
      }
    } catch {
      // raced with exit: nsPid stays pid
    }
    const root = `${dir}/root`;
    for (const m of parseMaps(mapsText)) {
      if (m.kind === 'file' && m.perms.includes('x') && m.inode !== 0) {
        m.file = this.fileFor(pid, m, root);
      } else if (m.kind === 'vdso') {
        m.file = this.vdsoFor(pid, m);
      }
      info.mappings.push(m);
    }
    return info;
  }

  private fileFor(pid: number, m: ProcessMapping, root: string): MappedFile {
    const idKey = `${m.dev}:${m.inode}`;
    const known = this.byInode.get(idKey);
    if (known) return known;
    const candidates = [`${this.procRoot}/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`];
    if (!m.deleted) candidates.push(root + m.path);
    let fd = -1;
    let lastErr = '';
    for (const c of candidates) {
      try {
        fd = openSync(c, 'r');
        break;
      } catch (e) {
        lastErr = (e as NodeJS.ErrnoException).code ?? String(e);
      }
    }
    if (fd < 0) {
      // Not cached by inode: a later process (or a refresh with more privilege) may succeed.
      return { key: `f:${idKey}`, buildId: '', goBuildId: '', openPath: '', displayPath: m.path, root, segments: [], error: `cannot open ${m.path}: ${lastErr}` };
    }
    const file = this.adopt(fd, m.path, root, idKey);
    this.byInode.set(idKey, file);
    return file;
  }

  /** Reads headers of the file behind `fd` and registers it, or reuses a file with the same key. */
  private adopt(fd: number, displayPath: string, root: string, idKey: string): MappedFile {
    const openPath = `/proc/self/fd/${fd}`;
    let buildId = '';
    let goBuildId = '';
    let segments: ElfSegment[] = [];
    let error: string | undefined;
    try {
      ElfFile.withFile(openPath, (elf) => {
        buildId = elf.buildId;
        goBuildId = elf.goBuildId;
        segments = elf.segments.filter((p) => p.type === PT_LOAD);
      });
    } catch (e) {
      error = (e as Error).message;
    }
    let key: string;
    if (buildId) {
      key = `b:${buildId}`;
    } else {
      const st = fstatSync(fd);
      key = `f:${idKey}:${st.size}:${Math.trunc(st.mtimeMs)}`;
    }
    const existing = this.byKey.get(key);
    if (existing) {
      closeSync(fd);
      return existing;
    }
    const file: MappedFile = { key, buildId, goBuildId, openPath, displayPath, root, segments, error };
    this.fds.set(file, fd);
    this.byKey.set(key, file);
    return file;
  }

  /**
   * The vdso is not a file: copy the process's image out of /proc/PID/mem into an unlinked
   * temporary file once (every process of one kernel maps the same image).
   */
  private vdsoFor(pid: number, m: ProcessMapping): MappedFile | undefined {
    const len = m.end - m.start;
    if (len <= 0 || len > 1 << 20) return undefined;
    let bytes: Buffer;
    try {
      const fd = openSync(`${this.procRoot}/${pid}/mem`, 'r');
      try {
        bytes = Buffer.alloc(len);
        const n = readSync(fd, bytes, 0, len, m.start);
        if (n < 64) return this.vdso?.file;
        bytes = bytes.subarray(0, n);
      } finally {
        closeSync(fd);
      }
    } catch {
      return this.vdso?.file;
    }
    if (this.vdso && this.vdso.bytes.equals(bytes)) return this.vdso.file;
    const tmp = join(tmpdir(), `flamewire-vdso-${process.pid}-${pid}-${Math.random().toString(36).slice(2)}.so`);
    try {
      writeFileSync(tmp, bytes, { mode: 0o600 });
      const fd = openSync(tmp, 'r');
      unlinkSync(tmp);
      const file = this.adopt(fd, '[vdso]', '', `vdso:${pid}`);
      if (!this.vdso) this.vdso = { bytes, file };
      return file;
    } catch {
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
      return this.vdso?.file;
    }
  }
}

/**
 * Parses /proc/PID/maps text. Lines that do not parse are skipped. The path is the rest of the
 * line, whatever it holds: file names may contain '\r' (and, read as latin1, any byte), which
 * `.` does not match, so `(.*)$` skipped such mappings (a process could hide its code) and,
 * backtracking over the digits and spaces before them, took time quadratic in the line.
 */
export function parseMaps(text: string): ProcessMapping[] {
  const out: ProcessMapping[] = [];
  for (const line of text.split('\n')) {
    // start-end perms offset dev inode [path]
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+([0-9a-f]+:[0-9a-f]+)\s+(\d+)\s*([\s\S]*)$/.exec(line);
    if (!m) continue;
    const start = parseInt(m[1], 16);
    const end = parseInt(m[2], 16);
    if (!(end > start)) continue;
    const { path, deleted } = stripDeleted(m[7]);
    const inode = Number(m[6]);
    let kind: MappingKind;
    if (path === '') kind = 'anon';
    else if (path === '[vdso]') kind = 'vdso';
    else if (path === '[vsyscall]') kind = 'vsyscall';
    else if (path === '[heap]') kind = 'heap';
    else if (path.startsWith('[stack')) kind = 'stack';
    else if (path.startsWith('[') || inode === 0) kind = path.startsWith('/') ? 'file' : 'special';
    else kind = 'file';
    // Anonymous shared memory and memfds show a path but cannot be symbolized as files.
    if (kind === 'file' && (path.startsWith('/dev/zero') || path.startsWith('/SYSV') || path.startsWith('/memfd:'))) kind = 'anon';
    out.push({ start, end, offset: parseInt(m[4], 16), perms: m[3], dev: m[5], inode, path, deleted, kind });
  }
  out.sort((a, b) => a.start - b.start);
  return out;
}

function stripDeleted(p: string): { path: string; deleted: boolean } {
  const suffix = ' (deleted)';
  return p.endsWith(suffix) ? { path: p.slice(0, -suffix.length), deleted: true } : { path: p, deleted: false };
}

function parseStartTime(stat: string): number {
  const rp = stat.lastIndexOf(')');
  if (rp < 0) return 0;
  // Fields after the comm start at field 3 (state); starttime is field 22.
  const fields = stat.slice(rp + 2).split(' ');
  const v = Number(fields[22 - 3]);
  return Number.isFinite(v) ? v : 0;
}

function findMapping(maps: ProcessMapping[], a: number): ProcessMapping | undefined {
  let lo = 0;
  let hi = maps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const m = maps[mid];
    if (a < m.start) hi = mid - 1;
    else if (a >= m.end) lo = mid + 1;
    else return m;
  }
  return undefined;
}

/** File offset → ELF virtual address through the PT_LOAD table (PIE, libraries, odd layouts). */
export function offsetToVaddr(segments: ElfSegment[], off: number): number | undefined {
  for (const p of segments) {
    if (off >= p.offset && off < p.offset + Math.max(p.filesz, 1)) return off - p.offset + p.vaddr;
  }
  return undefined;
}

/** `/usr/lib/libc.so.6` → `libc.so.6`, for `libc.so.6+0x1234` names. */
export function baseName(path: string): string {
  return posix.basename(path) || path;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
