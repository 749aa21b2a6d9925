// Itanium C++ ABI demangler (the `_Z…` names of g++ and clang), printing names the way
// binutils' c++filt does, because that is what perf, pprof and every Linux developer see.
//
// The parser builds a small tree and a separate printer renders it: the tree is needed
// because substitutions (S_, S0_…) and template parameters (T_…) refer back to earlier
// pieces, and because C declarator syntax (`void (*)(int)`, `int (&) [3]`) can only be
// printed once the whole type is known.

/** Thrown internally on malformed input; never escapes demangleItanium(). */
class Bad extends Error {}

const debug = typeof process !== 'undefined' && !!process.env.DEMANGLE_DEBUG;

const MAX_DEPTH = 256;
/**
 * Substitutions let a name print a piece twice, so the output can double every few input
 * bytes: a 2.5 KB name ran to the old caps (64 KiB, 2^20 steps) in 10 to 30 ms, and a binary
 * can hold any number of such names. Of the 44,000 names of libLLVM 14 and libstdc++, the
 * longest demangles to 4,272 characters and the busiest takes 823 printing steps; these caps
 * leave twice and five times that. A step costs more as the text grows (joining reads the
 * first character of a declarator, which flattens it), so the steps are the tighter cap: a
 * hostile name now ends in ~0.3 ms. Profiles show at most 4096 characters of a name anyway
 * (elf/names.ts).
 */
const MAX_OUTPUT = 1 << 13;
const MAX_PRINT_STEPS = 1 << 12;

const enum K {
  Name, // atomic text: identifiers, builtin types, operators already spelled out
  Qual, // a::b
  Tmpl, // a<args>
  StdSub, // St/Sa/Ss… abbreviation (not a substitution candidate by itself)
  Tagged, // name[abi:tag]
  Ctor,
  Dtor,
  Conv, // operator T
  Local, // encoding::name
  Special, // "vtable for X" and friends
  Ctv, // construction vtable
  Enc, // function: name(params) quals
  Clone,
  Ptr,
  Ref,
  RRef,
  Cv,
  Fn,
  Arr,
  PtrMem,
  Vec,
  PackExp,
  Pack,
  TParam,
  Seq, // expression pieces
  Lit,
  Vendor, // vendor-qualified type: `int foo`
  Postfix, // type followed by a keyword: `double _Complex`
}

interface Node {
  k: K;
  s?: string;
  a?: Node;
  b?: Node;
  list?: Node[];
  parts?: (string | Node)[];
  quals?: string;
  neg?: boolean;
  idx?: number;
  ref?: Node | null; // template param resolution (filled late for forward references)
  scope?: number; // encoding a template param was read in
}

function name(s: string): Node {
  return { k: K.Name, s };
}

const BUILTIN: Record<string, string> = {
  v: 'void', w: 'wchar_t', b: 'bool', c: 'char', a: 'signed char', h: 'unsigned char',
  s: 'short', t: 'unsigned short', i: 'int', j: 'unsigned int', l: 'long', m: 'unsigned long',
  x: 'long long', y: 'unsigned long long', n: '__int128', o: 'unsigned __int128', f: 'float',
  d: 'double', e: 'long double', g: '__float128', z: '...',
};
const BUILTIN_D: Record<string, string> = {
  d: 'decimal64', e: 'decimal128', f: 'decimal32', h: 'half', i: 'char32_t', s: 'char16_t',
  u: 'char8_t', a: 'auto', c: 'decltype(auto)', n: 'decltype(nullptr)',
};
// Literal suffixes c++filt prints for integer template arguments (others get a `(type)` cast).
const LIT_SUFFIX: Record<string, string> = { i: '', j: 'u', l: 'l', m: 'ul', x: 'll', y: 'ull' };

// [spelling, arity]
const OPS: Record<string, [string, number]> = {
  nw: ['new', 3], na: ['new[]', 3], dl: ['delete', 1], da: ['delete[]', 1], ps: ['+', 1],
  ng: ['-', 1], ad: ['&', 1], de: ['*', 1], co: ['~', 1], pl: ['+', 2], mi: ['-', 2],
  ml: ['*', 2], dv: ['/', 2], rm: ['%', 2], an: ['&', 2], or: ['|', 2], eo: ['^', 2],
  aS: ['=', 2], pL: ['+=', 2], mI: ['-=', 2], mL: ['*=', 2], dV: ['/=', 2], rM: ['%=', 2],
  aN: ['&=', 2], oR: ['|=', 2], eO: ['^=', 2], ls: ['<<', 2], rs: ['>>', 2], lS: ['<<=', 2],
  rS: ['>>=', 2], eq: ['==', 2], ne: ['!=', 2], lt: ['<', 2], gt: ['>', 2], le: ['<=', 2],
  ge: ['>=', 2], ss: ['<=>', 2], nt: ['!', 1], aa: ['&&', 2], oo: ['||', 2], pp: ['++', 1],
  mm: ['--', 1], cm: [',', 2], pm: ['->*', 2], pt: ['->', 2], cl: ['()', 2], ix: ['[]', 2],
  qu: ['?', 3], st: ['sizeof ', 1], sz: ['sizeof ', 1], at: ['alignof ', 1], az: ['alignof ', 1],
  dt: ['.', 2], ds: ['.*', 2], nx: ['noexcept', 1], tw: ['throw', 1], aw: ['co_await', 1],
};

// [short spelling, verbose spelling, name used for constructors]
const STD_SUBS: Record<string, [string, string, string]> = {
  t: ['std', 'std', 'std'],
  a: ['std::allocator', 'std::allocator', 'allocator'],
  b: ['std::basic_string', 'std::basic_string', 'basic_string'],
  s: ['std::string', 'std::basic_string<char, std::char_traits<char>, std::allocator<char> >', 'basic_string'],
  i: ['std::istream', 'std::basic_istream<char, std::char_traits<char> >', 'basic_istream'],
  o: ['std::ostream', 'std::basic_ostream<char, std::char_traits<char> >', 'basic_ostream'],
  d: ['std::iostream', 'std::basic_iostream<char, std::char_traits<char> >', 'basic_iostream'],
};

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
function isUpper(c: number): boolean {
  return c >= 65 && c <= 90;
}
function isLower(c: number): boolean {
  return c >= 97 && c <= 122;
}

class Parser {
  pos = 0;
  depth = 0;
  subs: Node[] = [];
  tmplArgs: Node[] | null = null;
  // Template parameters seen before the argument list they refer to (conversion operators).
  pendingParams: Node[] = [];
  lastName = '';
  inLambdaSig = 0;
  inConversion = false;
  scope = 0;
  scopes = 0;

  constructor(readonly s: string) {}

