// Opening files that a profiled process controls. flamewire runs as root and reads binaries,
// libraries, separate debug files and perf maps on behalf of processes that may be hostile: any
// of those paths can name a FIFO (a blocking open that never returns), a device (opening one
// can have side effects), a socket, a file larger than memory, or a symbolic link out of the
// process's root (a container's `/tmp/perf-1.map` → `/etc/shadow` of the host).
//
// - Nothing is opened for reading before its type is known: the last component is opened with
//   O_PATH (no open of the file itself, no side effects, no blocking), fstat'ed, and only a
//   regular file is reopened for reading, through /proc/self/fd, which names that very inode.
// - A path inside a process's root (`/proc/PID/root` + the process's path) is resolved one
//   component at a time from a descriptor of that root, the way openat2(RESOLVE_IN_ROOT) does:
//   a symbolic link's text is read and resolved against the same root (an absolute link starts
//   again at the root, `..` stops there), never followed by the kernel, so no link — magic
//   /proc links included — leads out of it. Each step opens `/proc/self/fd/<dir>/<name>`: the
//   directory is the descriptor, not a path that can be swapped under the walk.
// - A file system served by an unprivileged user's FUSE daemon is never entered: every lookup,
//   stat or open there waits for the daemon's answer, which a hostile one never sends (any user
//   can mount one, with fusermount3 or in a user namespace). The process's mountinfo tells where
//   such mounts are, without touching them; a walk stops before it would look anything up in one,
//   and mapped files on one are not opened (fuseMounts().devices).
// - Reads of /proc files are bounded: the kernel reports their size as 0, and a process can make
//   some of them (maps) very large.

import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync, type Stats } from 'node:fs';

/** O_PATH (Linux): a descriptor that names a file without opening it. Same value on x86-64 and arm64. */
const O_PATH = 0o10000000;
const { O_RDONLY, O_NOFOLLOW, O_DIRECTORY, O_NOCTTY, O_NONBLOCK } = constants;
/** /proc/PID/maps is read up to this size: 65530 mappings (vm.max_map_count) of long paths fit. */
export const MAX_MAPS_BYTES = 64 << 20;
/** Symbolic links followed in one resolution, as the kernel's MAXSYMLINKS. */
const MAX_LINKS = 40;

export type UntrustedFileProblem = 'missing' | 'not-regular' | 'owner' | 'loop' | 'denied' | 'fuse' | 'error';

/** A file that is not opened: `problem` says why, `message` is one line naming the path. */
export class UntrustedFileError extends Error {
  override name = 'UntrustedFileError';
  constructor(message: string, readonly problem: UntrustedFileProblem) {
    super(message);
  }
}

export interface OpenUntrustedOptions {
  /**
   * Resolve `path` inside this directory as if it were `/` (e.g. `/proc/1234/root`): no link
   * leads out of it. Without it, `path` is opened as the kernel resolves it (for paths the
   * kernel itself provides, such as /proc/PID/map_files/…, whose targets are still checked).
   */
  root?: string;
  /** The file's owner must be one of these uids. */
  owners?: readonly number[];
}

/** An open regular file: read it through `fd`, close it with closeSync. */
export interface OpenedFile {
  fd: number;
  stats: Stats;
}

/**
 * Opens a regular file for reading without blocking, side effects or leaving `opts.root`.
 * Throws UntrustedFileError for anything else (missing, a FIFO, a device, a socket, a
 * directory, a link loop, a file of another owner).
 */
