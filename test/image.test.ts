// The container image (Dockerfile), proven without a container engine, which neither this
// machine nor CI has:
//  - the Dockerfile is read by BuildKit itself (the parser, instruction parser and linter that
//    `docker build --check` runs), through test/dockerfile-check/main.go built from the Go
//    module proxy at a pinned BuildKit release and cached like the backend servers;
//  - the runtime stage is rebuilt from this checkout in a scratch folder, by following the
//    instructions BuildKit parsed (no regexes over the Dockerfile): the stage that runs `npm ci`
//    is this checkout (CI built it with that same command), every other stage the runtime stage
//    copies from is replayed (its npm command run for real), and the runtime stage's own steps
//    are replayed in a folder that stands for the image's /. Then flamewire runs from there
//    through the image's ENTRYPOINT, so a file, a dependency or a link the image lacks fails it;
//  - the shared libraries the addon links are traced to their Debian packages (ldd, dpkg -S)
//    and must be what the runtime stage installs, no more and no less.
// What stays unproven here: the base image and the Debian packages themselves (the build runs
// on trixie's clang, bpftool and libbpf; this machine has bookworm's), and the build stage's
// toolchain install, which only a real `docker build` runs.
//
// Cost (2 cores): building the checker with empty Go caches takes about 2 minutes and adds
// 265 MB to the module cache and 256 MB to the build cache (a 19 MB binary); cached, nothing.
// The rest of the file takes about 17 s, most of it `npm ci --omit=dev` from the npm cache.

import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { repoRoot, workDir } from './helpers.js';
import { otlpGrpcServer, Request } from './otlp-official.js';
import { cached, goEnv, run, short } from './servers.js';

/** The BuildKit release whose parser and linter read the Dockerfile. */
const BUILDKIT_VERSION = '0.31.0';

/** PATH when an image sets none (BuildKit's default for Linux, also the node images'). */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Packages the addon links that every Node image has, because the node binary links them too. */
const IN_EVERY_NODE_IMAGE = new Set(['libc6', 'libstdc++6', 'libgcc-s1']);

interface Command {
  kind: string;
  line: number;
  from?: string;
  sources?: string[];
  dest?: string;
  chmod?: string;
  chown?: string;
  shell?: boolean;
  args?: string[];
  words?: string[];
  flags?: string[];
  env?: Array<[string, string]>;
  path?: string;
}
interface Stage {
  name: string;
  base: string;
  platform?: string;
  line: number;
  commands: Command[];
}
interface Report {
  lint: { warnings: Array<{ rule: string; detail: string; url?: string; line: number }>; error?: string };
  ignored: Array<{ line: number; source: string }>;
  stages: Stage[];
}

/** Builds test/dockerfile-check/main.go against BUILDKIT_VERSION (cached); returns the binary. */
function buildDockerfileCheck(): Promise<string> {
  const source = readFileSync(join(repoRoot, 'test', 'dockerfile-check', 'main.go'), 'utf8');
  const goMod = `module flamewire.test/dockerfile-check\n\ngo 1.24\n\nrequire github.com/moby/buildkit v${BUILDKIT_VERSION}\n`;
  return cached(`dockerfile-check-buildkit-${BUILDKIT_VERSION}-${short(source + goMod)}`, 'dockerfile-check', async (tmp) => {
    const src = join(tmp, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'main.go'), source);
    writeFileSync(join(src, 'go.mod'), goMod);
    // -mod=mod: go.sum is filled from the module proxy (checked against the checksum database)
    // for the packages this program imports, at the versions BuildKit's go.mod names.
    await run('go', ['build', '-trimpath', '-ldflags=-s -w', '-o', join(tmp, 'dockerfile-check'), '.'], { cwd: src, env: goEnv({ GOFLAGS: '-mod=mod' }) });
    rmSync(src, { recursive: true, force: true });
  });
}

async function check(checker: string, dockerfile: string, dockerignore?: string): Promise<Report> {
  return JSON.parse(await run(checker, dockerignore ? [dockerfile, dockerignore] : [dockerfile], { env: process.env })) as Report;
}

const stageNamed = (report: Report, name: string): Stage | undefined => report.stages.find((s) => s.name.toLowerCase() === name.toLowerCase());

/** The stages `stage` is built on, outermost first, and the image at the bottom. */
function lineage(report: Report, stage: Stage): { image: string; stages: Stage[] } {
  const stages = [stage];
  for (let base = stageNamed(report, stage.base); base; base = stageNamed(report, base.base)) stages.unshift(base);
  return { image: stages[0]!.base, stages };
}

