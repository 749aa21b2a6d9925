// Rust v0 mangling (`_R…`, RFC 2603), printed like rustc-demangle's `{:#}`: no crate
// disambiguator hashes and no type suffixes on integer constants. The grammar is
// position-based (backrefs jump back into the symbol), so parsing and printing happen in one
// pass, as rustc-demangle does; bounds on depth and output keep hostile input cheap.

class Bad extends Error {}

const debug = typeof process !== 'undefined' && !!process.env.DEMANGLE_DEBUG;

const MAX_DEPTH = 200;
/** As in demangle-itanium.ts: backrefs can double the output; profiles show at most 4096 characters. */
const MAX_OUTPUT = 1 << 13;

const BASIC: Record<string, string> = {
  a: 'i8', b: 'bool', c: 'char', d: 'f64', e: 'str', f: 'f32', h: 'u8', i: 'isize', j: 'usize',
  l: 'i32', m: 'u32', n: 'i128', o: 'u128', s: 'i16', t: 'u16', u: '()', v: '...', x: 'i64',
  y: 'u64', z: '!', p: '_',
};
const SIGNED = 'asilxn';
const UNSIGNED = 'htmyoj';

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

class V0 {
  pos: number;
  depth = 0;
  out = '';
  skip = 0; // >0 while parsing something that is not printed (impl paths)
  boundLifetimes = 0;

  constructor(readonly s: string, start: number) {
    this.pos = start;
  }

  ch(): string {
    return this.s.charAt(this.pos);
  }
  eat(c: string): boolean {
    if (this.s.charAt(this.pos) === c) {
      this.pos++;
      return true;
    }
    return false;
  }
  next(): string {
    if (this.pos >= this.s.length) throw new Bad();
    return this.s.charAt(this.pos++);
  }
  emit(t: string): void {
    if (this.skip) return;
    this.out += t;
    if (this.out.length > MAX_OUTPUT) throw new Bad();
  }
  enter(): void {
    if (++this.depth > MAX_DEPTH) throw new Bad();
  }