  peek(o = 0): number {
    const p = this.pos + o;
    return p < this.s.length ? this.s.charCodeAt(p) : 0;
  }
  ch(o = 0): string {
    return this.s.charAt(this.pos + o);
  }
  eat(c: string): boolean {
    if (this.s.charAt(this.pos) === c) {
      this.pos++;
      return true;
    }
    return false;
  }
  expect(c: string): void {
    if (!this.eat(c)) throw new Bad();
  }
  enter(): void {
    if (++this.depth > MAX_DEPTH) throw new Bad();
  }

  number(): number {
    const neg = this.eat('n');
    const start = this.pos;
    while (isDigit(this.peek())) this.pos++;
    if (this.pos === start || this.pos - start > 9) throw new Bad();
    const v = parseInt(this.s.slice(start, this.pos), 10);
    return neg ? -v : v;
  }
  numberText(): string {
    const start = this.pos;
    if (this.ch() === 'n') this.pos++;
    while (isDigit(this.peek())) this.pos++;
    if (this.pos === start) throw new Bad();
    return this.s.slice(start, this.pos);
  }
  // <seq-id> in base 36, terminated by '_'; returns -1 for the bare '_' form.
  seqId(): number {
    if (this.eat('_')) return -1;
    let v = 0;
    let n = 0;
    for (;;) {
      const c = this.peek();
      if (isDigit(c)) v = v * 36 + (c - 48);
      else if (isUpper(c)) v = v * 36 + (c - 55);
      else break;
      this.pos++;
      if (++n > 8) throw new Bad();
    }
    if (n === 0) throw new Bad();
    this.expect('_');
    return v;
  }
  discriminator(): void {
    if (this.ch() !== '_') return;
    if (this.ch(1) === '_') {
      this.pos += 2;
      this.number();
      this.expect('_');
    } else if (isDigit(this.peek(1))) {
      this.pos += 2;
    }
  }

  // ---- top level ----

  mangled(): Node {
    this.expect('_');
    this.expect('Z');
    let enc = this.encoding(true);
    while (this.ch() === '.' && (isLower(this.peek(1)) || isDigit(this.peek(1)) || this.ch(1) === '_')) {
      const start = this.pos;
      this.pos += 2;
      while (isLower(this.peek()) || isDigit(this.peek()) || this.ch() === '_') this.pos++;
      while (this.ch() === '.' && isDigit(this.peek(1))) {
        this.pos += 2;
        while (isDigit(this.peek())) this.pos++;
      }
      enc = { k: K.Clone, a: enc, s: this.s.slice(start, this.pos) };
    }
    if (this.pos !== this.s.length) throw new Bad();
    for (const p of this.pendingParams) if (!p.ref && p.s !== 'lambda') throw new Bad();
    return enc;
  }

  encoding(top: boolean): Node {
    this.enter();
    const c = this.ch();
    let r: Node;
    if (c === 'G' || c === 'T') r = this.specialName();
    else {
      const savedArgs = this.tmplArgs;
      const savedScope = this.scope;
      if (!top) this.scope = ++this.scopes;
      const n = this.name(true);
      const next = this.ch();
      if (next === '' || next === 'E' || next === '.' || (!top && next === '_')) {
        r = n;
      } else {
        r = this.functionTail(n);
      }
      if (!top) {
        this.tmplArgs = savedArgs;
        this.scope = savedScope;
      }
    }
    this.depth--;
    return r;
  }

  functionTail(n: Node): Node {
    // Member-function qualifiers ride on the nested name; move them onto the function.
    const [inner, quals] = hoistQuals(n);
    let ret: Node | null = null;
    if (hasReturnType(inner)) ret = this.type();
    const params = this.params();
    return { k: K.Enc, a: inner, b: ret ?? undefined, list: params, quals };
  }

  params(): Node[] {
    const out: Node[] = [];
    if (this.ch() === 'v' && !this.startsParamContinuation(1)) {
      this.pos++;
      return out;
    }
    while (this.pos < this.s.length) {
      const c = this.ch();
      if (c === 'E' || c === '.' || c === 'R' && this.ch(1) === 'E' || c === 'O' && this.ch(1) === 'E') break;
      out.push(this.type());
    }
    if (out.length === 0) throw new Bad();
    return out;
  }
  startsParamContinuation(o: number): boolean {
    const c = this.ch(o);
    return c !== '' && c !== 'E' && c !== '.';
  }

  specialName(): Node {
    const c = this.ch();
    const d = this.ch(1);
    this.pos += 2;
    const special = (prefix: string, inner: Node): Node => ({ k: K.Special, s: prefix, a: inner });
    if (c === 'T') {
      switch (d) {
        case 'V': return special('vtable for ', this.type());
        case 'T': return special('VTT for ', this.type());
        case 'I': return special('typeinfo for ', this.type());
        case 'S': return special('typeinfo name for ', this.type());
        case 'F': return special('typeinfo fn for ', this.type());
        case 'h': this.pos--; this.callOffset(); return special('non-virtual thunk to ', this.encoding(false));
        case 'v': this.pos--; this.callOffset(); return special('virtual thunk to ', this.encoding(false));
        case 'c': {
          this.callOffset();
          this.callOffset();
          return special('covariant return thunk to ', this.encoding(false));
        }
        case 'C': {
          const derived = this.type();
          this.number();
          this.expect('_');
          const base = this.type();
          return { k: K.Ctv, a: base, b: derived };
        }
        case 'H': return special('TLS init function for ', this.name());
        case 'W': return special('TLS wrapper function for ', this.name());
        case 'A': return special('template parameter object for ', this.templateArg());
      }
    } else {
      switch (d) {
        case 'V': return special('guard variable for ', this.name());
        case 'R': {
          const n = this.name();
          this.seqId();
          return special('reference temporary #0 for ', n);
        }
        case 'A': return special('hidden alias for ', this.encoding(false));
        case 'T': {
          const e = this.ch();
          this.pos++;
          if (e === 'n') return special('non-transaction clone for ', this.encoding(false));
          if (e === 't') return special('transaction clone for ', this.encoding(false));
          break;
        }
      }
    }
    throw new Bad();
  }

  callOffset(): void {
    const c = this.ch();
    this.pos++;
    if (c === 'h') this.number();
    else if (c === 'v') {
      this.number();
      this.expect('_');
      this.number();
    } else throw new Bad();
    this.expect('_');
  }

  // ---- names ----

  // `tag`: this is the name of the encoding being parsed, so its template arguments are
  // the ones T_ refers to in the function's signature.
  name(tag = false): Node {
    this.enter();
    const c = this.ch();
    let r: Node;
    if (c === 'N') r = this.nestedName(tag);
    else if (c === 'Z') r = this.localName(tag);
    else if (c === 'S' && this.ch(1) !== 't') {
      r = this.substitution(false);
      if (this.ch() === 'I') r = { k: K.Tmpl, a: r, list: this.templateArgs(tag) };
    } else {
      if (c === 'S') {
        this.pos += 2;
        r = { k: K.Qual, a: name('std'), b: this.unqualifiedName() };
      } else r = this.unqualifiedName();
      if (this.ch() === 'I') {
        this.subs.push(r);
        r = { k: K.Tmpl, a: r, list: this.templateArgs(tag) };
      }
    }
    this.depth--;
    return r;
  }

