// Files a profiled process controls, opened the way a hostile user of the node would set them
// up: a FIFO where its perf map or debug file should be, links out of its root (a chroot, run
// as nobody), links to files only root may read, a huge perf map, a binary claiming another's
// build id. The recording must finish and write its output, nothing outside the process's root
// may be read, and memory stays bounded.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { perfMapComment } from '../src/capture.js';
import { DEFAULT_MAX_ENTRIES, MAX_NAME, PerfMap } from '../src/perf-map.js';
import { ProcessTable } from '../src/process-table.js';
import { openUntrusted, parseFuseMounts, readBounded, UntrustedFileError } from '../src/untrusted-file.js';
import { buildC, repoRoot } from './helpers.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const NOBODY = 65534;

// The tests' files live where nobody can reach them (a clone's own folder may be private).
const dir = mkdtempSync(join(tmpdir(), 'flamewire-untrusted-'));
chmodSync(dir, 0o755);
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs a loop from anonymous executable memory, as JIT-compiled code runs, so that its samples
 * are named from /tmp/perf-PID.map; the mode says what that file is. Prints "pid address" and
 * runs for the given seconds.
 */
const JIT_SPIN = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
static void bye(int s) { (void)s; _exit(0); }
int main(int argc, char **argv) {
  const char *mode = argv[1];
  unsigned char *code = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) return 2;
  code[0] = 0xf3; code[1] = 0x90; code[2] = 0xeb; code[3] = 0xfc; /* pause; jmp back */
  char path[64];
  snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
  unlink(path);
  if (!strcmp(mode, "file")) {
    FILE *f = fopen(path, "w");
    fprintf(f, "%lx 4 jit_spin_named\\n", (unsigned long)code);
    fclose(f);
  } else if (!strcmp(mode, "fifo")) {
    if (mkfifo(path, 0644)) return 3;
  } else if (!strncmp(mode, "link:", 5)) {
    if (symlink(mode + 5, path)) return 4;
  }
  printf("%d %lx\\n", getpid(), (unsigned long)code);
  fflush(stdout);
  signal(SIGALRM, bye);
  alarm(atoi(argv[2]));
  ((void (*)(void))code)();
  return 0;
}
`;

let jitSpin: string;
before(() => {
  jitSpin = buildC(dir, 'jit-spin', JIT_SPIN, ['-O1', '-static']);
  chmodSync(jitSpin, 0o755);
});

interface Jit {
  child: ChildProcess;
  pid: number;
  addr: string;
}

/** Starts jit-spin (argv after the binary) and waits for its "pid address" line. */
function startJit(argv: string[], opts: { uid?: number } = {}): Promise<Jit> {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], uid: opts.uid, gid: opts.uid });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += String(d);
      const m = /^(\d+) ([0-9a-f]+)\n/.exec(out);
      if (m) resolve({ child, pid: Number(m[1]), addr: m[2] });
    });
    child.once('exit', (code) => reject(new Error(`${argv.join(' ')} exited (${code}) before it started`)));
  });
}

/** `flamewire record -p PID` for a moment; its status, stderr, and the folded output. */
async function recordPid(pid: number, name: string): Promise<{ status: number | null; stderr: string; folded: string }> {
  const out = join(dir, `${name}.folded`);
  rmSync(out, { force: true });
  const child = spawn(process.execPath, [cli, 'record', '-p', String(pid), '-d', '1500ms', '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  // A hang is the failure this file is about: give up (and say so) rather than wait for ever.
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const status = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(killer);
  assert.notEqual(status, null, `record -p ${pid} hung and was killed; stderr: ${stderr}`);
  let folded = '';
  try {
    folded = readFileSync(out, 'utf8');
  } catch {
    // asserted by the callers
  }
  return { status, stderr, folded };
}

/** Samples of `folded` (a folded-stacks file) whose stack has `frame` in it. */
function samplesWith(folded: string, frame: string): number {
  let n = 0;
  for (const line of folded.split('\n')) {
    const sp = line.lastIndexOf(' ');
    if (sp > 0 && line.slice(0, sp).split(';').includes(frame)) n += Number(line.slice(sp + 1));
  }
  return n;
}

function totalSamples(folded: string): number {
  let n = 0;
  for (const line of folded.split('\n')) {
    const sp = line.lastIndexOf(' ');
    if (sp > 0) n += Number(line.slice(sp + 1));
  }
  return n;
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('untrusted-file', () => {
  const root = join(dir, 'root');
  before(() => {
    mkdirSync(join(root, 'tmp'), { recursive: true });
    mkdirSync(join(root, 'etc'), { recursive: true });
    writeFileSync(join(root, 'etc', 'inside'), 'inside the root\n');
    writeFileSync(join(dir, 'outside'), 'outside the root\n');
    symlinkSync(join(dir, 'outside'), join(root, 'tmp', 'absolute-out'));
    symlinkSync('../../../../../../../../outside', join(root, 'tmp', 'dotdot-out'));
    symlinkSync('/proc/self/root' + join(dir, 'outside'), join(root, 'tmp', 'magic-out'));
    symlinkSync('/etc/inside', join(root, 'tmp', 'absolute-in'));
    symlinkSync('../etc/./inside', join(root, 'tmp', 'relative-in'));
    symlinkSync('/tmp', join(root, 'tmp', 'dir-link'));
    symlinkSync('loop-b', join(root, 'tmp', 'loop-a'));
    symlinkSync('loop-a', join(root, 'tmp', 'loop-b'));
    execFileSync('mkfifo', [join(root, 'tmp', 'fifo')]);
  });

  const read = (path: string, opts: Parameters<typeof openUntrusted>[1]) => {
    const f = openUntrusted(path, opts);
    try {
      return readFileSync(f.fd, 'utf8');
    } finally {
      closeSync(f.fd);
    }
  };
  const problem = (path: string, opts: Parameters<typeof openUntrusted>[1]) => {
    try {
      closeSync(openUntrusted(path, opts).fd);
      return 'opened';
    } catch (e) {
      assert.ok(e instanceof UntrustedFileError, String(e));
      assert.doesNotMatch(e.message, /\n/);
      return e.problem;
    }
  };

  it('follows links that stay inside the root, resolved against it', () => {
    assert.equal(read('/tmp/absolute-in', { root }), 'inside the root\n');
    assert.equal(read('/tmp/relative-in', { root }), 'inside the root\n');
    assert.equal(read('/tmp/dir-link/dir-link/absolute-in', { root }), 'inside the root\n');
    assert.equal(read('/../../etc/inside', { root }), 'inside the root\n', '.. stops at the root');
  });

  it('never leaves the root: absolute links, .. past the top and /proc magic links all stay inside', () => {
    // Each of these names the outside file when the kernel resolves it from the host's root.
    assert.equal(readFileSync(join(root, 'tmp', 'absolute-out'), 'utf8'), 'outside the root\n');
    assert.equal(readFileSync(join(root, 'tmp', 'magic-out'), 'utf8'), 'outside the root\n');
    for (const name of ['absolute-out', 'dotdot-out', 'magic-out']) assert.equal(problem(`/tmp/${name}`, { root }), 'missing', name);
  });

  it('refuses FIFOs, sockets, devices and directories without blocking, and link loops', async () => {
    const sock = join(root, 'tmp', 'sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      assert.equal(problem('/tmp/fifo', { root }), 'not-regular');
      assert.equal(problem(join(root, 'tmp', 'fifo'), {}), 'not-regular');
      assert.equal(problem('/tmp/sock', { root }), 'not-regular');
      assert.equal(problem('/dev/null', {}), 'not-regular');
      assert.equal(problem('/tmp', { root }), 'not-regular');
      assert.equal(problem('/tmp/loop-a', { root }), 'loop');
      assert.equal(problem('/tmp/nothing-here', { root }), 'missing');
      assert.equal(problem('/etc/inside/below', { root }), 'missing');
    } finally {
      server.close();
    }
  });

  it('checks the owner when asked, and leaks no descriptor whatever happens', () => {
    const before = openFds();
    for (let i = 0; i < 200; i++) {
      problem('/tmp/absolute-in', { root, owners: [NOBODY] });
      problem('/tmp/dotdot-out', { root });
      problem('/tmp/loop-a', { root });
      problem('/tmp/fifo', { root });
      closeSync(openUntrusted('/tmp/relative-in', { root, owners: [0] }).fd);
    }
    assert.equal(problem('/tmp/absolute-in', { root, owners: [NOBODY] }), 'owner');
    assert.equal(openFds(), before);
  });

  it('reads /proc files up to a bound and says when it cut', () => {
    const all = readBounded('/proc/self/maps', 1 << 20);
    assert.equal(all.truncated, false);
    assert.match(all.text, /\[stack\]/);
    const cut = readBounded('/proc/self/maps', 100);
    assert.equal(cut.truncated, true);
    assert.equal(cut.text, all.text.slice(0, 100));
  });
});

describe('perf maps of hostile processes', { timeout: 5 * 60_000 }, () => {
  const running: ChildProcess[] = [];
  after(() => {
    for (const c of running) c.kill('SIGKILL');
  });
  const jit = async (argv: string[], opts: { uid?: number } = {}) => {
    const j = await startJit(argv, opts);
    running.push(j.child);
    return j;
  };

  it('names JIT code from a perf map the process wrote (the control for the tests below)', async () => {
    const j = await jit([jitSpin, 'file', '30'], { uid: NOBODY });
    const r = await recordPid(j.pid, 'named');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(samplesWith(r.folded, 'jit_spin_named') > totalSamples(r.folded) / 2, r.folded);
  });

  it("reads a process's map inside its root only when its user owns it, and says in the profile what it skipped", async () => {
    const j = await jit([jitSpin, 'file', '30'], { uid: NOBODY });
    const path = `/tmp/perf-${j.pid}.map`;
    appendFileSync(path, 'not a perf map line\n');
    const table = new ProcessTable();
    try {
      table.ensure(j.pid);
      assert.equal(table.perfMap(j.pid)?.lookup(parseInt(j.addr, 16) + 1)?.name, 'jit_spin_named');
      assert.match(perfMapComment(table.perfMapStats()) ?? '', /^perf maps: 1 read, 1 lines; skipped: 1 malformed lines/);
    } finally {
      table.close();
    }
    // The same file owned by another user (root) is not the process's own: it is left alone.
    chownSync(path, 0, 0);
    const other = new ProcessTable();
    try {
      other.ensure(j.pid);
      assert.equal(other.perfMap(j.pid), undefined);
    } finally {
      other.close();
    }
  });

  it('finishes and writes its output when the perf map is a FIFO', async () => {
    const j = await jit([jitSpin, 'fifo', '30'], { uid: NOBODY });
    const r = await recordPid(j.pid, 'fifo');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(totalSamples(r.folded) > 0, 'the samples are written');
    assert.equal(samplesWith(r.folded, 'jit_spin_named'), 0);
  });

  it("does not read a file only root may read through the perf map's link", async () => {
    const secret = join(dir, 'root-only.map');
    const j = await jit([jitSpin, `link:${secret}`, '30'], { uid: NOBODY });
    writeFileSync(secret, `${j.addr} 4 SECRET_of_root\n`, { mode: 0o600 });
    const r = await recordPid(j.pid, 'root-only');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(totalSamples(r.folded) > 0);
    assert.doesNotMatch(r.folded, /SECRET_of_root/);
  });

  it('reads nothing outside the root of a process in a chroot (as nobody)', async () => {
    const jail = join(dir, 'jail');
    mkdirSync(join(jail, 'tmp'), { recursive: true });
    mkdirSync(join(jail, 'maps'), { recursive: true });
    chmodSync(join(jail, 'tmp'), 0o1777);
    copyFileSync(jitSpin, join(jail, 'jit-spin'));
    chmodSync(join(jail, 'jit-spin'), 0o755);
    // The host's file is nobody's own, so only the root keeps flamewire from it.
    const outside = join(dir, 'outside.map');
    const inside = join(jail, 'maps', 'inside.map');
    const chrooted = (target: string) => jit(['chroot', `--userspec=${NOBODY}:${NOBODY}`, jail, '/jit-spin', `link:${target}`, '30']);
    for (const [target, name, expectNamed] of [
      [outside, 'HOST_FILE_absolute_link', false],
      ['../../../../../../../../..' + outside, 'HOST_FILE_dotdot_link', false],
      ['/maps/inside.map', 'jit_inside_the_root', true],
    ] as const) {
      const j = await chrooted(target);
      for (const file of [outside, inside]) {
        writeFileSync(file, `${j.addr} 4 ${name}\n`, { mode: 0o600 });
        chownSync(file, NOBODY, NOBODY);
      }
      const r = await recordPid(j.pid, `jail-${name}`);
      assert.equal(r.status, 0, r.stderr);
      assert.ok(totalSamples(r.folded) > 0);
      if (expectNamed) assert.ok(samplesWith(r.folded, name) > totalSamples(r.folded) / 2, `${name}: ${r.folded}`);
      else assert.doesNotMatch(r.folded, new RegExp(name), `${target} was followed out of the root`);
      j.child.kill('SIGKILL');
    }
  });

  it('keeps a whole-machine agent closing windows and answering /metrics while a perf map is a FIFO', async () => {
    const j = await jit([jitSpin, 'fifo', '60'], { uid: NOBODY });
    const outDir = join(dir, 'agent-windows');
    rmSync(outDir, { recursive: true, force: true });
    const agent = spawn(process.execPath, [cli, 'agent', '--no-otlp', '--output-dir', outDir, '--interval', '1s', '-F', '49', '--metrics-address', '127.0.0.1:0', '--log-level', 'info'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.push(agent);
    let log = '';
    agent.stdout!.on('data', (d) => (log += String(d)));
    agent.stderr!.on('data', (d) => (log += String(d)));
    const windows = () => (log.match(/"msg":"window closed"/g) ?? []).length;
    // The FIFO's process is sampled from the first window: four windows must close after it.
    const deadline = Date.now() + 90_000;
    while (windows() < 5 && Date.now() < deadline && agent.exitCode === null) await new Promise((r) => setTimeout(r, 200));
    assert.ok(windows() >= 5, `windows closed: ${windows()}; log: ${log.slice(-2000)}`);
    const address = /"address":"([^"]+)"/.exec(log)?.[1];
    assert.ok(address, log);
    const metrics = await fetch(`http://${address}/metrics`).then((r) => r.text());
    assert.match(metrics, /flamewire_windows_total \d+/);
    agent.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => (agent.exitCode !== null ? r(agent.exitCode) : agent.once('exit', (c) => r(c))));
    assert.equal(code, 0, log.slice(-2000));
    assert.ok(readdirSync(outDir).length >= 4);
    j.child.kill('SIGKILL');
  });
});

