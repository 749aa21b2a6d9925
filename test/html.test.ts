// The HTML flame graph in a real headless Chromium (Debian's package, driven by playwright-core):
// loaded from file://, drawn, searched, zoomed and hovered the way a person would.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { buildFlameTree, type FlameMeta } from '../src/output/flamegraph-page/flame-tree.js';
import { renderHtml } from '../src/output/html.js';
import type { Frame, Profile, Sample } from '../src/profile-model.js';
import { withOffCpuTypes } from './fixtures/output-profile.js';
import { repoRoot, workDir } from './helpers.js';

const CHROMIUM = process.env.FLAMEWIRE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WEIRD = '</script><script>window.__pwned=1</script> <&"\'> operator<<';
const TITLE = 'flame <b>&"\'</script> test';
const COMMENT = 'dropped 3 samples: <img src=x onerror="window.__pwned=2"> & ring buffer full';

interface Visible { name: string; kind: string; depth: number; x: number; y: number; width: number; height: number; value: number; matched: boolean }
interface Hook {
  ready: boolean; error: string | null; frameCount: number; firstRenderMs: number; decodeMs: number;
  visibleFrames(): Visible[];
  search(q: string): { value: number; percent: number; count: number };
  state(): { zoom: string | null; zoomDepth: number; sampleType: number; total: number };
}
declare const window: { __flamewire: Hook; __pwned?: number; devicePixelRatio: number };
declare const document: { title: string; getElementById(id: string): { textContent: string | null } & Record<string, unknown> };

function frame(name: string, kind: Frame['kind'], file?: string, line?: number, inlined?: boolean): Frame {
  return { name, kind, mapping: -1, address: 0n, file, line, inlined };
}

const CPU = 10_000_000; // ns per sample at 100 Hz

/**
 * server [42]: main → handleRequest → parseJSON (60), main → handleRequest → write → sys_write (30),
 * main → WEIRD (10, but 90 ms each on the cpu type); worker-thread [7]: worker_loop → mallocgc (25).
 */
function smallProfile(): Profile {
  const frames = [
    frame('main', 'native', 'main.c', 10),
    frame('handleRequest', 'go', 'server.go', 20),
    frame('parseJSON', 'go', 'json.go', 42),
    frame('write', 'native'),
    frame('sys_write', 'kernel'),
    frame(WEIRD, 'native'),
    frame('runtime.mallocgc', 'go', 'malloc.go', 100, true),
    frame('worker_loop', 'native'),
    frame('parseJSON', 'go', 'json.go', 42), // a second address of the same function: merges
  ];
  const server = (tid: number) => ({ labels: { 'process.name': 'server', 'thread.name': `t${tid}` }, numLabels: { 'process.pid': 42, 'thread.id': tid } });
  const s = (stack: number[], n: number, cpu: number, who: Pick<Sample, 'labels' | 'numLabels'>): Sample => ({ stack, values: [n, cpu], ...who });
  return {
    sampleTypes: [{ type: 'samples', unit: 'count' }, { type: 'cpu', unit: 'nanoseconds' }],
    defaultSampleType: 0,
    periodType: { type: 'cpu', unit: 'nanoseconds' },
    period: CPU,
    timeNanos: 1_700_000_000_000_000_000n,
    durationNanos: 10_000_000_000n,
    frames,
    mappings: [],
    samples: [
      s([2, 1, 0], 30, 30 * CPU, server(43)),
      s([8, 1, 0], 30, 30 * CPU, server(44)),
      s([4, 3, 1, 0], 30, 30 * CPU, server(43)),
      s([5, 0], 10, 90 * CPU, server(42)),
      s([6, 7], 25, 25 * CPU, { labels: { 'thread.name': 'worker-thread' }, numLabels: { 'process.pid': 7, 'thread.id': 7 } }),
    ],
    comments: [COMMENT, 'frequency 100 Hz'],
  };
}

/**
 * smallProfile() as recorded with --off-cpu (profile-builder.ts): four sample types, wall shown
 * first; on-CPU samples carry [n, cpu, 0, cpu]. Off-CPU: server blocks 1 s in sys_write
 * (uninterruptible), worker-thread sleeps 0.5 s in worker_loop. CPU 2.05 s, wall 3.55 s.
 */
