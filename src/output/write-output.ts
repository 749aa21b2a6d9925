// Writes a profile to a file in any output format, atomically: the bytes go to a temporary
// file in the same directory, are flushed, and are renamed over the target. A reader (a
// browser reloading flame.html, a script polling for profile.pb.gz) never sees half a file,
// and a failed run leaves any previous file intact.

import { randomBytes } from 'node:crypto';
import { open, realpath, rename, stat, unlink, writeFile } from 'node:fs/promises';
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
export async function writeOutput(profile: Profile, path: string, opts: WriteOutputOptions = {}): Promise<{ format: OutputFormat; bytes: number; view?: string }> {
  const format = outputFormatFor(path, opts.format);
  // Fail before the (possibly long) rendering when the target is obviously wrong.
  const target = await checkTarget(path);
  const data = await renderOutput(profile, format, opts);
  const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  if (target.direct) {
    await writeFile(target.path, data).catch((e: unknown) => { throw writeError(path, e); });
  } else {
    await writeFileAtomic(target.path, data, path);
  }
  return { format, bytes, view: describeOutput(profile, format, opts) };
}

/**
 * Where to write. A symlink is followed, so the link survives and its target is replaced.
 * An existing non-regular file (`/dev/stdout`, a FIFO for `| flamegraph.pl`) cannot be
 * replaced by a rename and is written in place.
 */
async function checkTarget(path: string): Promise<{ path: string; direct: boolean }> {
  let real = path;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new OutputWriteError(`cannot write ${path}: it is a directory`, path, 'EISDIR');
    // Not realpath here: /dev/stdout on a pipe resolves to `pipe:[…]`, which is no path.
    if (!st.isFile()) return { path, direct: true };
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

/**
 * Temp file + fsync + rename in the target's directory; errors become OutputWriteError
 * naming `shownPath` (the path the user gave).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string, shownPath = path): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
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
};

function writeError(path: string, e: unknown): OutputWriteError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code !== undefined ? REASONS[code] : undefined) ?? (e instanceof Error ? e.message.split('\n')[0] : String(e));
  return new OutputWriteError(`cannot write ${path}: ${reason}${code !== undefined ? ` (${code})` : ''}`, path, code);
}
