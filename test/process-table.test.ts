import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ElfFile } from '../src/elf/elf-file.js';
import { parseMaps, ProcessTable } from '../src/process-table.js';
import { buildC, workDir, startAddressPrinter, type RunningProgram } from './helpers.js';

const dir = workDir('process-table');

// Prints the runtime addresses of its functions and of a libc function, then waits for a line
// on stdin before exiting, so the test decides how long it lives.
const PROGRAM = `
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int alpha_fn(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * 3; return s; }
__attribute__((noinline)) int beta_fn(int x) { return alpha_fn(x) * 2 + 1; }
int main(void) {
  printf("%p %p %p\\n", (void *)alpha_fn, (void *)beta_fn, (void *)getpid);
  fflush(stdout);
  char c;
  if (read(0, &c, 1) < 0) return 1;
  return beta_fn(3) > 0 ? 0 : 2;
}
`;

const running: RunningProgram[] = [];
after(() => {
  for (const r of running) r.child.kill('SIGKILL');
});

async function start(bin: string, env: NodeJS.ProcessEnv = {}): Promise<RunningProgram> {
  const r = await startAddressPrinter(bin, env);
  running.push(r);
  return r;
}

function nmAddr(path: string, name: string, dynamic = false): number {
  const out = execFileSync('nm', ['--defined-only', ...(dynamic ? ['-D'] : []), path], { encoding: 'utf8' });
  const m = new RegExp(`^([0-9a-f]+) [TtWwi] ${name}(@.*)?$`, 'm').exec(out);
  assert.ok(m, `nm finds ${name} in ${path}`);
  return parseInt(m[1], 16);
}