/**
 * A FUSE file system whose daemon (run as the given user, like any user can with fusermount3)
 * answers the kernel's INIT and then nothing, ever: whoever looks anything up in it waits for
 * good. Mounted by root here (/dev/fuse may be root's only), with the user's user_id, as
 * fusermount3 mounts it for them.
 */
const HANG_FS = `
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
static char buf[(1 << 20) + 8192];
int main(int argc, char **argv) {
  int uid = atoi(argv[2]);
  int fd = open("/dev/fuse", O_RDWR);
  if (fd < 0) { perror("/dev/fuse"); return 1; }
  char opts[128];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=%d,group_id=%d,allow_other", fd, uid, uid);
  if (mount("hangfs", argv[1], "fuse.hangfs", MS_NOSUID | MS_NODEV, opts)) { perror("mount"); return 1; }
  if (setgid(uid) || setuid(uid)) return 1;
  printf("ready\\n");
  fflush(stdout);
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) { if (errno == EINTR || errno == ENOENT) continue; return 0; }
    struct fuse_in_header *in = (struct fuse_in_header *)buf;
    if (in->opcode != FUSE_INIT) continue; /* no answer, ever */
    struct fuse_init_in *ii = (struct fuse_init_in *)(in + 1);
    struct { struct fuse_out_header h; struct fuse_init_out o; } r;
    memset(&r, 0, sizeof r);
    r.h.len = sizeof r;
    r.h.unique = in->unique;
    r.o.major = FUSE_KERNEL_VERSION;
    r.o.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
    r.o.max_readahead = ii->max_readahead;
    r.o.max_background = 16;
    r.o.congestion_threshold = 12;
    r.o.max_write = 4096;
    r.o.time_gran = 1;
    if (write(fd, &r, sizeof r) < 0) return 1;
  }
}
`;

