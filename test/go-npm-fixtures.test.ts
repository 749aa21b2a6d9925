// Real stripped Go binaries that ship in npm packages, pinned: esbuild 0.28.2 (Go 1.26.5,
// -trimpath, no .go.buildinfo and no build id note at all) and lefthook 2.2.2 (Go 1.27.0,
// stripped, with build info). Fetched with `npm pack` into test/.work the first time and kept
// there; skipped with a message when the registry cannot be reached. Oracles: debug/gosym,
// `go version -m`, `go tool buildid`.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile } from '../src/elf/elf-file.js';
import { formatGoBuildInfo, readGoBuildInfo } from '../src/elf/go-buildinfo.js';
import { GoPclnTab, type GoFrame } from '../src/elf/gopclntab.js';
import { buildGosymOracle, type GosymAnswer, workDir } from './helpers.js';

interface Fixture {
  spec: string;
  tarball: string;
  bin: string;
  /** Where main.main's source file ends up (esbuild builds with -trimpath). */
  mainFile: RegExp;
}

const ESBUILD: Fixture = {
  spec: '@esbuild/linux-x64@0.28.2',
  tarball: 'esbuild-linux-x64-0.28.2.tgz',
  bin: 'package/bin/esbuild',
  mainFile: /(^|\/)github\.com\/evanw\/esbuild\/cmd\/esbuild\/main\.go$/,
};

const LEFTHOOK: Fixture = {
  spec: 'lefthook-linux-x64@2.2.2',
  tarball: 'lefthook-linux-x64-2.2.2.tgz',
  bin: 'package/bin/lefthook',
  mainFile: /(^|\/)main\.go$/,
};

const dir = workDir('go-npm-fixtures');
const goEnv = { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' };

/** The fixture's binary, fetched and unpacked if needed; a string says why there is none. */
function fetch(f: Fixture): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'the fixtures are linux-x64 binaries';
  const tgz = join(dir, f.tarball);
  const out = join(dir, f.tarball.replace(/\.tgz$/, ''));
  try {
    // The npm cache answers if it has the tarball; otherwise one try, not npm's minute of retries.
    const flags = ['--prefer-offline', '--fetch-retries=0', '--fetch-timeout=30000'];
    if (!existsSync(tgz)) execFileSync('npm', ['pack', f.spec, '--pack-destination', dir, ...flags], { stdio: 'pipe', timeout: 120_000 });
    if (!existsSync(join(out, f.bin))) {
      mkdirSync(out, { recursive: true });
      execFileSync('tar', ['xzf', tgz, '-C', out]);
    }
  } catch (e) {
    const lines = ((e as { stderr?: Buffer }).stderr?.toString() || (e as Error).message).trim().split('\n');
    const why = lines.filter((l) => /^npm error/.test(l) && !/complete log/.test(l)).slice(0, 2).join('; ') || lines.at(-1);
    return `cannot fetch ${f.spec} from the npm registry (${why})`;
  }
  return join(out, f.bin);
}

function compareWithGosym(tab: GoPclnTab, o: GosymAnswer): void {
  assert.equal(tab.funcCount, o.funcs.length);
  const bad: string[] = [];
  for (const f of o.funcs) {
    const got = tab.funcAt(f.entry);
    if (got?.name !== f.name || got.end !== f.end) bad.push(`function at 0x${f.entry.toString(16)}: ${JSON.stringify(got)}, want ${f.name}`);
  }
  for (const l of o.lines) {
    const frames = tab.lookup(l.pc);
    // Marker symbols such as go:textfipsstart have no line table (offset 0): the runtime answers
    // no line there, as we do, while debug/gosym decodes offset 0 of the pc tables as if it were one.
    const marker = /^go:text/.test(l.name);
    const got = l.line > 0 && !marker ? frames && `${frames.at(-1)!.name} ${frames[0].file}:${frames[0].line}` : String(frames?.[0].line ?? 0);
    const want = l.line > 0 && !marker ? `${l.name} ${l.file}:${l.line}` : '0';
    if (got !== want) bad.push(`0x${l.pc.toString(16)}: ${got}, want ${want}`);
  }
  assert.deepEqual(bad.slice(0, 10), [], `${bad.length} disagreements with debug/gosym`);
}

