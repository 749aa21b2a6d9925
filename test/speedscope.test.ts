import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it, type TestContext } from 'node:test';
import { Ajv } from 'ajv';
import { renderFolded } from '../src/output/folded.js';
import { renderSpeedscope, toSpeedscope, type SpeedscopeFile } from '../src/output/speedscope.js';
import { chromium, type Page } from 'playwright-core';
import { knownProfile, largeProfile, offCpuProfile, PERIOD, scalingRatio, TOTAL_SAMPLES } from './fixtures/output-profile.js';
import { workDir } from './helpers.js';

const WALL = 'wall nanoseconds (on-CPU + off-CPU time)';

// The schema speedscope itself publishes, from the devDependency (not a copy of ours).
const require = createRequire(import.meta.url);
const schema = JSON.parse(readFileSync(require.resolve('speedscope/dist/release/file-format-schema.json'), 'utf8')) as object;
const validate = new Ajv({ allErrors: true }).compile(schema);

/** Chromium on PATH, and a file written for the real speedscope app; undefined (the test skipped) without chromium. */
function forSpeedscope(t: TestContext, name: string, text: string): { exe: string; file: string } | undefined {
  const exe = findChromium();
  if (exe === undefined) {
    t.skip('no chromium on PATH');
    return undefined;
  }
  const file = join(workDir('speedscope'), name);
  writeFileSync(file, text);
  return { exe, file };
}

function findChromium(): string | undefined {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
      if (d !== '' && existsSync(join(d, name))) return join(d, name);
    }
  }
  return undefined;
}

/**
 * Loads a file into the real speedscope app (from the devDependency), lets `read` take what it
 * needs from the page once the import is under way, and returns that with the page's log.
 */
async function inSpeedscope<T extends object>(executablePath: string, file: string, read: (page: Page) => Promise<T>): Promise<T & { log: string[] }> {
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const log: string[] = [];
    page.on('console', (m) => log.push(m.text()));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    await page.goto(pathToFileURL(require.resolve('speedscope/dist/release/index.html')).href);
    await page.setInputFiles('input[type=file]', file);
    return { ...(await read(page)), log };
  } finally {
    await browser.close();
  }
}

/** Loads a file into the real speedscope app; returns its title. */
function openInSpeedscope(executablePath: string, file: string): Promise<{ title: string; log: string[] }> {
  return inSpeedscope(executablePath, file, async (page) => {
    // The toolbar shows "<profile name> (i/n)" once the import succeeded.
    const title = page.getByText(/\(\d+\/\d+\)$/);
    await title.first().waitFor({ timeout: 30_000 }).catch(() => undefined);
    return { title: await title.first().locator('..').innerText().catch(() => '') };
  });
}

/** Imports a file into the real speedscope app and returns its log and the Sandwich view's table as text. */
function sandwichInSpeedscope(executablePath: string, file: string): Promise<{ table: string; log: string[] }> {
  return inSpeedscope(executablePath, file, async (page) => {
    // The view buttons appear once the import succeeded.
    await page.getByText('Sandwich').click({ timeout: 30_000 });
    await page.getByText('Symbol Name').waitFor({ timeout: 30_000 });
    return { table: await page.locator('body').innerText() };
  });
}

function assertValid(file: unknown): void {
  assert.ok(validate(file), JSON.stringify(validate.errors));
}

function stackNames(file: SpeedscopeFile, profile: number): string[] {
  const p = file.profiles[profile]!;
  return p.samples.map((s, i) => `${s.map((f) => file.shared.frames[f]!.name).join(' > ')} = ${p.weights[i]}`);
}