describe('FUSE file systems served by a user', { timeout: 2 * 60_000 }, () => {
  const mnt = join(dir, 'fuse-mnt');
  let daemon: ChildProcess | undefined;
  before(async () => {
    mkdirSync(mnt, { recursive: true });
    const bin = buildC(dir, 'hang-fs', HANG_FS);
    daemon = spawn(bin, [mnt, String(NOBODY)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      daemon!.stdout!.once('data', () => resolve());
      daemon!.once('exit', (c) => reject(new Error(`hang-fs exited (${c})`)));
    });
  });
  after(() => {
    // Killing the daemon aborts the connection: anything still waiting on it gets an error.
    daemon?.kill('SIGKILL');
    spawnSync('umount', ['-l', mnt]);
  });

  it('knows the mount from mountinfo, without touching it', () => {
    const mounts = parseFuseMounts(readFileSync('/proc/self/mountinfo', 'utf8'));
    assert.ok(mounts.points.includes(mnt), mounts.points.join(' '));
    // A FUSE mount of root's (lxcfs, a root sshfs) is not a user's.
    const rootOwned = '40 27 0:50 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other';
    assert.deepEqual(parseFuseMounts(rootOwned).points, []);
    const spaced = '41 27 0:51 / /home/u/my\\040drive rw - fuse.sshfs u@h: rw,user_id=1000,group_id=1000';
    assert.deepEqual({ ...parseFuseMounts(spaced), devices: [...parseFuseMounts(spaced).devices] }, { points: ['/home/u/my drive'], devices: ['00:33'] });
  });

  it('does not wait on it: opening a path into it, or the mount itself, is refused at once', () => {
    for (const p of [join(mnt, 'perf-1.map'), mnt, join(mnt, 'a', 'b')]) {
      assert.throws(() => openUntrusted(p, { root: '/' }), (e: unknown) => e instanceof UntrustedFileError && e.problem === 'fuse', p);
    }
  });

  it('finishes a recording whose process links its perf map into it', async () => {
    const j = await startJit([jitSpin, `link:${join(mnt, 'perf.map')}`, '30'], { uid: NOBODY });
    try {
      const r = await recordPid(j.pid, 'fuse-link');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(totalSamples(r.folded) > 0);
    } finally {
      j.child.kill('SIGKILL');
    }
  });
});