export function openUntrusted(path: string, opts: OpenUntrustedOptions = {}): OpenedFile {
  const handle = opts.root === undefined ? openPathHandle(path) : resolveInRoot(opts.root, path);
  try {
    const st = fstatSync(handle);
    if (!st.isFile()) throw new UntrustedFileError(`${path}: not a regular file (${kindOf(st)})`, 'not-regular');
    if (opts.owners && !opts.owners.includes(st.uid)) throw new UntrustedFileError(`${path}: owned by uid ${st.uid}, not by the process's user`, 'owner');
    // The same inode, now opened for reading. O_NONBLOCK and O_NOCTTY are for the case the
    // kernel would ever hand back something else; a regular file ignores both.
    let fd: number;
    try {
      fd = openSync(`/proc/self/fd/${handle}`, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    } catch (e) {
      throw errnoError(path, e);
    }
    const again = fstatSync(fd);
    if (again.ino !== st.ino || again.dev !== st.dev) {
      closeSync(fd);
      throw new UntrustedFileError(`${path}: changed while it was opened`, 'error');
    }
    return { fd, stats: again };
  } finally {
    closeSync(handle);
  }
}

/** The file at `path` if it can be opened safely (see openUntrusted), else undefined. */
export function tryOpenUntrusted(path: string, opts: OpenUntrustedOptions = {}): OpenedFile | undefined {
  try {
    return openUntrusted(path, opts);
  } catch (e) {
    if (e instanceof UntrustedFileError) return undefined;
    throw e;
  }
}

/**
 * Reads up to `maxBytes` of a file that reports no size (/proc, /sys), in one pass of reads.
 * `truncated` is true when the file had more.
 */
export function readBounded(path: string, maxBytes: number): { text: string; truncated: boolean } {
  const fd = openSync(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    let truncated = false;
    let chunk = Buffer.allocUnsafe(Math.min(64 << 10, maxBytes + 1));
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n <= 0) break;
      if (total + n > maxBytes) {
        chunks.push(chunk.subarray(0, maxBytes - total));
        total = maxBytes;
        truncated = true;
        break;
      }
      chunks.push(chunk.subarray(0, n));
      total += n;
      chunk = Buffer.allocUnsafe(chunk.length);
    }
    return { text: Buffer.concat(chunks, total).toString('latin1'), truncated };
  } finally {
    closeSync(fd);
  }
}

/** An O_PATH descriptor of what `path` names, links followed by the kernel. */
function openPathHandle(path: string): number {
  try {
    return openSync(path, O_PATH);
  } catch (e) {
    throw errnoError(path, e);
  }
}

/**
 * An O_PATH descriptor of `path` resolved inside `root`, as openat2(RESOLVE_IN_ROOT) would:
 * every component is looked up in the directory reached so far (held as a descriptor), and a
 * symbolic link is replaced by its text, resolved from the root for an absolute one.
 */
function resolveInRoot(root: string, path: string): number {
  const fuse = fuseMounts(mountinfoFor(root));
  let rootFd: number;
  try {
    rootFd = openSync(root, O_PATH | O_DIRECTORY);
  } catch (e) {
    throw errnoError(root, e);
  }
  // The directories walked down from the root: `..` goes back up this stack, never above it.
  // `names` holds their path inside the root, to compare with the FUSE mounts.
  const dirs: number[] = [rootFd];
  const names: string[] = [];
  const closeDirs = (keep: number) => {
    while (dirs.length > keep) closeSync(dirs.pop()!);
    names.length = Math.max(0, dirs.length - 1);
  };
  const todo = components(path);
  let links = 0;
  try {
    while (todo.length > 0) {
      const name = todo.shift()!;
      if (name === '..') {
        if (dirs.length > 1) closeDirs(dirs.length - 1);
        continue;
      }
      // Looking the name up in a FUSE directory, or stat'ing a FUSE mount's root, waits on its daemon.
      const here = '/' + names.join('/');
      const next = here === '/' ? `/${name}` : `${here}/${name}`;
      const hazard = fuse.points.find((p) => p === next || isUnder(here, p));
      if (hazard !== undefined) throw new UntrustedFileError(`${path}: on a FUSE file system (${hazard}) served by an unprivileged user: not read`, 'fuse');
      const at = `/proc/self/fd/${dirs[dirs.length - 1]}/${name}`;
      let fd: number;
      try {
        fd = openSync(at, O_PATH | O_NOFOLLOW);
      } catch (e) {
        throw errnoError(path, e);
      }
      let st: Stats;
      try {
        st = fstatSync(fd);
      } catch (e) {
        closeSync(fd);
        throw errnoError(path, e);
      }
      if (st.isSymbolicLink()) {
        closeSync(fd);
        if (++links > MAX_LINKS) throw new UntrustedFileError(`${path}: too many levels of symbolic links`, 'loop');
        let target: string;
        try {
          target = readlinkSync(at);
        } catch (e) {
          throw errnoError(path, e);
        }
        if (target.startsWith('/')) closeDirs(1);
        todo.unshift(...components(target));
        continue;
      }
      if (todo.length === 0) {
        closeDirs(0);
        return fd;
      }
      if (!st.isDirectory()) {
        closeSync(fd);
        throw new UntrustedFileError(`${path}: ${name} is not a directory`, 'missing');
      }
      dirs.push(fd);
      names.push(name);
    }
    // The path named the root itself (or resolved back to it): a directory, never a file.
    const top = dirs.pop()!;
    closeDirs(0);
    return top;
  } catch (e) {
    closeDirs(0);
    throw e;
  }
}