  nestedName(tag: boolean): Node {
    this.expect('N');
    let quals = '';
    for (;;) {
      const c = this.ch();
      if (c === 'r') quals = ' restrict' + quals;
      else if (c === 'V') quals = ' volatile' + quals;
      else if (c === 'K') quals = ' const' + quals;
      else break;
      this.pos++;
    }
    if (this.ch() === 'R') {
      this.pos++;
      quals += ' &';
    } else if (this.ch() === 'O') {
      this.pos++;
      quals += ' &&';
    }
    let ret: Node | null = null;
    for (;;) {
      const c = this.ch();
      if (c === 'E') {
        this.pos++;
        break;
      }
      let dc: Node;
      let isSub = false;
      if (c === 'D' && (this.ch(1) === 'T' || this.ch(1) === 't')) dc = this.type();
      else if (c === 'S') {
        dc = this.substitution(true);
        isSub = true;
      } else if (c === 'I') {
        if (!ret) throw new Bad();
        ret = { k: K.Tmpl, a: ret, list: this.templateArgs(tag) };
        if (this.ch() !== 'E') this.subs.push(ret);
        continue;
      } else if (c === 'T') dc = this.templateParam();
      else if (c === 'M') {
        if (!ret) throw new Bad();
        this.pos++;
        continue;
      } else if (isDigit(this.peek()) || isLower(this.peek()) || c === 'C' || c === 'U' || c === 'L' || c === 'D') {
        dc = this.unqualifiedName();
      } else throw new Bad();
      ret = ret ? { k: K.Qual, a: ret, b: dc } : dc;
      if (!isSub && this.ch() !== 'E') this.subs.push(ret);
    }
    if (!ret) throw new Bad();
    return quals ? { k: K.Cv, a: ret, quals } : ret;
  }

  localName(tag: boolean): Node {
    this.expect('Z');
    const enc = this.encoding(false);
    this.expect('E');
    if (this.eat('s')) {
      this.discriminator();
      return { k: K.Local, a: enc, b: name('string literal') };
    }
    let prefix: Node = enc;
    if (this.eat('d')) {
      let n = 0;
      if (this.ch() !== '_') n = this.number() + 1;
      this.expect('_');
      prefix = { k: K.Local, a: enc, b: name(`{default arg#${n + 1}}`) };
    }
    const n = this.name(tag);
    this.discriminator();
    return { k: K.Local, a: prefix, b: n };
  }

  unqualifiedName(): Node {
    this.enter();
    const c = this.ch();
    let r: Node;
    if (c === 'L') {
      // GCC's internal-linkage marker before a local source name.
      this.pos++;
      r = this.unqualifiedName();
      this.depth--;
      return r;
    }
    if (isDigit(this.peek())) r = this.sourceName();
    else if (isLower(this.peek())) {
      r = this.operatorName();
    } else if (c === 'C' || (c === 'D' && /[0-9]/.test(this.ch(1)))) {
      r = this.ctorDtor();
    } else if (c === 'U') {
      r = this.unnamedType();
    } else if (c === 'D' && this.ch(1) === 'C') {
      this.pos += 2;
      const names: string[] = [];
      while (this.ch() !== 'E') names.push(this.sourceName().s ?? '');
      this.pos++;
      r = name(`[${names.join(', ')}]`);
    } else throw new Bad();
    while (this.ch() === 'B') {
      this.pos++;
      const keep = this.lastName;
      const tag = this.sourceName();
      this.lastName = keep;
      r = { k: K.Tagged, a: r, s: tag.s };
    }
    this.depth--;
    return r;
  }

  sourceName(): Node {
    const len = this.number();
    if (len <= 0 || this.pos + len > this.s.length) throw new Bad();
    const id = this.s.slice(this.pos, this.pos + len);
    this.pos += len;
    if (id.startsWith('_GLOBAL_') && (id[8] === '.' || id[8] === '_' || id[8] === '$') && id[9] === 'N') {
      this.lastName = '(anonymous namespace)';
      return name('(anonymous namespace)');
    }
    this.lastName = id;
    return name(id);
  }

  operatorName(): Node {
    const code = this.s.slice(this.pos, this.pos + 2);
    this.pos += 2;
    if (code === 'cv') {
      // In `cv T_ I…E` the arguments belong to the operator, not to T_.
      const saved = this.inConversion;
      this.inConversion = true;
      const t = this.type();
      this.inConversion = saved;
      return { k: K.Conv, a: t };
    }
    if (code === 'li') {
      const n = this.sourceName();
      return name(`operator"" ${n.s}`);
    }
    if (code[0] === 'v' && isDigit(code.charCodeAt(1))) {
      const n = this.sourceName();
      return name(`operator ${n.s}`);
    }
    const op = OPS[code];
    if (!op || code === 'st' || code === 'sz' || code === 'at' || code === 'az' || code === 'dt' || code === 'ds' || code === 'nx' || code === 'tw') throw new Bad();
    const spelled = isLower(op[0].charCodeAt(0)) ? 'operator ' + op[0] : 'operator' + op[0];
    return name(spelled);
  }

  ctorDtor(): Node {
    const c = this.ch();
    this.pos++;
    if (c === 'C') {
      const inheriting = this.eat('I');
      const k = this.ch();
      if (!'12345'.includes(k) || k === '') throw new Bad();
      this.pos++;
      if (inheriting) this.type();
      return { k: K.Ctor, s: this.lastName };
    }
    const k = this.ch();
    if (!'012345'.includes(k) || k === '') throw new Bad();
    this.pos++;
    return { k: K.Dtor, s: this.lastName };
  }

  unnamedType(): Node {
    this.pos++;
    const c = this.ch();
    this.pos++;
    if (c === 't') {
      let n = 1;
      if (this.ch() !== '_') n = this.number() + 2;
      this.expect('_');
      return name(`{unnamed type#${n}}`);
    }
    if (c === 'l') {
      this.inLambdaSig++;
      const params = this.params();
      this.inLambdaSig--;
      this.expect('E');
      let n = 1;
      if (this.ch() !== '_') n = this.number() + 2;
      this.expect('_');
      return { k: K.Name, s: '', list: params, idx: n };
    }
    throw new Bad();
  }

