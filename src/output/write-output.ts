// Writes a profile to a file in any output format, atomically: the bytes go to a temporary
// file in the same directory, are flushed, and are renamed over the target. A reader (a
// browser reloading flame.html, a script polling for profile.pb.gz) never sees half a file,
// and a failed run leaves any previous file intact.
//
// flamewire runs as root and often writes into /tmp, where anyone can plant a name. A symlink
// that someone else planted in a sticky, world-writable directory is never followed, nor a
// FIFO or device they planted written into: the kernel's fs.protected_symlinks and
// fs.protected_fifos rules, applied whatever those sysctls say (realpath + rename would get
// around the kernel's own check anyway). writeNewFile creates a file that must not exist yet.

import { randomBytes } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { lstat, open, readlink, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Profile } from '../profile-model.js';
import { foldedSampleType, renderFolded } from './folded.js';
import type { HtmlOptions } from './html.js';
import { outputFormatFor, type OutputFormat } from './format.js';
import { encodePprof } from './pprof.js';
import { describeSampleType } from './sample-type.js';
import { renderSpeedscope, speedscopeSampleType } from './speedscope.js';

export { describeSampleType } from './sample-type.js';

export interface WriteOutputOptions {
  /** `--format`: overrides the extension. */
  format?: string;
  /** Sample type (index or name) for folded values and speedscope weights; see those files. */
  sampleType?: number | string;
  html?: HtmlOptions;
}

/** The output file cannot be written; `message` is one line naming the path and the reason. */
export class OutputWriteError extends Error {
  override name = 'OutputWriteError';
  constructor(message: string, readonly path: string, readonly code: string | undefined) {
    super(message);
  }
}

/**
 * One line saying which value a file of `format` holds, or shows first, e.g. "wall
 * nanoseconds: on-CPU + off-CPU time"; for pprof and HTML also the other sample types inside.
 * undefined for a profile without sample types (only an empty HTML page can be written then).
 */
export function describeOutput(profile: Profile, format: OutputFormat, opts: WriteOutputOptions = {}): string | undefined {
  const types = profile.sampleTypes;
  if (types.length === 0) return undefined;
  const others = (shown: number): string => types.filter((_, i) => i !== shown).map((t) => t.type).join(', ');
  switch (format) {
    case 'folded':
      return describeSampleType(profile, foldedSampleType(profile, opts.sampleType));
    case 'speedscope':
      return describeSampleType(profile, speedscopeSampleType(profile, opts.sampleType));
    case 'html': {
      const shown = opts.html?.sampleType ?? profile.defaultSampleType;
      return describeSampleType(profile, shown) + (types.length > 1 ? `; the Value menu also has ${others(shown)}` : '');
    }
    case 'pprof': {
      const shown = profile.defaultSampleType;
      return `default sample type ${describeSampleType(profile, shown)}` + (types.length > 1 ? `; also ${others(shown)} (-sample_index)` : '');
    }
  }
}

/** The file contents for one format (bytes for pprof, text otherwise). */
export async function renderOutput(profile: Profile, format: OutputFormat, opts: WriteOutputOptions = {}): Promise<Uint8Array | string> {
  switch (format) {
    case 'pprof':
      return encodePprof(profile);
    case 'folded':
      return renderFolded(profile, { sampleType: opts.sampleType });
    case 'speedscope':
      return renderSpeedscope(profile, { sampleType: opts.sampleType });
    case 'html': {
      // Loaded on demand: the page template is large and only this format needs it.
      const { renderHtml } = await import('./html.js');
      return renderHtml(profile, opts.html);
    }
  }
}

/**
 * Writes `profile` to `path` in the format its extension (or `opts.format`) names; `view` is
 * describeOutput's line, for the "wrote <path>" message.
 * Throws OutputFormatError for an unknown format, OutputWriteError when the path is not
 * writable; on failure no temporary file is left behind.
 */
export async function writeOutput(
  profile: Profile,
  path: string,
  opts: WriteOutputOptions & {
    /** A new file only (O_EXCL, O_NOFOLLOW, mode 0600): fails if anything is at `path`. */
    exclusive?: boolean;
  } = {},
): Promise<{ format: OutputFormat; bytes: number; view?: string }> {
  const format = outputFormatFor(path, opts.format);
  // Fail before the (possibly long) rendering when the target is obviously wrong.
  const target = opts.exclusive ? { path, direct: false } : await checkTarget(path);
  const data = await renderOutput(profile, format, opts);
  const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  if (opts.exclusive) {
    await writeNewFile(path, data);
  } else if (target.direct) {
    await writeFile(target.path, data).catch((e: unknown) => { throw writeError(path, e); });
  } else {
    await writeFileAtomic(target.path, data, path);
  }
  return { format, bytes, view: describeOutput(profile, format, opts) };
}

/**
 * Where to write. A symlink is followed, so the link survives and its target is replaced.
 * An existing non-regular file (`/dev/stdout`, a FIFO for `| flamegraph.pl`) cannot be
 * replaced by a rename and is written in place. Neither when someone else planted it (see
 * the top of the file): then this throws OutputWriteError. Exported for a check at start.
 */