describe('separate debug files of hostile binaries', { timeout: 2 * 60_000 }, () => {
  it('finishes and names what it can when .gnu_debuglink names a FIFO', async () => {
    const sub = join(dir, 'debuglink');
    mkdirSync(sub, { recursive: true });
    chmodSync(sub, 0o777);
    const src = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void bye(int s) { (void)s; _exit(0); }
static volatile unsigned long sink;
__attribute__((noinline)) void stripped_spin(void) { for (int i = 0; i < 1000; i++) sink += i; }
int main(int argc, char **argv) { (void)argc; signal(SIGALRM, bye); alarm(atoi(argv[1])); printf("%d 0\\n", getpid()); fflush(stdout); for (;;) stripped_spin(); }
`;
    const bin = buildC(sub, 'stripped-spin', src, ['-O1']);
    execFileSync('strip', ['--strip-all', bin]);
    // objcopy reads a file to put its CRC in the link; then the FIFO takes its place.
    writeFileSync(bin + '.debug', 'placeholder');
    execFileSync('objcopy', [`--add-gnu-debuglink=${bin}.debug`, bin], { cwd: sub });
    rmSync(bin + '.debug');
    execFileSync('mkfifo', [bin + '.debug']);
    chmodSync(bin, 0o755);
    const j = await startJit([bin, '30'], { uid: NOBODY });
    try {
      const r = await recordPid(j.pid, 'debuglink-fifo');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(totalSamples(r.folded) > 0);
      // Without symbols, the binary's frames are named by offset in the file.
      assert.match(r.folded, /stripped-spin\+0x[0-9a-f]+/);
    } finally {
      j.child.kill('SIGKILL');
    }
  });
});

describe('perf-map', () => {
  it('reads only what was appended, and starts over when the file is replaced or truncated', () => {
    const path = join(dir, 'grow.map');
    writeFileSync(path, '1000 10 first\n2000 10 second\n3000 1');
    const map = new PerfMap(path);
    assert.equal(map.refresh(), true);
    assert.equal(map.length, 2, 'the unfinished last line waits');
    const read = map.stats.bytesRead;
    assert.equal(read, '1000 10 first\n2000 10 second\n'.length);
    appendFileSync(path, '0 third\n');
    map.refresh();
    assert.equal(map.stats.bytesRead, read + '3000 10 third\n'.length);
    assert.deepEqual(map.lookup(0x3005), { name: 'third', offset: 5 });
    // A later line for the same start wins (code space reused).
    appendFileSync(path, '1000 20 first_again\n');
    map.refresh();
    assert.deepEqual(map.lookup(0x1015), { name: 'first_again', offset: 0x15 });
    assert.equal(map.length, 3);
    writeFileSync(path, '5000 10 fresh\n');
    map.refresh();
    assert.equal(map.lookup(0x1005), undefined, 'truncated: read again from the start');
    assert.deepEqual(map.lookup(0x5001), { name: 'fresh', offset: 1 });
    rmSync(path);
    writeFileSync(path, '6000 10 replaced\n');
    map.refresh();
    assert.deepEqual(map.lookup(0x6001), { name: 'replaced', offset: 1 });
    map.close();
  });

  it('answers from the open file after the map is deleted, counts malformed lines and cuts long names', () => {
    const path = join(dir, 'odd.map');
    const long = 'x'.repeat(MAX_NAME * 3);
    writeFileSync(path, `garbage\n0x7000 10 with_prefix\n8000 zz bad_size\n9000 10 ${long}\n${'y'.repeat(100_000)}\na000 10 after_a_long_line\n`);
    const map = new PerfMap(path);
    map.refresh();
    rmSync(path);
    assert.deepEqual(map.lookup(0x7001), { name: 'with_prefix', offset: 1 });
    assert.equal(map.lookup(0x9000)?.name.length, MAX_NAME);
    assert.deepEqual(map.lookup(0xa000), { name: 'after_a_long_line', offset: 0 });
    assert.deepEqual({ malformed: map.stats.malformed, longNames: map.stats.longNames }, { malformed: 3, longNames: 1 });
    map.close();
  });

  it('keeps a 300 MB map within a memory bound, drops the oldest lines past its cap and counts them', () => {
    const path = join(dir, 'huge.map');
    // Like V8's --perf-basic-prof after days: every line a new function, in code space reused.
    const fd = openSync(path, 'w');
    const line = (i: number) => `${(0x10000000 + (i % 3_000_000) * 64).toString(16)} 40 LazyCompile:*handler_${i} /srv/app/node_modules/framework/lib/router/layer.js:${i % 9000}:17\n`;
    let bytes = 0;
    let lines = 0;
    const chunk: string[] = [];
    while (bytes < 300e6) {
      const l = line(lines++);
      bytes += l.length;
      chunk.push(l);
      if (chunk.length === 10_000) {
        writeSync(fd, chunk.join(''));
        chunk.length = 0;
      }
    }
    writeSync(fd, chunk.join(''));
    closeSync(fd);
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const map = new PerfMap(path);
    map.refresh();
    peak = Math.max(peak, process.memoryUsage().rss);
    const s = map.stats;
    assert.equal(s.lines, lines);
    assert.ok(s.entries <= DEFAULT_MAX_ENTRIES && s.entries >= (DEFAULT_MAX_ENTRIES * 3) / 4, `${s.entries} entries`);
    assert.equal(s.evicted + s.entries + Math.max(0, lines - 3_000_000), lines, 'every line is an entry, evicted, or replaced by a later one');
    assert.equal(s.bytesUnread, 0);
    // The newest lines answer; the oldest were dropped.
    const last = lines - 1;
    assert.equal(map.lookup(0x10000000 + (last % 3_000_000) * 64 + 1)?.name.split(' ')[0], `LazyCompile:*handler_${last}`);
    assert.equal(map.lookup(0x10000000 + 64 * 10 + 1), undefined);
    // Appending one line reads that line only.
    appendFileSync(path, `${(0x9000_0000).toString(16)} 10 appended_later\n`);
    map.refresh();
    assert.equal(map.stats.bytesRead, bytes + `90000000 10 appended_later\n`.length);
    assert.equal(map.lookup(0x9000_0001)?.name, 'appended_later');
    peak = Math.max(peak, process.memoryUsage().rss);
    const grownMb = (peak - rssBefore) / 2 ** 20;
    assert.ok(grownMb < 120, `RSS grew by ${grownMb.toFixed(0)} MB while reading a 300 MB map`);
    map.close();
    rmSync(path);
  });

  it('reads at most its budget per refresh and the rest on the next ones', () => {
    const path = join(dir, 'budget.map');
    const lines = Array.from({ length: 600_000 }, (_, i) => `${(0x1000 + i * 16).toString(16)} 10 f${i}\n`).join('');
    writeFileSync(path, lines);
    const map = new PerfMap(path, { readBudget: 1, maxEntries: 1_000_000 });
    map.refresh();
    assert.ok(map.stats.bytesUnread > 0 && map.stats.bytesRead > 0);
    while (map.stats.bytesUnread > 0) map.refresh();
    assert.equal(map.length, 600_000);
    assert.equal(map.lookup(0x1000 + 599_999 * 16)?.name, 'f599999');
    map.close();
  });
});

describe('process-table with a binary that claims another binary\'s build id', () => {
  it('does not let the forged binary name the real one\'s functions', async () => {
    const sub = join(dir, 'forged');
    mkdirSync(sub, { recursive: true });
    const body = (fn: string) => `
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) void ${fn}(void) { pause(); }
int main(void) { printf("%d 0\\n", getpid()); fflush(stdout); ${fn}(); return 0; }
`;
    const real = buildC(sub, 'real', body('real_function'), ['-O1', '-Wl,--build-id=0x1111111111111111111111111111111111111111']);
    const forged = buildC(sub, 'forged', body('forged_function'), ['-O1', '-Wl,--build-id=0x1111111111111111111111111111111111111111']);
    const a = await startJit([forged]);
    const b = await startJit([real]);
    const table = new ProcessTable();
    try {
      const fa = table.ensure(a.pid)!.mappings.find((m) => m.path === forged && m.file)!.file!;
      const fb = table.ensure(b.pid)!.mappings.find((m) => m.path === real && m.file)!.file!;
      assert.equal(fa.buildId, fb.buildId, 'both claim the same build id');
      assert.notEqual(fa.key, fb.key, 'but they are different files, parsed apart');
      // A byte-identical copy is shared (the point of keying by build id).
      const copy = join(sub, 'real-copy');
      copyFileSync(real, copy);
      chmodSync(copy, 0o755);
      const c = await startJit([copy]);
      const fc = table.ensure(c.pid)!.mappings.find((m) => m.path === copy && m.file)!.file!;
      assert.equal(fc.key, fb.key);
      c.child.kill('SIGKILL');
    } finally {
      table.close();
      a.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
    }
  });
});