  substitution(prefix: boolean): Node {
    this.expect('S');
    const c = this.ch();
    const std = STD_SUBS[c];
    if (std) {
      this.pos++;
      let verbose = true; // c++filt runs with DMGL_VERBOSE
      if (!verbose && prefix) verbose = this.ch() === 'C' || this.ch() === 'D';
      this.lastName = std[2];
      return { k: K.StdSub, s: verbose ? std[1] : std[0] };
    }
    const id = this.seqId();
    const i = id + 1;
    if (i >= this.subs.length) throw new Bad();
    const sub = this.subs[i];
    // c++filt binds template parameters when printing, so a T_ saved inside a nested
    // encoding (a local name) and reused outside it means the outer function's T_.
    if (sub.k === K.TParam && sub.scope !== this.scope && sub.s !== 'lambda' && this.tmplArgs) {
      const idx = sub.idx ?? 0;
      if (idx < this.tmplArgs.length) return { k: K.TParam, idx, ref: this.tmplArgs[idx], scope: this.scope };
    }
    return sub;
  }

  templateParam(): Node {
    this.expect('T');
    const id = this.seqId() + 1;
    const node: Node = { k: K.TParam, idx: id, ref: null, scope: this.scope };
    if (this.inLambdaSig) {
      // A generic lambda's `auto` parameter: shown as auto:N in the lambda's name, as the
      // deduced type where the call operator's own template arguments are known.
      node.s = 'lambda';
      this.pendingParams.push(node);
    } else if (this.tmplArgs) {
      if (id >= this.tmplArgs.length) throw new Bad();
      node.ref = this.tmplArgs[id];
    } else this.pendingParams.push(node);
    return node;
  }

  templateArgs(tag: boolean): Node[] {
    this.enter();
    this.expect('I');
    const out: Node[] = [];
    const saved = this.tmplArgs;
    // A constructor after the arguments is named after the class, not after a name inside them.
    const lastName = this.lastName;
    const conv = this.inConversion;
    this.inConversion = false;
    while (!this.eat('E')) {
      if (this.pos >= this.s.length) throw new Bad();
      out.push(this.templateArg());
    }
    if (tag) {
      this.tmplArgs = out;
      if (this.pendingParams.length) {
        for (const p of this.pendingParams) {
          if (!p.ref && (p.idx ?? 0) < out.length) p.ref = out[p.idx ?? 0];
        }
      }
    } else this.tmplArgs = saved;
    this.lastName = lastName;
    this.inConversion = conv;
    this.depth--;
    return out;
  }

  templateArg(): Node {
    const c = this.ch();
    if (c === 'X') {
      this.pos++;
      const e = this.expression();
      this.expect('E');
      return e;
    }
    if (c === 'L') return this.exprPrimary();
    if (c === 'J') {
      this.pos++;
      const list: Node[] = [];
      while (!this.eat('E')) {
        if (this.pos >= this.s.length) throw new Bad();
        list.push(this.templateArg());
      }
      return { k: K.Pack, list };
    }
    return this.type();
  }

  // ---- types ----

  type(): Node {
    this.enter();
    const c = this.ch();
    let r: Node;
    let sub = true;
    const b = BUILTIN[c];
    if (b !== undefined) {
      this.pos++;
      r = name(b);
      sub = false;
      this.depth--;
      return r;
    }
    switch (c) {
      case 'r':
      case 'V':
      case 'K': {
        let quals = '';
        while (this.ch() === 'r' || this.ch() === 'V' || this.ch() === 'K') {
          const q = this.ch();
          this.pos++;
          quals = (q === 'r' ? ' restrict' : q === 'V' ? ' volatile' : ' const') + quals;
        }
        // Qualifiers on a function type are its `this` qualifiers: the unqualified function
        // type is not a substitution candidate of its own.
        const inner = this.ch() === 'F' ? this.functionType() : this.type();
        // Built innermost-first, the order c++filt prints them in.
        if (inner.k === K.Fn) r = { ...inner, quals: quals + (inner.quals ?? '') };
        else r = { k: K.Cv, a: inner, quals };
        break;
      }
      case 'P':
        this.pos++;
        r = { k: K.Ptr, a: this.type() };
        break;
      case 'R':
        this.pos++;
        r = { k: K.Ref, a: this.type() };
        break;
      case 'O':
        this.pos++;
        r = { k: K.RRef, a: this.type() };
        break;
      case 'C':
        this.pos++;
        r = { k: K.Postfix, a: this.type(), s: ' _Complex' };
        break;
      case 'G':
        this.pos++;
        r = { k: K.Postfix, a: this.type(), s: ' _Imaginary' };
        break;
      case 'F':
        r = this.functionType();
        break;
      case 'A':
        r = this.arrayType();
        break;
      case 'M': {
        this.pos++;
        const cls = this.type();
        const mem = this.type();
        r = { k: K.PtrMem, a: cls, b: mem };
        break;
      }
      case 'T': {
        if (this.ch(1) === 's' || this.ch(1) === 'u' || this.ch(1) === 'e') {
          const kw = this.ch(1) === 's' ? 'struct ' : this.ch(1) === 'u' ? 'union ' : 'enum ';
          this.pos += 2;
          r = { k: K.Seq, parts: [kw, this.name()] };
          break;
        }
        r = this.templateParam();
        if (this.ch() === 'I' && !this.inConversion) {
          this.subs.push(r);
          r = { k: K.Tmpl, a: r, list: this.templateArgs(false) };
        }
        break;
      }
      case 'S': {
        const n = this.ch(1);
        if (isDigit(this.peek(1)) || n === '_' || isUpper(this.peek(1))) {
          r = this.substitution(false);
          if (this.ch() === 'I') r = { k: K.Tmpl, a: r, list: this.templateArgs(false) };
          else sub = false;
        } else {
          r = this.name();
          if (r.k === K.StdSub) sub = false;
        }
        break;
      }
      case 'D': {
        const d = this.ch(1);
        const bd = BUILTIN_D[d];
        if (bd !== undefined) {
          this.pos += 2;
          r = name(bd);
          sub = false;
          break;
        }
        if (d === 'p') {
          this.pos += 2;
          r = { k: K.PackExp, a: this.type() };
          break;
        }
        if (d === 't' || d === 'T') {
          this.pos += 2;
          const e = this.expression();
          this.expect('E');
          r = { k: K.Seq, parts: ['decltype (', e, ')'] };
          break;
        }
        if (d === 'v') {
          this.pos += 2;
          let dim: string | Node;
          if (this.ch() === '_') {
            this.pos++;
            dim = this.expression();
          } else dim = String(this.number());
          this.expect('_');
          const elem = this.type();
          r = { k: K.Vec, a: elem, parts: [dim] };
          break;
        }
        if (d === 'F') {
          this.pos += 2;
          const n = this.number();
          const x = this.eat('x');
          this.expect('_');
          r = name(`_Float${n}${x ? 'x' : ''}`);
          sub = false;
          break;
        }
        if (d === 'x' || d === 'o' || d === 'O' || d === 'w') {
          r = this.functionType();
          break;
        }
        r = this.name();
        break;
      }
      case 'u': {
        this.pos++;
        r = this.sourceName();
        break;
      }
      case 'U': {
        this.pos++;
        const q = this.sourceName();
        if (this.ch() === 'I') this.templateArgs(false);
        const inner = this.type();
        r = { k: K.Vendor, a: inner, s: q.s };
        break;
      }
      case 'N':
      case 'Z':
      default:
        if (c === 'N' || c === 'Z' || isDigit(this.peek())) r = this.name();
        else throw new Bad();
    }
    if (sub) this.subs.push(r);
    this.depth--;
    return r;
  }