describe('Go binaries from npm packages', () => {
  const bins = new Map<Fixture, string>();
  let gosym = new Map<string, GosymAnswer | Error>();

  before(async () => {
    for (const f of [ESBUILD, LEFTHOOK]) bins.set(f, fetch(f));
    const paths = [...bins.values()].filter((p) => p.startsWith('/'));
    if (paths.length > 0) gosym = await (await buildGosymOracle(dir))(paths);
  });

  for (const f of [ESBUILD, LEFTHOOK]) {
    const name = f.spec.replace(/@[^@]*$/, '');
    it(`symbolizes ${name} like debug/gosym, with sane runtime and main frames`, (t) => {
      const bin = bins.get(f)!;
      if (!bin.startsWith('/')) return t.skip(bin);
      const o = gosym.get(bin);
      assert.ok(o && !(o instanceof Error), `debug/gosym: ${String(o)}`);
      assert.ok(o.funcs.length > 5000, `only ${o.funcs.length} functions`);
      const tab = ElfFile.withFile(bin, (elf) => GoPclnTab.open(elf));
      assert.ok(tab);
      compareWithGosym(tab, o);

      for (const [fn, file] of [
        ['main.main', f.mainFile],
        ['runtime.mallocgc', /(^|\/)runtime\/malloc\.go$/],
        ['runtime.goexit', /(^|\/)runtime\/asm_amd64\.s$/],
      ] as const) {
        const entry = o.funcs.find((x) => x.name === fn)?.entry;
        assert.ok(entry, `no ${fn}`);
        const frames: GoFrame[] = tab.lookup(entry)!;
        assert.equal(frames.at(-1)!.name, fn);
        assert.match(frames[0].file, file, fn);
        assert.ok(frames[0].line > 0, `${fn} line ${frames[0].line}`);
      }

      // Inlined frames are expanded, and every one of them names a Go function and a line.
      let inlined = 0;
      for (const l of o.lines) {
        const frames: GoFrame[] | undefined = tab.lookup(l.pc);
        if (!frames || frames.length < 2) continue;
        inlined++;
        for (const fr of frames) {
          assert.match(fr.name, /^[\x20-\x7e]*\.[\x20-\x7e]+$/, `inlined frame name at 0x${l.pc.toString(16)}`);
          assert.ok(fr.line > 0 && fr.file !== '?', `inlined frame at 0x${l.pc.toString(16)}: ${JSON.stringify(fr)}`);
        }
      }
      assert.ok(inlined > 1000, `only ${inlined} sampled addresses are in inlined code`);
    });
  }

  it('reads lefthook’s build info and build id as go version -m and go tool buildid do', (t) => {
    const bin = bins.get(LEFTHOOK)!;
    if (!bin.startsWith('/')) return t.skip(bin);
    const info = ElfFile.withFile(bin, (elf) => readGoBuildInfo(elf));
    assert.ok(info);
    assert.equal(info.goVersion, 'go1.27.0');
    assert.equal(info.path, 'github.com/evilmartians/lefthook/v2');
    assert.ok(info.deps.length > 10);
    const versionM = execFileSync('go', ['version', '-m', bin], { env: goEnv }).toString();
    assert.equal(formatGoBuildInfo(info), versionM.slice(versionM.indexOf(': ') + 2));
    assert.equal(info.buildId, execFileSync('go', ['tool', 'buildid', bin], { env: goEnv }).toString().trim());
    assert.equal(ElfFile.withFile(bin, (elf) => GoPclnTab.open(elf))!.versionRange, 'go1.27+');
  });

  it('tells esbuild’s Go release, which has no build info, from the version text', (t) => {
    const bin = bins.get(ESBUILD)!;
    if (!bin.startsWith('/')) return t.skip(bin);
    // Go's own tools find nothing...
    assert.throws(() => execFileSync('go', ['version', '-m', bin], { env: goEnv, stdio: 'pipe' }), /not a Go executable/);
    assert.equal(execFileSync('go', ['tool', 'buildid', bin], { env: goEnv }).toString().trim(), '');
    // ...the table's layout says 1.26, and the runtime's version text in it says which 1.26.
    const info = ElfFile.withFile(bin, (elf) => readGoBuildInfo(elf));
    assert.ok(info);
    assert.deepEqual([info.goVersion, info.versionFrom, info.buildId, info.path], ['go1.26.5', 'strings', '', '']);
    assert.equal(ElfFile.withFile(bin, (elf) => GoPclnTab.open(elf))!.versionRange, 'go1.26');
  });
});
