import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { renderSpeedscope, toSpeedscope, type SpeedscopeFile } from '../src/output/speedscope.js';
import { chromium } from 'playwright-core';
import { knownProfile, largeProfile, PERIOD, scalingRatio, TOTAL_SAMPLES } from './fixtures/output-profile.js';
import { workDir } from './helpers.js';

// The schema speedscope itself publishes, from the devDependency (not a copy of ours).
const require = createRequire(import.meta.url);
const schema = JSON.parse(readFileSync(require.resolve('speedscope/dist/release/file-format-schema.json'), 'utf8')) as object;
const validate = new Ajv({ allErrors: true }).compile(schema);

function findChromium(): string | undefined {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
      if (d !== '' && existsSync(join(d, name))) return join(d, name);
    }
  }
  return undefined;
}

/** Loads a file into the real speedscope app (from the devDependency); returns its title. */
async function openInSpeedscope(executablePath: string, file: string): Promise<{ title: string; log: string[] }> {
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const log: string[] = [];
    page.on('console', (m) => log.push(m.text()));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    await page.goto(pathToFileURL(require.resolve('speedscope/dist/release/index.html')).href);
    await page.setInputFiles('input[type=file]', file);
    // The toolbar shows "<profile name> (i/n)" once the import succeeded.
    const title = page.getByText(/\(\d+\/\d+\)$/);
    await title.first().waitFor({ timeout: 30_000 }).catch(() => undefined);
    return { title: await title.first().locator('..').innerText().catch(() => ''), log };
  } finally {
    await browser.close();
  }
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
    const exe = findChromium();
    if (exe === undefined) return t.skip('no chromium on PATH');
    const dir = workDir('speedscope');
    const file = join(dir, 'known.speedscope.json');
    writeFileSync(file, renderSpeedscope(knownProfile()));
    const { title, log } = await openInSpeedscope(exe, file);
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

  it('renders 100k distinct stacks in time that grows linearly', () => {
    const ratio = scalingRatio((p) => renderSpeedscope(p));
    assert.ok(ratio < 9, `100k stacks took ${ratio.toFixed(1)}x the time of 25k`);
    const big = toSpeedscope(largeProfile(100_000, 24));
    assert.equal(big.profiles[0]!.samples.length, 100_000);
    assertValid(big);
  });
});
