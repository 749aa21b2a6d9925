// Which file format to write, from the output path's extension (DESIGN.md, `-o`) or from an
// explicit `--format`, which wins.

export type OutputFormat = 'pprof' | 'folded' | 'html' | 'speedscope';

export const OUTPUT_FORMATS: readonly OutputFormat[] = ['pprof', 'folded', 'html', 'speedscope'];

/** Longest suffix first, so `.pb.gz` is seen before anything shorter. */
const EXTENSIONS: readonly (readonly [string, OutputFormat])[] = [
  ['.pb.gz', 'pprof'],
  ['.pprof', 'pprof'],
  ['.folded', 'folded'],
  ['.txt', 'folded'],
  ['.html', 'html'],
  ['.json', 'speedscope'],
];

/** A bad `--format` value or an output name whose format cannot be told; message is one line. */
export class OutputFormatError extends Error {
  override name = 'OutputFormatError';
}

export function isOutputFormat(s: string): s is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(s);
}

/**
 * The format for `path`. `override` (the `--format` value) wins over the extension; the
 * extension is matched case-insensitively.
 */
export function outputFormatFor(path: string, override?: string): OutputFormat {
  if (override !== undefined) {
    if (isOutputFormat(override)) return override;
    throw new OutputFormatError(`unknown --format ${JSON.stringify(override)}: use ${OUTPUT_FORMATS.join(', ')}`);
  }
  const lower = path.toLowerCase();
  for (const [ext, format] of EXTENSIONS) {
    if (lower.endsWith(ext) && lower.length > ext.length && !lower.endsWith('/' + ext)) return format;
  }
  const exts = EXTENSIONS.map(([e]) => e).join(', ');
  throw new OutputFormatError(
    `cannot tell the output format of ${JSON.stringify(path)}: name it ${exts}, or pass --format ${OUTPUT_FORMATS.join('|')}`,
  );
}