describe('process-table', () => {
  const pie = buildC(dir, 'pie', PROGRAM, ['-O1', '-fPIE', '-pie']);
  const nopie = buildC(dir, 'nopie', PROGRAM, ['-O1', '-fno-pie', '-no-pie']);

  it('parses maps lines, including deleted files and special mappings', () => {
    const maps = parseMaps(
      [
        '55d0c8a4e000-55d0c8a50000 r-xp 00002000 fd:01 1234 /usr/bin/thing (deleted)',
        '7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]',
        '01000000-01021000 rw-p 00000000 00:00 0 [heap]',
        '7f0000000000-7f0000001000 rwxp 00000000 00:00 0 ',
        'not a maps line',
      ].join('\n'),
    );
    assert.deepEqual(
      maps.map((m) => [m.kind, m.path, m.deleted]),
      [
        ['heap', '[heap]', false],
        ['vdso', '[vdso]', false],
        ['file', '/usr/bin/thing', true],
        ['anon', '', false],
      ],
    );
    assert.equal(maps[2].offset, 0x2000);
    assert.equal(maps[2].inode, 1234);
  });

  it('parses every line the kernel can write: any path, in linear time', () => {
    // A file name may hold any byte but '/' and NUL; maps escapes only '\n' (as \012), and is
    // read as latin1. The kernel pads the inode column with spaces before the path.
    let seed = 7;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const lines: string[] = [];
    const paths: string[] = [];
    for (let i = 0; i < 500; i++) {
      let name = '';
      for (let k = rnd(40) + 1; k > 0; k--) {
        const c = rnd(256);
        name += c === 0x2f || c === 0 || c === 0x0a ? '_' : String.fromCharCode(c);
      }
      const path = `/tmp/${name}${i}`;
      paths.push(path);
      const start = 0x10000 + i * 0x1000;
      lines.push(`${start.toString(16)}-${(start + 0x1000).toString(16)} r-xp 00000000 08:01 ${1000 + i}${' '.repeat(1 + rnd(26))}${path}`);
    }
    assert.deepEqual(parseMaps(lines.join('\n')).map((m) => m.path), paths);
    // A path with '\r' after thousands of digits and spaces took seconds per line before.
    const long = `10000-11000 r-xp 00000000 08:01 ${'4'.repeat(70_000)}${'\u00a0'.repeat(1000)}/a\rb`;
    const t0 = performance.now();
    assert.equal(parseMaps(long)[0]?.path, '/a\rb');
    assert.ok(performance.now() - t0 < 500, `${performance.now() - t0} ms`);
  });

  it('resolves a running PIE program and its libc to ELF virtual addresses', async () => {
    const p = await start(pie);
    const table = new ProcessTable();
    try {
      const info = table.ensure(p.child.pid!);
      assert.ok(info);
      assert.equal(info.comm, 'pie');
      assert.equal(info.exePath, pie);
      assert.ok(info.startTime > 0);
      const [alpha, beta, getpid] = p.addrs;
      const ra = table.resolve(p.child.pid!, alpha)!;
      assert.equal(ra.vaddr, nmAddr(pie, 'alpha_fn'));
      assert.equal(ra.displayPath, pie);
      const buildId = ElfFile.withFile(pie, (e) => e.buildId);
      assert.equal(ra.fileKey, `b:${buildId}`);
      assert.match(ra.openPath!, /^\/proc\/self\/fd\/\d+$/);
      assert.equal(table.resolve(p.child.pid!, BigInt(beta))?.vaddr, nmAddr(pie, 'beta_fn'));
      const rl = table.resolve(p.child.pid!, getpid)!;
      assert.match(rl.displayPath, /libc[.-]/);
      assert.equal(rl.vaddr, nmAddr(rl.displayPath, 'getpid', true));
      assert.equal(table.resolve(p.child.pid!, 8), undefined);
      const vdso = info.mappings.find((m) => m.kind === 'vdso');
      if (vdso) assert.ok(vdso.file && !vdso.file.error, `vdso image read: ${vdso.file?.error}`);
    } finally {
      table.close();
      await p.exit();
    }
  });

  it('resolves a non-PIE program', async () => {
    const p = await start(nopie);
    const table = new ProcessTable();
    try {
      table.ensure(p.child.pid!);
      assert.equal(p.addrs[0], nmAddr(nopie, 'alpha_fn'), 'non-PIE code runs at its link address');
      assert.equal(table.resolve(p.child.pid!, p.addrs[0])?.vaddr, nmAddr(nopie, 'alpha_fn'));
    } finally {
      table.close();
      await p.exit();
    }
  });

  it('reads a deleted binary through map_files', async () => {
    const copy = join(dir, 'deleted-copy');
    copyFileSync(pie, copy);
    const p = await start(copy);
    unlinkSync(copy);
    const table = new ProcessTable();
    try {
      table.ensure(p.child.pid!);
      const r = table.resolve(p.child.pid!, p.addrs[0])!;
      assert.equal(r.mapping.deleted, true);
      assert.equal(r.displayPath, copy);
      assert.equal(r.vaddr, nmAddr(pie, 'alpha_fn'));
      assert.ok(!existsSync(copy));
      assert.equal(ElfFile.withFile(r.openPath!, (e) => e.buildId), ElfFile.withFile(pie, (e) => e.buildId));
    } finally {
      table.close();
      await p.exit();
    }
  });

  it('keeps a process and its files after it exits', async () => {
    const copy = join(dir, 'exits-copy');
    copyFileSync(pie, copy);
    const p = await start(copy);
    const pid = p.child.pid!;
    const table = new ProcessTable();
    try {
      table.ensure(pid);
      await p.exit();
      unlinkSync(copy);
      assert.ok(!existsSync(`/proc/${pid}/maps`) || readFileSync(`/proc/${pid}/maps`, 'utf8') === '');
      const info = table.refresh(pid);
      assert.equal(info?.exited, true);
      const r = table.resolve(pid, p.addrs[0])!;
      assert.equal(r.vaddr, nmAddr(pie, 'alpha_fn'));
      assert.ok(ElfFile.withFile(r.openPath!, (e) => e.textSegments.length > 0), 'file still readable');
    } finally {
      table.close();
    }
  });

  it('opens a file shared by many processes once', async () => {
    const a = await start(pie);
    const b = await start(pie);
    const table = new ProcessTable();
    try {
      table.ensure(a.child.pid!);
      table.ensure(b.child.pid!);
      const ra = table.resolve(a.child.pid!, a.addrs[2])!;
      const rb = table.resolve(b.child.pid!, b.addrs[2])!;
      assert.equal(ra.file, rb.file, 'libc is one MappedFile');
      assert.equal(table.resolve(a.child.pid!, a.addrs[0])!.file, table.resolve(b.child.pid!, b.addrs[0])!.file);
    } finally {
      table.close();
      await a.exit();
      await b.exit();
    }
  });

  it('returns undefined for a process that never existed', () => {
    const table = new ProcessTable();
    assert.equal(table.ensure(0x3fffffff), undefined);
    assert.equal(table.resolve(0x3fffffff, 0x1000), undefined);
    table.close();
  });
});