  functionType(): Node {
    let quals = '';
    // Exception specifications are not printed by c++filt; parse and drop them.
    if (this.ch() === 'D') {
      const d = this.ch(1);
      this.pos += 2;
      if (d === 'o') quals = ' noexcept';
      else if (d === 'O') {
        const e = this.expression();
        this.expect('E');
        void e;
        quals = ' noexcept';
      } else if (d === 'w') {
        while (!this.eat('E')) this.type();
        quals = ' throw()';
      } else if (d !== 'x') throw new Bad();
    }
    this.expect('F');
    this.eat('Y');
    const ret = this.type();
    const params = this.params();
    let ref = '';
    if (this.eat('R')) ref = ' &';
    else if (this.eat('O')) ref = ' &&';
    this.expect('E');
    return { k: K.Fn, b: ret, list: params, quals: '', s: ref + quals };
  }

  arrayType(): Node {
    this.expect('A');
    let dim: string | Node = '';
    if (isDigit(this.peek())) {
      dim = String(this.number());
    } else if (this.ch() !== '_') {
      dim = this.expression();
    }
    this.expect('_');
    const elem = this.type();
    return { k: K.Arr, a: elem, parts: [dim] };
  }

  // ---- expressions (template arguments, decltype) ----

  exprPrimary(): Node {
    this.expect('L');
    if (this.ch() === '_' && this.ch(1) === 'Z') {
      this.pos += 2;
      const e = this.encoding(false);
      this.expect('E');
      return e;
    }
    if (this.ch() === 'Z') {
      this.pos++;
      const e = this.encoding(false);
      this.expect('E');
      return e;
    }
    const tc = this.ch();
    const t = this.type();
    if (tc === 'D' && this.ch(-1) === 'n' && this.ch() === 'E') {
      this.pos++;
      return t;
    }
    const neg = this.eat('n');
    const start = this.pos;
    while (this.pos < this.s.length && this.ch() !== 'E') this.pos++;
    const val = this.s.slice(start, this.pos);
    this.expect('E');
    return { k: K.Lit, a: t, s: val, neg, quals: BUILTIN[tc] !== undefined && t.k === K.Name ? tc : '' };
  }

  subexpr(e: Node): Node {
    if (e.k === K.Name || e.k === K.Qual || (e.k === K.Seq && e.s === 'simple')) return e;
    return { k: K.Seq, parts: ['(', e, ')'] };
  }

  expression(): Node {
    this.enter();
    const r = this.expression1();
    this.depth--;
    return r;
  }

  expression1(): Node {
    const c = this.ch();
    const c2 = this.ch(1);
    if (c === 'L') return this.exprPrimary();
    if (c === 'T') return this.templateParam();
    if (c === 's' && c2 === 'r') {
      this.pos += 2;
      return this.unresolvedName();
    }
    if (c === 's' && c2 === 'p') {
      this.pos += 2;
      return { k: K.Seq, parts: [this.expression(), '...'] };
    }
    if (c === 'f' && c2 === 'p') {
      this.pos += 2;
      if (this.ch() === 'T') {
        this.pos++;
        return { k: K.Seq, s: 'simple', parts: ['this'] };
      }
      while (this.ch() === 'r' || this.ch() === 'V' || this.ch() === 'K') this.pos++;
      let n = 1;
      if (this.ch() !== '_') n = this.number() + 2;
      this.expect('_');
      return { k: K.Seq, s: 'simple', parts: [`{parm#${n}}`] };
    }
    if (c === 'f' && c2 === 'L') {
      this.pos += 2;
      this.number();
      this.expect('p');
      while (this.ch() === 'r' || this.ch() === 'V' || this.ch() === 'K') this.pos++;
      let n = 1;
      if (this.ch() !== '_') n = this.number() + 2;
      this.expect('_');
      return { k: K.Seq, s: 'simple', parts: [`{parm#${n}}`] };
    }
    if (isDigit(this.peek())) return this.unresolvedBase();
    if (c === 'o' && c2 === 'n') {
      this.pos += 2;
      return this.unresolvedBase();
    }
    if (c === 'd' && c2 === 'n') {
      this.pos += 2;
      return this.unresolvedBase(true);
    }
    if (c === 'i' && c2 === 'l') {
      this.pos += 2;
      const list = this.exprList();
      return { k: K.Seq, parts: ['{', ...joinParts(list), '}'] };
    }
    if (c === 't' && c2 === 'l') {
      this.pos += 2;
      const t = this.type();
      const list = this.exprList();
      return { k: K.Seq, parts: [t, '{', ...joinParts(list), '}'] };
    }
    if (c === 's' && c2 === 'Z') {
      this.pos += 2;
      const t = this.ch() === 'T' ? this.templateParam() : this.expression();
      return { k: K.Seq, parts: ['sizeof...(', t, ')'] };
    }
    if (c === 's' && c2 === 'P') {
      this.pos += 2;
      const list: Node[] = [];
      while (!this.eat('E')) {
        if (this.pos >= this.s.length) throw new Bad();
        list.push(this.templateArg());
      }
      return { k: K.Seq, parts: ['sizeof...(', ...joinParts(list), ')'] };
    }
    if (c === 't' && c2 === 'r') {
      this.pos += 2;
      return name('throw');
    }
    if (c === 'c' && c2 === 'v') {
      this.pos += 2;
      const t = this.type();
      if (this.eat('_')) {
        const list = this.exprList();
        return { k: K.Seq, parts: ['(', t, ')(', ...joinParts(list), ')'] };
      }
      const e = this.expression();
      return { k: K.Seq, parts: ['(', t, ')', this.subexpr(e)] };
    }
    if ((c === 'd' || c === 's' || c === 'c' || c === 'r') && c2 === 'c') {
      this.pos += 2;
      const kw = c === 'd' ? 'dynamic_cast' : c === 's' ? 'static_cast' : c === 'c' ? 'const_cast' : 'reinterpret_cast';
      const t = this.type();
      const e = this.expression();
      return { k: K.Seq, parts: [kw, '<', t, '>(', e, ')'] };
    }
    if (c === 't' && (c2 === 'i' || c2 === 'e')) {
      this.pos += 2;
      const x = c2 === 'i' ? this.type() : this.expression();
      return { k: K.Seq, parts: ['typeid (', x, ')'] };
    }
    if ((c === 's' && c2 === 't') || (c === 'a' && c2 === 't')) {
      this.pos += 2;
      const t = this.type();
      return { k: K.Seq, parts: [c === 's' ? 'sizeof (' : 'alignof (', t, ')'] };
    }
    if ((c === 's' && c2 === 'z') || (c === 'a' && c2 === 'z')) {
      this.pos += 2;
      const e = this.expression();
      return { k: K.Seq, parts: [c === 's' ? 'sizeof ' : 'alignof ', this.subexpr(e)] };
    }
    if (c === 'n' && c2 === 'x') {
      this.pos += 2;
      const e = this.expression();
      return { k: K.Seq, parts: ['noexcept ', this.subexpr(e)] };
    }
    if (c === 't' && c2 === 'w') {
      this.pos += 2;
      const e = this.expression();
      return { k: K.Seq, parts: ['throw ', this.subexpr(e)] };
    }
    if (c === 'c' && c2 === 'l') {
      this.pos += 2;
      const f = this.expression();
      const list = this.exprList();
      return { k: K.Seq, parts: [this.subexpr(f), '(', ...joinParts(list), ')'] };
    }
    if ((c === 'd' || c === 'p') && c2 === 't') {
      this.pos += 2;
      const a = this.expression();
      const b = this.unresolvedNameOrExpr();
      return { k: K.Seq, parts: [this.subexpr(a), c === 'd' ? '.' : '->', b] };
    }
    const code = c + c2;
    const op = OPS[code];
    if (!op) throw new Bad();
    this.pos += 2;
    if (op[1] === 1) {
      if ((code === 'pp' || code === 'mm') && this.eat('_')) {
        const e = this.expression();
        return { k: K.Seq, parts: [this.subexpr(e), op[0]] };
      }
      const e = this.expression();
      return { k: K.Seq, parts: [op[0], this.subexpr(e)] };
    }
    if (op[1] === 2) {
      const a = this.expression();
      const b = this.expression();
      if (code === 'ix') return { k: K.Seq, parts: [this.subexpr(a), '[', b, ']'] };
      const parts: (string | Node)[] = [this.subexpr(a), op[0], this.subexpr(b)];
      if (code === 'gt') return { k: K.Seq, parts: ['(', ...parts, ')'] };
      return { k: K.Seq, parts };
    }
    if (code === 'qu') {
      const a = this.expression();
      const b = this.expression();
      const d = this.expression();
      return { k: K.Seq, parts: [this.subexpr(a), '?', this.subexpr(b), ' : ', this.subexpr(d)] };
    }
    throw new Bad();
  }

