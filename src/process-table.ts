// What every sampled process has mapped, captured from /proc as early as possible (on its first
// sample) and kept after the process exits: a short-lived process must still be symbolized when
// the window closes seconds later. The executable files behind the mappings are opened once per
// identity and kept open until close(), so deleted binaries, exited processes and files inside
// containers stay readable. Workers read them through /proc/self/fd/N, which reopens the very
// same inode from any thread of this process.

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readlinkSync, readSync, unlinkSync, writeSync, constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ElfFile, fileIdentity, PT_LOAD, type ElfSegment } from './elf/elf-file.js';
import { PerfMap, type PerfMapStats } from './perf-map.js';
import { fuseMounts, MAX_MAPS_BYTES, openUntrusted, readBounded, UntrustedFileError, type OpenedFile } from './untrusted-file.js';

export type MappingKind = 'file' | 'vdso' | 'vsyscall' | 'heap' | 'stack' | 'anon' | 'special';

/** An executable file (or the vdso image) opened once and shared by every process mapping it. */
export interface MappedFile {
  /** Identity for caches: `b:<gnu build id>`, else `f:<dev>:<inode>:<size>:<mtime>`. */
  key: string;
  buildId: string;
  /** Go's build id note, '' for non-Go files. */
  goBuildId: string;
  /**
   * Readable from any thread of this process while the table keeps the file (`/proc/self/fd/N`).
   * Work queued for later opens it with `identity`: sweep() may close the descriptor meanwhile,
   * and the number then names whatever is opened next.
   */
  openPath: string;
  /** fileIdentity() of the open file ('' when it could not be opened). */
  identity: string;
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
  /** Its real, effective, saved and file-system uids (/proc/PID/status), deduplicated. */
  uids: number[];
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
  /** Bytes of a perf map read per refresh at most (perf-map.ts); the rest waits. */
  perfMapReadBudget?: number;
}