function offCpuProfile(): Profile {
  const p = withOffCpuTypes(smallProfile());
  const schedule = p.frames.length;
  p.frames.push(frame('schedule', 'kernel'));
  p.samples.push(
    { stack: [schedule, 4, 3, 1, 0], values: [0, 0, 1e9, 1e9], labels: { 'process.name': 'server', 'thread.name': 't43', 'thread.state': 'uninterruptible' }, numLabels: { 'process.pid': 42, 'thread.id': 43 } },
    { stack: [schedule, 7], values: [0, 0, 5e8, 5e8], labels: { 'thread.name': 'worker-thread', 'thread.state': 'sleeping' }, numLabels: { 'process.pid': 7, 'thread.id': 7 } },
  );
  return p;
}

/** The JSON part of the page's payload (see encodeFlameTree), read back from the HTML. */
function payloadMeta(html: string): FlameMeta {
  const b64 = /<script id="flamewire-data" type="application\/octet-stream">([^<]*)<\/script>/.exec(html)![1]!;
  const b = gunzipSync(Buffer.from(b64, 'base64'));
  assert.equal(b.subarray(0, 4).toString('latin1'), 'FWG1');
  let pos = 4, len = 0, mul = 1, x: number;
  do {
    x = b[pos++]!;
    len += (x & 0x7f) * mul;
    mul *= 128;
  } while (x & 0x80);
  return JSON.parse(b.subarray(pos, pos + len).toString('utf8')) as FlameMeta;
}

/** Deterministic synthetic profile: `count` distinct stacks of depth 16..24 sharing prefixes. */
function bigProfile(count: number): Profile {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const kinds: Frame['kind'][] = ['native', 'go', 'kernel'];
  const frames: Frame[] = [];
  for (let i = 0; i < 4000; i++) frames.push(frame(`pkg${i % 37}.func_${i}_${'x'.repeat(i % 23)}`, kinds[i % 3]!, `src/file${i % 100}.go`, i));
  const seen = new Set<string>();
  const samples: Sample[] = [];
  while (samples.length < count) {
    const depth = 16 + Math.floor(rand() * 9);
    const rootFirst: number[] = [];
    for (let d = 0; d < depth; d++) rootFirst.push(Math.floor(rand() ** 2 * Math.min(frames.length, 2 + 2 ** d)));
    const key = rootFirst.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    const n = 1 + Math.floor(rand() * 5);
    const pid = 100 + Math.floor(rand() * 4);
    samples.push({ stack: rootFirst.reverse(), values: [n, n * CPU], labels: { 'process.name': `proc${pid}` }, numLabels: { 'process.pid': pid } });
  }
  return {
    sampleTypes: [{ type: 'samples', unit: 'count' }, { type: 'cpu', unit: 'nanoseconds' }],
    defaultSampleType: 0, periodType: { type: 'cpu', unit: 'nanoseconds' }, period: CPU,
    timeNanos: 0n, durationNanos: 60_000_000_000n, frames, mappings: [], samples, comments: ['synthetic'],
  };
}