  unresolvedNameOrExpr(): Node {
    const c = this.ch();
    if (isDigit(this.peek())) return this.unresolvedBase();
    if (c === 'o' && this.ch(1) === 'n') {
      this.pos += 2;
      return this.unresolvedBase();
    }
    if (c === 'd' && this.ch(1) === 'n') {
      this.pos += 2;
      return this.unresolvedBase(true);
    }
    return this.expression();
  }

  exprList(): Node[] {
    const list: Node[] = [];
    while (!this.eat('E')) {
      if (this.pos >= this.s.length) throw new Bad();
      list.push(this.expression());
    }
    return list;
  }

  // <unresolved-name> after "sr". Template arguments of the last part wrap the whole
  // qualified name, as in c++filt, which is why `(std::declval<T>)()` gets parentheses.
  unresolvedName(): Node {
    let scope: Node;
    if (this.eat('N')) {
      scope = this.ch() === 'T' ? this.templateParam() : this.unresolvedType();
      if (this.ch() === 'I') scope = { k: K.Tmpl, a: scope, list: this.templateArgs(false) };
      while (!this.eat('E')) {
        if (this.pos >= this.s.length) throw new Bad();
        scope = { k: K.Qual, a: scope, b: this.simpleId() };
      }
    } else if (isDigit(this.peek())) {
      scope = this.simpleId();
      while (!this.eat('E')) {
        if (this.pos >= this.s.length) throw new Bad();
        scope = { k: K.Qual, a: scope, b: this.simpleId() };
      }
    } else {
      scope = this.unresolvedType();
    }
    return this.qualifiedBase(scope);
  }

  simpleId(): Node {
    let part: Node = this.sourceName();
    if (this.ch() === 'I') part = { k: K.Tmpl, a: part, list: this.templateArgs(false) };
    return part;
  }

  qualifiedBase(scope: Node): Node {
    let base: Node;
    if (this.ch() === 'd' && this.ch(1) === 'n') {
      this.pos += 2;
      return { k: K.Qual, a: scope, b: this.unresolvedBase(true) };
    }
    if (this.ch() === 'o' && this.ch(1) === 'n') this.pos += 2;
    if (isDigit(this.peek())) base = this.sourceName();
    else base = this.operatorName();
    const q: Node = { k: K.Qual, a: scope, b: base };
    if (this.ch() === 'I') return { k: K.Tmpl, a: q, list: this.templateArgs(false) };
    return q;
  }

  unresolvedType(): Node {
    const c = this.ch();
    let r: Node;
    if (c === 'T') {
      r = this.templateParam();
      this.subs.push(r);
    } else if (c === 'D') {
      r = this.type();
    } else if (c === 'S') {
      if (this.ch(1) === 't') {
        this.pos += 2;
        r = { k: K.Qual, a: name('std'), b: this.unqualifiedName() };
      } else r = this.substitution(false);
    } else r = this.sourceName();
    if (this.ch() === 'I') {
      r = { k: K.Tmpl, a: r, list: this.templateArgs(false) };
      this.subs.push(r);
    }
    return r;
  }

  unresolvedBase(dtor = false): Node {
    if (dtor) {
      const t = isDigit(this.peek()) ? this.sourceName() : this.unresolvedType();
      return { k: K.Seq, parts: ['~', t] };
    }
    if (isDigit(this.peek())) {
      let n: Node = this.sourceName();
      if (this.ch() === 'I') n = { k: K.Tmpl, a: n, list: this.templateArgs(false) };
      return n;
    }
    let n = this.operatorName();
    if (this.ch() === 'I') n = { k: K.Tmpl, a: n, list: this.templateArgs(false) };
    return n;
  }
}

function joinParts(list: Node[]): (string | Node)[] {
  const out: (string | Node)[] = [];
  list.forEach((n, i) => {
    if (i) out.push(', ');
    out.push(n);
  });
  return out;
}

