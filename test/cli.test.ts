// The command-line contract (DESIGN.md): real runs of the built CLI. Bad input gets one clear
// line and a non-zero status; Ctrl-C and SIGTERM still write the output; the command's exit
// status becomes ours; pprof output is read back with the real `go tool pprof`.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lchownSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { describe, it } from 'node:test';
import { buildC, repoRoot, workDir } from './helpers.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('cli');

function run(args: string[], opts: { env?: NodeJS.ProcessEnv; noCaps?: boolean } = {}) {
  // noCaps: stay uid 0 (the checkout may be readable by root only) but drop every capability,
  // so the process has no privileges at all.
  const argv = opts.noCaps ? ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', '--', process.execPath] : [process.execPath];
  return spawnSync(argv[0], [...argv.slice(1), cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...opts.env } });
}

function assertOneLineError(r: ReturnType<typeof run>, pattern: RegExp, status = 2): void {
  assert.equal(r.status, status, `status ${r.status}, stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got: ${r.stderr}`);
  assert.match(lines[0], /^flamewire: /);
  assert.match(lines[0], pattern);
}

const SPIN = `
#include <stdlib.h>
#include <time.h>
static volatile unsigned long sink;
__attribute__((noinline)) void spin_here(void) { for (int i = 0; i < 1000000; i++) sink += i; }
int main(int argc, char **argv) {
  double secs = atof(argv[1]); int code = argc > 2 ? atoi(argv[2]) : 0;
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
  do { spin_here(); clock_gettime(CLOCK_MONOTONIC, &t); } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
  return code;
}
`;

describe('flamewire record: bad input', () => {
  it('rejects an unknown flag', () => assertOneLineError(run(['record', '--frobnicate']), /unknown option '--frobnicate'/));
  it('rejects an unknown short flag', () => assertOneLineError(run(['record', '-Z']), /unknown option '-Z'/));
  it('rejects an unknown command', () => assertOneLineError(run(['recrod']), /unknown command 'recrod'/));
  it('rejects a bad duration', () => assertOneLineError(run(['record', '-d', '10x']), /invalid duration '10x'/));
  it('rejects a zero duration', () => assertOneLineError(run(['record', '-d', '0s']), /invalid duration/));
  it('rejects a bad frequency', () => assertOneLineError(run(['record', '-F', 'fast']), /invalid frequency/));
  it('rejects a pid that does not exist', () => assertOneLineError(run(['record', '-p', '999999999', '-o', join(dir, 'x.folded')]), /no process with pid 999999999/));
  it('rejects a malformed pid list', () => assertOneLineError(run(['record', '-p', '12,abc']), /invalid pid 'abc'/));
  it('rejects an output path in a missing directory', () =>
    assertOneLineError(run(['record', '-d', '1s', '-o', join(dir, 'no', 'such', 'dir', 'x.html')]), /cannot write .*does not exist or is not writable/));
  it('rejects an output name whose format it cannot tell', () => assertOneLineError(run(['record', '-o', join(dir, 'x.png')]), /cannot tell the output format/));
  it('rejects an unknown --format', () => assertOneLineError(run(['record', '--format', 'svg']), /unknown --format "svg"/));
  it('rejects --pid together with a command', () => assertOneLineError(run(['record', '-p', '1', '--', 'true']), /either --pid or a command/));

  it('says a command that does not exist was not found, with status 127, as a shell', () => {
    const out = join(dir, 'never.folded');
    rmSync(out, { force: true });
    assertOneLineError(run(['record', '-o', out, '--', '/nonexistent']), /^flamewire: command not found: \/nonexistent$/, 127);
    assertOneLineError(run(['record', '-o', out, '--', 'flamewire-no-such-command', 'arg']), /^flamewire: command not found: flamewire-no-such-command$/, 127);
    assert.equal(existsSync(out), false, 'nothing was recorded, so nothing is written');
  });

  it('says a command that is there but cannot run cannot be executed, with status 126', () => {
    const file = join(dir, 'not-executable.sh');
    writeFileSync(file, '#!/bin/sh\nexit 0\n');
    chmodSync(file, 0o644);
    assertOneLineError(run(['record', '-o', join(dir, 'x.folded'), '--', file]), /^flamewire: cannot execute .*not-executable\.sh: permission denied$/, 126);
    assertOneLineError(run(['record', '-o', join(dir, 'x.folded'), '--', dir]), /^flamewire: cannot execute .*: it is a directory$/, 126);
    // Found in PATH but not runnable, as a shell says it.
    assertOneLineError(run(['record', '-o', join(dir, 'x.folded'), '--', 'not-executable.sh'], { env: { PATH: `${dir}:/usr/bin:/bin` } }), /^flamewire: cannot execute .*not-executable\.sh: permission denied$/, 126);
  });

  it('rejects a thread id given as a pid, naming its process', () => {
    const tid = readdirSync(`/proc/${process.pid}/task`).map(Number).find((t) => t !== process.pid);
    assert.ok(tid !== undefined, 'the test runner has threads');
    assertOneLineError(run(['record', '-p', String(tid), '-d', '1s', '-o', join(dir, 'x.folded')]), new RegExp(`^flamewire: ${tid} is a thread of process ${process.pid}: give -p ${process.pid}$`));
  });

  it("refuses an -o that is someone else's symlink in a shared directory, before recording", () => {
    const { tmp, victim } = sharedTmp('planted-output');
    plant(victim, join(tmp, 'flame.folded'));
    const r = run(['record', '-d', '1s', '-o', join(tmp, 'flame.folded')]);
    assertOneLineError(r, /^flamewire: cannot write .*flame\.folded: it is a symlink that uid 65534 made in the shared directory .*; not followed$/);
    assert.equal(readFileSync(victim, 'utf8'), VICTIM);
  });

  it('refuses without privileges, in one line', () => {
    const r = run(['record', '-d', '1s', '-o', join(dir, 'x.folded')], { noCaps: true });
    assertOneLineError(r, /permission denied: .*root.*CAP_BPF/, 1);
  });

  it('refuses on a kernel without BTF, in one line', () => {
    const r = run(['record', '-d', '1s', '-o', join(dir, 'x.folded')], { env: { FLAMEWIRE_KERNEL_BTF: join(dir, 'no-btf-here') } });
    assertOneLineError(r, /this kernel has no BTF/, 1);
  });
});

