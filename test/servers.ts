// The real profiling backends that the export tests talk to: an OpenTelemetry Collector, Parca
// and Grafana Pyroscope, built from the Go module proxy at pinned versions, cached, and started
// on loopback.
//
// Builds are cached in test/.servers/<name>-<version>-<hash of the recipe>/ (FLAMEWIRE_SERVERS
// overrides the parent folder). A build happens in a temporary folder beside it that is renamed
// into place only when the binary exists, so an interrupted build is never taken for a finished
// one. The tests build on demand rather than in scripts/test-deps.mjs: only the tests that talk
// to a backend pay for it, and a failed build fails those tests with the go command's message
// instead of stopping the whole suite before it starts.
//
// What a build costs (2 cores, other work on the machine): with empty Go caches, as on a fresh
// CI machine, the collector 150 s and Parca 600 s, adding 2.5 GB to the Go build cache and 2.8 GB
// to the module cache; with warm Go caches and no test/.servers (a fresh clone) 7 s and 13 s;
// cached, nothing. The binaries: collector 34 MB, Parca 164 MB (stripped). Grafana Pyroscope:
// 705 s with empty caches of its own (1.5 GB of modules, 2.3 GB of build cache; about 850 s
// when Parca's and the collector's are warm but the machine is busier), 15 s warm, a 96 MB
// binary.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { repoRoot, workDir } from './helpers.js';

/** The collector core and contrib release (they move together) and the stable confmap modules of that release. */
export const COLLECTOR_VERSION = '0.162.0';
export const COLLECTOR_STABLE_VERSION = '1.68.0';
/** The Parca release the issue names. */
export const PARCA_VERSION = '0.28.0';
/** Grafana Pyroscope: the 1.x release of April 2026, and the api module published with it (see buildPyroscope). */
export const PYROSCOPE_VERSION = '1.21.0';
export const PYROSCOPE_API_VERSION = '1.5.0';

/** The collector's manifest for the OpenTelemetry Collector Builder (ocb). */
const COLLECTOR_MANIFEST = `dist:
  name: otelcol-flamewire
  description: OpenTelemetry Collector for flamewire's export tests
  output_path: ./src
  version: ${COLLECTOR_VERSION}
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v${COLLECTOR_VERSION}
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v${COLLECTOR_VERSION}
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v${COLLECTOR_VERSION}
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v${COLLECTOR_STABLE_VERSION}
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v${COLLECTOR_STABLE_VERSION}
`;

const serversRoot = (): string => process.env.FLAMEWIRE_SERVERS ?? join(repoRoot, 'test', '.servers');

/**
 * The environment of every Go command here. GOTOOLCHAIN=auto: the local Go when it is new
 * enough for the module (both need Go 1.25), else the toolchain go.mod asks for, which the go
 * command fetches from the module proxy. GOFLAGS is ours alone, so that a developer's settings
 * (-mod=vendor, say) do not change what is built.
 */
export function goEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, GOTOOLCHAIN: 'auto', GOFLAGS: '', CGO_ENABLED: '0', ...extra };
}

/** Runs a command; resolves to its stdout, rejects with the tail of its stderr. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env: NodeJS.ProcessEnv }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-4000)}`)) : resolve(stdout),
    );
  });
}

const building = new Map<string, Promise<string>>();

/**
 * Returns `<cache>/<key>/<binary>`, running `build(tmp)` first when it is not there yet; build
 * leaves the binary at `<tmp>/<binary>`. One build per key at a time in this process.
 */