const commandsOf = (report: Report, stage: Stage): Command[] => lineage(report, stage).stages.flatMap((s) => s.commands);

/** A RUN's simple commands: its words split at `&&` (exec form: its arguments as one command). */
function simpleCommands(c: Command): string[][] {
  const words = c.shell ? (c.words ?? []) : (c.args ?? []);
  const out: string[][] = [[]];
  for (const w of words) {
    if (w === '&&') out.push([]);
    else out[out.length - 1]!.push(w);
  }
  return out.filter((cmd) => cmd.length > 0);
}

/** The packages a stage's `apt-get install` commands install. */
function aptInstalls(report: Report, stage: Stage): string[] {
  const pkgs: string[] = [];
  for (const c of commandsOf(report, stage).filter((x) => x.kind === 'run')) {
    for (const cmd of simpleCommands(c)) {
      const i = cmd.indexOf('install');
      if (cmd[0] === 'apt-get' && i > 0) pkgs.push(...cmd.slice(i + 1).filter((w) => !w.startsWith('-')));
    }
  }
  return pkgs;
}

/** The stage that runs `npm ci`, the build a checkout has had: this checkout stands for it. */
function buildStage(report: Report): Stage {
  const found = report.stages.filter((s) => s.commands.some((c) => c.kind === 'run' && simpleCommands(c).some((cmd) => cmd.join(' ') === 'npm ci')));
  assert.equal(found.length, 1, `one stage runs \`npm ci\`; found ${found.map((s) => s.name).join(', ') || 'none'}`);
  return found[0]!;
}

/** The image's / as a folder here: a path in the image to a path on this machine. */
type ImageFiles = (imagePath: string) => string;

interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: Map<string, string>;
  workdir: string;
}

/** COPY's rules: a folder's contents go into dest; a file goes into dest/ or becomes dest. */
function copyLikeCopy(from: string, to: string, intoFolder: boolean): void {
  if (statSync(from).isDirectory()) {
    cpSync(from, to, { recursive: true, verbatimSymlinks: true });
    return;
  }
  const target = intoFolder ? join(to, basename(from)) : to;
  mkdirSync(dirname(target), { recursive: true });
  cpSync(from, target);
}

/** The environment of commands run for an image: this machine's PATH (for node and npm), no npm settings of an enclosing `npm test`. */
function cleanEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8' };
  return env;
}

/**
 * Replays `stage` into `root` (its /): WORKDIR, ENV, COPY from the build context or from other
 * stages (`files` knows where each stage's files are), and the RUN steps this test knows how to
 * replay. Anything else fails, naming the line, so a new kind of step gets a thought here.
 */