/** FUSE mounts served by a user other than root, as one process sees them. */
export interface FuseMounts {
  /** Mount points, as paths inside that process's root. */
  points: string[];
  /** Their devices, `major:minor` in hex as /proc/PID/maps writes them. */
  devices: Set<string>;
}

const NO_MOUNTS: FuseMounts = { points: [], devices: new Set() };
const mountCache = new Map<string, { at: number; mounts: FuseMounts }>();
/** A process's mounts are read again after this long (they change rarely; opens come in bursts). */
const MOUNTS_TTL_MS = 1000;

/**
 * The FUSE mounts whose daemon is not root's, from a mountinfo file (`/proc/PID/mountinfo`):
 * the file system type is fuse, fuse.* or fuseblk, and the `user_id=` of its super options (the
 * user who mounted it) is not 0. Cached for a second per file. Nothing when it cannot be read.
 */
export function fuseMounts(mountinfo: string, now = Date.now()): FuseMounts {
  const hit = mountCache.get(mountinfo);
  if (hit && now - hit.at < MOUNTS_TTL_MS) return hit.mounts;
  let mounts = NO_MOUNTS;
  try {
    mounts = parseFuseMounts(readBounded(mountinfo, 16 << 20).text);
  } catch {
    // gone, or not ours to read: no mount is known to be FUSE
  }
  if (mountCache.size >= 256) mountCache.clear();
  mountCache.set(mountinfo, { at: now, mounts });
  return mounts;
}

/** The text of a mountinfo file → its user-served FUSE mounts. */
export function parseFuseMounts(text: string): FuseMounts {
  const out: FuseMounts = { points: [], devices: new Set() };
  for (const line of text.split('\n')) {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const head = line.slice(0, dash).split(' ');
    const [fstype, , superOpts = ''] = line.slice(dash + 3).split(' ');
    if (head.length < 5 || !(fstype === 'fuse' || fstype === 'fuseblk' || fstype?.startsWith('fuse.'))) continue;
    const uid = /(?:^|,)user_id=(\d+)(?:,|$)/.exec(superOpts)?.[1];
    if (uid === '0') continue;
    out.points.push(unescapeMountPath(head[4]!));
    const [major, minor] = head[2]!.split(':').map(Number);
    if (Number.isInteger(major) && Number.isInteger(minor)) out.devices.add(`${major!.toString(16).padStart(2, '0')}:${minor!.toString(16).padStart(2, '0')}`);
  }
  return out;
}

/** mountinfo writes space, tab, newline and backslash in paths as \ooo. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Whether the executable of the process at `procDir` (`/proc/PID`) is on a FUSE mount of an
 * unprivileged user, found from its mountinfo and maps without touching the file.
 */
export function exeOnUserFuse(procDir: string): boolean {
  const fuse = fuseMounts(`${procDir}/mountinfo`);
  if (fuse.devices.size === 0) return false;
  try {
    const exe = readlinkSync(`${procDir}/exe`).replace(/ \(deleted\)$/, '');
    for (const line of readBounded(`${procDir}/maps`, MAX_MAPS_BYTES).text.split('\n')) {
      // start-end perms offset dev inode path
      const f = /^\S+ \S+ \S+ (\S+) \d+\s+(.*)$/.exec(line);
      if (f && f[2]!.replace(/ \(deleted\)$/, '') === exe) return fuse.devices.has(f[1]!);
    }
  } catch {
    // gone: nothing will be opened for it anyway
  }
  return false;
}

/** The mountinfo that describes `root`: /proc/PID/mountinfo for /proc/PID/root, else ours. */
function mountinfoFor(root: string): string {
  const m = /^(.*\/(?:\d+|self|thread-self))\/root\/*$/.exec(root);
  return m ? `${m[1]}/mountinfo` : '/proc/self/mountinfo';
}

/** `dir` is `point` or below it. */
function isUnder(dir: string, point: string): boolean {
  return dir === point || dir.startsWith(point.endsWith('/') ? point : point + '/');
}

function components(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a file';
}

function errnoError(path: string, e: unknown): UntrustedFileError {
  const code = (e as NodeJS.ErrnoException).code;
  const problem: UntrustedFileProblem = code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : code === 'ELOOP' ? 'loop' : code === 'EACCES' || code === 'EPERM' ? 'denied' : 'error';
  return new UntrustedFileError(`${path}: ${code ?? (e as Error).message}`, problem);
}
