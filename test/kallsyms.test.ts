import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Kallsyms } from '../src/kallsyms.js';
import { workDir } from './helpers.js';

/** The oracle: /proc/kallsyms itself, read independently of the parser under test. */
function rawText(): Array<{ addr: bigint; type: string; name: string; module?: string }> {
  const rows = [];
  for (const line of readFileSync('/proc/kallsyms', 'latin1').split('\n')) {
    const m = /^([0-9a-f]+) (\S) (\S+)(?:\t\[(\S+)\])?$/.exec(line);
    if (m) rows.push({ addr: BigInt('0x' + m[1]), type: m[2], name: m[3], module: m[4] });
  }
  return rows;
}

describe('kallsyms', () => {
  const ks = Kallsyms.load();
  const rows = rawText();

  it('reports whether addresses are visible', () => {
    const visible = rows.some((r) => r.addr !== 0n);
    assert.equal(ks.restricted, !visible);
    assert.equal(ks.problem === '', visible);
  });

  it('finds a known kernel text symbol at its address and inside it', (t) => {
    if (ks.restricted) return t.skip('kernel addresses are hidden (kptr_restrict)');
    const sym = rows.find((r) => (r.name === '__x64_sys_getpid' || r.name === 'do_sys_openat2') && /[tT]/.test(r.type));
    assert.ok(sym, 'kallsyms has __x64_sys_getpid or do_sys_openat2');
    // Several names can share an address (__x64_sys_getpid and __ia32_sys_getpid): any of them.
    const aliases = new Set(rows.filter((r) => r.addr === sym.addr && /[tTwW]/.test(r.type)).map((r) => r.name));
    const at = ks.lookup(sym.addr);
    assert.ok(at && aliases.has(at.name) && at.offset === 0, `${JSON.stringify(at)} is one of ${[...aliases].join(', ')}`);
    // The next text symbol at a higher address bounds it: the byte before still belongs to it.
    const next = rows.filter((r) => r.addr > sym.addr && /[tTwW]/.test(r.type)).reduce((a, b) => (b.addr < a.addr ? b : a));
    assert.deepEqual(ks.lookup(next.addr - 1n), { name: at.name, offset: Number(next.addr - 1n - sym.addr) });
    if (next.addr - sym.addr > 5n) assert.deepEqual(ks.lookup(sym.addr + 5n), { name: at.name, offset: 5 });
  });

  it('gives every text symbol back at its own address (or an alias at the same address)', (t) => {
    if (ks.restricted) return t.skip('kernel addresses are hidden (kptr_restrict)');
    const text = rows.filter((r) => /[tTwW]/.test(r.type));
    const names = new Map<bigint, Set<string>>();
    for (const r of text) {
      if (!names.has(r.addr)) names.set(r.addr, new Set());
      names.get(r.addr)!.add(r.name);
    }
    for (const r of text) {
      const hit = ks.lookup(r.addr);
      assert.ok(hit && hit.offset === 0 && names.get(r.addr)!.has(hit.name), `${r.name} at ${r.addr.toString(16)}`);
    }
  });

  it('names the module of symbols outside the kernel image', (t) => {
    if (ks.restricted) return t.skip('kernel addresses are hidden (kptr_restrict)');
    const mod = rows.find((r) => r.module !== undefined && /[tT]/.test(r.type) && r.addr !== 0n && rows.filter((o) => o.addr === r.addr).length === 1);
    if (!mod) return t.skip('no module (or BPF/ftrace) text symbols are loaded');
    assert.deepEqual(ks.lookup(mod.addr), { name: mod.name, module: mod.module, offset: 0 });
  });

  it('returns nothing for user-space and null addresses', () => {
    assert.equal(ks.lookup(0n), undefined);
    assert.equal(ks.lookup(0x7f00_0000_1000n), undefined);
  });

  it('marks all-zero tables as restricted and skips junk lines', () => {
    const hidden = Kallsyms.parse('0000000000000000 T _stext\n0000000000000000 t foo\tmodx\n\ngarbage line\n0000000000000000 D data\n');
    assert.equal(hidden.restricted, true);
    assert.match(hidden.problem, /kptr_restrict/);
    assert.equal(hidden.lookup(0xffffffff81000000n), undefined);
    const small = Kallsyms.parse('ffffffff81000100 T b_fn\nffffffff81000000 T a_fn\nffffffff81000000 t _a_alias\nffffffff81000200 D not_text\nffffffffc0000000 t m_fn\t[mymod]\nnonsense\nzz T bad\n');
    assert.equal(small.restricted, false);
    assert.deepEqual(small.lookup(0xffffffff81000010n), { name: 'a_fn', offset: 0x10 });
    assert.deepEqual(small.lookup(0xffffffff81000150n), { name: 'b_fn', offset: 0x50 });
    assert.deepEqual(small.lookup(0xffffffffc0000004n), { name: 'm_fn', module: 'mymod', offset: 4 });
    assert.equal(small.lookup(0xffffffff80000000n), undefined);
  });

  it('loadFor keeps only the symbols of the given addresses and answers them exactly like load', (t) => {
    if (ks.restricted) return t.skip('kernel addresses are hidden (kptr_restrict)');
    const text = rows.filter((r) => /[tTwW]/.test(r.type));
    // Every 50th text symbol, at its start, inside it, and one address past everything known.
    const addrs: bigint[] = [0n, 0x7f00_0000_1000n, 0xffff_ffff_ffff_fff0n];
    for (let i = 0; i < text.length; i += 50) addrs.push(text[i].addr, text[i].addr + 3n);
    const part = Kallsyms.loadFor(addrs);
    assert.equal(part.restricted, false);
    assert.ok(part.length < ks.length / 10, `kept ${part.length} of ${ks.length}`);
    for (const a of addrs) assert.deepEqual(part.lookup(a), ks.lookup(a), `0x${a.toString(16)}`);
  });

  it('loadFor on a hidden table is restricted, like load', () => {
    const path = join(workDir('kallsyms'), 'hidden');
    writeFileSync(path, '0000000000000000 T _stext\n0000000000000000 t foo\t[modx]\n');
    const hidden = Kallsyms.loadFor([0xffffffff81000000n], path);
    assert.equal(hidden.restricted, true);
    assert.match(hidden.problem, /kptr_restrict/);
    assert.equal(hidden.lookup(0xffffffff81000000n), undefined);
  });
});