describe('flame graph tree', () => {
  it('merges samples by process and function, root to leaf', () => {
    const tree = buildFlameTree(smallProfile(), 't', 0);
    const m = tree.meta;
    const names = Array.from(tree.func, (f) => m.strings[m.funcs[f * 5]!]);
    // Preorder, children sorted by name; both parseJSON addresses are one node.
    assert.deepEqual(names, ['all', 'server [42]', 'main', WEIRD, 'handleRequest', 'parseJSON', 'write', 'sys_write',
      'worker-thread [7]', 'worker_loop', 'runtime.mallocgc']);
    assert.deepEqual(Array.from(tree.depth), [0, 1, 2, 3, 3, 4, 4, 5, 1, 2, 3]);
    assert.deepEqual(Array.from(tree.self[0]!), [0, 0, 0, 10, 0, 60, 0, 30, 0, 0, 25]);
    assert.deepEqual(tree.self[1]![3], 90 * CPU);
  });

  it('keeps names out of the HTML text and rejects a bad sample type', () => {
    const html = renderHtml(smallProfile(), { title: TITLE });
    assert.ok(!html.includes('__pwned'), 'frame names and comments travel only in the payload');
    assert.ok(html.includes('<title>flame &#60;b&#62;&#38;&#34;&#39;&#60;/script&#62; test</title>'));
    assert.equal(html.match(/<script/g)?.length, 2);
    assert.ok(!/https?:\/\//.test(html.replace(/<script id="flamewire-data"[^>]*>[^<]*<\/script>/, '')), 'no network references');
    assert.throws(() => renderHtml(smallProfile(), { sampleType: 2 }), RangeError);
  });

  it('names the sample types of an off-CPU profile for the page and starts on wall time', () => {
    const meta = payloadMeta(renderHtml(offCpuProfile()));
    assert.deepEqual(meta.sampleTypes, [
      { type: 'samples', unit: 'count', label: 'Samples' },
      { type: 'cpu', unit: 'nanoseconds', label: 'CPU' },
      { type: 'off_cpu', unit: 'nanoseconds', label: 'Off-CPU' },
      { type: 'wall', unit: 'nanoseconds', label: 'Wall (CPU + off-CPU)' },
    ]);
    assert.equal(meta.defaultType, 3);
    assert.equal(payloadMeta(renderHtml(offCpuProfile(), { sampleType: 2 })).defaultType, 2);
    // On-CPU profiles keep the bare names the page shows as "cpu (nanoseconds)".
    assert.deepEqual(payloadMeta(renderHtml(smallProfile())).sampleTypes, [{ type: 'samples', unit: 'count' }, { type: 'cpu', unit: 'nanoseconds' }]);
    const tree = buildFlameTree(offCpuProfile(), 't', 3);
    const names = Array.from(tree.func, (f) => tree.meta.strings[tree.meta.funcs[f * 5]!]);
    const sysWrite = names.indexOf('sys_write');
    assert.deepEqual(tree.self.map((col) => col[sysWrite]), [30, 30 * CPU, 0, 30 * CPU]);
    assert.deepEqual(tree.self.map((col) => col[sysWrite + 1]), [0, 0, 1e9, 1e9], 'schedule under sys_write');
  });
});

describe('html flame graph in chromium', () => {
  const dir = workDir('html');
  let skipReason = '';
  let context: BrowserContext | undefined;
  let userDataDir = '';

  before(async () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'ensure-chromium.mjs')], { encoding: 'utf8' });
    if (!existsSync(CHROMIUM)) {
      if (process.getuid?.() !== 0) {
        skipReason = `chromium is not installed and cannot be installed without root; ${r.stderr.trim().replace(/\s*\n\s*/g, ' ')}`;
        return;
      }
      throw new Error(`scripts/ensure-chromium.mjs could not install chromium:\n${r.stderr}`);
    }
    userDataDir = mkdtempSync(join(dir, 'profile-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1200, height: 700 },
    });
  });

  after(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  /** Opens the rendered HTML from file:// and waits for the first render; fails on any page error. */
  async function open(t: TestContext, name: string, html: string): Promise<{ page: Page; errors: string[] } | undefined> {
    if (skipReason) {
      t.skip(skipReason);
      return undefined;
    }
    const file = join(dir, name);
    writeFileSync(file, html);
    const page = await context!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) errors.push(`network request: ${r.url()}`); });
    await page.goto(pathToFileURL(file).href);
    await page.waitForFunction(() => window.__flamewire && (window.__flamewire.ready || window.__flamewire.error !== null));
    const error = await page.evaluate(() => window.__flamewire.error);
    assert.equal(error, null);
    return { page, errors };
  }

  const visible = (page: Page) => page.evaluate(() => window.__flamewire.visibleFrames());
  const byName = (frames: Visible[], name: string) => {
    const f = frames.find((v) => v.name === name);
    assert.ok(f, `frame ${name} is drawn`);
    return f;
  };
  /** The canvas pixel just inside a frame's top-left corner (labels start further right). */
  const pixel = (page: Page, f: Visible) =>
    page.evaluate(([x, y]) => {
      const c = document.getElementById('flame') as unknown as { getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
      const dpr = window.devicePixelRatio;
      return Array.from(c.getContext('2d').getImageData(Math.floor((x! + 1.5) * dpr), Math.floor((y! + 1.5) * dpr), 1, 1).data);
    }, [f.x, f.y]);
  const click = async (page: Page, f: Visible) => {
    const box = (await page.locator('#flame').boundingBox())!;
    await page.mouse.click(box.x + f.x + Math.min(f.width / 2, 20), box.y + f.y + f.height / 2);
  };

  it('draws every frame with kind colours and shows title, totals and comments as text', async (t) => {
    const o = await open(t, 'small.html', renderHtml(smallProfile(), { title: TITLE }));
    if (!o) return;
    const { page, errors } = o;
    const hook = await page.evaluate(() => ({ frameCount: window.__flamewire.frameCount, pwned: window.__pwned }));
    assert.equal(hook.frameCount, 11);
    assert.equal(hook.pwned, undefined, 'no markup from names or comments ran');
    const frames = await visible(page);
    assert.deepEqual(frames.map((f) => f.name).sort(), ['all', 'server [42]', 'main', WEIRD, 'handleRequest', 'parseJSON',
      'write', 'sys_write', 'worker-thread [7]', 'worker_loop', 'runtime.mallocgc'].sort());
    const width = (await page.locator('#flame').boundingBox())!.width;
    const all = byName(frames, 'all');
    assert.ok(Math.abs(all.width - width) < 1, 'the root spans the canvas');
    assert.ok(Math.abs(byName(frames, 'parseJSON').width / all.width - 60 / 125) < 0.01, 'width follows value');
    // Depth grows downwards (icicle).
    assert.ok(byName(frames, 'parseJSON').y > byName(frames, 'main').y);
    const [gr, gg, gb] = await pixel(page, byName(frames, 'parseJSON'));
    assert.ok(gb! > 180 && gr! < 140, `go frames are aqua, got ${gr},${gg},${gb}`);
    const [kr, kg, kb] = await pixel(page, byName(frames, 'sys_write'));
    assert.ok(kr! > 220 && kg! > 120 && kb! < 80, `kernel frames are orange, got ${kr},${kg},${kb}`);
    const [nr, ng, nb] = await pixel(page, byName(frames, 'main'));
    assert.ok(nr! > 200 && ng! < 140 && nb! < 100, `native frames are red, got ${nr},${ng},${nb}`);

    assert.equal(await page.title(), TITLE);
    assert.equal(await page.locator('#title').textContent(), TITLE);
    assert.match((await page.locator('#summary').textContent())!, /Total: 125 samples · 2\.05 s · duration 10 s · started 2023-11-14 22:13:20 UTC$/);
    assert.deepEqual(await page.locator('#comments li').allTextContents(), [COMMENT, 'frequency 100 Hz']);
    await page.screenshot({ path: join(dir, 'small.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('highlights search matches and shows the matched share of the total', async (t) => {
    const o = await open(t, 'search.html', renderHtml(smallProfile(), { title: 'search' }));
    if (!o) return;
    const { page, errors } = o;
    await page.locator('#search').fill('parse');
    assert.equal(await page.locator('#match').textContent(), 'Matched: 48.00% (60 samples)');
    let frames = await visible(page);
    assert.deepEqual(frames.filter((f) => f.matched).map((f) => f.name), ['parseJSON']);
    const [r, g, b] = await pixel(page, byName(frames, 'parseJSON'));
    assert.ok(r! > 200 && g! < 100 && b! > 200, `matches are magenta, got ${r},${g},${b}`);

    // A regex; nested matches count once (write contains sys_write).
    await page.locator('#search').fill('^(sys_)?write$');
    assert.equal(await page.locator('#match').textContent(), 'Matched: 24.00% (30 samples)');
    frames = await visible(page);
    assert.deepEqual(frames.filter((f) => f.matched).map((f) => f.name).sort(), ['sys_write', 'write']);

    // Not a valid regex: matched as text, so the name with markup is found literally.
    await page.locator('#search').fill('</script><script>');
    assert.equal(await page.locator('#match').textContent(), 'Matched: 8.00% (10 samples)');

    // The percentage follows the selected sample type: 90 ms × 10 of 2.05 s cpu.
    await page.locator('#type').selectOption({ label: 'cpu (nanoseconds)' });
    assert.equal(await page.locator('#match').textContent(), 'Matched: 43.90% (900.00 ms)');
    const cpuFrames = await visible(page);
    assert.ok(Math.abs(byName(cpuFrames, WEIRD).width / byName(cpuFrames, 'all').width - 900 / 2050) < 0.01);

    await page.locator('#search').fill('');
    assert.equal(await page.locator('#match').textContent(), '');
    assert.equal((await visible(page)).filter((f) => f.matched).length, 0);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('zooms into a clicked frame, and back up and out', async (t) => {
    const o = await open(t, 'zoom.html', renderHtml(smallProfile(), { title: 'zoom' }));
    if (!o) return;
    const { page, errors } = o;
    const width = (await page.locator('#flame').boundingBox())!.width;
    await click(page, byName(await visible(page), 'handleRequest'));
    let frames = await visible(page);
    assert.equal((await page.evaluate(() => window.__flamewire.state())).zoom, 'handleRequest');
    assert.ok(Math.abs(byName(frames, 'handleRequest').width - width) < 1, 'the clicked frame is full width');
    assert.ok(Math.abs(byName(frames, 'parseJSON').width / width - 60 / 90) < 0.01, 'children scale to the zoomed frame');
    assert.ok(!frames.some((f) => f.name === WEIRD || f.name === 'worker_loop'), 'frames outside the zoom are hidden');
    assert.ok(Math.abs(byName(frames, 'main').width - width) < 1, 'ancestors stay visible');
    assert.match((await page.locator('#crumbs').textContent())!, /server \[42\] › main › handleRequest/);
    await page.screenshot({ path: join(dir, 'zoomed.png'), fullPage: true });

    await page.locator('#up').click();
    assert.equal((await page.evaluate(() => window.__flamewire.state())).zoom, 'main');
    await page.locator('#reset').click();
    frames = await visible(page);
    assert.equal((await page.evaluate(() => window.__flamewire.state())).zoom, 'all');
    assert.ok(frames.some((f) => f.name === 'worker_loop'));
    assert.ok(await page.locator('#reset').isDisabled());
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('shows a tooltip with value, shares of total and parent, and file:line', async (t) => {
    const o = await open(t, 'hover.html', renderHtml(smallProfile(), { title: 'hover' }));
    if (!o) return;
    const { page, errors } = o;
    const f = byName(await visible(page), 'parseJSON');
    const box = (await page.locator('#flame').boundingBox())!;
    await page.mouse.move(box.x + f.x + f.width / 2, box.y + f.y + f.height / 2);
    const tip = page.locator('#tip');
    assert.ok(await tip.isVisible());
    const text = (await tip.textContent())!;
    for (const want of ['parseJSON', 'go frame', '60 samples', '48.00% of total', '66.67% of parent', 'cpu: 600.00 ms', 'json.go:42']) {
      assert.ok(text.includes(want), `tooltip has "${want}": ${text}`);
    }
    const m = byName(await visible(page), 'runtime.mallocgc');
    await page.mouse.move(box.x + m.x + m.width / 2, box.y + m.y + m.height / 2);
    assert.match((await tip.textContent())!, /go frame \(inlined\)[\s\S]*malloc\.go:100/);
    await page.mouse.move(box.x + 5, box.y + box.height + 40);
    assert.ok(!(await tip.isVisible()));
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('switches an off-CPU profile between wall, off-CPU, CPU and samples, with times in summary and tooltip', async (t) => {
    const o = await open(t, 'offcpu.html', renderHtml(offCpuProfile(), { title: 'off-CPU' }));
    if (!o) return;
    const { page, errors } = o;
    assert.deepEqual(await page.locator('#type option').allTextContents(), ['Samples', 'CPU', 'Off-CPU', 'Wall (CPU + off-CPU)']);
    assert.equal(await page.locator('#type').inputValue(), '3');
    const state = () => page.evaluate(() => window.__flamewire.state());
    assert.deepEqual([(await state()).sampleType, (await state()).total], [3, 3.55e9]);
    assert.match((await page.locator('#summary').textContent())!,
      /^Total: 125 samples · CPU 2\.05 s · Off-CPU 1\.50 s · Wall \(CPU \+ off-CPU\) 3\.55 s · duration 10 s · /);

    // Wall: sys_write is 300 ms on the CPU plus 1 s blocked below it.
    let frames = await visible(page);
    const ratio = (name: string) => byName(frames, name).width / byName(frames, 'all').width;
    assert.ok(Math.abs(ratio('sys_write') - 1.3 / 3.55) < 0.01);
    assert.ok(Math.abs(ratio('parseJSON') - 0.6 / 3.55) < 0.01);
    const f = byName(frames, 'sys_write');
    const box = (await page.locator('#flame').boundingBox())!;
    await page.mouse.move(box.x + f.x + f.width / 2, box.y + f.y + f.height / 2);
    const tip = (await page.locator('#tip').textContent())!;
    for (const want of ['Wall (CPU + off-CPU): 1.30 s \u2014 36.62% of total', 'self: 300.00 ms', 'Samples: 30 samples', 'CPU: 300.00 ms', 'Off-CPU: 1.00 s']) {
      assert.ok(tip.includes(want), `tooltip has "${want}": ${tip}`);
    }

    // Zoomed into a frame that has no off-CPU time, switching to Off-CPU zooms out.
    await click(page, byName(frames, 'parseJSON'));
    assert.equal((await state()).zoom, 'parseJSON');
    await page.locator('#type').selectOption({ label: 'Off-CPU' });
    assert.deepEqual([(await state()).sampleType, (await state()).zoom, (await state()).total], [2, 'all', 1.5e9]);
    frames = await visible(page);
    assert.ok(!frames.some((v) => v.name === 'parseJSON' || v.name === WEIRD), 'on-CPU-only frames are gone');
    assert.ok(Math.abs(ratio('sys_write') - 1 / 1.5) < 0.01);
    assert.ok(Math.abs(ratio('worker_loop') - 0.5 / 1.5) < 0.01);
    await page.locator('#search').fill('^schedule$');
    assert.equal(await page.locator('#match').textContent(), 'Matched: 100.00% (1.50 s)');
    await page.locator('#search').fill('');

    await page.locator('#type').selectOption({ label: 'CPU' });
    frames = await visible(page);
    assert.equal((await state()).total, 2.05e9);
    assert.ok(!frames.some((v) => v.name === 'schedule'), 'off-CPU-only frames are gone');
    assert.ok(Math.abs(ratio('parseJSON') - 0.6 / 2.05) < 0.01);
    await page.locator('#type').selectOption({ label: 'Samples' });
    assert.equal((await state()).total, 125);
    await page.locator('#type').selectOption({ label: 'Wall (CPU + off-CPU)' });
    assert.equal((await state()).total, 3.55e9);
    await page.screenshot({ path: join(dir, 'offcpu.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('says so when the profile has no samples', async (t) => {
    const empty: Profile = { ...smallProfile(), samples: [], comments: [] };
    const o = await open(t, 'empty.html', renderHtml(empty));
    if (!o) return;
    const { page, errors } = o;
    assert.equal(await page.locator('#status').textContent(), 'The profile has no samples.');
    assert.equal(await page.evaluate(() => window.__flamewire.frameCount), 1);
    assert.deepEqual(await visible(page), []);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('loads and renders 100k distinct stacks (measured, not asserted)', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const profile = bigProfile(100_000);
    let t0 = performance.now();
    const html = renderHtml(profile, { title: '100k distinct stacks' });
    const renderMs = performance.now() - t0;
    t0 = performance.now();
    const o = await open(t, 'big.html', html);
    if (!o) return;
    const loadMs = performance.now() - t0;
    const { page, errors } = o;
    const hook = await page.evaluate(() => ({
      frameCount: window.__flamewire.frameCount, firstRenderMs: window.__flamewire.firstRenderMs, decodeMs: window.__flamewire.decodeMs,
    }));
    const frames = await visible(page);
    assert.ok(hook.frameCount > 100_000, 'every distinct stack has its own leaf');
    assert.ok(frames.length > 20 && frames.length < hook.frameCount, 'narrow frames are skipped');
    await page.locator('#search').fill('func_7_');
    assert.match((await page.locator('#match').textContent())!, /^Matched: \d+\.\d\d% /);
    await click(page, byName(frames, 'proc101 [101]'));
    assert.equal((await page.evaluate(() => window.__flamewire.state())).zoom, 'proc101 [101]');
    await page.screenshot({ path: join(dir, 'big.png') });
    const size = statSync(join(dir, 'big.html')).size;
    const report = `100k stacks: ${hook.frameCount} tree nodes, HTML ${(size / 1e6).toFixed(2)} MB, renderHtml ${renderMs.toFixed(0)} ms, ` +
      `page decode ${hook.decodeMs.toFixed(0)} ms, first render at ${hook.firstRenderMs.toFixed(0)} ms after navigation, goto→ready ${loadMs.toFixed(0)} ms`;
    t.diagnostic(report);
    console.log(report);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