describe('speedscope', () => {
  it('is valid against the speedscope file-format schema', () => {
    const text = renderSpeedscope(knownProfile());
    assertValid(JSON.parse(text));
    const empty = knownProfile();
    empty.samples = [];
    assertValid(toSpeedscope(empty));
    assertValid(toSpeedscope(knownProfile(), { sampleType: 'samples' }));
  });

  it('opens in the real speedscope app', async (t) => {
    const known = forSpeedscope(t, 'known.speedscope.json', renderSpeedscope(knownProfile()));
    if (known === undefined) return;
    const { title, log } = await openInSpeedscope(known.exe, known.file);
    assert.equal(title, 'myserver (pid 100) (1/2)', log.join('\n'));
    assert.ok(log.includes('Importing as speedscope json file'), log.join('\n'));
    assert.deepEqual(log.filter((l) => /error/i.test(l)), []);
  });

  it('has one sampled profile per process, heaviest first, weighted in cpu nanoseconds', () => {
    const file = toSpeedscope(knownProfile());
    assert.equal(file.$schema, 'https://www.speedscope.app/file-format-schema.json');
    assert.equal(file.name, 'flamewire: frequency=99Hz, lost=0');
    assert.deepEqual(file.profiles.map((p) => [p.name, p.type, p.unit, p.startValue, p.endValue]), [
      ['myserver (pid 100)', 'sampled', 'nanoseconds', 0, 12 * PERIOD],
      ['other (pid 200)', 'sampled', 'nanoseconds', 0, 4 * PERIOD],
    ]);
    let total = 0;
    for (const p of file.profiles) {
      const sum = p.weights.reduce((a, b) => a + b, 0);
      assert.equal(sum, p.endValue);
      total += sum;
    }
    assert.equal(total, TOTAL_SAMPLES * PERIOD);
  });

  it('writes stacks root first, merged and ordered by frame names', () => {
    const file = toSpeedscope(knownProfile());
    assert.deepEqual(stackNames(file, 0), [
      `main > handle_request > memcpy = ${2 * PERIOD}`,
      `main > handle_request > parse_header = ${4 * PERIOD}`,
      `main > handle_request > write > entry_SYSCALL_64 > ksys_write = ${5 * PERIOD}`,
      `main > odd;name\nwith newline = ${PERIOD}`,
    ]);
    assert.deepEqual(stackNames(file, 1), [`[unknown] = ${4 * PERIOD}`]);
  });

  it('has one frame per function, named by source file, else module', () => {
    const frames = toSpeedscope(knownProfile()).shared.frames;
    const byName = (n: string) => frames.filter((f) => f.name === n);
    assert.deepEqual(byName('parse_header'), [{ name: 'parse_header', file: 'parse.h' }]);
    // Two call sites, one function: one box in speedscope.
    assert.deepEqual(byName('handle_request'), [{ name: 'handle_request', file: 'server.c' }]);
    assert.deepEqual(byName('memcpy'), [{ name: 'memcpy', file: '/usr/lib/x86_64-linux-gnu/libc.so.6' }]);
    assert.deepEqual(byName('ksys_write'), [{ name: 'ksys_write', file: '[kernel.kallsyms]' }]);
    assert.deepEqual(byName('[unknown]'), [{ name: '[unknown]' }]);
  });

  it('falls back to sample counts when asked', () => {
    const file = toSpeedscope(knownProfile(), { sampleType: 'samples' });
    assert.deepEqual(file.profiles.map((p) => [p.unit, p.endValue]), [['none', 12], ['none', 4]]);
  });

  it('weights a profile with off-CPU time by wall nanoseconds and names the view', () => {
    const file = toSpeedscope(offCpuProfile());
    assertValid(file);
    assert.equal(file.name, `flamewire — ${WALL}: frequency=99Hz, lost=0`);
    assert.deepEqual(file.profiles.map((p) => [p.name, p.unit, p.endValue]), [
      [`myserver (pid 100) — ${WALL}`, 'nanoseconds', 12 * PERIOD + 1_000_000_000],
      [`other (pid 200) — ${WALL}`, 'nanoseconds', 4 * PERIOD + 50_000_000],
    ]);
    assert.deepEqual(stackNames(file, 0), [
      `main > handle_request > memcpy = ${2 * PERIOD}`,
      `main > handle_request > parse_header = ${4 * PERIOD}`,
      'main > handle_request > pthread_cond_wait > futex_wait > schedule = 700000000',
      `main > handle_request > write > entry_SYSCALL_64 > ksys_write = ${5 * PERIOD}`,
      'main > handle_request > write > entry_SYSCALL_64 > ksys_write > schedule = 300000000',
      `main > odd;name\nwith newline = ${PERIOD}`,
    ]);
    assert.equal(renderSpeedscope(offCpuProfile(), { sampleType: 'wall' }), JSON.stringify(file));
  });

  it('weights an off-CPU profile by any chosen sample type, named in every profile', () => {
    const off = toSpeedscope(offCpuProfile(), { sampleType: 'off_cpu' });
    assertValid(off);
    const OFF = 'off_cpu nanoseconds (off-CPU time: blocked or waiting for a CPU)';
    assert.deepEqual(off.profiles.map((p) => [p.name, p.unit, p.endValue]), [
      [`myserver (pid 100) — ${OFF}`, 'nanoseconds', 1_000_000_000],
      [`other (pid 200) — ${OFF}`, 'nanoseconds', 50_000_000],
    ]);
    assert.deepEqual(stackNames(off, 1), ['[unknown] > schedule = 50000000']);

    const cpu = toSpeedscope(offCpuProfile(), { sampleType: 'cpu' });
    const plain = toSpeedscope(knownProfile());
    assert.deepEqual(cpu.profiles.map((p) => p.name), ['myserver (pid 100) — cpu nanoseconds (on-CPU time)', 'other (pid 200) — cpu nanoseconds (on-CPU time)']);
    assert.deepEqual(cpu.profiles.map((p) => stackNames(cpu, cpu.profiles.indexOf(p))), plain.profiles.map((_, i) => stackNames(plain, i)));

    const counts = toSpeedscope(offCpuProfile(), { sampleType: 0 });
    assert.deepEqual(counts.profiles.map((p) => [p.name, p.unit, p.endValue]), [
      ['myserver (pid 100) — samples (on-CPU sample count)', 'none', 12],
      ['other (pid 200) — samples (on-CPU sample count)', 'none', 4],
    ]);
    const empty = offCpuProfile();
    empty.samples = [];
    assert.deepEqual(toSpeedscope(empty).profiles.map((p) => [p.name, p.unit]), [[`no samples — ${WALL}`, 'nanoseconds']]);
  });

  it('opens an off-CPU profile, and its folded stacks with the comment line, in the real speedscope app', async (t) => {
    const json = forSpeedscope(t, 'offcpu.speedscope.json', renderSpeedscope(offCpuProfile()));
    if (json === undefined) return;
    const opened = await openInSpeedscope(json.exe, json.file);
    assert.equal(opened.title, `myserver (pid 100) — ${WALL} (1/2)`, opened.log.join('\n'));
    assert.deepEqual(opened.log.filter((l) => /error/i.test(l)), []);

    // Detected by content, not by name: the comment line must not make it look like anything
    // else, and it is no frame. Totals are in wall nanoseconds (speedscope groups digits).
    const folded = forSpeedscope(t, 'offcpu-stacks.txt', renderFolded(offCpuProfile()))!;
    const { table, log } = await sandwichInSpeedscope(folded.exe, folded.file);
    assert.ok(log.includes('Importing as collapsed stack format'), log.join('\n'));
    const group = (n: number) => n.toLocaleString('en-US');
    assert.match(table, /^1,050,000,000 \(\d+%\)\s+1,050,000,000 \(\d+%\)\s+schedule_\[k\]$/m);
    assert.match(table, new RegExp(`^${group(12 * PERIOD + 1_000_000_000)} \\(\\d+%\\)\\s+0 \\(<0\\.01%\\)\\s+myserver$`, 'm'));
    assert.doesNotMatch(table, /flamewire|#/);
    assert.deepEqual(log.filter((l) => /error/i.test(l)), []);
  });

  it('renders 100k distinct stacks in time that grows linearly', () => {
    const ratio = scalingRatio((p) => renderSpeedscope(p));
    assert.ok(ratio < 9, `100k stacks took ${ratio.toFixed(1)}x the time of 25k`);
    const big = toSpeedscope(largeProfile(100_000, 24));
    assert.equal(big.profiles[0]!.samples.length, 100_000);
    assertValid(big);
  });
});
