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
// - Reads of /proc files are bounded: the kernel reports their size as 0, and a process can make
//   some of them (maps) very large.

import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync, type Stats } from 'node:fs';

/** O_PATH (Linux): a descriptor that names a file without opening it. Same value on x86-64 and arm64. */
const O_PATH = 0o10000000;
const { O_RDONLY, O_NOFOLLOW, O_DIRECTORY, O_NOCTTY, O_NONBLOCK } = constants;
/** Symbolic links followed in one resolution, as the kernel's MAXSYMLINKS. */
const MAX_LINKS = 40;

export type UntrustedFileProblem = 'missing' | 'not-regular' | 'owner' | 'loop' | 'denied' | 'error';

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
  let rootFd: number;
  try {
    rootFd = openSync(root, O_PATH | O_DIRECTORY);
  } catch (e) {
    throw errnoError(root, e);
  }
  // The directories walked down from the root: `..` goes back up this stack, never above it.
  const dirs: number[] = [rootFd];
  const closeDirs = (keep: number) => {
    while (dirs.length > keep) closeSync(dirs.pop()!);
  };
  const todo = components(path);
  let links = 0;
  try {
    while (todo.length > 0) {
      const name = todo.shift()!;
      if (name === '..') {
        if (dirs.length > 1) closeSync(dirs.pop()!);
        continue;
      }
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
