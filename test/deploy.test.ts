// deploy/ (the DaemonSet and what goes with it) checked two ways, since no cluster runs here:
//
// - against the real Kubernetes API types: test/deploy-check, a Go program built from the Go
//   module proxy (k8s.io/api, kustomize's krusty as kubectl embeds it), renders deploy/ and
//   deploy/privileged/ as `kubectl apply -k` does and decodes every object strictly, so a
//   misspelt field fails; the tests then read the typed objects. The build is cached like the
//   backends of servers.ts (test/.servers/deploy-check-<hash>/): about a minute on two cores
//   with the Go module cache warm, nothing later;
// - on this kernel: the real CLI runs as the container would, as uid 0 with exactly the
//   DaemonSet's capabilities (setpriv), no_new_privs, a read-only root file system with a tmpfs
//   as its emptyDir, and no tracefs or debugfs (a private mount namespace, unshare).
//
// What needs a real cluster (the kubelet running the pod, the runtime's seccomp and AppArmor,
// the probes called by the kubelet) is not tested here; the README says so.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { parseAgentConfig } from '../src/agent-config.js';
import { CAPABILITY_USES, hasCap, type CapName } from '../src/system-checks.js';
import { buildC, repoRoot, workDir } from './helpers.js';
import { cached, freePort, goEnv, run, short } from './servers.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('deploy');
const deployDir = join(repoRoot, 'deploy');
const checkSource = join(repoRoot, 'test', 'deploy-check');

/** Builds test/deploy-check (go.mod and go.sum pin every module) once per version of its files. */
function buildDeployCheck(): Promise<string> {
  const files = ['go.mod', 'go.sum', 'main.go'];
  const recipe = files.map((f) => readFileSync(join(checkSource, f), 'utf8')).join('\0');
  return cached(`deploy-check-${short(recipe)}`, 'deploy-check', async (tmp) => {
    for (const f of files) copyFileSync(join(checkSource, f), join(tmp, f));
    await run('go', ['build', '-trimpath', '-o', join(tmp, 'deploy-check'), '.'], { cwd: tmp, env: goEnv({ GOFLAGS: '-mod=readonly' }) });
  });
}

// The typed objects as the Go program prints them (only the fields read here).
/* eslint-disable @typescript-eslint/no-explicit-any */
type K8sObject = { apiVersion: string; kind: string; object: any };
type Rendered = Array<{ dir: string; objects: K8sObject[] }>;

function deployCheck(bin: string, dirs: string[]): SpawnSyncReturns<string> {
  return spawnSync(bin, dirs, { encoding: 'utf8', timeout: 120_000 });
}

const find = (objects: K8sObject[], kind: string): any[] => objects.filter((o) => o.kind === kind).map((o) => o.object);
const one = (objects: K8sObject[], kind: string): any => {
  const found = find(objects, kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};

/** Quantities as the manifests write them (Mi, Gi, m, plain). */
function quantity(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Mi|Gi|Ki|m)?$/.exec(q);
  assert.ok(m, `quantity ${q}`);
  const scale = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, m: 1e-3 }[m[2] as 'Ki'] ?? 1;
  return Number(m[1]) * scale;
}

/** The capabilities the README's "Deploy to Kubernetes" table explains. */
function readmeCapabilities(): string[] {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const section = /^## Deploy to Kubernetes\n([\s\S]*?)(?=^## )/m.exec(readme);
  assert.ok(section, 'README has a "Deploy to Kubernetes" section');
  return [...section[1].matchAll(/^\| `CAP_([A-Z_]+)` \|/gm)].map((m) => m[1]);
}

const documented = CAPABILITY_USES.map((c) => c.cap as string).sort();