describe('flamewire agent: durations', () => {
  it('refuses an --interval or --shutdown-timeout too long for its timer, in one line', () => {
    assertOneLineError(run(['agent', '--no-otlp', '--output-dir', join(dir, 'agent-never'), '--interval', '25h']), /^flamewire: invalid --interval '25h' \(at most 24h\)$/);
    assertOneLineError(run(['agent', '--no-otlp', '--output-dir', join(dir, 'agent-never'), '--shutdown-timeout', '1000h']), /^flamewire: invalid --shutdown-timeout '1000h' \(at most 1h\)$/);
    assertOneLineError(run(['agent', '--no-otlp', '--output-dir', join(dir, 'agent-never'), '-d', `${'9'.repeat(400)}h`]), /^flamewire: invalid --duration/);
  });
});

describe('flamewire record: runs', () => {
  const spin = buildC(dir, 'spin', SPIN, ['-O1', '-fno-omit-frame-pointer']);

  it("passes the command's exit status through and writes pprof that go tool pprof reads", () => {
    const out = join(dir, 'spin.pb.gz');
    const r = run(['record', '-F', '499', '-o', out, '--', spin, '1', '7']);
    assert.equal(r.status, 7, r.stderr);
    assert.match(r.stderr, /flamewire: [\d,]+ samples from 1 processes, 0 dropped .* wrote /);
    const top = execFileSync('go', ['tool', 'pprof', '-top', '-sample_index=cpu', out], { encoding: 'utf8' });
    assert.match(top, /spin_here/);
    const tags = execFileSync('go', ['tool', 'pprof', '-tags', out], { encoding: 'utf8' });
    assert.match(tags, /thread\.name:.*spin/s);
    assert.match(tags, /thread\.id:/);
    const raw = execFileSync('go', ['tool', 'pprof', '-raw', out], { encoding: 'utf8' });
    assert.match(raw, /samples\/count cpu\/nanoseconds/);
    const buildId = execFileSync('sh', ['-c', `readelf -n ${spin} | sed -n 's/.*Build ID: //p'`], { encoding: 'utf8' }).trim();
    assert.ok(buildId.length > 0);
    assert.ok(raw.includes(buildId), `mapping build id ${buildId} missing from:\n${raw.slice(0, 2000)}`);
  });

  it('samples every process the command forks', () => {
    const out = join(dir, 'fork.folded');
    const script = join(dir, 'forker.sh');
    writeFileSync(script, `#!/bin/sh\n${spin} 1 &\n${spin} 1 &\nwait\n`);
    chmodSync(script, 0o755);
    const r = run(['record', '-F', '499', '-o', out, '--', script]);
    assert.equal(r.status, 0, r.stderr);
    const lines = readFileSync(out, 'utf8').split('\n').filter((l) => l.includes('spin_here'));
    assert.ok(lines.length > 0, 'no samples from the forked children');
  });

  it('stops on SIGTERM and still writes the output', async () => {
    const out = join(dir, 'term.folded');
    const child = spawn(process.execPath, [cli, 'record', '-q', '-F', '499', '-o', out, '--', spin, '30'], { stdio: 'ignore' });
    await waitFor(() => hasSamplesSoon(child.pid!), 20_000);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    // The command was sent SIGTERM too: its status (128 + 15) becomes ours.
    assert.equal(code, 143);
    assert.ok(existsSync(out) && statSync(out).size > 0, 'no output after SIGTERM');
    assert.match(readFileSync(out, 'utf8'), /spin_here/);
  });

  it('stops on Ctrl-C (SIGINT to the process group) and still writes the output', async () => {
    const out = join(dir, 'int.html');
    const child = spawn(process.execPath, [cli, 'record', '-q', '-F', '499', '-o', out, '--', spin, '30'], { stdio: 'ignore', detached: true });
    await waitFor(() => hasSamplesSoon(child.pid!), 20_000);
    process.kill(-child.pid!, 'SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 130);
    const html = readFileSync(out, 'utf8');
    assert.match(html, /^<!DOCTYPE html>/i);
  });

  it('records a pid for a duration', async () => {
    const target = spawn(spin, ['5'], { stdio: 'ignore' });
    try {
      const out = join(dir, 'pid.json');
      const r = run(['record', '-p', String(target.pid), '-d', '1s', '-o', out]);
      assert.equal(r.status, 0, r.stderr);
      const doc = JSON.parse(readFileSync(out, 'utf8')) as { profiles: Array<{ name: string }>; shared: { frames: Array<{ name: string }> } };
      assert.equal(doc.profiles.length, 1, 'only the target process');
      assert.ok(doc.shared.frames.some((f) => f.name === 'spin_here'));
    } finally {
      target.kill('SIGKILL');
    }
  });

  it('shows a live status line on a terminal', () => {
    const out = join(dir, 'tty.folded');
    // script(1) gives the CLI a pseudo-terminal.
    const r = spawnSync('script', ['-qec', `${process.execPath} ${cli} record -d 1500ms -o ${out}`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /flamewire: recording \d+(\.\d)?s +[\d,]+ samples +[\d,]+ dropped +\d+ processes/);
  });

  it('writes the output elsewhere, and fails, when the output cannot be written at the end', async () => {
    const sub = join(dir, 'vanishing');
    mkdirSync(sub, { recursive: true });
    const out = join(sub, 'x.folded');
    rmSync(out, { recursive: true, force: true });
    // The path is writable at start; it becomes a directory while the recording runs.
    const child = spawn(process.execPath, [cli, 'record', '-F', '499', '-o', out, '--', spin, '3'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    await waitFor(() => hasSamplesSoon(child.pid!), 20_000);
    mkdirSync(out);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 1, stderr);
    const m = /^flamewire: cannot write .*it is a directory; saving to (\S+) instead$/m.exec(stderr);
    assert.ok(m, stderr);
    assert.match(readFileSync(m[1], 'utf8'), /spin_here/);
    rmSync(dirname(m[1]), { recursive: true });
  });

  it('puts the fallback in a new private directory, never through a link planted at a name it could guess', async () => {
    // TMPDIR is a shared directory like /tmp where nobody planted links at every name that can
    // be guessed: the old fallback name (pid and output name), with and without extensions.
    const { tmp, victim } = sharedTmp('fallback');
    const sub = join(dir, 'fallback-out');
    rmSync(sub, { recursive: true, force: true });
    mkdirSync(sub);
    const out = join(sub, 'x.folded');
    const child = spawn(process.execPath, [cli, 'record', '-F', '499', '-o', out, '--', spin, '3'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const pid = child.pid!;
    const guesses = [`flamewire-${pid}-x.folded`, `flamewire-${pid}-x`, `flamewire-${pid}-x.out`, 'flamewire-x.folded', 'x.folded', `flamewire-${pid}`, 'flamewire'];
    for (const name of guesses) plant(victim, join(tmp, name));
    await waitFor(() => hasSamplesSoon(pid), 20_000);
    mkdirSync(out);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 1, stderr);
    const m = /^flamewire: cannot write .*it is a directory; saving to (\S+) instead$/m.exec(stderr);
    assert.ok(m, stderr);
    const fallback = m[1]!;
    assert.equal(readFileSync(victim, 'utf8'), VICTIM, 'the planted links were followed');
    // Nothing new in the shared directory but one directory of ours, mode 0700, random name.
    const created = readdirSync(tmp).filter((n) => !guesses.includes(n));
    assert.equal(created.length, 1, created.join(' '));
    assert.equal(dirname(fallback), join(tmp, created[0]!));
    assert.doesNotMatch(created[0]!, new RegExp(String(pid)));
    const d = statSync(dirname(fallback));
    assert.equal(d.mode & 0o7777, 0o700);
    assert.equal(d.uid, 0);
    assert.equal(statSync(fallback).mode & 0o777, 0o600);
    assert.match(readFileSync(fallback, 'utf8'), /spin_here/);
  });

  it('says when the command could not be executed after all, with the shell\'s status', () => {
    // Found and executable, but exec fails: its ELF interpreter is missing (ENOENT from execve).
    const bad = buildC(dir, 'no-interpreter', 'int main(void) { return 0; }', ['-Wl,--dynamic-linker=/nonexistent/ld.so']);
    const r = run(['record', '-q', '-o', join(dir, 'no-interpreter.folded'), '--', bad]);
    assert.equal(r.status, 127, r.stderr);
    assert.match(r.stderr, /^flamewire: .*no-interpreter did not start: the shell could not execute it \(status 127\)$/m);
    assert.doesNotMatch(r.stderr, /was the target idle/);
  });

  it('stops on SIGHUP, passes it to the command, and still writes the output', async () => {
    const out = join(dir, 'hup.folded');
    rmSync(out, { force: true });
    const child = spawn(process.execPath, [cli, 'record', '-q', '-F', '499', '-o', out, '--', spin, '30'], { stdio: 'ignore' });
    await waitFor(() => hasSamplesSoon(child.pid!), 20_000);
    const command = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]);
    child.kill('SIGHUP');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    // The command died of the SIGHUP it was passed (128 + 1), and that is our status.
    assert.equal(code, 129);
    assert.equal(existsSync(`/proc/${command}`), false, 'the command is still there');
    assert.match(readFileSync(out, 'utf8'), /spin_here/);
  });

  it('writes the output when its terminal hangs up', async () => {
    // script(1) holds the pseudo-terminal; killing it hangs the terminal up: the kernel sends
    // SIGHUP to flamewire and its command, and writes to the terminal fail from then on.
    const out = join(dir, 'hangup.folded');
    const pidFile = join(dir, 'hangup.pid');
    rmSync(out, { force: true });
    rmSync(pidFile, { force: true });
    const cmd = `${process.execPath} ${cli} record -F 499 -o ${out} -- sh -c 'echo $$ > ${pidFile}; exec ${spin} 30'`;
    const term = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: 'ignore', env: { ...process.env, SHELL: '/bin/sh' } });
    await waitFor(() => existsSync(pidFile) && cpuTicks(Number(readFileSync(pidFile, 'utf8'))) > 50, 20_000);
    const command = Number(readFileSync(pidFile, 'utf8'));
    term.kill('SIGKILL');
    await waitFor(() => existsSync(out) && !existsSync(`/proc/${command}`) && !recorderRunning(out), 20_000);
    assert.match(readFileSync(out, 'utf8'), /spin_here/);
  });

  it('honours a duration past the 24.8-day timer limit (-d 1000h): still recording until SIGTERM', async () => {
    const out = join(dir, 'long.pb.gz');
    rmSync(out, { force: true });
    const child = spawn(process.execPath, [cli, 'record', '-q', '-F', '499', '-d', '1000h', '-o', out, '--', spin, '30'], { stdio: 'ignore' });
    // Seconds into the run, the command has burnt CPU and the recording goes on: no output yet.
    await waitFor(() => hasSamplesSoon(child.pid!), 20_000);
    assert.equal(existsSync(out), false, 'the recording stopped early');
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 143);
    const p = PprofProfile.decode(gunzipSync(readFileSync(out)));
    const comments = p.comment.map((i) => String(p.stringTable.strings[Number(i)]));
    assert.ok(comments.some((c) => /stopped: terminated$/.test(c)), comments.join('\n'));
    assert.ok(p.stringTable.strings.includes('spin_here'));
  });
});