// `N K … E` qualifies the member function, also when it sits inside a local name.
function hoistQuals(n: Node): [Node, string] {
  if (n.k === K.Cv && n.a) return [n.a, n.quals ?? ''];
  if (n.k === K.Local && n.b) {
    const [b, q] = hoistQuals(n.b);
    if (q) return [{ ...n, b }, q];
  }
  return [n, ''];
}


function hasReturnType(n: Node): boolean {
  switch (n.k) {
    case K.Tmpl:
      return !isCtorDtorConv(n.a as Node);
    case K.Local:
      return hasReturnType(n.b as Node);
    case K.Cv:
      return hasReturnType(n.a as Node);
    default:
      return false;
  }
}

function isCtorDtorConv(n: Node): boolean {
  switch (n.k) {
    case K.Qual:
    case K.Local:
      return isCtorDtorConv(n.b as Node);
    case K.Ctor:
    case K.Dtor:
    case K.Conv:
      return true;
    case K.Tagged:
      return isCtorDtorConv(n.a as Node);
    default:
      return false;
  }
}

// ---- printing ----

class Printer {
  steps = 0;
  depth = 0;
  inLambda = 0;
  // libiberty quirk: after an empty pack at the end of an argument list, c++filt does not
  // put its usual space between two closing '>'.
  emptyTail = false;

  tick(): void {
    if (++this.steps > MAX_PRINT_STEPS) throw new Bad();
  }

  /** Prints a name or a type with an empty declarator. */
  str(n: Node): string {
    return this.decl(n, '');
  }

  /** Joins a type's text with a declarator the way c++filt spaces them. */
  join(left: string, d: string): string {
    if (!d) return left;
    const c = d.charCodeAt(0);
    if (c === 42 /* * */ || c === 38 /* & */ || c === 32 /* space */ || c === 1 /* NAME_SEP */) return left + d;
    return left + ' ' + d;
  }

  // Template arguments with packs flattened; records whether the list ended in an empty pack.
  args(list: Node[]): string {
    let out = '';
    let first = true;
    this.emptyTail = false;
    const items: Node[] = [];
    for (const a of list) this.flattenArg(a, items, 0);
    for (const it of items) {
      const text = it.k === K.Pack && it.list?.length === 0 ? '' : this.str(it);
      if (text === '' && !first) {
        this.emptyTail = true;
        continue;
      }
      if (!first) out += ', ';
      first = false;
      out += text;
      this.emptyTail = false;
      if (out.length > MAX_OUTPUT) throw new Bad();
    }
    return out;
  }

  flattenArg(a: Node, into: Node[], depth: number): void {
    if (depth > 32) throw new Bad();
    if (a.k === K.Pack) {
      if (a.list?.length === 0) into.push(a);
      for (const x of a.list as Node[]) this.flattenArg(x, into, depth + 1);
    } else if (a.k === K.TParam && a.ref?.k === K.Pack && a.s !== 'lambda') {
      this.flattenArg(a.ref, into, depth + 1);
    } else if (a.k === K.PackExp) {
      const expanded = this.expandPack(a.a as Node);
      if (!expanded) into.push(a);
      else if (expanded.length === 0) into.push({ k: K.Pack, list: [] });
      else for (const x of expanded) into.push(x);
    } else into.push(a);
  }

  params(list: Node[]): string {
    let out = '';
    let first = true;
    for (const p of list) {
      let items: Node[] = [p];
      if (p.k === K.PackExp) {
        const expanded = this.expandPack(p.a as Node);
        if (expanded) items = expanded;
      }
      for (const it of items) {
        if (!first) out += ', ';
        first = false;
        out += this.str(it);
      }
      if (out.length > MAX_OUTPUT) throw new Bad();
    }
    return out;
  }

  // A pack expansion `Dp T` prints each element of the pack T refers to, substituted.
  expandPack(pattern: Node): Node[] | null {
    const pack = findPack(pattern, 0);
    if (!pack) return null;
    const elems = pack.list as Node[];
    return elems.map((e) => substitutePack(pattern, pack, e, 0));
  }

  decl(n: Node, d: string): string {
    this.tick();
    if (++this.depth > MAX_DEPTH * 2) throw new Bad();
    const r = this.decl1(n, d);
    this.depth--;
    if (r.length > MAX_OUTPUT) throw new Bad();
    return r;
  }