/** Files with one build id but other contents compared with a new one, at most. */
const MAX_SAME_BUILD_ID = 4;
/** /proc/PID/stat and status are a few kilobytes. */
const MAX_STATUS_BYTES = 1 << 20;

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
  /** The descriptor behind each open file, and (once asked for) its contents' hash. */
  private readonly fds = new Map<MappedFile, number>();
  private readonly hashes = new Map<MappedFile, string>();
  /** Build id → the files registered with it (more than one only when their contents differ). */
  private readonly byBuildId = new Map<string, MappedFile[]>();
  private vdso?: { bytes: Buffer; file: MappedFile };
  /** Pids that could not be captured (gone before we saw them) → when we last tried. */
  private readonly missing = new Map<number, number>();
  /** Perf-map figures of the processes forgotten, for perfMapStats(). */
  private readonly perfMapTotals: PerfMapTotals = emptyPerfMapTotals();
  private closed = false;

  private readonly perfMapReadBudget: number | undefined;

  constructor(opts: ProcessTableOptions = {}) {
    this.procRoot = (opts.procRoot ?? '/proc').replace(/\/+$/, '');
    this.rereadIntervalMs = opts.rereadIntervalMs ?? 1000;
    this.perfMapReadBudget = opts.perfMapReadBudget;
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

  /** Drops a process (mapped files stay open until sweep(): others may still use them). */
  forget(pid: number): void {
    const st = this.procs.get(pid);
    if (st?.perfMap) this.closePerfMap(st.perfMap);
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

  /**
   * The JIT map of a process (/tmp/perf-PID.map inside its root), refreshed; undefined if none.
   * Only a regular file owned by the process's user is read (see perf-map.ts), and the path is
   * resolved inside the process's root.
   */
  perfMap(pid: number): PerfMap | undefined {
    const st = this.procs.get(pid);
    if (!st) return undefined;
    if (!st.perfMap) {
      st.perfMap = new PerfMap(`/tmp/perf-${st.info.nsPid}.map`, {
        root: `${this.procRoot}/${pid}/root`,
        owners: st.info.uids,
        readBudget: this.perfMapReadBudget,
      });
    }
    // An exited process's root is gone: what was read stays (the descriptor is kept open).
    if (st.info.exited) return st.perfMap.length > 0 ? st.perfMap : undefined;
    return st.perfMap.refresh() ? st.perfMap : undefined;
  }

  /** What the perf maps read so far hold and skipped, over every process, forgotten ones too. */
  perfMapStats(): PerfMapTotals {
    const t = { ...this.perfMapTotals };
    for (const st of this.procs.values()) if (st.perfMap) addPerfMapStats(t, st.perfMap.stats);
    return t;
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
      this.hashes.delete(file);
      if (this.byKey.get(file.key) === file) this.byKey.delete(file.key);
      const same = this.byBuildId.get(file.buildId)?.filter((f) => f !== file);
      if (same?.length) this.byBuildId.set(file.buildId, same);
      else this.byBuildId.delete(file.buildId);
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
    this.hashes.clear();
    this.byBuildId.clear();
    for (const st of this.procs.values()) if (st.perfMap) this.closePerfMap(st.perfMap);
    this.procs.clear();
    this.byInode.clear();
    this.byKey.clear();
  }

  private closePerfMap(map: PerfMap): void {
    addPerfMapStats(this.perfMapTotals, map.stats);
    map.close();
  }

  private capture(pid: number): ProcessInfo | undefined {
    const dir = `${this.procRoot}/${pid}`;
    let mapsText: string;
    let statText: string;
    try {
      statText = readBounded(`${dir}/stat`, MAX_STATUS_BYTES).text;
      // A process can map as much as it likes: what is past the cap is not seen (its addresses
      // then resolve to nothing, as for an unmapped address).
      mapsText = readBounded(`${dir}/maps`, MAX_MAPS_BYTES).text;
    } catch {
      return undefined;
    }
    const info: ProcessInfo = {
      pid,
      nsPid: pid,
      comm: '',
      exePath: '',
      startTime: parseStartTime(statText),
      uids: [],
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
      const status = readBounded(`${dir}/status`, MAX_STATUS_BYTES).text;
      const m = /^NSpid:[ \t]*([\d \t]+)$/m.exec(status);
      if (m) {
        const ids = m[1].trim().split(/\s+/);
        const last = Number(ids[ids.length - 1]);
        if (Number.isInteger(last) && last > 0) info.nsPid = last;
      }
      info.uids = parseUids(status);
    } catch {
      // raced with exit: nsPid stays pid, and no file is taken as the process's own
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

  /**
   * A file by its path, registered as a process mapping it would find it (the same key): for
   * work to start on a file before any process maps it, e.g. a command about to be run.
   * Undefined when it cannot be opened as a regular file.
   */
  openFile(path: string): MappedFile | undefined {
    let opened: OpenedFile;
    try {
      opened = openUntrusted(path);
    } catch (e) {
      if (e instanceof UntrustedFileError) return undefined;
      throw e;
    }
    // As /proc/PID/maps writes it: major:minor in hex, at least two digits each.
    const dev = Number(opened.stats.dev);
    const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
    const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff & 0xfffff);
    const hex = (n: number) => n.toString(16).padStart(2, '0');
    const idKey = `${hex(major)}:${hex(minor)}:${opened.stats.ino}`;
    const known = this.byInode.get(idKey);
    if (known) {
      closeSync(opened.fd);
      return known;
    }
    const file = this.adopt(opened, path, '/', idKey);
    this.byInode.set(idKey, file);
    return file;
  }

  private fileFor(pid: number, m: ProcessMapping, root: string): MappedFile {
    const idKey = `${m.dev}:${m.inode}`;
    const known = this.byInode.get(idKey);
    if (known) return known;
    // The very file mapped, through the kernel's own link (needs CAP_CHECKPOINT_RESTORE or
    // CAP_SYS_ADMIN); else its path, resolved inside the process's root. Either way only a
    // regular file is opened: a process can map a device, or put a FIFO where its file was.
    // A file on a FUSE mount of some user waits for that user's daemon at every open and read.
    if (fuseMounts(`${this.procRoot}/${pid}/mountinfo`).devices.has(m.dev)) {
      return { key: `f:${idKey}`, buildId: '', goBuildId: '', openPath: '', identity: '', displayPath: m.path, root, segments: [], error: `${m.path} is on a FUSE file system served by an unprivileged user: not read` };
    }
    let opened: OpenedFile | undefined;
    let lastErr = '';
    const tries: Array<() => OpenedFile> = [() => openUntrusted(`${this.procRoot}/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`)];
    if (!m.deleted) tries.push(() => openUntrusted(m.path, { root }));
    for (const open of tries) {
      try {
        opened = open();
        break;
      } catch (e) {
        if (!(e instanceof UntrustedFileError)) throw e;
        lastErr = e.message;
      }
    }
    if (!opened) {
      // Not cached by inode: a later process (or a refresh with more privilege) may succeed.
      return { key: `f:${idKey}`, buildId: '', goBuildId: '', openPath: '', identity: '', displayPath: m.path, root, segments: [], error: `cannot open ${m.path}: ${lastErr}` };
    }
    const file = this.adopt(opened, m.path, root, idKey);
    this.byInode.set(idKey, file);
    return file;
  }

  /**
   * Reads the headers of an opened file and registers it, or reuses a registered file with the
   * same contents. Files are shared by build id (a binary in a thousand containers is read
   * once), but a build id is only bytes in the file: another file claiming one already known
   * is shared only when it is the same size and its contents hash the same, so that no process
   * can make its own symbols stand in for another process's binary.
   */
  private adopt(opened: OpenedFile, displayPath: string, root: string, idKey: string): MappedFile {
    const { fd, stats } = opened;
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
    let key = buildId ? `b:${buildId}` : `f:${idKey}:${stats.size}:${Math.trunc(stats.mtimeMs)}`;
    let existing = this.byKey.get(key);
    if (existing && buildId) {
      // Shared with a file of that build id and the same contents, if any (a few are compared
      // at most, so that many forgeries cost no more than a few hashes); else a parse of its own.
      let mine: string | undefined;
      const hash = () => (mine ??= contentHash(fd, stats.size));
      existing = this.byBuildId
        .get(buildId)!
        .slice(0, MAX_SAME_BUILD_ID)
        .find((f) => this.sizeOf(f) === stats.size && hash() !== '' && this.hashOf(f) === hash());
      if (!existing) key = `b:${buildId}@${idKey}:${stats.size}`;
    }
    if (existing) {
      closeSync(fd);
      return existing;
    }
    const file: MappedFile = { key, buildId, goBuildId, openPath, identity: fileIdentity(stats), displayPath, root, segments, error };
    this.fds.set(file, fd);
    this.byKey.set(key, file);
    if (buildId) this.byBuildId.set(buildId, [...(this.byBuildId.get(buildId) ?? []), file]);
    return file;
  }

  /** The size of an open file's contents. */
  private sizeOf(file: MappedFile): number {
    return fstatSync(this.fds.get(file)!).size;
  }

  /** The SHA-256 of an open file's contents, worked out once. */
  private hashOf(file: MappedFile): string {
    let h = this.hashes.get(file);
    if (h === undefined) {
      h = contentHash(this.fds.get(file)!, this.sizeOf(file));
      this.hashes.set(file, h);
    }
    return h;
  }

  /**
   * The vdso is not a file: copy the process's image out of /proc/PID/mem into an unlinked
   * temporary file once (every process of one kernel maps the same image). The file is created
   * exclusively under an unpredictable name (never through a link planted in /tmp).
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
    const tmp = join(tmpdir(), `flamewire-vdso-${randomBytes(12).toString('hex')}.so`);
    let fd = -1;
    try {
      const { O_CREAT, O_EXCL, O_NOFOLLOW, O_RDWR } = fsConstants;
      fd = openSync(tmp, O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR, 0o600);
      unlinkSync(tmp);
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, done);
      const file = this.adopt({ fd, stats: fstatSync(fd) }, '[vdso]', '', `vdso:${pid}`);
      fd = -1;
      if (!this.vdso) this.vdso = { bytes, file };
      return file;
    } catch {
      if (fd >= 0) {
        closeQuietly(fd);
        try {
          unlinkSync(tmp);
        } catch {
          // already unlinked
        }
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

/** The real, effective, saved and file-system uids on the Uid: line of /proc/PID/status. */
export function parseUids(status: string): number[] {
  const m = /^Uid:[ \t]*([\d \t]+)$/m.exec(status);
  if (!m) return [];
  return [...new Set(m[1].trim().split(/\s+/).map(Number).filter((u) => Number.isInteger(u) && u >= 0))];
}

/** What the perf maps of a table read and skipped (perf-map.ts PerfMapStats, summed). */
export interface PerfMapTotals {
  maps: number;
  lines: number;
  entries: number;
  malformed: number;
  evicted: number;
  longNames: number;
  bytesUnread: number;
}

function emptyPerfMapTotals(): PerfMapTotals {
  return { maps: 0, lines: 0, entries: 0, malformed: 0, evicted: 0, longNames: 0, bytesUnread: 0 };
}

function addPerfMapStats(t: PerfMapTotals, s: PerfMapStats): void {
  if (s.bytesRead === 0 && s.bytesUnread === 0) return;
  t.maps++;
  t.lines += s.lines;
  t.entries += s.entries;
  t.malformed += s.malformed;
  t.evicted += s.evicted;
  t.longNames += s.longNames;
  t.bytesUnread += s.bytesUnread;
}

/** SHA-256 of the first `size` bytes behind `fd`, read a megabyte at a time; '' if unreadable. */
function contentHash(fd: number, size: number): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(1, size)));
  try {
    for (let pos = 0; pos < size; ) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n <= 0) return '';
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } catch {
    return '';
  }
  return h.digest('hex');
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