describe('deploy/ rendered by kustomize and decoded strictly into the Kubernetes API types', () => {
  let bin: string;
  let base: K8sObject[];
  let privileged: K8sObject[];
  let ds: any;
  let container: any;

  before(async () => {
    bin = await buildDeployCheck();
    const r = deployCheck(bin, [deployDir, join(deployDir, 'privileged')]);
    assert.equal(r.status, 0, r.stderr);
    const rendered = JSON.parse(r.stdout) as Rendered;
    [base, privileged] = [rendered[0]!.objects, rendered[1]!.objects];
    ds = one(base, 'DaemonSet');
    container = ds.spec.template.spec.containers[0];
  });

  it('renders both kustomizations into the same kinds of objects, in one namespace', () => {
    const kinds = (objects: K8sObject[]) => objects.map((o) => `${o.apiVersion} ${o.kind}`).sort();
    assert.deepEqual(kinds(base), ['apps/v1 DaemonSet', 'rbac.authorization.k8s.io/v1 ClusterRole', 'rbac.authorization.k8s.io/v1 ClusterRoleBinding', 'v1 ConfigMap', 'v1 Namespace', 'v1 ServiceAccount']);
    assert.deepEqual(kinds(privileged), kinds(base));
    const ns = one(base, 'Namespace').metadata.name;
    for (const o of base) if (!['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind)) assert.equal(o.object.metadata.namespace, ns, o.kind);
    // hostPID and capabilities are beyond the "baseline" Pod Security Standard.
    assert.equal(one(base, 'Namespace').metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
  });

  /** deploy-check on a copy of deploy/ whose base/daemonset.yaml went through `edit`. */
  function checkEdited(name: string, edit: (text: string) => string): SpawnSyncReturns<string> {
    const copy = join(dir, name);
    rmSync(copy, { recursive: true, force: true });
    cpSync(deployDir, copy, { recursive: true });
    const file = join(copy, 'base', 'daemonset.yaml');
    const text = readFileSync(file, 'utf8');
    assert.notEqual(edit(text), text);
    writeFileSync(file, edit(text));
    return deployCheck(bin, [copy]);
  }

  it('fails on a misspelt or wrongly-cased field, as the API server would', () => {
    const r = checkEdited('misspelt', (t) => t.replace('hostPID: true', 'hostPid: true').replace('readOnlyRootFilesystem: true', 'readOnlyRootFileSystem: true'));
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /DaemonSet.*flamewire/);
    assert.match(r.stderr, /unknown field "spec\.template\.spec\.hostPid"/);
    assert.match(r.stderr, /unknown field "spec\.template\.spec\.containers\[0\]\.securityContext\.readOnlyRootFileSystem"/);
  });

  it('fails on a value of the wrong type', () => {
    const r = checkEdited('wrong-type', (t) => t.replace('periodSeconds: 20', 'periodSeconds: "20s"'));
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /cannot unmarshal string into Go struct field .*periodSeconds of type int32/);
  });

  it('grants exactly the documented capabilities after dropping ALL, without privilege', () => {
    const sc = container.securityContext;
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.deepEqual([...sc.capabilities.add].sort(), documented);
    assert.deepEqual(readmeCapabilities().sort(), documented);
    assert.equal(sc.privileged, false);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.readOnlyRootFilesystem, true);
    // Capabilities are uid 0's in a container, whatever USER the image names.
    assert.equal(sc.runAsUser, 0);
    assert.equal(ds.spec.template.spec.hostPID, true);
    // Each capability has its reason in a comment just above it in daemonset.yaml.
    const lines = readFileSync(join(deployDir, 'base', 'daemonset.yaml'), 'utf8').split('\n');
    for (const cap of documented) {
      const at = lines.findIndex((l) => l.trim() === `- ${cap}`);
      assert.ok(at > 0 && lines[at - 1]!.trim().startsWith('#'), `a comment explains ${cap}`);
    }
  });

  it('makes the privileged variant differ only in the container securityContext', () => {
    const pds = one(privileged, 'DaemonSet');
    const pc = pds.spec.template.spec.containers[0];
    assert.equal(pc.securityContext.privileged, true);
    assert.equal(pc.securityContext.capabilities, undefined);
    const rest = (sc: any) => {
      const { privileged: _p, capabilities: _c, allowPrivilegeEscalation: _a, ...others } = sc;
      return others;
    };
    assert.deepEqual(rest(pc.securityContext), rest(container.securityContext));
    const strip = (d: any) => {
      const copy = structuredClone(d);
      delete copy.spec.template.spec.containers[0].securityContext;
      return copy;
    };
    assert.deepEqual(strip(pds), strip(ds));
    for (const o of base.filter((x) => x.kind !== 'DaemonSet')) {
      assert.deepEqual(privileged.find((p) => p.kind === o.kind)!.object, o.object, o.kind);
    }
  });

  it('lets the agent get, list and watch pods, and nothing else', () => {
    const role = one(base, 'ClusterRole');
    assert.deepEqual(role.rules, [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }]);
    assert.equal(find(base, 'Role').length + find(base, 'RoleBinding').length, 0);
    const binding = one(base, 'ClusterRoleBinding');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    const sa = one(base, 'ServiceAccount');
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    assert.equal(ds.spec.template.spec.serviceAccountName, sa.metadata.name);
  });

  it('runs on every node, rolling, with the node name from the downward API', () => {
    const spec = ds.spec.template.spec;
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.equal(ds.spec.updateStrategy.type, 'RollingUpdate');
    assert.ok(ds.spec.updateStrategy.rollingUpdate.maxUnavailable);
    const nodeName = container.env.find((e: any) => e.name === 'NODE_NAME');
    assert.equal(nodeName.valueFrom.fieldRef.fieldPath, 'spec.nodeName');
    // $(VAR) in a value is expanded by the kubelet only from variables defined before it.
    container.env.forEach((e: any, i: number) => {
      for (const m of String(e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
        assert.ok(container.env.slice(0, i).some((d: any) => d.name === m[1]), `${e.name} uses $(${m[1]}), defined before it`);
      }
    });
    assert.equal(ds.spec.selector.matchLabels['app.kubernetes.io/name'], ds.spec.template.metadata.labels['app.kubernetes.io/name']);
  });

  it('writes only to an emptyDir, mounts nothing of the host, and limits its memory above the measured peak plus the export queue', () => {
    const spec = ds.spec.template.spec;
    assert.ok(spec.volumes.every((v: any) => v.hostPath === undefined), 'no hostPath volumes');
    const writable = container.volumeMounts.filter((m: any) => !m.readOnly);
    assert.deepEqual(
      writable.map((m: any) => [m.mountPath, spec.volumes.find((v: any) => v.name === m.name).emptyDir !== undefined]),
      [['/tmp', true]],
    );
    const { requests, limits } = container.resources;
    for (const r of ['cpu', 'memory']) assert.ok(quantity(requests[r]) <= quantity(limits[r]), r);
    // 130 MB measured peak (npm run bench) + 64 MiB of queued windows (--queue-size default).
    assert.ok(quantity(limits.memory) >= 130e6 + 64 * 2 ** 20, limits.memory);
    assert.ok(quantity(requests.memory) >= 100e6, requests.memory);
  });

  it("has ConfigMap files the agent's own parser accepts, using only variables the DaemonSet sets", () => {
    const cm = one(base, 'ConfigMap');
    const args: string[] = container.args;
    assert.equal(args[0], 'agent');
    const configPath = args[args.indexOf('--config') + 1]!;
    const mount = container.volumeMounts.find((m: any) => configPath.startsWith(m.mountPath + '/'));
    assert.equal(ds.spec.template.spec.volumes.find((v: any) => v.name === mount.name).configMap.name, cm.metadata.name);
    assert.ok(configPath.slice(mount.mountPath.length + 1) in cm.data, `${configPath} is a key of the ConfigMap`);
    const defined = new Map<string, any>(container.env.map((e: any) => [e.name, e]));
    const env = Object.fromEntries([...defined.keys()].map((k) => [k, `value-of-${k}`]));
    const keys = Object.keys(cm.data);
    assert.ok(keys.length >= 6, keys.join(' '));
    for (const key of keys) {
      const text: string = cm.data[key];
      for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
        const e = defined.get(m[1]!);
        assert.ok(e, `${key} uses \${${m[1]}}, which the DaemonSet sets`);
        // Secrets are optional: a cluster without the Secret still starts the default file.
        if (e.valueFrom?.secretKeyRef) assert.equal(e.valueFrom.secretKeyRef.optional, true, m[1]);
      }
      const cfg = parseAgentConfig(JSON.parse(text), key, env);
      assert.equal(cfg.otlp.length + cfg.pyroscope.length + cfg.outputDirs.length, 1, key);
    }
    // The file in use needs no Secret: it starts with none of the optional variables set.
    const withoutSecrets = Object.fromEntries([...defined].filter(([, e]) => !e.valueFrom?.secretKeyRef).map(([k]) => [k, 'x']));
    parseAgentConfig(JSON.parse(cm.data['agent.json']), 'agent.json', withoutSecrets);
    // Each backend has its file: the Collector, Pyroscope (OTLP and /ingest) and Parca (OTLP and WriteRaw).
    const all = keys.map((k) => JSON.parse(cm.data[k]).exporters[0]);
    for (const want of [{ type: 'otlp', preset: 'pyroscope' }, { type: 'pyroscope' }, { type: 'otlp', preset: 'parca' }, { type: 'parca' }]) {
      assert.ok(all.some((x) => Object.entries(want).every(([k, v]) => x[k] === v)), JSON.stringify(want));
    }
  });
});