  // base-62 number terminated by '_'; '_' alone is 0, otherwise value + 1.
  int62(): number {
    if (this.eat('_')) return 0;
    let v = 0;
    let n = 0;
    for (;;) {
      const c = this.s.charCodeAt(this.pos);
      let d: number;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 122) d = c - 97 + 10;
      else if (c >= 65 && c <= 90) d = c - 65 + 36;
      else break;
      // Crate disambiguators are 64-bit hashes (11 digits); precision loss there is harmless
      // because they are never printed, and backrefs are small.
      v = v * 62 + d;
      this.pos++;
      if (++n > 12) throw new Bad();
    }
    if (n === 0 || !this.eat('_')) throw new Bad();
    return v + 1;
  }
  optInt62(tag: string): number {
    if (!this.eat(tag)) return 0;
    return this.int62() + 1;
  }
  decimal(): number {
    const start = this.pos;
    if (this.s.charAt(this.pos) === '0') {
      this.pos++;
      return 0;
    }
    while (isDigit(this.s.charCodeAt(this.pos))) this.pos++;
    if (this.pos === start || this.pos - start > 6) throw new Bad();
    return parseInt(this.s.slice(start, this.pos), 10);
  }

  ident(): { dis: number; name: string } {
    const dis = this.optInt62('s');
    const name = this.undisambiguatedIdent();
    return { dis, name };
  }
  undisambiguatedIdent(): string {
    const puny = this.eat('u');
    const len = this.decimal();
    this.eat('_');
    if (this.pos + len > this.s.length) throw new Bad();
    const raw = this.s.slice(this.pos, this.pos + len);
    this.pos += len;
    return puny ? punycode(raw) : raw;
  }

  backref(): number {
    const at = this.pos - 1; // the 'B'
    const target = 2 + this.int62();
    if (target >= at) throw new Bad();
    return target;
  }

  withBackref(f: () => void): void {
    const target = this.backref();
    if (this.skip) return; // nothing to print, and the target was already validated
    const saved = this.pos;
    this.pos = target;
    this.enter();
    f();
    this.depth--;
    this.pos = saved;
  }

  path(inValue: boolean): void {
    this.enter();
    const tag = this.next();
    switch (tag) {
      case 'C': {
        const { name } = this.ident();
        this.emit(name);
        break;
      }
      case 'N': {
        const ns = this.next();
        const nc = ns.charCodeAt(0);
        if (!((nc >= 65 && nc <= 90) || (nc >= 97 && nc <= 122))) throw new Bad();
        this.path(inValue);
        const { dis, name } = this.ident();
        if (ns >= 'A' && ns <= 'Z') {
          this.emit('::{' + (ns === 'C' ? 'closure' : ns === 'S' ? 'shim' : ns));
          if (name) this.emit(':' + name);
          this.emit('#' + dis + '}');
        } else if (name) this.emit('::' + name);
        break;
      }
      case 'M':
      case 'X': {
        this.implPath();
        this.emit('<');
        this.type();
        if (tag === 'X') {
          this.emit(' as ');
          this.path(false);
        }
        this.emit('>');
        break;
      }
      case 'Y': {
        this.emit('<');
        this.type();
        this.emit(' as ');
        this.path(false);
        this.emit('>');
        break;
      }
      case 'I': {
        this.path(inValue);
        if (inValue) this.emit('::');
        this.emit('<');
        this.genericArgs();
        this.emit('>');
        break;
      }
      case 'B':
        this.withBackref(() => this.path(inValue));
        break;
      default:
        throw new Bad();
    }
    this.depth--;
  }

  implPath(): void {
    this.optInt62('s');
    this.skip++;
    this.path(false);
    this.skip--;
  }

  genericArgs(): void {
    let first = true;
    while (!this.eat('E')) {
      if (this.pos >= this.s.length) throw new Bad();
      if (!first) this.emit(', ');
      first = false;
      this.genericArg();
    }
  }

  genericArg(): void {
    if (this.eat('L')) this.lifetime(this.int62());
    else if (this.eat('K')) this.constant(false);
    else this.type();
  }

  lifetime(idx: number): void {
    if (idx === 0) {
      this.emit("'_");
      return;
    }
    const depth = this.boundLifetimes - idx;
    if (depth < 0) throw new Bad();
    this.emit(depth < 26 ? "'" + String.fromCharCode(97 + depth) : "'_" + depth);
  }

  binder(): number {
    const n = this.optInt62('G');
    if (n === 0) return 0;
    if (n > 100) throw new Bad();
    this.emit('for<');
    for (let i = 0; i < n; i++) {
      if (i) this.emit(', ');
      this.boundLifetimes++;
      this.lifetime(1);
    }
    this.emit('> ');
    return n;
  }

  type(): void {
    this.enter();
    const tag = this.next();
    const basic = BASIC[tag];
    if (basic !== undefined) {
      this.emit(basic);
      this.depth--;
      return;
    }
    switch (tag) {
      case 'R':
      case 'Q': {
        this.emit('&');
        if (this.eat('L')) {
          const lt = this.int62();
          if (lt !== 0) {
            this.lifetime(lt);
            this.emit(' ');
          }
        }
        if (tag === 'Q') this.emit('mut ');
        this.type();
        break;
      }
      case 'P':
        this.emit('*const ');
        this.type();
        break;
      case 'O':
        this.emit('*mut ');
        this.type();
        break;
      case 'A':
        this.emit('[');
        this.type();
        this.emit('; ');
        this.constant(true);
        this.emit(']');
        break;
      case 'S':
        this.emit('[');
        this.type();
        this.emit(']');
        break;
      case 'T': {
        this.emit('(');
        let n = 0;
        while (!this.eat('E')) {
          if (this.pos >= this.s.length) throw new Bad();
          if (n) this.emit(', ');
          this.type();
          n++;
        }
        if (n === 1) this.emit(',');
        this.emit(')');
        break;
      }
      case 'F': {
        const saved = this.boundLifetimes;
        this.binder();
        if (this.eat('U')) this.emit('unsafe ');
        if (this.eat('K')) {
          let abi: string;
          if (this.eat('C')) abi = 'C';
          else abi = this.undisambiguatedIdent().replace(/_/g, '-');
          this.emit(`extern "${abi}" `);
        }
        this.emit('fn(');
        let n = 0;
        while (!this.eat('E')) {
          if (this.pos >= this.s.length) throw new Bad();
          if (n++) this.emit(', ');
          this.type();
        }
        this.emit(')');
        if (this.eat('u')) {
          // unit return type is not shown
        } else {
          this.emit(' -> ');
          this.type();
        }
        this.boundLifetimes = saved;
        break;
      }
      case 'D': {
        const saved = this.boundLifetimes;
        this.emit('dyn ');
        this.binder();
        let n = 0;
        while (!this.eat('E')) {
          if (this.pos >= this.s.length) throw new Bad();
          if (n++) this.emit(' + ');
          this.dynTrait();
        }
        this.boundLifetimes = saved;
        if (!this.eat('L')) throw new Bad();
        const lt = this.int62();
        if (lt !== 0) {
          this.emit(' + ');
          this.lifetime(lt);
        }
        break;
      }
      case 'B':
        this.withBackref(() => this.type());
        break;
      default:
        this.pos--;
        this.path(false);
    }
    this.depth--;
  }

  dynTrait(): void {
    const open = this.pathMaybeOpenGenerics();
    let opened = open;
    while (this.eat('p')) {
      this.emit(opened ? ', ' : '<');
      opened = true;
      this.emit(this.undisambiguatedIdent() + ' = ');
      this.type();
    }
    if (opened) this.emit('>');
  }

  // Prints a trait path; when it has generic args, leaves the '<' list open so that
  // associated type bindings can be appended. Returns whether a list is open.
  pathMaybeOpenGenerics(): boolean {
    if (this.eat('B')) {
      let open = false;
      this.pos--;
      this.withBackrefRet(() => {
        open = this.pathMaybeOpenGenerics();
      });
      return open;
    }
    if (this.eat('I')) {
      this.path(false);
      this.emit('<');
      this.genericArgs();
      return true;
    }
    this.path(false);
    return false;
  }

  withBackrefRet(f: () => void): void {
    this.pos++; // 'B'
    this.withBackref(f);
  }

  constant(inValue: boolean): void {
    this.enter();
    const tag = this.next();
    if (tag === 'B') {
      this.withBackref(() => this.constant(inValue));
      this.depth--;
      return;
    }
    if (tag === 'p') this.emit('_');
    else if (SIGNED.includes(tag) || UNSIGNED.includes(tag)) {
      const neg = SIGNED.includes(tag) && this.eat('n');
      this.emit((neg ? '-' : '') + this.hexValue());
    } else if (tag === 'b') {
      const v = this.hexValue();
      if (v === '0') this.emit('false');
      else if (v === '1') this.emit('true');
      else throw new Bad();
    } else if (tag === 'c') {
      const v = Number(this.hexValue());
      if (!(v <= 0x10ffff) || (v >= 0xd800 && v <= 0xdfff)) throw new Bad();
      this.emit(quoteChar(String.fromCodePoint(v)));
    } else if (tag === 'e') {
      this.emit('*' + JSON.stringify(this.hexBytesUtf8()));
    } else if (tag === 'R' || tag === 'Q') {
      this.emit(tag === 'R' ? '&' : '&mut ');
      this.constant(true);
    } else if (tag === 'A' || tag === 'T') {
      this.emit(tag === 'A' ? '[' : '(');
      let n = 0;
      while (!this.eat('E')) {
        if (this.pos >= this.s.length) throw new Bad();
        if (n++) this.emit(', ');
        this.constant(true);
      }
      if (tag === 'T' && n === 1) this.emit(',');
      this.emit(tag === 'A' ? ']' : ')');
    } else if (tag === 'V') {
      this.path(true);
      const kind = this.next();
      if (kind === 'T') {
        this.emit('(');
        let n = 0;
        while (!this.eat('E')) {
          if (this.pos >= this.s.length) throw new Bad();
          if (n++) this.emit(', ');
          this.constant(true);
        }
        this.emit(')');
      } else if (kind === 'S') {
        this.emit(' { ');
        let n = 0;
        while (!this.eat('E')) {
          if (this.pos >= this.s.length) throw new Bad();
          if (n++) this.emit(', ');
          this.emit(this.ident().name + ': ');
          this.constant(true);
        }
        this.emit(' }');
      } else if (kind !== 'U') throw new Bad();
    } else throw new Bad();
    void inValue;
    this.depth--;
  }

  hexDigits(): string {
    const start = this.pos;
    for (;;) {
      const c = this.s.charCodeAt(this.pos);
      if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) break;
      this.pos++;
    }
    const d = this.s.slice(start, this.pos);
    if (!this.eat('_')) throw new Bad();
    return d;
  }
  hexValue(): string {
    const d = this.hexDigits();
    if (d === '') return '0';
    if (d.length > 32) throw new Bad();
    return d.length <= 12 ? String(parseInt(d, 16)) : BigInt('0x' + d).toString();
  }
  hexBytesUtf8(): string {
    const d = this.hexDigits();
    if (d.length % 2) throw new Bad();
    const bytes = new Uint8Array(d.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(d.slice(2 * i, 2 * i + 2), 16);
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  }
}