  decl1(n: Node, d: string): string {
    switch (n.k) {
      case K.Name:
        if (n.list) {
          this.inLambda++;
          const sig = this.params(n.list);
          this.inLambda--;
          return this.join(`{lambda(${sig})#${n.idx}}`, d);
        }
        return this.join(n.s as string, d);
      case K.StdSub:
        return this.join(n.s as string, d);
      case K.Qual:
        return this.join(this.str(n.a as Node) + '::' + this.str(n.b as Node), d);
      case K.Tmpl: {
        let base = this.str(n.a as Node);
        if (base.endsWith('<')) base += ' ';
        let args = this.args(n.list as Node[]);
        if (args.endsWith('>') && !this.emptyTail) args += ' ';
        return this.join(base + '<' + args + '>', d);
      }
      case K.Tagged:
        return this.join(this.str(n.a as Node) + '[abi:' + n.s + ']', d);
      case K.Ctor:
        return this.join(n.s as string, d);
      case K.Dtor:
        return this.join('~' + n.s, d);
      case K.Conv:
        return this.join('operator ' + this.str(n.a as Node), d);
      case K.Local: {
        // c++filt leaves out the enclosing function's return type.
        const fn = n.a as Node;
        const scope = fn.k === K.Enc && fn.b ? this.str({ ...fn, b: undefined }) : this.str(fn);
        return this.join(scope + '::' + this.str(n.b as Node), d);
      }
      case K.Special:
        return this.join(n.s + this.str(n.a as Node), d);
      case K.Ctv:
        return this.join('construction vtable for ' + this.str(n.a as Node) + '-in-' + this.str(n.b as Node), d);
      case K.Clone:
        return this.str(n.a as Node) + ' [clone ' + n.s + ']';
      case K.Enc: {
        const inner = this.str(n.a as Node) + '(' + this.params(n.list as Node[]) + ')' + (n.quals ?? '');
        if (n.b) return this.decl(n.b, NAME_SEP + inner + d);
        return inner + d;
      }
      case K.Ptr:
      case K.Ref:
      case K.RRef: {
        let inner = n.a as Node;
        let sym = n.k === K.Ptr ? '*' : n.k === K.Ref ? '&' : '&&';
        // Reference collapsing through substituted template parameters.
        if (n.k !== K.Ptr) {
          let t = inner;
          while (t.k === K.TParam && t.ref) t = t.ref;
          if (t.k === K.Ref || t.k === K.RRef) {
            sym = t.k === K.Ref || n.k === K.Ref ? '&' : '&&';
            inner = t.a as Node;
          }
        }
        const t = target(inner);
        if (t.k === K.Fn || t.k === K.Arr) return this.decl(inner, '(' + sym + trimLead(d) + ')');
        return this.decl(inner, sym + d);
      }
      case K.Cv: {
        let quals = n.quals as string;
        // `const T` with T = `X const` is printed with one const, as c++filt does.
        const inner = resolve(n.a as Node);
        if (inner !== n.a && inner.k === K.Cv) {
          const have = (inner.quals as string).split(' ');
          quals = quals.split(' ').filter((q) => q && !have.includes(q)).map((q) => ' ' + q).join('');
        }
        return this.decl(n.a as Node, quals + (quals && d && d.charCodeAt(0) === 40 /* ( */ ? ' ' : '') + d);
      }
      case K.Fn: {
        const tail = '(' + this.params(n.list as Node[]) + ')' + (n.quals ?? '') + (n.s ?? '');
        return this.decl(n.b as Node, NAME_SEP + d + tail);
      }
      case K.Arr: {
        const dimP = (n.parts as (string | Node)[])[0];
        const dim = typeof dimP === 'string' ? dimP : this.str(dimP);
        const tail = (d ? d + ' ' : '') + '[' + dim + ']';
        return this.decl(n.a as Node, tail);
      }
      case K.PtrMem: {
        const target = resolve(n.b as Node);
        const cls = this.str(n.a as Node);
        if (target.k === K.Fn || target.k === K.Arr) return this.decl(n.b as Node, '(' + cls + '::*' + trimLead(d) + ')');
        return this.decl(n.b as Node, cls + '::*' + d);
      }
      case K.Vec: {
        const dimP = (n.parts as (string | Node)[])[0];
        const dim = typeof dimP === 'string' ? dimP : this.str(dimP);
        return this.join(this.str(n.a as Node) + ' __vector(' + dim + ')', d);
      }
      case K.Postfix:
        return this.join(this.str(n.a as Node) + n.s, d);
      case K.Vendor:
        return this.join(this.str(n.a as Node) + ' ' + n.s, d);
      case K.PackExp: {
        const expanded = this.expandPack(n.a as Node);
        if (expanded) return this.join(expanded.map((e) => this.str(e)).join(', '), d);
        return this.join(this.str(n.a as Node) + '...', d);
      }
      case K.Pack:
        return this.join(this.args(n.list as Node[]), d);
      case K.TParam:
        if (n.s === 'lambda' && (this.inLambda || !n.ref)) return this.join(`auto:${(n.idx ?? 0) + 1}`, d);
        if (!n.ref) throw new Bad();
        return this.decl(n.ref, d);
      case K.Seq: {
        let out = '';
        for (const p of n.parts as (string | Node)[]) out += typeof p === 'string' ? p : this.str(p);
        return this.join(out, d);
      }
      case K.Lit: {
        const t = n.a as Node;
        const code = n.quals ?? '';
        const suffix = LIT_SUFFIX[code];
        if (suffix !== undefined) return this.join((n.neg ? '-' : '') + n.s + suffix, d);
        if (code === 'b' && !n.neg && (n.s === '0' || n.s === '1')) return this.join(n.s === '1' ? 'true' : 'false', d);
        const float = code === 'f' || code === 'd' || code === 'e' || code === 'g';
        const v = (n.neg ? '-' : '') + (float ? '[' + n.s + ']' : n.s);
        return this.join('(' + this.str(t) + ')' + v, d);
      }
    }
    throw new Bad();
  }
}

// Separates a function's return type from its name: printed as a space, except that
// `int (*f())(int)` has none inside the parentheses.
const NAME_SEP = '\u0001';

function trimLead(d: string): string {
  return d.charCodeAt(0) === 1 ? d.slice(1) : d;
}

function resolve(n: Node): Node {
  let t = n;
  for (let i = 0; i < 64 && t.k === K.TParam && t.ref; i++) t = t.ref;
  return t;
}

// What a declarator finally applies to: through template parameters and qualifiers.
function target(n: Node): Node {
  let t = n;
  for (let i = 0; i < 64; i++) {
    if (t.k === K.TParam && t.ref) t = t.ref;
    else if (t.k === K.Cv && t.a) t = t.a;
    else break;
  }
  return t;
}

// Finds the first argument pack referenced (through template parameters) inside a pattern.
function findPack(n: Node, depth: number): Node | null {
  if (depth > 64) return null;
  if (n.k === K.TParam) return n.ref && n.ref.k === K.Pack ? n.ref : null;
  if (n.k === K.PackExp) return null;
  for (const c of children(n)) {
    const p = findPack(c, depth + 1);
    if (p) return p;
  }
  return null;
}

function children(n: Node): Node[] {
  const out: Node[] = [];
  if (n.a) out.push(n.a);
  if (n.b) out.push(n.b);
  if (n.list) out.push(...n.list);
  if (n.parts) for (const p of n.parts) if (typeof p !== 'string') out.push(p);
  return out;
}

// Copies a pattern with every reference to `pack` replaced by one of its elements.
function substitutePack(n: Node, pack: Node, elem: Node, depth: number): Node {
  if (depth > 64) throw new Bad();
  if (n.k === K.TParam && n.ref === pack) return elem;
  if (n.k === K.PackExp) return n;
  let changed = false;
  const copy: Node = { ...n };
  const sub = (c: Node): Node => {
    const r = substitutePack(c, pack, elem, depth + 1);
    if (r !== c) changed = true;
    return r;
  };
  if (n.a) copy.a = sub(n.a);
  if (n.b) copy.b = sub(n.b);
  if (n.list) copy.list = n.list.map(sub);
  if (n.parts) copy.parts = n.parts.map((p) => (typeof p === 'string' ? p : sub(p)));
  return changed ? copy : n;
}

/**
 * Demangles one Itanium C++ name (without any `@version` suffix); returns null when the
 * name is not a valid mangled name.
 */
export function demangleItanium(s: string): string | null {
  try {
    if (s.startsWith('_GLOBAL_') && s.length > 11 && (s[8] === '.' || s[8] === '_' || s[8] === '$') && (s[9] === 'I' || s[9] === 'D') && s[10] === '_') {
      const rest = s.slice(11);
      const what = s[9] === 'I' ? 'global constructors keyed to ' : 'global destructors keyed to ';
      if (rest.startsWith('_Z')) {
        const inner = demangleItanium(rest);
        return inner === null ? null : what + inner;
      }
      return what + rest;
    }
    if (!s.startsWith('_Z')) return null;
    const p = new Parser(s);
    const tree = p.mangled();
    const out = new Printer().str(tree);
    return out.includes(NAME_SEP) ? out.replaceAll(NAME_SEP, ' ') : out;
  } catch (e) {
    if (debug) console.error(e);
    return null;
  }
}