export function cached(key: string, binary: string, build: (tmp: string) => Promise<void>): Promise<string> {
  const dir = join(serversRoot(), key);
  const bin = join(dir, binary);
  if (existsSync(bin)) return Promise.resolve(bin);
  let p = building.get(key);
  if (!p) {
    process.stderr.write(`flamewire tests: building ${key} from the Go module proxy into ${dir} (once; minutes with empty Go caches)\n`);
    p = (async () => {
      const tmp = `${dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      try {
        await build(tmp);
        if (!existsSync(join(tmp, binary))) throw new Error(`building ${key} left no ${binary}`);
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
      } catch (e) {
        rmSync(tmp, { recursive: true, force: true });
        throw e;
      }
      return bin;
    })().finally(() => building.delete(key));
    building.set(key, p);
  }
  return p;
}

/** A short hash of a build recipe, for the cache key. */
export const short = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 8);

/**
 * Builds the OpenTelemetry Collector of COLLECTOR_MANIFEST with ocb (installed from the module
 * proxy at the same version) and returns the binary's path.
 *
 * Why 0.162.0, not the newest: the proxy this project reaches answers 403 for the zips of
 * go.opentelemetry.io/collector/internal/statusutil v0.163.0 and v0.164.0, which otlpreceiver
 * imports from 0.163.0 on, so 0.163 and 0.164 cannot be built here; 0.162.0 is the newest that
 * builds, and its pdata (v1.68.0) speaks the profiles v1development layout of proto 1.10/1.11
 * (one sample_type per profile, the seven dictionary tables, key_strindex).
 *
 * Why GOFLAGS=-e: ocb runs `go mod tidy`, which also resolves the test-only imports of every
 * component; the fileexporter's tests import otlpencodingextension v0.162.0, whose zip the proxy
 * also refuses. -e lets tidy record everything else; the collector itself never imports that
 * module, and `go build` (run by ocb next) fails loudly if anything it needs is missing.
 */
export function buildCollector(): Promise<string> {
  const key = `otelcol-${COLLECTOR_VERSION}-${short(COLLECTOR_MANIFEST)}`;
  return cached(key, 'otelcol-flamewire', async (tmp) => {
    writeFileSync(join(tmp, 'manifest.yaml'), COLLECTOR_MANIFEST);
    await run('go', ['install', `go.opentelemetry.io/collector/cmd/builder@v${COLLECTOR_VERSION}`], { env: goEnv({ GOBIN: tmp }) });
    await run(join(tmp, 'builder'), ['--config', 'manifest.yaml'], { cwd: tmp, env: goEnv({ GOFLAGS: '-e' }) });
    renameSync(join(tmp, 'src', 'otelcol-flamewire'), join(tmp, 'otelcol-flamewire'));
  });
}

/**
 * Builds Parca PARCA_VERSION and returns the binary's path. The build is the one
 * `go install github.com/parca-dev/parca/cmd/parca@v0.28.0` does (the released module's own
 * go.mod and go.sum, nothing replaced), done in two steps because that command fails here before
 * it builds anything: to learn whether the module is deprecated it reads the module's version
 * list (.../parca-dev/parca/@v/list), and the proxy this project reaches answers that with 403,
 * while it serves the version itself. So: `go mod download` the module (info, go.mod, zip:
 * checked against the checksum database like any download), then `go build ./cmd/parca` inside
 * it. The web UI that Parca embeds (ui/packages/app/web/build) is a folder that holds only a
 * keep.go in the released module, so it embeds as is: the UI pages are missing, the APIs are not.
 */
export function buildParca(): Promise<string> {
  const flags = ['-trimpath', '-ldflags=-s -w'];
  return cached(`parca-${PARCA_VERSION}-${short(flags.join(' '))}`, 'parca', async (tmp) => {
    const mod = `github.com/parca-dev/parca@v${PARCA_VERSION}`;
    const info = JSON.parse(await run('go', ['mod', 'download', '-json', mod], { cwd: tmp, env: goEnv() })) as { Dir?: string; Error?: string };
    if (!info.Dir) throw new Error(`go mod download ${mod}: ${info.Error ?? 'no folder'}`);
    await run('go', ['build', ...flags, '-o', join(tmp, 'parca'), './cmd/parca'], {
      cwd: info.Dir,
      env: goEnv({ GOFLAGS: '-mod=readonly' }),
    });
  });
}

/**
 * Builds Grafana Pyroscope PYROSCOPE_VERSION (cmd/pyroscope, the single binary) and returns
 * the binary's path. Like Parca: `go mod download` of the module, then `go build` inside a copy
 * of it, because `go install …@v1.21.0` would first read the module's version list, which the
 * proxy here answers with 403.
 *
 * One thing more than Parca: the module's go.mod replaces github.com/grafana/pyroscope/api with
 * ./api, a nested module of its own that the module's zip leaves out (every nested module is).
 * The api module at the release's commit is not on the proxy (403 for the commit), but the api
 * release tagged the same day for it is: v1.5.0, copied in as ./api. go.mod and go.sum stay as
 * released (-mod=readonly); GOWORK=off because the zip keeps a go.work naming ./api and ./lidia.
 * Without the embedassets build tag the web UI is not embedded (its build is not in the zip);
 * the APIs are all there.
 */
export function buildPyroscope(): Promise<string> {
  const flags = ['-trimpath', '-ldflags=-s -w'];
  return cached(`pyroscope-${PYROSCOPE_VERSION}-api-${PYROSCOPE_API_VERSION}-${short(flags.join(' '))}`, 'pyroscope', async (tmp) => {
    const download = async (mod: string): Promise<string> => {
      const info = JSON.parse(await run('go', ['mod', 'download', '-json', mod], { cwd: tmp, env: goEnv() })) as { Dir?: string; Error?: string };
      if (!info.Dir) throw new Error(`go mod download ${mod}: ${info.Error ?? 'no folder'}`);
      return info.Dir;
    };
    const main = await download(`github.com/grafana/pyroscope@v${PYROSCOPE_VERSION}`);
    const api = await download(`github.com/grafana/pyroscope/api@v${PYROSCOPE_API_VERSION}`);
    const src = join(tmp, 'src');
    // The module cache is read-only: copies, made writable for the build.
    cpSync(main, src, { recursive: true });
    cpSync(api, join(src, 'api'), { recursive: true });
    await run('chmod', ['-R', 'u+w', src], { env: process.env });
    await run('go', ['build', ...flags, '-o', join(tmp, 'pyroscope'), './cmd/pyroscope'], {
      cwd: src,
      env: goEnv({ GOFLAGS: '-mod=readonly', GOWORK: 'off' }),
    });
    rmSync(src, { recursive: true, force: true });
  });
}

/** A free TCP port on 127.0.0.1 (free when asked; the server that takes it binds it soon after). */
/** Ports freePort() handed out already: servers started side by side never get the same one. */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/**
 * Servers started together: all of them, or none (the ones that started are stopped when one
 * fails, so that no server outlives the test and keeps its process from ending).
 */
export async function startAll<T extends { stop(): Promise<void> }[]>(...starts: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw failed.reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as T;
}

/** A started server: its output so far, and stop(), which ends it (SIGTERM, then SIGKILL). */
export interface RunningServer {
  child: ChildProcess;
  /** Everything it printed on stdout and stderr so far (the last few MiB). */
  log(): string;
  /** The file that keeps all of it, for a look after the test. */
  logFile: string;
  stop(): Promise<void>;
}

function startServer(bin: string, args: string[], cwd: string, logFile: string): RunningServer {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const file = createWriteStream(logFile);
  let out = '';
  const keep = (d: Buffer): void => {
    file.write(d);
    out += d.toString();
    if (out.length > 4 << 20) out = out.slice(-(2 << 20));
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => file.end());
  return {
    child,
    log: () => out,
    logFile,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `ready` every 100 ms until it is true; rejects when the server exits or after `ms`. */
async function waitReady(server: RunningServer, what: string, ready: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`${what} exited (${server.child.exitCode ?? server.child.signalCode}) before it was ready:\n${server.log().slice(-4000)}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${what} not ready after ${ms} ms:\n${server.log().slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Collector extends RunningServer {
  /** host:port of the OTLP gRPC receiver (opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export). */
  grpc: string;
  /** Base URL of the OTLP HTTP receiver; profiles go to POST `${http}/v1development/profiles`. */
  http: string;
  /** The file exporter's output: one JSON ProfilesData (OTLP JSON mapping) per line. */
  output: string;
  /** The lines of `output` parsed so far. */
  received(): unknown[];
}

let collectorStarts = 0;

/**
 * Starts the collector (buildCollector first) with an OTLP receiver on two loopback ports (free
 * ones, or `ports`: a collector that comes back where a client expects it), a profiles pipeline
 * to the file exporter and, with `debug`, also the debug exporter at detailed verbosity (its text
 * goes to log()). Every start has files of its own, since the file exporter truncates its
 * output. Resolves once the HTTP receiver answers.
 */
export async function startCollector(opts: { name?: string; debug?: boolean; ports?: { grpc: number; http: number } } = {}): Promise<Collector> {
  // A free port can be taken by another process between the look and the bind: try new ones.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startCollectorOnce(opts);
    } catch (e) {
      if (opts.ports || attempt === 3 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function startCollectorOnce(opts: { name?: string; debug?: boolean; ports?: { grpc: number; http: number } }): Promise<Collector> {
  const bin = await buildCollector();
  const dir = workDir(opts.name ?? 'collector');
  const { grpc: grpcPort, http: httpPort } = opts.ports ?? { grpc: await freePort(), http: await freePort() };
  const tag = `${httpPort}-${++collectorStarts}`;
  const output = join(dir, `profiles-${tag}.jsonl`);
  rmSync(output, { force: true });
  const exporters = opts.debug ? '[file, debug]' : '[file]';
  const config = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${grpcPort}
      http:
        endpoint: 127.0.0.1:${httpPort}
exporters:
  file:
    path: ${JSON.stringify(output)}
    flush_interval: 100ms
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: ${exporters}
`;
  const configPath = join(dir, `collector-${tag}.yaml`);
  writeFileSync(configPath, config);
  // Profiles are a development signal: without this gate a profiles pipeline is a config error.
  const server = startServer(bin, ['--config', configPath, '--feature-gates=+service.profilesSupport'], dir, join(dir, `collector-${tag}.log`));
  const http = `http://127.0.0.1:${httpPort}`;
  // The HTTP receiver answers a GET on the profiles path with 405 once it listens.
  await waitReady(server, 'the OpenTelemetry Collector', async () => (await fetch(`${http}/v1development/profiles`)).status === 405);
  return {
    ...server,
    grpc: `127.0.0.1:${grpcPort}`,
    http,
    output,
    received: () => {
      if (!existsSync(output)) return [];
      // The exporter may be writing a line right now: only complete lines count.
      const lines = readFileSync(output, 'utf8').split('\n');
      lines.pop();
      return lines.filter((l) => l.trim()).map((l) => JSON.parse(l) as unknown);
    },
  };
}

/**
 * Parca serves everything on one port: gRPC over cleartext HTTP/2
 * (parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw,
 * opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export,
 * parca.query.v1alpha1.QueryService/*), the same services as gRPC-web over HTTP/1.1
 * (content-type application/grpc-web+proto), and JSON under /api (POST /api/profiles/writeraw,
 * GET /api/profiles/query, /types, /labels, /query_range). OTLP comes only over gRPC: there is
 * no /v1development/profiles. The web UI answers 404 (see buildParca).
 */
export type Parca = OnePortServer;

/** A server whose APIs share one loopback port. */
export interface OnePortServer extends RunningServer {
  /** host:port of its port. */
  address: string;
  /** `http://${address}`. */
  url: string;
}

/** `dir`/`name`, emptied (or made). */
function freshDir(dir: string, name: string): string {
  const path = join(dir, name);
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path, { recursive: true });
  return path;
}

/**
 * Starts Parca (buildParca first) on a free loopback port with in-memory storage (the default
 * without --enable-persistence), a config with no scrape targets and its object storage (debug
 * info uploads) in a scratch folder, and no debuginfod upstream (by default Parca would ask
 * debuginfod.elfutils.org about unsymbolized addresses). Resolves once the query API answers.
 */
export async function startParca(opts: { name?: string } = {}): Promise<Parca> {
  const bin = await buildParca();
  const dir = workDir(opts.name ?? 'parca');
  const port = await freePort();
  const data = freshDir(dir, `data-${port}`);
  const configPath = join(dir, `parca-${port}.yaml`);
  writeFileSync(configPath, `object_storage:\n  bucket:\n    type: FILESYSTEM\n    config:\n      directory: ${JSON.stringify(data)}\n`);
  const address = `127.0.0.1:${port}`;
  const server = startServer(
    bin,
    [
      `--config-path=${configPath}`,
      `--http-address=${address}`,
      '--debuginfod-upstream-servers=',
      `--debuginfo-cache-dir=${data}`,
      '--storage-active-memory=67108864',
      '--log-level=info',
    ],
    dir,
    join(dir, `parca-${port}.log`),
  );
  const url = `http://${address}`;
  await waitReady(server, 'Parca', async () => (await fetch(`${url}/api/profiles/types`)).ok);
  return { ...server, address, url };
}

/**
 * What Parca gives back for a query merged over the last hour, as function → flat and cumulative
 * value. Asked for as pprof (REPORT_TYPE_PPROF, gzipped pprof in the JSON) rather than as
 * Parca's own top table: v0.28.0's REPORT_TYPE_TOP dereferences the function of every location
 * line and crashes the whole server (a nil pointer in query/top.go) when a line has none, which
 * is what a line pointing at the empty function_table[0] becomes (the first OTLP test does that).
 */
export async function parcaQuery(parca: Parca, query: string): Promise<Map<string, { flat: number; cum: number }>> {
  const now = Date.now();
  const params = new URLSearchParams({
    mode: 'MODE_MERGE',
    report_type: 'REPORT_TYPE_PPROF',
    'merge.query': query,
    'merge.start': new Date(now - 3_600_000).toISOString(),
    'merge.end': new Date(now + 60_000).toISOString(),
  });
  const res = await fetch(`${parca.url}/api/profiles/query?${params}`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`Parca query ${query}: HTTP ${res.status}: ${text.slice(0, 500)}`);
  const b64 = (JSON.parse(text) as { pprof?: string }).pprof;
  const out = new Map<string, { flat: number; cum: number }>();
  if (!b64) return out;
  const p = PprofProfile.decode(gunzipSync(Buffer.from(b64, 'base64')));
  const strings = p.stringTable.strings;
  const fnName = new Map(p.function.map((f) => [Number(f.id), strings[Number(f.name)] ?? '']));
  const locNames = new Map(p.location.map((l) => [Number(l.id), l.line.map((ln) => fnName.get(Number(ln.functionId)) ?? '')]));
  for (const sample of p.sample) {
    const v = Number(sample.value[0] ?? 0);
    const seen = new Set<string>();
    sample.locationId.forEach((id, i) => {
      (locNames.get(Number(id)) ?? []).forEach((name, j) => {
        const e = out.get(name) ?? { flat: 0, cum: 0 };
        if (i === 0 && j === 0) e.flat += v; // the leaf: innermost line of the first location
        if (!seen.has(name)) e.cum += v;
        seen.add(name);
        out.set(name, e);
      });
    });
  }
  return out;
}

/**
 * Grafana Pyroscope in single-binary mode (all components in one process) serves everything on
 * its HTTP port: /ingest (its own API), OTLP over HTTP (POST /v1development/profiles) and over
 * gRPC (h2c, ProfilesService/Export), and the Connect query API (/querier.v1.QuerierService/*).
 */
export type Pyroscope = OnePortServer;

/**
 * Starts Pyroscope (buildPyroscope first) on free loopback ports, the rings in memory rather
 * than memberlist, blocks in a scratch folder, and nothing sent anywhere else (no usage stats,
 * no self-profiling push). Resolves once /ready says ready and the ingester is ACTIVE in the ring.
 */
export async function startPyroscope(opts: { name?: string } = {}): Promise<Pyroscope> {
  const bin = await buildPyroscope();
  const dir = workDir(opts.name ?? 'pyroscope');
  const [http, grpcPort, memberlist] = [await freePort(), await freePort(), await freePort()];
  const data = freshDir(dir, `data-${http}`);
  mkdirSync(join(data, 'db'));
  const host = '127.0.0.1';
  const args = [
    '-target=all',
    `-server.http-listen-address=${host}`,
    `-server.http-listen-port=${http}`,
    `-server.grpc-listen-address=${host}`,
    `-server.grpc-listen-port=${grpcPort}`,
    `-memberlist.bind-addr=${host}`,
    `-memberlist.bind-port=${memberlist}`,
    `-memberlist.advertise-addr=${host}`,
    `-memberlist.advertise-port=${memberlist}`,
    ...['distributor.ring', 'query-scheduler.ring', 'overrides-exporter.ring', 'store-gateway.sharding-ring', 'compactor.ring'].flatMap((r) => [`-${r}.store=inmemory`, `-${r}.instance-addr=${host}`]),
    '-ring.store=inmemory',
    `-ingester.lifecycler.addr=${host}`,
    '-ingester.min-ready-duration=0s',
    `-query-frontend.instance-addr=${host}`,
    '-self-profiling.disable-push=true',
    '-usage-stats.enabled=false',
    '-storage.backend=filesystem',
    `-storage.filesystem.dir=${join(data, 'bucket')}`,
    `-pyroscopedb.data-path=${join(data, 'db')}`,
    '-log.level=info',
  ];
  const server = startServer(bin, args, dir, join(dir, `pyroscope-${http}.log`));
  const url = `http://${host}:${http}`;
  await waitReady(
    server,
    'Pyroscope',
    async () => (await (await fetch(`${url}/ready`)).text()).includes('ready') && (await (await fetch(`${url}/ring`)).text()).includes('ACTIVE'),
    60_000,
  );
  return { ...server, address: `${host}:${http}`, url };
}

/**
 * What Pyroscope gives back for `profileType` and `selector` merged over the last hour, as
 * function → cumulative value: its SelectMergeProfile (a pprof, asked for and answered as
 * Connect JSON).
 */
export async function pyroscopeQuery(p: Pyroscope, profileType: string, selector: string): Promise<Map<string, number>> {
  const now = Date.now();
  const res = await fetch(`${p.url}/querier.v1.QuerierService/SelectMergeProfile`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ profileTypeID: profileType, labelSelector: selector, start: now - 3_600_000, end: now + 60_000 }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`Pyroscope query ${profileType}${selector}: HTTP ${res.status}: ${text.slice(0, 500)}`);
  type Id = string | number;
  const prof = JSON.parse(text) as {
    sample?: Array<{ locationId?: Id[]; value?: Id[] }>;
    location?: Array<{ id: Id; line?: Array<{ functionId: Id }> }>;
    function?: Array<{ id: Id; name?: Id }>;
    stringTable?: string[];
  };
  const strings = prof.stringTable ?? [];
  const fnName = new Map((prof.function ?? []).map((f) => [String(f.id), strings[Number(f.name ?? 0)] ?? '']));
  const locNames = new Map((prof.location ?? []).map((l) => [String(l.id), (l.line ?? []).map((ln) => fnName.get(String(ln.functionId)) ?? '')]));
  const out = new Map<string, number>();
  for (const s of prof.sample ?? []) {
    const v = Number(s.value?.[0] ?? 0);
    const names = new Set((s.locationId ?? []).flatMap((id) => locNames.get(String(id)) ?? []));
    for (const n of names) out.set(n, (out.get(n) ?? 0) + v);
  }
  return out;
}

/** The profile types Pyroscope knows (for messages when a query finds nothing). */
export async function pyroscopeProfileTypes(p: Pyroscope): Promise<string[]> {
  const now = Date.now();
  const res = await fetch(`${p.url}/querier.v1.QuerierService/ProfileTypes`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ start: now - 3_600_000, end: now + 60_000 }),
  });
  const body = (await res.json()) as { profileTypes?: Array<{ ID: string }> };
  return (body.profileTypes ?? []).map((t) => t.ID);
}