describe('flamewire doctor', () => {
  it('passes as root on this machine', () => {
    const r = run(['doctor']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\[ok {2}\] bpf\(\) \+ perf_event \+ ring buffer +loaded, attached/);
    assert.match(r.stdout, /\[ok {2}\] off-CPU \(sched_switch\) +tp_btf program loaded and attached, [1-9]\d* blocks recorded/);
    assert.match(r.stdout, /flamewire can record on this machine/);
  });

  it('says what is missing, with the fix, without privileges', () => {
    const r = run(['doctor'], { noCaps: true });
    assert.equal(r.status, 1);
    assert.match(r.stdout, /\[FAIL\] privileges .*\n.*fix: run as root/);
    assert.match(r.stdout, /cannot record here/);
  });
});

const VICTIM = 'a file only its owner should change\n';

/** A sticky, world-writable directory like /tmp, and a file that must stay untouched. */
function sharedTmp(name: string): { tmp: string; victim: string } {
  const base = join(dir, name);
  rmSync(base, { recursive: true, force: true });
  const tmp = join(base, 'tmp');
  mkdirSync(tmp, { recursive: true });
  chmodSync(tmp, 0o1777);
  const victim = join(base, 'victim.folded');
  writeFileSync(victim, VICTIM);
  return { tmp, victim };
}

/** A symlink at `at` to `target`, made by nobody (uid 65534), as an unprivileged user would plant it. */
function plant(target: string, at: string): void {
  symlinkSync(target, at);
  lchownSync(at, 65534, 65534);
}

/** User CPU ticks of a process so far; 0 when it is gone. */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[11]);
  } catch {
    return 0;
  }
}

/** True while a flamewire record writing to `out` runs. */
function recorderRunning(out: string): boolean {
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv.includes('record') && argv.includes(out) && argv[0] === process.execPath) return true;
    } catch {
      // gone
    }
  }
  return false;
}

/** True once the target's status line would show samples: approximated by the process running a while. */
function hasSamplesSoon(pid: number): boolean {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    if (!kids) return false;
    const stat = readFileSync(`/proc/${kids.split(' ')[0]}/stat`, 'utf8');
    const utime = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[11]);
    return utime > 50; // 0.5 s of CPU at 100 Hz ticks
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