// ---- the container's view, on this kernel ---------------------------------------------------

/**
 * Runs the CLI the way the DaemonSet's container would: in a private mount namespace with every
 * mount but /proc and /dev read-only (readOnlyRootFilesystem), tracefs and debugfs hidden (no
 * host mounts), a fresh tmpfs as TMPDIR (the emptyDir on /tmp; none when `emptyDir` is
 * undefined), `out` left writable for the test's files; then as uid 0 with no_new_privs and the
 * bounding set cut to `caps`.
 */
function containerArgv(caps: readonly string[], emptyDir: string | undefined, out: string, args: string[]): string[] {
  const script = `set -e
for mp in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$mp" in /proc|/proc/*|/dev|/dev/*) continue;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
for d in /sys/kernel/tracing /sys/kernel/debug; do
  if [ -d "$d" ]; then mount -t tmpfs -o ro,size=4k none "$d"; fi
done
if [ "$1" != - ]; then mount -t tmpfs -o size=16m emptydir "$1"; fi
mount --bind "$2" "$2"
mount -o remount,bind,rw "$2"
shift 2
exec "$@"`;
  const bset = ['-all', ...caps.map((c) => '+' + c.toLowerCase())].join(',');
  return [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    script,
    'sh',
    emptyDir ?? '-',
    out,
    'env',
    ...(emptyDir ? [`TMPDIR=${emptyDir}`] : []),
    'setpriv',
    '--no-new-privs',
    `--bounding-set=${bset}`,
    '--inh-caps=-all',
    '--ambient-caps=-all',
    '--',
    process.execPath,
    cli,
    ...args,
  ];
}

