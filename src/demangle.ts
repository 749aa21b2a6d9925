// Symbol demangling for profiles: C++ (Itanium ABI), Rust legacy and Rust v0 names are
// shown the way perf and pprof users expect (c++filt's C++ output; Rust without hashes).
// Called for every symbol of big binaries, so the cheap prefix checks come first and a
// name that is not mangled costs almost nothing.

import { demangleItanium } from './demangle-itanium.js';
import { demangleRustLegacy } from './demangle-rust-legacy.js';
import { demangleRustV0 } from './demangle-rust-v0.js';

// Longer names are left alone: real symbols stay well below this, and it bounds the work
// a hostile or corrupt symbol table can cause.
const MAX_INPUT = 1 << 14;

/**
 * Returns the human-readable form of a mangled symbol name, or the name unchanged when it
 * is not mangled or not understood. Never throws. A symbol version (`@GLIBC_2.2.5`,
 * `@@GLIBCXX_3.4`) is kept after the demangled name, as c++filt and nm -DC show it.
 */
export function demangle(name: string): string {
  if (typeof name !== 'string' || name.length < 3 || name.length > MAX_INPUT) return name;
  const c0 = name.charCodeAt(0);
  // Fast reject: every scheme we handle starts with '_' (optionally one more '_' on
  // platforms that prefix symbols, which ELF does not).
  if (c0 !== 95 /* _ */) return name;
  const c1 = name.charCodeAt(1);
  if (c1 !== 90 /* Z */ && c1 !== 82 /* R */ && c1 !== 71 /* G */) return name;
  try {
    let base = name;
    let version = '';
    const at = name.indexOf('@');
    if (at > 0) {
      base = name.slice(0, at);
      version = name.slice(at);
    }
    let out: string | null = null;
    if (c1 === 82) out = demangleRustV0(base);
    else if (c1 === 90) {
      out = demangleRustLegacy(base);
      if (out === null) out = demangleItanium(base);
    } else out = demangleItanium(base);
    return out === null ? name : out + version;
  } catch {
    return name;
  }
}
