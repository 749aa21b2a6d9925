// Rust's legacy mangling: an Itanium-shaped `_ZN…E` whose last component is a 16-digit
// hash (`17h0123456789abcdefE`) and whose components escape punctuation as `$LT$`, `$u20$`…
// Shown like rustc-demangle's `{:#}` (no hash), which is what pprof and perf users expect.

const ESCAPES: Record<string, string> = {
  SP: '@', BP: '*', RF: '&', LT: '<', GT: '>', LP: '(', RP: ')', C: ',',
};

function isHash(s: string): boolean {
  if (s.length !== 17 || s.charCodeAt(0) !== 104 /* h */) return false;
  for (let i = 1; i < 17; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

// Decodes one component; null when it holds an escape rustc would never produce.
function decodeComponent(raw: string): string | null {
  let s = raw;
  // A component that would start with '$' gets an extra '_' so it stays an identifier.
  if (s.startsWith('_$')) s = s.slice(1);
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '.') {
      if (s[i + 1] === '.') {
        out += '::';
        i += 2;
      } else {
        out += '.';
        i++;
      }
    } else if (c === '$') {
      const end = s.indexOf('$', i + 1);
      if (end < 0) return null;
      const esc = s.slice(i + 1, end);
      const simple = ESCAPES[esc];
      if (simple !== undefined) out += simple;
      else if (esc.length > 1 && esc[0] === 'u' && /^[0-9a-f]{1,6}$/.test(esc.slice(1))) {
        const cp = parseInt(esc.slice(1), 16);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
        out += String.fromCodePoint(cp);
      } else return null;
      i = end + 1;
    } else {
      const code = c.charCodeAt(0);
      const ok = (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || c === '_';
      if (!ok) return null;
      out += c;
      i++;
    }
  }
  return out;
}

/** Demangles a Rust legacy symbol; null when the name is not one (then it may be C++). */
export function demangleRustLegacy(name: string): string | null {
  if (!name.startsWith('_ZN')) return null;
  let pos = 3;
  const parts: string[] = [];
  let hash = '';
  while (pos < name.length && name.charCodeAt(pos) !== 69 /* E */) {
    let len = 0;
    const start = pos;
    while (pos < name.length && name.charCodeAt(pos) >= 48 && name.charCodeAt(pos) <= 57) {
      len = len * 10 + (name.charCodeAt(pos) - 48);
      pos++;
      if (pos - start > 6) return null;
    }
    if (pos === start || len === 0 || pos + len > name.length) return null;
    const comp = name.slice(pos, pos + len);
    pos += len;
    if (hash) {
      // The hash must be the last component.
      return null;
    }
    if (isHash(comp) && name.charCodeAt(pos) === 69) hash = comp;
    else parts.push(comp);
  }
  if (!hash || pos >= name.length || parts.length === 0) return null;
  pos++; // 'E'
  let suffix = name.slice(pos);
  // LLVM appends `.llvm.<digits>` to internalized copies; it carries no meaning for people.
  if (suffix.startsWith('.llvm.')) suffix = '';
  else if (suffix && !/^(\.[A-Za-z0-9_]+)+$/.test(suffix)) return null;
  let out = '';
  for (let i = 0; i < parts.length; i++) {
    const d = decodeComponent(parts[i]);
    if (d === null) return null;
    out += (i ? '::' : '') + d;
  }
  return out + suffix;
}