async function replay(report: Report, stage: Stage, root: string, files: Map<string, ImageFiles>): Promise<ImageConfig> {
  const cfg: ImageConfig = { entrypoint: [], cmd: [], env: new Map([['PATH', DEFAULT_PATH]]), workdir: '/' };
  const at = (p: string): string => join(root, p);
  mkdirSync(root, { recursive: true });
  for (const c of commandsOf(report, stage)) {
    const where = `Dockerfile line ${c.line} (${c.kind}, stage ${stage.name})`;
    switch (c.kind) {
      case 'workdir':
        cfg.workdir = posix.resolve(cfg.workdir, c.path!);
        mkdirSync(at(cfg.workdir), { recursive: true });
        break;
      case 'env':
        for (const [k, v] of c.env ?? []) {
          assert.ok(!v.includes('$'), `${where}: the test does not expand variables in ENV`);
          cfg.env.set(k, v);
        }
        break;
      case 'copy': {
        const sources = c.sources ?? [];
        assert.ok(sources.every((s) => !/[*?[]/.test(s)), `${where}: the test does not expand wildcards in COPY`);
        const dest = posix.resolve(cfg.workdir, c.dest!);
        const intoFolder = c.dest!.endsWith('/') || sources.length > 1;
        for (const src of sources) {
          let from: string;
          if (c.from) {
            const stageFiles = files.get(c.from.toLowerCase());
            assert.ok(stageFiles, `${where}: no files for stage ${c.from}`);
            from = stageFiles(posix.resolve('/', src));
          } else {
            from = join(repoRoot, posix.normalize(src));
          }
          assert.ok(existsSync(from), `${where}: ${src} is not there (${from})`);
          copyLikeCopy(from, at(dest), intoFolder);
          if (c.chmod) execFileSync('chmod', ['-R', c.chmod, intoFolder ? join(at(dest), basename(from)) : at(dest)]);
        }
        break;
      }
      case 'run':
        for (const cmd of simpleCommands(c)) await replayRun(cmd, at, cfg, `${where}: ${cmd.join(' ')}`);
        break;
      case 'entrypoint':
      case 'cmd':
        assert.ok(!c.shell, `${where}: use the exec form (["…"]) so that signals reach flamewire`);
        if (c.kind === 'entrypoint') cfg.entrypoint = c.args ?? [];
        else cfg.cmd = c.args ?? [];
        break;
      case 'label':
        break;
      default:
        assert.fail(`${where}: the test does not know how to replay ${c.kind.toUpperCase()}`);
    }
  }
  return cfg;
}

/** Replays one simple command of a RUN: npm for real, symbolic links, apt-get (see the library test) and its clean-up. */
async function replayRun(cmd: string[], at: (p: string) => string, cfg: ImageConfig, what: string): Promise<void> {
  const [prog, ...args] = cmd;
  if (prog === 'apt-get') return;
  if (prog === 'rm' && args.length === 2 && args[0] === '-rf' && args[1] === '/var/lib/apt/lists/*') return;
  if (prog === 'ln' && args.length === 3 && args[0] === '-s') {
    const link = at(posix.resolve(cfg.workdir, args[2]!));
    mkdirSync(dirname(link), { recursive: true });
    // Absolute targets point into the image's /, which is `at('/')` here.
    symlinkSync(args[1]!.startsWith('/') ? at(args[1]!) : args[1]!, link);
    return;
  }
  if (prog === 'npm') {
    await run('npm', args, { cwd: at(cfg.workdir), env: cleanEnv(process.env.HOME ?? '/root') });
    return;
  }
  assert.fail(`${what}: the test does not know how to replay this command`);
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runIn(file: string, args: string[], cwd: string, home: string, env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: { ...cleanEnv(home), ...env }, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

/** The Debian package that owns `file` (merged-/usr aware), per dpkg -S. */
function debianPackageOf(file: string): string {
  const candidates = [file, realpathSync(file)];
  for (const f of [...candidates]) candidates.push(f.startsWith('/usr/') ? f.slice(4) : '/usr' + f);
  for (const f of candidates) {
    const r = spawnSync('dpkg', ['-S', f], { encoding: 'utf8' });
    const m = r.status === 0 ? /^([^:\s]+)(?::[^:\s]+)?: /.exec(r.stdout) : null;
    if (m) return m[1]!;
  }
  throw new Error(`dpkg -S finds no package for ${file}`);
}

function osRelease(): string {
  return /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
}

let checker: string;
let report: Report;

before(async () => {
  checker = await buildDockerfileCheck();
  report = await check(checker, join(repoRoot, 'Dockerfile'), join(repoRoot, '.dockerignore'));
});

describe('Dockerfile', () => {
  it('passes BuildKit’s parser and the checks of `docker build --check`, and COPYs nothing .dockerignore leaves out', () => {
    assert.equal(report.lint.error, undefined, `BuildKit: ${report.lint.error}`);
    assert.deepEqual(report.lint.warnings, []);
    assert.deepEqual(report.ignored, []);
  });

  it('reports a Dockerfile with known problems (the checks are live)', async () => {
    const dir = workDir('image');
    const bad = join(dir, 'Dockerfile.bad');
    writeFileSync(bad, 'FROM debian:trixie-slim as Build\nWORKDIR app\nCOPY node_modules ./node_modules\nCMD node x.js\n');
    const r = await check(checker, bad, join(repoRoot, '.dockerignore'));
    const rules = new Set(r.lint.warnings.map((w) => w.rule));
    for (const rule of ['FromAsCasing', 'StageNameCasing', 'WorkdirRelativePath', 'JSONArgsRecommended']) assert.ok(rules.has(rule), `${rule} in ${[...rules].join(', ')}`);
    assert.deepEqual(r.ignored, [{ line: 3, source: 'node_modules' }]);
    writeFileSync(bad, 'FROM debian:trixie-slim\nFROMM x\n');
    const broken = await check(checker, bad);
    assert.match(broken.lint.error ?? '', /line 2: unknown instruction: FROMM/);
  });

  it('builds every stage on one pinned Node slim image of a named Debian release', () => {
    const images = new Set(report.stages.map((s) => lineage(report, s).image));
    assert.equal(images.size, 1, [...images].join(', '));
    const image = [...images][0]!;
    const m = /^node:(\d+)\.\d+\.\d+-([a-z]+)-slim(@sha256:[0-9a-f]{64})?$/.exec(image);
    assert.ok(m, `${image}: a node:<major>.<minor>.<patch>-<debian>-slim tag`);
    const engines = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).engines.node as string;
    assert.ok(Number(m[1]) >= Number(/\d+/.exec(engines)![0]), `Node ${m[1]} satisfies engines ${engines}`);
  });

  it('builds with `npm ci` on the toolchain scripts/system-deps.mjs names', async () => {
    const build = buildStage(report);
    const { BUILD_DEPS } = (await import(pathToFileURL(join(repoRoot, 'scripts', 'system-deps.mjs')).href)) as { BUILD_DEPS: Array<{ pkg: string }> };
    const installed = new Set(aptInstalls(report, build));
    for (const { pkg } of BUILD_DEPS) assert.ok(installed.has(pkg), `the build stage installs ${pkg}`);
  });

  it('starts `flamewire agent` by default', () => {
    const runtime = report.stages.at(-1)!;
    const last = (kind: string) => commandsOf(report, runtime).filter((c) => c.kind === kind).at(-1);
    assert.deepEqual([last('entrypoint')?.args, last('entrypoint')?.shell], [['flamewire'], undefined]);
    assert.deepEqual([last('cmd')?.args, last('cmd')?.shell], [['agent'], undefined]);
  });
});

describe('the runtime stage, rebuilt from this checkout', () => {
  let scratch: string;
  let root: string;
  let cfg: ImageConfig;
  let flamewire: string;

  before(async () => {
    // Outside the repository: Node looks for packages in every parent folder, and the
    // checkout's own node_modules would hide a dependency the image lacks.
    scratch = mkdtempSync(join(tmpdir(), 'flamewire-image-'));
    for (let d = scratch; d !== dirname(d); d = dirname(d)) assert.ok(!existsSync(join(dirname(d), 'node_modules')), `no node_modules above ${scratch}`);
    const build = buildStage(report);
    let buildWorkdir = '/';
    for (const c of commandsOf(report, build)) if (c.kind === 'workdir') buildWorkdir = posix.resolve(buildWorkdir, c.path!);
    const files = new Map<string, ImageFiles>();
    files.set(build.name.toLowerCase(), (p) => {
      const rel = posix.relative(buildWorkdir, p);
      assert.ok(!rel.startsWith('..'), `${p} is outside the build stage's ${buildWorkdir}`);
      return join(repoRoot, rel);
    });
    const runtime = report.stages.at(-1)!;
    // Every other stage the runtime stage copies from is replayed into a folder of its own.
    for (const c of commandsOf(report, runtime)) {
      const from = c.from?.toLowerCase();
      if (c.kind !== 'copy' || !from || files.has(from)) continue;
      const stage = stageNamed(report, from);
      assert.ok(stage, `stage ${c.from}`);
      const stageRoot = join(scratch, `stage-${from}`);
      await replay(report, stage, stageRoot, files);
      files.set(from, (p) => join(stageRoot, p));
    }
    root = join(scratch, 'image');
    cfg = await replay(report, runtime, root, files);
    mkdirSync(join(root, 'root'), { recursive: true });
    mkdirSync(join(root, 'tmp'), { recursive: true });
    const name = cfg.entrypoint[0]!;
    const found = cfg.env.get('PATH')!.split(':').map((d) => join(root, d, name)).find((p) => existsSync(p));
    assert.ok(found, `${name} on the image's PATH`);
    flamewire = found;
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  const image = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> =>
    runIn(flamewire, [...cfg.entrypoint.slice(1), ...args], join(root, cfg.workdir), join(root, 'root'), env);

  it('puts the command on PATH as a link to dist/src/cli.js, whose #! line keeps its V8 flags', () => {
    assert.equal(realpathSync(flamewire), realpathSync(join(root, cfg.workdir, 'dist', 'src', 'cli.js')));
    const shebang = readFileSync(flamewire, 'utf8').split('\n')[0];
    assert.equal(shebang, readFileSync(join(repoRoot, 'src', 'cli.ts'), 'utf8').split('\n')[0]);
    assert.ok(statSync(flamewire).mode & 0o111, 'cli.js is executable (the build sets its mode)');
  });

  it('runs `flamewire doctor` through the ENTRYPOINT: the BPF programs load, the verdicts are the checkout’s', async () => {
    const r = await image(['doctor', '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    type Check = { name: string; status: string };
    const checks = JSON.parse(r.stdout) as Check[];
    assert.equal(checks.find((c) => c.name.startsWith('bpf()'))?.status, 'ok', r.stdout);
    const fromCheckout = JSON.parse(execFileSync(process.execPath, [join(repoRoot, 'dist', 'src', 'cli.js'), 'doctor', '--json'], { encoding: 'utf8' })) as Check[];
    const verdicts = (cs: Check[]) => cs.map((c) => `${c.name}: ${c.status}`);
    assert.deepEqual(verdicts(checks), verdicts(fromCheckout));
  });

  it('records a profile through the ENTRYPOINT', async () => {
    const out = join(root, 'tmp', 'x.pb.gz');
    const r = await whileBusy(() => image(['record', '-q', '-d', '1s', '-o', out]));
    assert.equal(r.code, 0, r.stderr);
    const p = PprofProfile.decode(gunzipSync(readFileSync(out)));
    assert.ok(p.sample.length > 0, 'samples');
    assert.ok(p.location.length > 0, 'locations');
  });

  it('runs the default command (`flamewire agent`): OTLP over gRPC to OTEL_EXPORTER_OTLP_ENDPOINT, pprof files', async () => {
    const requests: Buffer[] = [];
    const { server, port } = await otlpGrpcServer((req, cb) => {
      requests.push(req);
      cb(null, {});
    });
    try {
      const out = join(root, 'tmp', 'windows');
      const r = await whileBusy(() => image([...cfg.cmd, '-d', '2500ms', '--interval', '1s', '--output-dir', out], { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(readdirSync(out).some((f) => f.endsWith('.pb.gz')), readdirSync(out).join(', '));
      // The exporter encodes with the image's proto/ files; the official ones decode it.
      assert.ok(requests.length > 0, r.stdout);
      const decoded = Request.toObject(Request.decode(requests[0]!)) as { resourceProfiles?: unknown[] };
      assert.ok((decoded.resourceProfiles?.length ?? 0) > 0, JSON.stringify(decoded).slice(0, 500));
    } finally {
      server.forceShutdown();
    }
  });

  it('loads every module of dist/src with the production dependencies alone', async () => {
    const dist = join(root, cfg.workdir, 'dist', 'src');
    const modules = (readdirSync(dist, { recursive: true }) as string[]).filter((f) => f.endsWith('.js') && f !== 'cli.js').map((f) => pathToFileURL(join(dist, f)).href);
    assert.ok(modules.length > 20, `${modules.length} modules`);
    const script = `for (const m of ${JSON.stringify(modules)}) await import(m);`;
    const r = await runIn(process.execPath, ['--input-type=module', '-e', script], join(root, 'tmp'), join(root, 'root'));
    assert.equal(r.code, 0, r.stderr);
  });
});

/**
 * Runs `fn` with a process spinning on a CPU: whole-machine profiling of an idle machine takes
 * no samples (and the agent sends nothing for empty windows).
 */
async function whileBusy<T>(fn: () => Promise<T>): Promise<T> {
  const busy = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  try {
    return await fn();
  } finally {
    busy.kill('SIGKILL');
  }
}

describe('runtime libraries', () => {
  it('installs the Debian package of every shared library the addon links, and nothing else', () => {
    const addon = join(repoRoot, 'build', 'Release', 'flamewire.node');
    const needed = new Map<string, string>(); // package → library
    for (const line of execFileSync('ldd', [addon], { encoding: 'utf8' }).split('\n')) {
      const m = /^\s*(\S+) => (\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
      if (!m) continue;
      const pkg = debianPackageOf(m[2]!);
      if (!IN_EVERY_NODE_IMAGE.has(pkg)) needed.set(pkg, m[1]!);
    }
    assert.ok([...needed.values()].some((lib) => lib.startsWith('libbpf.so')), `ldd sees libbpf: ${[...needed.values()].join(', ')}`);

    const runtime = report.stages.at(-1)!;
    const imageRelease = /-([a-z]+)-slim/.exec(lineage(report, runtime).image)?.[1];
    const local = osRelease();
    // Same Debian release: the very names dpkg gives. Another release: the library package of
    // the same soname, under the name that release gives it; from bookworm to trixie the only
    // renames are the 64-bit time_t transition's, which appended "t64" (libelf1 → libelf1t64).
    const names = (pkg: string): string[] => (imageRelease === local ? [pkg] : [pkg, `${pkg}t64`]);
    const installed = aptInstalls(report, runtime);
    for (const [pkg, lib] of needed) {
      assert.ok(
        names(pkg).some((n) => installed.includes(n)),
        `${lib} (${pkg} on this ${local} machine) needs one of ${names(pkg).join(' | ')} in the runtime stage (image: ${imageRelease}); it installs ${installed.join(' ')}`,
      );
    }
    const wanted = new Set([...needed.keys()].flatMap(names));
    assert.deepEqual(installed.filter((p) => !wanted.has(p)), [], 'the runtime stage installs only what the addon links');
  });
});