export async function checkTarget(path: string): Promise<{ path: string; direct: boolean }> {
  let real = path;
  try {
    await refusePlantedLinks(path);
    const st = await stat(path);
    if (st.isDirectory()) throw new OutputWriteError(`cannot write ${path}: it is a directory`, path, 'EISDIR');
    // Not realpath here: /dev/stdout on a pipe resolves to `pipe:[…]`, which is no path.
    if (!st.isFile()) {
      await refusePlantedFile(path);
      return { path, direct: true };
    }
    real = await realpath(path);
  } catch (e) {
    if (e instanceof OutputWriteError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw writeError(path, e);
  }
  try {
    if (!(await stat(dirname(real))).isDirectory()) throw new OutputWriteError(`cannot write ${path}: ${dirname(real)} is not a directory`, path, 'ENOTDIR');
  } catch (e) {
    if (e instanceof OutputWriteError) throw e;
    throw writeError(path, e);
  }
  return { path: real, direct: false };
}

/** The sticky bit (not in fs.constants). */
const S_ISVTX = 0o1000;
/** Followed at most this many links, as the kernel (MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * Walks `path` a component at a time and throws OutputWriteError at the first symlink the
 * kernel would not follow with fs.protected_symlinks=1: one in a sticky, world-writable
 * directory, owned neither by us nor by the directory's owner. Stops at a missing component
 * (nothing there to follow) and inside /proc, whose links the kernel makes.
 */
async function refusePlantedLinks(path: string): Promise<void> {
  const uid = process.geteuid?.() ?? 0;
  const pending = (path.startsWith('/') ? path : `${process.cwd()}/${path}`).split('/');
  let at = '/';
  for (let links = 0; pending.length > 0; ) {
    const name = pending.shift()!;
    if (name === '' || name === '.') continue;
    if (name === '..') {
      at = dirname(at);
      continue;
    }
    const next = join(at, name);
    let st: Stats;
    try {
      st = await lstat(next);
    } catch {
      return;
    }
    if (!st.isSymbolicLink()) {
      at = next;
      continue;
    }
    if (at === '/proc' || at.startsWith('/proc/')) return;
    if (++links > MAX_LINKS) throw new OutputWriteError(`cannot write ${path}: too many levels of symbolic links`, path, 'ELOOP');
    const parent = await stat(at);
    if (plantedIn(parent, st, uid)) {
      const which = links === 1 && pending.every((p) => p === '' || p === '.') ? 'it' : next;
      throw new OutputWriteError(`cannot write ${path}: ${which} is a symlink that uid ${st.uid} made in the shared directory ${at}; not followed`, path, 'EACCES');
    }
    const target = await readlink(next);
    if (target.startsWith('/')) at = '/';
    pending.unshift(...target.split('/'));
  }
}

/** An existing FIFO, device or socket that someone else put in a sticky, world-writable directory (fs.protected_fifos=1). */
async function refusePlantedFile(path: string): Promise<void> {
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined || real.startsWith('/proc/')) return;
  const [parent, st] = await Promise.all([stat(dirname(real)), lstat(real)]);
  if (plantedIn(parent, st, process.geteuid?.() ?? 0)) {
    throw new OutputWriteError(`cannot write ${path}: ${real} is not a regular file and uid ${st.uid} made it in the shared directory ${dirname(real)}; not written into`, path, 'EACCES');
  }
}

/** The kernel's rule for sticky, world-writable directories: an entry counts only if its owner is us or the directory's owner. */
function plantedIn(dir: Stats, entry: Stats, uid: number): boolean {
  const shared = (dir.mode & (S_ISVTX | fsConstants.S_IWOTH)) === (S_ISVTX | fsConstants.S_IWOTH);
  return shared && entry.uid !== uid && entry.uid !== dir.uid;
}

/**
 * Creates `path`, which must not exist (O_EXCL: not even as a dangling symlink; O_NOFOLLOW),
 * with `mode`, writes `data` and flushes it. Meant for a fresh private directory (mkdtemp).
 * Errors become OutputWriteError; a half-written file is removed.
 */
export async function writeNewFile(path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  const { O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = fsConstants;
  let fh;
  try {
    fh = await open(path, O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY, mode);
  } catch (e) {
    throw writeError(path, e);
  }
  try {
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw writeError(path, e);
  }
}

/**
 * Temp file + fsync + rename in the target's directory; errors become OutputWriteError
 * naming `shownPath` (the path the user gave).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, shownPath = path): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
  let created = false;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    created = true;
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    created = false;
  } catch (e) {
    throw writeError(shownPath, e);
  } finally {
    if (created) await unlink(tmp).catch(() => undefined);
  }
}

const REASONS: Record<string, string> = {
  ENOENT: 'the directory does not exist',
  ENOTDIR: 'a parent is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EISDIR: 'it is a directory',
  EEXIST: 'something is already there',
  ELOOP: 'it is a symbolic link',
};

function writeError(path: string, e: unknown): OutputWriteError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code !== undefined ? REASONS[code] : undefined) ?? (e instanceof Error ? e.message.split('\n')[0] : String(e));
  return new OutputWriteError(`cannot write ${path}: ${reason}${code !== undefined ? ` (${code})` : ''}`, path, code);
}
