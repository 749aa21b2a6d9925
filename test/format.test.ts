import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lchownSync, lstatSync, symlinkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { outputFormatFor, OutputFormatError } from '../src/output/format.js';
import { renderFolded } from '../src/output/folded.js';
import { encodePprof } from '../src/output/pprof.js';
import { buildFlameTree } from '../src/output/flamegraph-page/flame-tree.js';
import { toSpeedscope } from '../src/output/speedscope.js';
import { describeSampleType, OutputWriteError, renderOutput, writeOutput } from '../src/output/write-output.js';
import type { Profile } from '../src/profile-model.js';
import { knownProfile, largeProfile, offCpuProfile, PERIOD } from './fixtures/output-profile.js';
import { workDir } from './helpers.js';

const dir = workDir('format');

const WALL = 'wall nanoseconds: on-CPU + off-CPU time';
const OFF_CPU = 'off_cpu nanoseconds: off-CPU time: blocked or waiting for a CPU';

function fresh(name: string): string {
  const d = join(dir, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

describe('output format', () => {
  it('is chosen from the extension as DESIGN.md lists', () => {
    assert.equal(outputFormatFor('cpu.pb.gz'), 'pprof');
    assert.equal(outputFormatFor('out/cpu.pprof'), 'pprof');
    assert.equal(outputFormatFor('stacks.folded'), 'folded');
    assert.equal(outputFormatFor('stacks.txt'), 'folded');
    assert.equal(outputFormatFor('flame.html'), 'html');
    assert.equal(outputFormatFor('profile.json'), 'speedscope');
    assert.equal(outputFormatFor('FLAME.HTML'), 'html');
  });

  it('lets --format override the extension', () => {
    assert.equal(outputFormatFor('profile.json', 'pprof'), 'pprof');
    assert.equal(outputFormatFor('/dev/stdout', 'folded'), 'folded');
  });

  it('refuses an unknown extension or --format with a one-line error that says what to do', () => {
    for (const [path, override] of [['cpu.gz', undefined], ['profile', undefined], ['out/.json', undefined], ['x.json', 'svg']] as const) {
      assert.throws(() => outputFormatFor(path, override), (e: unknown) => {
        assert.ok(e instanceof OutputFormatError);
        assert.doesNotMatch(e.message, /\n/);
        assert.match(e.message, override === undefined ? /\.pb\.gz.*--format pprof\|folded\|html\|speedscope/ : /unknown --format "svg": use pprof, folded, html, speedscope/);
        return true;
      });
    }
  });
});

describe('writeOutput', () => {
  it('writes every format, leaving no temporary file behind', async () => {
    const d = fresh('all');
    const profile = knownProfile();
    for (const name of ['cpu.pb.gz', 'cpu.pprof', 'cpu.folded', 'cpu.txt', 'flame.html', 'cpu.json']) {
      const path = join(d, name);
      const { format, bytes } = await writeOutput(profile, path);
      const expected = await renderOutput(profile, format);
      const written = readFileSync(path);
      assert.equal(written.length, bytes);
      assert.deepEqual(written, typeof expected === 'string' ? Buffer.from(expected) : Buffer.from(expected));
    }
    assert.match(readFileSync(join(d, 'flame.html'), 'utf8'), /^<!DOCTYPE html>/);
    assert.deepEqual(readdirSync(d).sort(), ['cpu.folded', 'cpu.json', 'cpu.pb.gz', 'cpu.pprof', 'cpu.txt', 'flame.html']);
  });

  it('replaces an existing file whole', async () => {
    const d = fresh('replace');
    const path = join(d, 'out.folded');
    writeFileSync(path, 'x'.repeat(100_000));
    await writeOutput(knownProfile(), path);
    assert.equal(readFileSync(path, 'utf8'), renderFolded(knownProfile()));
  });

  it('fails with a clear one-line error on an unwritable path and keeps what was there', async () => {
    const d = fresh('bad');
    writeFileSync(join(d, 'file'), 'keep');
    mkdirSync(join(d, 'sub.json'));
    const cases: [string, RegExp][] = [
      [join(d, 'missing', 'cpu.pb.gz'), /^cannot write .*missing\/cpu\.pb\.gz: the directory does not exist \(ENOENT\)$/],
      [join(d, 'file', 'cpu.pb.gz'), /^cannot write .*file\/cpu\.pb\.gz: a parent is not a directory \(ENOTDIR\)$/],
      [join(d, 'sub.json'), /^cannot write .*sub\.json: it is a directory$/],
    ];
    for (const [path, message] of cases) {
      await assert.rejects(writeOutput(knownProfile(), path), (e: unknown) => {
        assert.ok(e instanceof OutputWriteError, String(e));
        assert.match(e.message, message);
        assert.equal(e.path, path);
        return true;
      });
    }
    // Root ignores file modes, but sysfs refuses new files even to root.
    await assert.rejects(writeOutput(knownProfile(), '/sys/flamewire-test.json'), (e: unknown) => {
      assert.ok(e instanceof OutputWriteError);
      assert.match(e.message, /^cannot write \/sys\/flamewire-test\.json: [^\n]+ \((EACCES|EPERM|EROFS)\)$/);
      return true;
    });
    assert.equal(readFileSync(join(d, 'file'), 'utf8'), 'keep');
    assert.deepEqual(readdirSync(d).sort(), ['file', 'sub.json']);
  });

  it('replaces the target of a symlink and keeps the link', async () => {
    const d = fresh('symlink');
    writeFileSync(join(d, 'real.folded'), 'old');
    symlinkSync('real.folded', join(d, 'link.folded'));
    await writeOutput(knownProfile(), join(d, 'link.folded'));
    assert.equal(lstatSync(join(d, 'link.folded')).isSymbolicLink(), true);
    assert.equal(readFileSync(join(d, 'real.folded'), 'utf8'), renderFolded(knownProfile()));
  });

  it('writes into a pipe in place (e.g. -o /dev/stdout --format folded | flamegraph.pl)', async () => {
    const d = fresh('fifo');
    const fifo = join(d, 'stacks.fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = new Promise<string>((resolve, reject) => {
      const child = execFile('cat', [fifo], (err, out) => (err ? reject(err) : resolve(out)));
      child.stdin?.end();
    });
    await writeOutput(knownProfile(), fifo, { format: 'folded' });
    assert.equal(await reader, renderFolded(knownProfile()));
    assert.equal(lstatSync(fifo).isFIFO(), true);
    assert.deepEqual(readdirSync(d), ['stacks.fifo']);
  });

  it('says which value each file of an off-CPU profile holds or shows first', async () => {
    const d = fresh('view');
    const profile = offCpuProfile();
    const views = async (p: Profile, opts: Parameters<typeof writeOutput>[2] = {}) => {
      const out: Record<string, string | undefined> = {};
      for (const name of ['cpu.pb.gz', 'stacks.folded', 'flame.html', 'profile.json']) out[name] = (await writeOutput(p, join(d, name), opts)).view;
      return out;
    };
    assert.deepEqual(await views(profile), {
      'cpu.pb.gz': `default sample type ${WALL}; also samples, cpu, off_cpu (-sample_index)`,
      'stacks.folded': WALL,
      'flame.html': `${WALL}; the Value menu also has samples, cpu, off_cpu`,
      'profile.json': WALL,
    });
    assert.match(readFileSync(join(d, 'stacks.folded'), 'utf8'), /^# flamewire folded stacks: wall nanoseconds \(on-CPU \+ off-CPU time\)\n/);

    // --value off_cpu: record.ts passes the name for folded and speedscope, the index for HTML.
    assert.deepEqual(await views(profile, { sampleType: 'off_cpu', html: { sampleType: 2 } }), {
      'cpu.pb.gz': `default sample type ${WALL}; also samples, cpu, off_cpu (-sample_index)`,
      'stacks.folded': OFF_CPU,
      'flame.html': `${OFF_CPU}; the Value menu also has samples, cpu, wall`,
      'profile.json': OFF_CPU,
    });
    assert.equal(readFileSync(join(d, 'stacks.folded'), 'utf8'), await renderOutput(profile, 'folded', { sampleType: 2 }));
    assert.equal(readFileSync(join(d, 'profile.json'), 'utf8'), await renderOutput(profile, 'speedscope', { sampleType: 2 }));
    assert.equal(JSON.parse(readFileSync(join(d, 'profile.json'), 'utf8')).profiles[0].endValue, 1_000_000_000);

    // Without off-CPU time the files are unchanged, and the view still says what they hold.
    assert.deepEqual(await views(knownProfile()), {
      'cpu.pb.gz': 'default sample type cpu nanoseconds: on-CPU time; also samples (-sample_index)',
      'stacks.folded': 'samples: on-CPU sample count',
      'flame.html': 'cpu nanoseconds: on-CPU time; the Value menu also has samples',
      'profile.json': 'cpu nanoseconds: on-CPU time',
    });
    assert.equal(readFileSync(join(d, 'stacks.folded'), 'utf8'), renderFolded(knownProfile()));
  });

  it('describes every sample type flamewire writes', () => {
    const p = offCpuProfile();
    assert.deepEqual(p.sampleTypes.map((_, i) => describeSampleType(p, i)), ['samples: on-CPU sample count', 'cpu nanoseconds: on-CPU time', OFF_CPU, WALL]);
    p.sampleTypes.push({ type: 'alloc_space', unit: 'bytes' });
    assert.equal(describeSampleType(p, 4), 'alloc_space bytes');
    assert.throws(() => describeSampleType(p, 5), RangeError);
  });

  it('checks the format before touching the disk', async () => {
    const d = fresh('format-first');
    await assert.rejects(writeOutput(knownProfile(), join(d, 'cpu.svg')), OutputFormatError);
    assert.equal(existsSync(join(d, 'cpu.svg')), false);
  });
});

// A shared directory like /tmp (sticky, world-writable) where uid 65534 (nobody) planted names,
// pointing at a file that must stay untouched. fs.protected_symlinks and protected_fifos may be
// 0 on the machine: the refusals are flamewire's own.
describe('writeOutput in a shared directory', () => {
  const NOBODY = 65534;
  const shared = (name: string) => {
    const d = fresh(name);
    const tmp = join(d, 'tmp');
    mkdirSync(tmp);
    chmodSync(tmp, 0o1777);
    const victim = join(d, 'victim.folded');
    writeFileSync(victim, 'precious\n');
    return { d, tmp, victim };
  };
  const plantLink = (target: string, at: string) => {
    symlinkSync(target, at);
    lchownSync(at, NOBODY, NOBODY);
  };
  const refused = (pattern: RegExp) => (e: unknown) => {
    assert.ok(e instanceof OutputWriteError, String(e));
    assert.match(e.message, pattern);
    assert.equal(e.message.split('\n').length, 1);
    return true;
  };

  it("does not follow someone else's symlink, at the name or on the way to it", async () => {
    const { d, tmp, victim } = shared('planted-link');
    plantLink(victim, join(tmp, 'flame.folded'));
    plantLink(d, join(tmp, 'sub'));
    plantLink(join(d, 'nothing-yet.folded'), join(tmp, 'dangling.folded'));
    await assert.rejects(writeOutput(knownProfile(), join(tmp, 'flame.folded')), refused(/flame\.folded: it is a symlink that uid 65534 made in the shared directory .*; not followed$/));
    await assert.rejects(writeOutput(knownProfile(), join(tmp, 'sub', 'victim.folded')), refused(/sub is a symlink that uid 65534 made/));
    await assert.rejects(writeOutput(knownProfile(), join(tmp, 'dangling.folded')), refused(/not followed/));
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
    assert.equal(existsSync(join(d, 'nothing-yet.folded')), false);
    assert.deepEqual(readdirSync(tmp).sort(), ['dangling.folded', 'flame.folded', 'sub']);
  });

  it("follows a symlink there that it or the directory's owner made", async () => {
    const { tmp, victim } = shared('own-link');
    symlinkSync(victim, join(tmp, 'mine.folded'));
    await writeOutput(knownProfile(), join(tmp, 'mine.folded'));
    assert.equal(readFileSync(victim, 'utf8'), renderFolded(knownProfile()));
    assert.equal(lstatSync(join(tmp, 'mine.folded')).isSymbolicLink(), true);
    // A sticky directory of nobody's own, with nobody's link: the owner's links count.
    writeFileSync(victim, 'precious\n');
    chownSync(tmp, NOBODY, NOBODY);
    plantLink(victim, join(tmp, 'owners.folded'));
    await writeOutput(knownProfile(), join(tmp, 'owners.folded'));
    assert.equal(readFileSync(victim, 'utf8'), renderFolded(knownProfile()));
  });

  it("does not write into someone else's FIFO (it would hang there, or feed their reader)", async () => {
    const { tmp } = shared('planted-fifo');
    const fifo = join(tmp, 'stacks.folded');
    execFileSync('mkfifo', [fifo]);
    chownSync(fifo, NOBODY, NOBODY);
    await assert.rejects(writeOutput(knownProfile(), fifo), refused(/is not a regular file and uid 65534 made it in the shared directory .*; not written into$/));
  });

  it('creates an exclusive file new, mode 0600, and refuses any name already taken, even by a dangling link', async () => {
    const { d, tmp, victim } = shared('exclusive');
    const fresh = join(tmp, 'new.folded');
    await writeOutput(knownProfile(), fresh, { exclusive: true });
    assert.equal(readFileSync(fresh, 'utf8'), renderFolded(knownProfile()));
    assert.equal(statSync(fresh).mode & 0o777, 0o600);
    plantLink(victim, join(tmp, 'link.folded'));
    plantLink(join(d, 'created-through-link'), join(tmp, 'dangling.folded'));
    for (const name of ['link.folded', 'dangling.folded', 'new.folded']) {
      await assert.rejects(writeOutput(knownProfile(), join(tmp, name), { exclusive: true }), refused(/something is already there \(EEXIST\)$/));
    }
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
    assert.equal(existsSync(join(d, 'created-through-link')), false);
    assert.equal(readFileSync(fresh, 'utf8'), renderFolded(knownProfile()));
  });
});

describe('the outputs', () => {
  it('agree on wall time for each leaf of an off-CPU profile, and the folded comment is no stack', () => {
    const profile = offCpuProfile();
    const pp = PprofProfile.decode(gunzipSync(encodePprof(profile)));
    const str = pp.stringTable.strings;
    assert.equal(str[Number(pp.defaultSampleType)], 'wall');
    const fnName = new Map(pp.function.map((f) => [Number(f.id), str[Number(f.name)]!]));
    const leafOf = new Map(pp.location.map((l) => [Number(l.id), fnName.get(Number(l.line[0]!.functionId))!]));
    const pprofWall = new Map<string, number>();
    for (const s of pp.sample) {
      const leaf = leafOf.get(Number(s.locationId[0]))!.replace(/;/g, ':').replace(/\n/g, ' ');
      pprofWall.set(leaf, (pprofWall.get(leaf) ?? 0) + Number(s.value[3]));
    }

    const [comment, ...lines] = renderFolded(profile).trimEnd().split('\n');
    assert.equal(comment, '# flamewire folded stacks: wall nanoseconds (on-CPU + off-CPU time)');
    const foldedWall = new Map<string, number>();
    for (const line of lines) {
      const m = /^(.*) (\d+)$/.exec(line)!;
      const leaf = m[1]!.slice(m[1]!.lastIndexOf(';') + 1).replace(/_\[k\]$/, '');
      foldedWall.set(leaf, (foldedWall.get(leaf) ?? 0) + Number(m[2]));
    }
    assert.deepEqual(foldedWall, pprofWall);

    const ss = toSpeedscope(profile);
    const ssWall = new Map<string, number>();
    for (const p of ss.profiles) {
      p.samples.forEach((stack, i) => {
        const leaf = ss.shared.frames[stack[stack.length - 1]!]!.name.replace(/;/g, ':').replace(/\n/g, ' ');
        ssWall.set(leaf, (ssWall.get(leaf) ?? 0) + p.weights[i]!);
      });
    }
    assert.deepEqual(ssWall, pprofWall);
    assert.equal(pprofWall.get('schedule'), 1_050_000_000);

    // The flame graph's root holds every type's total; wall is CPU plus off-CPU time.
    const tree = buildFlameTree(profile, 't', profile.defaultSampleType);
    const totals = tree.self.map((col) => col.reduce((a, b) => a + b, 0));
    assert.deepEqual(totals, [16, 16 * PERIOD, 1_050_000_000, 16 * PERIOD + 1_050_000_000]);
    assert.equal([...pprofWall.values()].reduce((a, b) => a + b, 0), totals[3]);
  });

  for (const [name, make] of [['the known profile', knownProfile], ['a large profile', () => largeProfile(20_000, 16)]] as const) {
    it(`agree on totals and on each leaf's total for ${name}`, () => {
      const profile = make();
      const pp = PprofProfile.decode(gunzipSync(encodePprof(profile)));
      const str = pp.stringTable.strings;
      const fnName = new Map(pp.function.map((f) => [Number(f.id), str[Number(f.name)]!]));
      const leafOf = new Map(pp.location.map((l) => [Number(l.id), fnName.get(Number(l.line[0]!.functionId))!]));
      const pprofCount = new Map<string, number>();
      const pprofNs = new Map<string, number>();
      for (const s of pp.sample) {
        const leaf = leafOf.get(Number(s.locationId[0]))!;
        pprofCount.set(leaf, (pprofCount.get(leaf) ?? 0) + Number(s.value[0]));
        pprofNs.set(leaf, (pprofNs.get(leaf) ?? 0) + Number(s.value[1]));
      }

      const foldedCount = new Map<string, number>();
      for (const line of renderFolded(profile).trimEnd().split('\n')) {
        const m = /^(.*) (\d+)$/.exec(line)!;
        const leaf = m[1]!.slice(m[1]!.lastIndexOf(';') + 1).replace(/_\[k\]$/, '');
        foldedCount.set(leaf, (foldedCount.get(leaf) ?? 0) + Number(m[2]));
      }
      const sanitized = (m: Map<string, number>) => new Map([...m].map(([k, v]) => [k.replace(/;/g, ':').replace(/\n/g, ' '), v]));
      assert.deepEqual(foldedCount, sanitized(pprofCount));

      const ss = toSpeedscope(profile);
      const ssNs = new Map<string, number>();
      for (const p of ss.profiles) {
        p.samples.forEach((stack, i) => {
          const leaf = ss.shared.frames[stack[stack.length - 1]!]!.name;
          ssNs.set(leaf, (ssNs.get(leaf) ?? 0) + p.weights[i]!);
        });
      }
      assert.deepEqual(ssNs, pprofNs);
      const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
      const modelCount = profile.samples.reduce((a, s) => a + s.values[0]!, 0);
      const modelNs = profile.samples.reduce((a, s) => a + s.values[1]!, 0);
      assert.equal(sum(pprofCount), modelCount);
      assert.equal(sum(foldedCount), modelCount);
      assert.equal(sum(ssNs), modelNs);
      assert.equal(sum(pprofNs), modelNs);
    });
  }
});