function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '\\') return "'\\\\'";
  if (c === '\n') return "'\\n'";
  if (c === '\t') return "'\\t'";
  if (c === '\r') return "'\\r'";
  const cp = c.codePointAt(0) ?? 0;
  if (cp < 0x20 || cp === 0x7f) return `'\\u{${cp.toString(16)}}'`;
  return `'${c}'`;
}

// RFC 3492 decoding with Rust's twist: '_' instead of '-' separates the basic code points.
function punycode(raw: string): string {
  const base = 36, tmin = 1, tmax = 26, skew = 38, damp = 700;
  let basic = '';
  let rest = raw;
  const sep = raw.lastIndexOf('_');
  if (sep >= 0) {
    basic = raw.slice(0, sep);
    rest = raw.slice(sep + 1);
  }
  const out: number[] = [];
  for (let i = 0; i < basic.length; i++) out.push(basic.charCodeAt(i));
  let n = 128;
  let i = 0;
  let bias = 72;
  let p = 0;
  while (p < rest.length) {
    const oldi = i;
    let w = 1;
    for (let k = base; ; k += base) {
      if (p >= rest.length) throw new Bad();
      const c = rest.charCodeAt(p++);
      let digit: number;
      if (c >= 97 && c <= 122) digit = c - 97;
      else if (c >= 48 && c <= 57) digit = c - 48 + 26;
      else throw new Bad();
      i += digit * w;
      if (i > 0x10ffff * 64) throw new Bad();
      const t = k <= bias ? tmin : k >= bias + tmax ? tmax : k - bias;
      if (digit < t) break;
      w *= base - t;
      if (w > 1e12) throw new Bad();
    }
    const len = out.length + 1;
    let delta = oldi === 0 ? Math.floor((i - oldi) / damp) : Math.floor((i - oldi) / 2);
    delta += Math.floor(delta / len);
    let k = 0;
    while (delta > ((base - tmin) * tmax) >> 1) {
      delta = Math.floor(delta / (base - tmin));
      k += base;
    }
    bias = k + Math.floor(((base - tmin + 1) * delta) / (delta + skew));
    n += Math.floor(i / len);
    i %= len;
    if (n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff)) throw new Bad();
    out.splice(i, 0, n);
    i++;
    if (out.length > 4096) throw new Bad();
  }
  return String.fromCodePoint(...out);
}

/** Demangles a Rust v0 symbol; null when the name is not a valid one. */
export function demangleRustV0(name: string): string | null {
  if (!name.startsWith('_R')) return null;
  try {
    // An encoding version number would follow `_R`; only version 0 (no number) exists.
    if (isDigit(name.charCodeAt(2))) return null;
    const p = new V0(name, 2);
    p.path(true);
    // Optional instantiating crate, then an optional vendor suffix starting with '.'.
    if (p.pos < name.length && /[A-Z]/.test(p.ch())) {
      p.skip++;
      p.path(false);
      p.skip--;
    }
    if (p.pos < name.length && p.ch() !== '.') return null;
    return p.out;
  } catch (e) {
    if (debug) console.error(e);
    return null;
  }
}
