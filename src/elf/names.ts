// How long a name read from a profiled process's files may be. Symbol names, Go function and
// file names end up in every profile, in caches keyed by them and in the backends' string
// tables; the bytes they come from are the process's to choose, and a string table without a
// terminating zero would otherwise give names as long as the table (a corrupt .gopclntab gave
// 40 KB names, 253 MB of them in a name cache). Real names stay below the bound: of the 44,000 C++
// names of libLLVM 14 and libstdc++ one demangles to more (4,272 characters), Go's generic
// instantiations run to a few hundred.
//
// A longer name is cut to MAX_NAME_LENGTH characters, the last of them NAME_CUT_MARK, so that
// the profile shows it was cut rather than pretending the prefix is the whole name.

/** The longest name a profile carries, in characters (UTF-16 code units), marker included. */
export const MAX_NAME_LENGTH = 4096;

/** Ends a name that was cut. */
export const NAME_CUT_MARK = '\u2026';

/** Bytes worth reading for one name: enough for MAX_NAME_LENGTH characters of ASCII, and one more to tell a cut. */
export const MAX_NAME_BYTES = MAX_NAME_LENGTH + 1;

/** `name`, or its first MAX_NAME_LENGTH - 1 characters and NAME_CUT_MARK when it is longer. */
export function boundName(name: string): string {
  return name.length <= MAX_NAME_LENGTH ? name : cutName(name);
}

/**
 * The UTF-8 text of `buf` from `start` to `end`, bounded as boundName() does; `more` says that
 * the name goes on past `end` (no terminating zero within the bytes read), which marks it cut.
 */
export function decodeName(buf: Buffer, start: number, end: number, more = false): string {
  const s = buf.toString('utf8', start, Math.min(end, start + MAX_NAME_BYTES));
  return more || end - start > MAX_NAME_BYTES ? cutName(s) : boundName(s);
}

/** At most MAX_NAME_LENGTH - 1 characters of `name`, then NAME_CUT_MARK: a name known to go on. */
export function cutName(name: string): string {
  let end = Math.min(name.length, MAX_NAME_LENGTH - 1);
  // Never leave half of a surrogate pair behind.
  const c = name.charCodeAt(end - 1);
  if (end < name.length && c >= 0xd800 && c <= 0xdbff) end--;
  return name.slice(0, end) + NAME_CUT_MARK;
}