// Half its time in clock_gettime, which runs in the vdso: naming that takes the copy of the
// vdso that the agent writes to its emptyDir.
const SPIN = `
#include <time.h>
static volatile unsigned long sink;
__attribute__((noinline)) void deploy_spin(void) { for (int i = 0; i < 1000000; i++) sink += i; }
__attribute__((noinline)) void deploy_clock(void) { struct timespec t; for (int i = 0; i < 20000; i++) { clock_gettime(CLOCK_MONOTONIC, &t); sink += t.tv_nsec; } }
int main(void) { for (;;) { deploy_spin(); deploy_clock(); } }
`;
const VDSO_CLOCK = /^__(vdso|kernel)_clock_gettime$/;

describe("the DaemonSet's container on this kernel: its capabilities, a read-only root, no host mounts", () => {
  let caps: string[];
  let env: NodeJS.ProcessEnv;
  let args: string[];
  let probes: Array<{ path: string; port: string | number }>;
  let ports: any[];
  let configJson: string;
  let spinner: ChildProcess;
  const out = join(dir, 'out');
  const emptyDir = join(dir, 'emptydir');
  const cleanup: Array<() => void> = [];

  before(async () => {
    const bin = await buildDeployCheck();
    const r = deployCheck(bin, [deployDir]);
    assert.equal(r.status, 0, r.stderr);
    const objects = (JSON.parse(r.stdout) as Rendered)[0]!.objects;
    const container = one(objects, 'DaemonSet').spec.template.spec.containers[0];
    caps = container.securityContext.capabilities.add;
    args = container.args;
    ports = container.ports;
    probes = ['startupProbe', 'readinessProbe', 'livenessProbe'].map((p) => container[p].httpGet);
    configJson = one(objects, 'ConfigMap').data['agent.json'];
    // The pod's environment, without the optional Secret; $(NODE_NAME) as the kubelet expands it.
    env = { NODE_NAME: hostname() };
    for (const e of container.env) {
      if (e.value !== undefined) env[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, n: string) => env[n] ?? '');
    }
    mkdirSync(out, { recursive: true });
    mkdirSync(emptyDir, { recursive: true });
    // A busy program of another user, in a folder only that user can read: symbolizing it
    // takes SYS_PTRACE (its /proc/PID/maps) and DAC_READ_SEARCH or CHECKPOINT_RESTORE (its file).
    const home = mkdtempSync(join(tmpdir(), 'flamewire-deploy-'));
    const spin = buildC(home, 'deploy-spin', SPIN, ['-O1', '-fno-omit-frame-pointer']);
    chownSync(spin, 65534, 65534);
    chownSync(home, 65534, 65534);
    chmodSync(home, 0o700);
    cleanup.push(() => rmSync(home, { recursive: true, force: true }));
    spinner = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', spin], { stdio: 'ignore' });
  });

  after(() => {
    spinner?.kill('SIGKILL');
    for (const c of cleanup) c();
  });

  const runAs = (capSet: readonly string[], cliArgs: string[], opts: { noEmptyDir?: boolean } = {}) => {
    const [cmd, ...rest] = containerArgv(capSet, opts.noEmptyDir ? undefined : emptyDir, out, cliArgs);
    return spawnSync(cmd!, rest, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  };

  /** Records the whole machine for 2 s under `capSet`; the profile's function names. */
  function recordFunctions(capSet: readonly string[], name: string, opts: { noEmptyDir?: boolean } = {}): { samples: number; functions: Set<string> } {
    const file = join(out, `${name}.pb.gz`);
    rmSync(file, { force: true });
    const r = runAs(capSet, ['record', '-d', '2s', '-o', file], opts);
    assert.equal(r.status, 0, r.stderr);
    const p = PprofProfile.decode(gunzipSync(readFileSync(file)));
    const strings = p.stringTable.strings;
    return {
      samples: p.sample.reduce((n, s) => n + Number(s.value[0]), 0),
      functions: new Set(p.function.map((f) => strings[Number(f.name)]!)),
    };
  }

  it('doctor reports exactly the granted capabilities, and that it can record', () => {
    const r = runAs(caps, ['doctor']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // A capability this test's own bounding set lacks cannot be granted here (a sandbox may
    // withhold CAP_SYS_RESOURCE, say): doctor must then say so, without failing.
    const bounding = BigInt('0x' + /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
    const grantable = caps.filter((c) => hasCap(bounding, c as CapName));
    const effective = /\] privileges +root; effective: (.*)$/m.exec(r.stdout)?.[1]?.split(' ');
    assert.deepEqual(effective?.sort(), grantable.map((c) => `CAP_${c}`).sort(), r.stdout);
    for (const c of caps) {
      assert.match(r.stdout, new RegExp(`^\\[(ok  |warn)\\] CAP_${c} +${grantable.includes(c) ? 'granted: ' : '(missing|not granted)'}`, 'm'));
    }
    assert.match(r.stdout, /\[ok {2}\] bpf\(\) \+ perf_event \+ ring buffer +loaded, attached/);
    // CAP_SYSLOG shows kallsyms' addresses unless kernel.kptr_restrict is 2 (then no one sees them).
    if (readFileSync('/proc/sys/kernel/kptr_restrict', 'utf8').trim() !== '2') assert.match(r.stdout, /\[ok {2}\] kernel symbols +\/proc\/kallsyms has addresses/);
    assert.match(r.stdout, /\[ok {2}\] tracefs +not mounted \(flamewire does not use it\)/);
  });

  it("records the whole machine, another user's program and the vdso named", () => {
    const { samples, functions } = recordFunctions(caps, 'daemonset-caps');
    assert.ok(samples > 0);
    assert.ok(functions.has('deploy_spin'), 'the other user’s program is symbolized');
    assert.ok([...functions].some((f) => VDSO_CLOCK.test(f)), 'the vdso is symbolized');
  });

  it('needs the emptyDir to name the vdso, and nothing else of it', () => {
    const { samples, functions } = recordFunctions(caps, 'no-emptydir', { noEmptyDir: true });
    assert.ok(samples > 0);
    assert.ok(functions.has('deploy_spin'));
    assert.ok(![...functions].some((f) => VDSO_CLOCK.test(f)), 'no vdso names without a writable /tmp');
  });

  it("cannot name that program without SYS_PTRACE, nor without both DAC_READ_SEARCH and CHECKPOINT_RESTORE", () => {
    const noPtrace = recordFunctions(
      caps.filter((c) => c !== 'SYS_PTRACE'),
      'no-ptrace',
    );
    assert.ok(noPtrace.samples > 0);
    assert.ok(!noPtrace.functions.has('deploy_spin'));
    const noFile = recordFunctions(
      caps.filter((c) => c !== 'DAC_READ_SEARCH' && c !== 'CHECKPOINT_RESTORE'),
      'no-file-access',
    );
    assert.ok(noFile.samples > 0);
    assert.ok(!noFile.functions.has('deploy_spin'));
  });

  it('refuses in one line without CAP_BPF or CAP_PERFMON, and doctor says which is missing', () => {
    for (const missing of ['BPF', 'PERFMON']) {
      const fewer = caps.filter((c) => c !== missing);
      const r = runAs(fewer, ['record', '-d', '1s', '-o', join(out, 'refused.pb.gz')]);
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`^flamewire: permission denied: .*missing CAP_${missing}\\)$`));
      const d = runAs(fewer, ['doctor']);
      assert.equal(d.status, 1);
      assert.match(d.stdout, new RegExp(`^\\[FAIL\\] CAP_${missing} +missing: nothing can be recorded\\n +fix: grant CAP_${missing}`, 'm'));
    }
  });

  it("answers the DaemonSet's probes on the agent's port and paths", async () => {
    // The probes name the container port that --metrics-address serves.
    const address = args[args.indexOf('--metrics-address') + 1]!;
    const port = Number(/:(\d+)$/.exec(address)![1]);
    for (const p of probes) assert.equal(typeof p.port === 'number' ? p.port : ports.find((x) => x.name === p.port).containerPort, port);
    // The same arguments; the ConfigMap's file and a free loopback port stand in for the pod's.
    const config = join(out, 'agent.json');
    writeFileSync(config, configJson);
    const local = await freePort();
    const agentArgs = args.map((a) => (a === address ? `127.0.0.1:${local}` : a.startsWith('/etc/flamewire/') ? config : a));
    const argv = containerArgv(caps, emptyDir, out, agentArgs);
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => (log += String(d)));
    child.stderr.on('data', (d) => (log += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const status = async (path: string) => (await fetch(`http://127.0.0.1:${local}${path}`).catch(() => undefined))?.status;
    try {
      const until = Date.now() + 60_000;
      while ((await status(probes[0]!.path)) !== 200) {
        assert.ok(Date.now() < until && child.exitCode === null, `the startup probe never passed:\n${log}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const p of probes) assert.equal(await status(p.path), 200, p.path);
      assert.equal(await status('/metrics'), 200);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, log);
    const lines = log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.msg === 'agent started'), log);
  });
});
