// Pod metadata from the Kubernetes API. No API server can run here, so the tests run a fake API
// server on loopback: HTTPS with a certificate from a CA made by openssl in the test, checking
// the ServiceAccount token of every request, serving pods in the real API's JSON shape through
// LIST and WATCH as the real one does (a history of events by resourceVersion, replayed to a
// watch that resumes; 410 Gone for a version older than its history; BOOKMARKs), and made to
// misbehave: a watch broken in the middle of an event, an expired version, refusals, a watch
// event or a page of the list too big to read.
// The watcher reaches it through the real in-cluster code path: KUBERNETES_SERVICE_HOST/PORT and
// a ServiceAccount directory (token, ca.crt) named by FLAMEWIRE_SERVICEACCOUNT_DIR.
//
// End to end, the real agent profiles a real process moved into a cgroup whose path is what
// containerd makes under Kubernetes (kubepods…-pod<uid>.slice/cri-containerd-<id>.scope) and
// sends OTLP to a loopback server: the process's resource carries its pod from the window after
// the pod appears in the API.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { idsFromCgroup } from '../src/container-id.js';
import { toPyroscopeUploads } from '../src/export/pyroscope.js';
import { inClusterConfig, type InClusterConfig } from '../src/k8s/in-cluster.js';
import { podAttributes, podMeta, type ApiPod } from '../src/k8s/pod-metadata.js';
import { PodWatcher } from '../src/k8s/pod-watcher.js';
import { configureLogger } from '../src/logger.js';
import { toOtlpRequest } from '../src/otlp/profiles.js';
import { knownProfile } from './fixtures/output-profile.js';
import { buildC, repoRoot, workDir } from './helpers.js';
import { otlpHttpServer, Request } from './otlp-official.js';

const dir = workDir('k8s-metadata');
const NODE = 'node-a';

/** A CA and a certificate it signed for 127.0.0.1; and a second CA that signed nothing here. */
function makeCerts(): { ca: string; otherCa: string; key: string; cert: string } {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const name of ['ca', 'other-ca']) {
    ssl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=fake ${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  }
  ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kubernetes');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.crt'), otherCa: read('other-ca.crt'), key: read('server.key'), cert: read('server.crt') };
}

interface PodSpec {
  name: string;
  namespace?: string;
  uid?: string;
  node?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  owner?: { kind: string; name: string };
  containers?: Array<{ name: string; id?: string; previousId?: string }>;
  init?: Array<{ name: string; id?: string }>;
  ephemeral?: Array<{ name: string; id?: string }>;
}

/** A Pod as the API sends it (the fields a kubelet-managed pod has, trimmed of managedFields). */
function apiPod(p: PodSpec): any {
  const status = (c: { name: string; id?: string; previousId?: string }) => ({
    name: c.name,
    ready: true,
    restartCount: c.previousId ? 1 : 0,
    image: `registry.example/${c.name}:1`,
    imageID: `registry.example/${c.name}@sha256:${'0'.repeat(64)}`,
    ...(c.id ? { containerID: `containerd://${c.id}`, started: true, state: { running: { startedAt: '2026-01-01T00:00:00Z' } } } : { started: false, state: { waiting: { reason: 'ContainerCreating' } } }),
    lastState: c.previousId ? { terminated: { exitCode: 137, reason: 'OOMKilled', containerID: `containerd://${c.previousId}` } } : {},
  });
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      name: p.name,
      namespace: p.namespace ?? 'shop',
      uid: p.uid ?? randomUUID(),
      resourceVersion: '',
      creationTimestamp: '2026-01-01T00:00:00Z',
      ...(p.labels ? { labels: p.labels } : {}),
      ...(p.annotations ? { annotations: p.annotations } : {}),
      ...(p.owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: p.owner.kind, name: p.owner.name, uid: randomUUID(), controller: true, blockOwnerDeletion: true }] } : {}),
    },
    spec: {
      nodeName: p.node ?? NODE,
      containers: (p.containers ?? []).map((c) => ({ name: c.name, image: `registry.example/${c.name}:1`, resources: {} })),
      ...(p.init ? { initContainers: p.init.map((c) => ({ name: c.name, image: `registry.example/${c.name}:1` })) } : {}),
      restartPolicy: 'Always',
      serviceAccountName: 'default',
    },
    status: {
      phase: 'Running',
      hostIP: '10.0.0.5',
      podIP: '10.244.1.7',
      containerStatuses: (p.containers ?? []).map(status),
      ...(p.init ? { initContainerStatuses: p.init.map(status) } : {}),
      ...(p.ephemeral ? { ephemeralContainerStatuses: p.ephemeral.map(status) } : {}),
    },
  };
}

const hex64 = () => randomBytes(32).toString('hex');

interface Seen {
  watch: boolean;
  query: URLSearchParams;
  authorization?: string;
}

/**
 * A fake API server: /api/v1/pods with LIST and WATCH over HTTPS, pods filtered by the request's
 * fieldSelector spec.nodeName, every change an event in a history by resourceVersion.
 */
class FakeApiServer {
  readonly requests: Seen[] = [];
  private server!: Server;
  private rv = 100;
  private readonly pods = new Map<string, any>();
  private readonly history: Array<{ rv: number; node: string; line: string }> = [];
  /** Versions below this are no longer in the history: a watch from one gets 410. */
  private oldest = 0;
  private readonly open = new Set<{ res: ServerResponse; node: string }>();
  /** Answer every request with this status (401 while a token is bad, 500 …). */
  refuse: number | undefined;
  /** The token requests must carry. */
  token = '';
  /** A watch from a too old version is answered with HTTP 410 rather than an ERROR event. */
  goneAsStatus = false;

  constructor(private readonly tls: { key: string; cert: string }) {}

  async start(): Promise<number> {
    this.server = createServer(this.tls, (req, res) => this.handle(req, res));
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return (this.server.address() as AddressInfo).port;
  }

  close(): void {
    for (const w of this.open) w.res.destroy();
    this.server.closeAllConnections();
    this.server.close();
  }

  /** The current resourceVersion. */
  get version(): string {
    return String(this.rv);
  }

  get lists(): number {
    return this.requests.filter((r) => !r.watch).length;
  }

  get watches(): Seen[] {
    return this.requests.filter((r) => r.watch);
  }

  add(pod: any): void {
    this.change('ADDED', pod);
  }

  modify(pod: any): void {
    this.change('MODIFIED', pod);
  }

  delete(pod: any): void {
    this.change('DELETED', pod);
  }

  /** Changes a pod without telling anyone, as if the events had happened while no one watched. */
  quietly(type: 'ADDED' | 'DELETED', pod: any): void {
    this.rv++;
    pod.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.pods.delete(pod.metadata.uid);
    else this.pods.set(pod.metadata.uid, pod);
  }

  /** A BOOKMARK with the current version to every open watch. */
  bookmark(): void {
    this.rv++;
    for (const w of this.open) w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } } })}\n`);
  }

  /** The history is compacted: a watch can start from the current version only; open watches get the ERROR event. */
  expire(): void {
    this.oldest = this.rv;
    for (const w of this.open) w.res.end(gone(this.rv));
    this.open.clear();
  }

  /** Open watches end cleanly, as at their timeoutSeconds. */
  endWatches(): void {
    for (const w of this.open) w.res.end();
    this.open.clear();
  }

  /** Open watches break: `partial` bytes of an event, then the connection is cut. */
  breakWatches(partial = ''): void {
    for (const w of this.open) {
      if (partial) w.res.write(partial);
      w.res.socket?.destroy();
    }
    this.open.clear();
  }

  private change(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: any): void {
    this.quietly(type === 'DELETED' ? 'DELETED' : 'ADDED', pod);
    const line = `${JSON.stringify({ type, object: pod })}\n`;
    this.history.push({ rv: this.rv, node: pod.spec.nodeName, line });
    for (const w of this.open) if (w.node === pod.spec.nodeName) w.res.write(line);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake');
    const seen: Seen = { watch: url.searchParams.get('watch') === '1', query: url.searchParams, authorization: req.headers.authorization };
    this.requests.push(seen);
    const status = (code: number, reason: string) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: reason, reason, code }));
    };
    if (this.refuse !== undefined) return status(this.refuse, 'Refused');
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(401, 'Unauthorized');
    if (url.pathname !== '/api/v1/pods') return status(404, 'NotFound');
    const node = /^spec\.nodeName=(.+)$/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
    if (!node) return status(400, 'BadRequest');
    if (!seen.watch) {
      // Pages of `limit` pods; the continue token is where the next page starts.
      const all = [...this.pods.values()].filter((p) => p.spec.nodeName === node);
      const from = Number(url.searchParams.get('continue') || 0);
      const limit = Number(url.searchParams.get('limit')) || all.length;
      const next = from + limit < all.length ? String(from + limit) : '';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv), ...(next ? { continue: next } : {}) }, items: all.slice(from, from + limit) }));
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion'));
    if (from < this.oldest) {
      if (this.goneAsStatus) return status(410, 'Expired');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(gone(from));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    for (const h of this.history) if (h.rv > from && h.node === node) res.write(h.line);
    const w = { res, node };
    this.open.add(w);
    res.on('close', () => this.open.delete(w));
  }
}

function gone(rv: number): string {
  return `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${rv}`, reason: 'Expired', code: 410 } })}\n`;
}

/** Waits until `cond` holds (generous: the machine is shared). */
async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('pod metadata', () => {
  it('takes service.name from the annotation, then app.kubernetes.io/name, then app, then the owning workload, then the container', () => {
    const c = [{ name: 'server', id: hex64() }];
    const service = (p: PodSpec) => podAttributes(podMeta(apiPod({ containers: c, ...p }))!, c[0]!.id)['service.name'];
    const labels = { 'app.kubernetes.io/name': 'shop-api', app: 'shop', 'pod-template-hash': '5d8f7c9b4' };
    const owner = { kind: 'ReplicaSet', name: 'checkout-5d8f7c9b4' };
    assert.equal(service({ name: 'p', labels, owner, annotations: { 'flamewire.io/service-name': 'payments', 'resource.opentelemetry.io/service.name': 'otel' } }), 'payments');
    assert.equal(service({ name: 'p', labels, owner, annotations: { 'resource.opentelemetry.io/service.name': 'otel' } }), 'otel');
    assert.equal(service({ name: 'p', labels, owner }), 'shop-api');
    assert.equal(service({ name: 'p', labels: { app: 'shop' }, owner }), 'shop');
    // The Deployment's name: the ReplicaSet's without the pod-template-hash.
    assert.equal(service({ name: 'p', labels: { 'pod-template-hash': '5d8f7c9b4' }, owner }), 'checkout');
    assert.equal(service({ name: 'p', owner: { kind: 'StatefulSet', name: 'db' } }), 'db');
    // A static pod's mirror is owned by its node: the container names it.
    assert.equal(service({ name: 'etcd-node-a', owner: { kind: 'Node', name: NODE } }), 'server');
    assert.equal(service({ name: 'bare' }), 'server');
  });

  it('maps the ids of regular, init and ephemeral containers, and of a restarted container before, to their names', () => {
    const [app, previous, init, debug] = [hex64(), hex64(), hex64(), hex64()];
    const pod = podMeta(apiPod({ name: 'checkout-1', uid: 'u-1', containers: [{ name: 'app', id: app, previousId: previous }, { name: 'sidecar' }], init: [{ name: 'migrate', id: init }], ephemeral: [{ name: 'debugger', id: debug }] }))!;
    assert.deepEqual([...pod.containers].sort(), [[app, 'app'], [previous, 'app'], [init, 'migrate'], [debug, 'debugger']].sort());
    assert.deepEqual(podAttributes(pod, debug), { 'service.name': 'debugger', 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'checkout-1', 'k8s.pod.uid': 'u-1', 'k8s.container.name': 'debugger' });
    // A container the pod does not list yet: the pod, named by itself.
    assert.deepEqual(podAttributes(pod, hex64()), { 'service.name': 'checkout-1', 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'checkout-1', 'k8s.pod.uid': 'u-1' });
    assert.equal(podMeta({ metadata: { name: 'no-uid', namespace: 'x' } } as ApiPod), undefined);
  });

  it('keeps a few hundred bytes of a pod, however big the pod is', () => {
    const big = apiPod({ name: 'big', labels: { app: 'big' }, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(200_000) }, containers: [{ name: 'app', id: hex64() }] });
    big.metadata.managedFields = Array.from({ length: 50 }, () => ({ manager: 'kubelet', fieldsV1: { 'f:status': { 'f:conditions': {} } } }));
    const kept = podMeta(big)!;
    const size = JSON.stringify({ ...kept, containers: [...kept.containers] }).length;
    assert.ok(size < 400, `${size} bytes kept`);
  });

  it("names a pod's process after the pod in every destination, over the agent's OTEL_SERVICE_NAME; other processes keep the agent's", () => {
    const id = hex64();
    const pod = podMeta(apiPod({ name: 'checkout-1', uid: 'u-1', labels: { app: 'checkout' }, containers: [{ name: 'server', id }] }))!;
    // Process 100 of the fixture runs in the pod, 200 outside.
    const opts = { resource: { 'service.name': 'agent' }, processAttributes: (pid: number) => (pid === 100 ? { 'container.id': id, ...podAttributes(pod, id) } : {}) };
    const names = toPyroscopeUploads(knownProfile(), opts).map((u) => new URLSearchParams(u.query).get('name')!);
    assert.deepEqual(names.map((n) => n.split('{')[0]).sort(), ['agent', 'checkout']);
    assert.match(names.find((n) => n.startsWith('checkout{'))!, /k8s_pod_name=checkout-1,k8s_pod_uid=u-1,k8s_container_name=server/);
    const services = toOtlpRequest(knownProfile(), { version: 'test', ...opts }).resourceProfiles.map((r) => r.resource.attributes.find((a) => a.key === 'service.name')!.value);
    assert.deepEqual(services, [{ stringValue: 'checkout' }, { stringValue: 'agent' }]);
  });

  it("finds the pod's uid next to the container id in the cgroup paths of the systemd and cgroupfs drivers, and a service's unit", () => {
    const id = hex64();
    const uid = '1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901';
    assert.deepEqual(idsFromCgroup(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replace(/-/g, '_')}.slice/cri-containerd-${id}.scope\n`), { containerId: id, podUid: uid });
    assert.deepEqual(idsFromCgroup(`4:memory:/kubepods/burstable/pod${uid}/${id}\n`), { containerId: id, podUid: uid });
    // As the agent sees another pod's process from its own cgroup namespace.
    assert.deepEqual(idsFromCgroup(`0::/../../kubepods-besteffort-pod${uid.replace(/-/g, '_')}.slice/cri-containerd-${id}.scope\n`), { containerId: id, podUid: uid });
    assert.deepEqual(idsFromCgroup(`0::/kubepods.slice/kubepods-pod${uid.replace(/-/g, '_')}.slice\n`), { podUid: uid });
    assert.deepEqual(idsFromCgroup(`0::/system.slice/docker-${id}.scope\n`), { containerId: id });
    assert.deepEqual(idsFromCgroup('0::/system.slice/nginx.service\n'), { systemdUnit: 'nginx' });
    assert.deepEqual(idsFromCgroup('1:name=systemd:/system.slice/getty@tty1.service\n0::/\n'), { systemdUnit: 'getty@tty1' });
    assert.deepEqual(idsFromCgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-x.scope\n'), {});
    assert.deepEqual(idsFromCgroup('0::/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service\n'), { systemdUnit: 'syncthing' });
  });
});

describe('pod watcher against a fake API server', () => {
  let certs: ReturnType<typeof makeCerts>;
  let current: FakeApiServer | undefined;
  let port: number;
  const saDir = join(dir, 'serviceaccount');
  let config: InClusterConfig;
  const watchers: PodWatcher[] = [];
  const watcher = (extra: Partial<ConstructorParameters<typeof PodWatcher>[0]> = {}) => {
    const w = new PodWatcher({ config, nodeName: NODE, initialBackoffMs: 20, maxBackoffMs: 200, ...extra });
    watchers.push(w);
    w.start();
    return w;
  };

  before(async () => {
    // The watcher's warnings (refusals, broken watches) are what these tests cause on purpose.
    configureLogger('error');
    certs = makeCerts();
    mkdirSync(saDir, { recursive: true });
    writeFileSync(join(saDir, 'ca.crt'), certs.ca);
  });
  after(() => {
    for (const w of watchers) w.stop();
    current?.close();
  });

  /** A fresh server (and token) per test; the last test's watchers stop. */
  const fresh = async (): Promise<FakeApiServer> => {
    for (const w of watchers.splice(0)) w.stop();
    current?.close();
    const api = (current = new FakeApiServer(certs));
    api.token = `tok-${randomBytes(8).toString('hex')}`;
    writeFileSync(join(saDir, 'token'), `${api.token}\n`);
    port = await api.start();
    const c = inClusterConfig({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port), FLAMEWIRE_SERVICEACCOUNT_DIR: saDir });
    assert.equal(typeof c, 'object', String(c));
    config = c as InClusterConfig;
    return api;
  };

  it("lists this node's pods, with the ServiceAccount token, over TLS checked against the CA (fake API server)", async () => {
    const api = await fresh();
    const id = hex64();
    const mine = apiPod({ name: 'checkout-7f9c-abcde', uid: 'uid-mine', labels: { app: 'checkout' }, containers: [{ name: 'app', id }] });
    const elsewhere = apiPod({ name: 'far-away', node: 'node-b', containers: [{ name: 'app', id: hex64() }] });
    api.quietly('ADDED', mine);
    api.quietly('ADDED', elsewhere);
    const w = watcher();
    await until('the list', () => w.stats.synced);
    assert.deepEqual(w.attributes({ containerId: id }), { 'service.name': 'checkout', 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'checkout-7f9c-abcde', 'k8s.pod.uid': 'uid-mine', 'k8s.container.name': 'app' });
    assert.equal(w.attributes({ containerId: elsewhere.status.containerStatuses[0].containerID.slice(13) }), undefined);
    assert.equal(w.stats.pods, 1);
    const list = api.requests[0]!;
    assert.equal(list.query.get('fieldSelector'), `spec.nodeName=${NODE}`);
    assert.equal(list.authorization, `Bearer ${api.token}`);
    // Then a watch from the list's version, with bookmarks.
    await until('the watch', () => api.watches.length === 1);
    const watch = api.watches[0]!;
    assert.equal(watch.query.get('resourceVersion'), api.version);
    assert.equal(watch.query.get('allowWatchBookmarks'), 'true');
    assert.equal(watch.authorization, `Bearer ${api.token}`);
  });

  it('resumes a watch that breaks in the middle of an event from the last resourceVersion it saw (fake API server)', async () => {
    const api = await fresh();
    const w = watcher();
    await until('the watch', () => api.watches.length === 1);
    const first = apiPod({ name: 'one', containers: [{ name: 'a', id: hex64() }] });
    api.add(first);
    await until('the first pod', () => w.stats.pods === 1);
    // Half of the next event arrives, then the connection breaks; the event happened all the
    // same, and the resumed watch gets it from the history.
    const second = apiPod({ name: 'two', containers: [{ name: 'b', id: hex64() }] });
    api.breakWatches(JSON.stringify({ type: 'ADDED', object: second }).slice(0, 200));
    api.add(second);
    await until('the second watch', () => api.watches.length === 2);
    assert.equal(api.watches[1]!.query.get('resourceVersion'), first.metadata.resourceVersion);
    await until('the second pod', () => w.stats.pods === 2);
    assert.equal(w.attributes({ containerId: second.status.containerStatuses[0].containerID.slice('containerd://'.length) })?.['k8s.pod.name'], 'two');
    assert.equal(api.lists, 1, 'resumed, not listed again');
    assert.equal(w.stats.restarts.error, 1);
  });

  it('moves its resourceVersion on with BOOKMARKs, and resumes from there when the server ends the watch (fake API server)', async () => {
    const api = await fresh();
    const w = watcher();
    await until('the watch', () => api.watches.length === 1);
    api.bookmark();
    api.bookmark();
    api.endWatches();
    await until('the next watch', () => api.watches.length === 2);
    assert.equal(api.watches[1]!.query.get('resourceVersion'), api.version);
    assert.equal(api.lists, 1);
    assert.equal(w.stats.restarts.closed, 1);
  });

  for (const asStatus of [false, true]) {
    it(`lists again after 410 Gone (${asStatus ? 'HTTP status' : 'ERROR event'}) and forgets the pods deleted meanwhile (fake API server)`, async () => {
      const api = await fresh();
      api.goneAsStatus = asStatus;
      const ids = [hex64(), hex64()];
      const stays = apiPod({ name: 'stays', containers: [{ name: 'a', id: ids[0] }] });
      const goes = apiPod({ name: 'goes', containers: [{ name: 'b', id: ids[1] }] });
      api.quietly('ADDED', stays);
      api.quietly('ADDED', goes);
      const w = watcher({ deletedRetentionMs: 1500 });
      await until('the watch', () => api.watches.length === 1 && w.stats.pods === 2);
      // While the watch is down, a pod goes and the history is compacted past its version.
      api.breakWatches();
      api.quietly('DELETED', goes);
      api.expire();
      // The deleted pod is still named for a while (windows may hold its samples), then forgotten.
      let stillNamed = false;
      await until('a list and a watch after it', () => {
        if (!(api.lists === 2 && api.watches.length === 3 && w.stats.pods === 1)) return false;
        stillNamed = w.attributes({ containerId: ids[1] }) !== undefined;
        return true;
      });
      assert.equal(w.stats.restarts.gone, 1);
      assert.equal(api.watches[2]!.query.get('resourceVersion'), api.version);
      assert.ok(stillNamed);
      await until('the retention', () => w.attributes({ containerId: ids[1] }) === undefined);
      assert.ok(w.attributes({ containerId: ids[0] }));
    });
  }

  it('forgets a deleted pod after the retention, not before (fake API server)', async () => {
    const api = await fresh();
    const id = hex64();
    const pod = apiPod({ name: 'short-lived', containers: [{ name: 'job', id }] });
    const w = watcher({ deletedRetentionMs: 1500 });
    await until('the watch', () => api.watches.length === 1);
    api.add(pod);
    await until('the pod', () => w.attributes({ containerId: id }) !== undefined);
    api.delete(pod);
    let named: unknown;
    await until('the deletion', () => {
      named = w.attributes({ containerId: id })?.['k8s.pod.name'];
      return w.stats.pods === 0;
    });
    assert.equal(named, 'short-lived');
    await until('the retention', () => w.attributes({ containerId: id }) === undefined);
  });

  it('waits for the pod of a container it does not know yet, once per container (fake API server)', async () => {
    const api = await fresh();
    const w = watcher();
    await until('the watch', () => api.watches.length === 1);
    const id = hex64();
    // The pod appears while a window waits for it.
    const t = setTimeout(() => api.add(apiPod({ name: 'late', containers: [{ name: 'app', id }] })), 200);
    await w.whenKnown([{ containerId: id }], 15_000);
    clearTimeout(t);
    assert.equal(w.attributes({ containerId: id })?.['k8s.container.name'], 'app');
    // A container that never shows up is waited for once.
    const stranger = { containerId: hex64() };
    await w.whenKnown([stranger], 300);
    const before = Date.now();
    await w.whenKnown([stranger], 10_000);
    assert.ok(Date.now() - before < 5_000, 'not waited for again');
  });

  it('reads the token again for each request, so a rotated one is used (fake API server)', async () => {
    const api = await fresh();
    const w = watcher();
    await until('the watch', () => api.watches.length === 1);
    api.token = `rotated-${randomBytes(8).toString('hex')}`;
    writeFileSync(join(saDir, 'token'), api.token);
    api.breakWatches();
    await until('a watch with the new token', () => api.watches.at(-1)!.authorization === `Bearer ${api.token}`);
    assert.equal(api.lists, 1);
    assert.ok(w.stats.synced);
  });

  it('backs off while the API server refuses, and carries on when it answers again (fake API server)', async () => {
    const api = await fresh();
    api.refuse = 500;
    const w = watcher({ initialBackoffMs: 50, maxBackoffMs: 400, random: () => 1 });
    await new Promise((r) => setTimeout(r, 1500));
    // 50, 100, 200, 400, 400 … ms apart: a handful of tries, not a busy loop.
    const tries = api.requests.length;
    assert.ok(tries >= 3 && tries <= 8, `${tries} requests in 1.5 s`);
    assert.equal(w.stats.synced, false);
    api.refuse = undefined;
    api.add(apiPod({ name: 'back', containers: [{ name: 'a', id: hex64() }] }));
    await until('the list', () => w.stats.synced && w.stats.pods === 1);
  });

  it('skips a watch event too big to read, counts it, and reads the events after it (fake API server)', async () => {
    const api = await fresh();
    const w = watcher({ maxEventBytes: 64 << 10 });
    await until('the watch', () => api.watches.length === 1);
    const bigId = hex64();
    const smallId = hex64();
    api.add(apiPod({ name: 'huge', annotations: { blob: 'x'.repeat(256 << 10) }, containers: [{ name: 'a', id: bigId }] }));
    api.add(apiPod({ name: 'small', containers: [{ name: 'b', id: smallId }] }));
    await until('the small pod', () => w.attributes({ containerId: smallId }) !== undefined);
    assert.equal(w.attributes({ containerId: bigId }), undefined);
    assert.deepEqual(w.stats.refused, { page: 0, event: 1 });
    // The watch went on: not broken, not listed again.
    assert.deepEqual([w.stats.restarts.error, api.lists, api.watches.length], [0, 1, 1]);
  });

  it('asks for pages of half as many pods when a page of the list is too big (fake API server)', async () => {
    const api = await fresh();
    for (let i = 0; i < 8; i++) api.quietly('ADDED', apiPod({ name: `fat-${i}`, annotations: { blob: 'x'.repeat(20 << 10) }, containers: [{ name: 'a', id: hex64() }] }));
    const w = watcher({ pageSize: 8, maxPageBytes: 100 << 10 });
    await until('the list', () => w.stats.synced);
    assert.equal(w.stats.pods, 8);
    assert.deepEqual(w.stats.refused, { page: 1, event: 0 });
    const lists = api.requests.filter((r) => !r.watch).map((r) => [r.query.get('limit'), r.query.get('continue') ?? '']);
    assert.deepEqual(lists, [['8', ''], ['4', ''], ['4', '4']]);
  });

  it('does not talk to an API server whose certificate its CA did not sign (fake API server)', async () => {
    const api = await fresh();
    const otherDir = join(dir, 'other-serviceaccount');
    mkdirSync(otherDir, { recursive: true });
    writeFileSync(join(otherDir, 'ca.crt'), certs.otherCa);
    writeFileSync(join(otherDir, 'token'), api.token);
    const c = inClusterConfig({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port), FLAMEWIRE_SERVICEACCOUNT_DIR: otherDir }) as InClusterConfig;
    const w = watcher({ config: c });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(w.stats.synced, false);
    // The TLS handshake failed: no request, so no token, reached the server.
    assert.equal(api.requests.length, 0);
  });
});

/** The mount point of the cgroup v2 hierarchy, and the path of this process in it. */
function cgroup2(): { mount: string; own: string } | undefined {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' - ')[1]?.startsWith('cgroup2 '));
  if (!line) return undefined;
  const own = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
  return own === undefined ? undefined : { mount: line.split(' ')[4]!, own };
}

/** Burns CPU; with an argument, waits for SIGUSR1 first and lives that many seconds after it. */
const BURNER = `
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
volatile unsigned long sink;
static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }
__attribute__((noinline)) void pod_burn(void) { for (unsigned long i = 0; i < 100000; i++) sink += i; }
int main(int argc, char **argv) {
  if (argc > 1) {
    signal(SIGUSR1, on_usr1);
    while (!go) pause();
    alarm(atoi(argv[1]));
  }
  for (;;) pod_burn();
}
`;

let burnerBin: string | undefined;

/**
 * A CPU-burning process in the cgroup `segments` below this process's own cgroup (so no
 * controller's accounting changes), there from its first instruction (a shell moves itself in,
 * then execs it); `stop` kills it and removes the directories.
 */
function burnerIn(segments: string[], args: string[] = []): { pid: number; path: string; child: ChildProcess; stop(): Promise<void> } {
  const cg = cgroup2()!;
  const paths = segments.map((_, i) => join(cg.mount, cg.own, 'flamewire-test.slice', ...segments.slice(0, i + 1)));
  paths.unshift(join(cg.mount, cg.own, 'flamewire-test.slice'));
  mkdirSync(paths.at(-1)!, { recursive: true });
  burnerBin ??= buildC(dir, 'pod-burner', BURNER, ['-O2', '-fno-omit-frame-pointer']);
  const bin = burnerBin;
  const child: ChildProcess = spawn('sh', ['-c', 'echo $$ > "$0" && exec "$@"', join(paths.at(-1)!, 'cgroup.procs'), bin, ...args], { stdio: 'ignore' });
  return {
    pid: child.pid!,
    path: bin,
    child,
    async stop() {
      child.kill('SIGKILL');
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
      for (const p of paths.reverse()) {
        try {
          rmdirSync(p);
        } catch {
          // shared with another run, or still busy for a moment: the next run reuses it
        }
      }
    },
  };
}

/** An OTLP/HTTP server on loopback that keeps the resource attributes of every resource it gets. */
async function resourceServer(): Promise<{ port: number; resources: Array<Record<string, unknown>>; close(): void }> {
  const resources: Array<Record<string, unknown>> = [];
  const server = await otlpHttpServer((body) => {
    const r = Request.toObject(Request.decode(body), { longs: Number, defaults: true }) as any;
    for (const rp of r.resourceProfiles) resources.push(Object.fromEntries(rp.resource.attributes.map((kv: any) => [kv.key, kv.value.stringValue ?? Number(kv.value.intValue)])));
  });
  return { port: server.port, resources, close: server.close };
}

/** The agent with `args` and `env`, over the test's environment without any Kubernetes or OTEL_SERVICE_NAME. */
function startAgent(args: string[], env: NodeJS.ProcessEnv, stdout: 'pipe' | 'ignore' = 'pipe'): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['NODE_NAME', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'FLAMEWIRE_SERVICEACCOUNT_DIR', 'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES']) delete childEnv[k];
  const child = spawn(process.execPath, [join(repoRoot, 'dist', 'src', 'cli.js'), 'agent', ...args], { env: { ...childEnv, ...env }, stdio: ['ignore', stdout, 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += String(d)));
  child.stderr!.on('data', (d) => (output += String(d)));
  return { child, output: () => output, exited: new Promise((resolve) => child.on('close', resolve)) };
}

describe('flamewire agent in Kubernetes (fake API server)', () => {
  const cg = cgroup2();

  it('refuses --kubernetes on outside a pod, a bad mode and a missing node name, with one line', async () => {
    const saDir = join(dir, 'sa-flags');
    mkdirSync(saDir, { recursive: true });
    writeFileSync(join(saDir, 'token'), 'x');
    const inPod = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '6443', FLAMEWIRE_SERVICEACCOUNT_DIR: saDir };
    for (const [args, env, want] of [
      [['--kubernetes', 'on'], {}, /^flamewire: --kubernetes on: not in a Kubernetes pod/],
      [['--kubernetes', 'maybe'], {}, /invalid --kubernetes 'maybe' \(auto, on or off\)/],
      [[], inPod, /needs the name of this node: --node-name or NODE_NAME/],
      [['--node-name', 'Node_A'], inPod, /invalid node name 'Node_A'/],
      [['--kubernetes', 'on'], { ...inPod, FLAMEWIRE_SERVICEACCOUNT_DIR: join(dir, 'nowhere') }, /no ServiceAccount token at .*nowhere\/token/],
    ] as const) {
      const agent = startAgent([...args], env, 'ignore');
      const code = await agent.exited;
      assert.equal(code, 2, `${args.join(' ')}: ${agent.output()}`);
      assert.match(agent.output().trim(), want);
      assert.equal(agent.output().trim().split('\n').length, 1);
    }
  });

  it('names a process in a containerd cgroup by its pod, from the window after the pod appears (fake API server)', { skip: cg ? false : 'no cgroup v2 hierarchy here' }, async () => {
    const certs = makeCerts();
    const saDir = join(dir, 'sa-agent');
    mkdirSync(saDir, { recursive: true });
    writeFileSync(join(saDir, 'ca.crt'), certs.ca);
    const api = new FakeApiServer(certs);
    api.token = `agent-token-${randomBytes(12).toString('hex')}`;
    writeFileSync(join(saDir, 'token'), api.token);
    const apiPort = await api.start();
    // A pod already there, and one of another node.
    api.quietly('ADDED', apiPod({ name: 'coredns-abc', namespace: 'kube-system', containers: [{ name: 'coredns', id: hex64() }] }));
    api.quietly('ADDED', apiPod({ name: 'elsewhere', node: 'node-b', containers: [{ name: 'x', id: hex64() }] }));

    // The workload, in the cgroup containerd would give it under the systemd driver.
    const containerId = hex64();
    const podUid = randomUUID();
    const burner = burnerIn(['kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${podUid.replace(/-/g, '_')}.slice`, `cri-containerd-${containerId}.scope`]);
    const otlp = await resourceServer();
    const windows = otlp.resources;
    const metricsPort = 20000 + (process.pid % 1000);
    let agent: ReturnType<typeof startAgent> | undefined;
    try {
      await until('the workload in its cgroup', () => idsFromCgroup(readFileSync(`/proc/${burner.pid}/cgroup`, 'utf8')).containerId === containerId);
      agent = startAgent(
        ['-p', String(burner.pid), '--interval', '1s', '--log-level', 'debug', '--otlp-protocol', 'http/protobuf', '--otlp-endpoint', `http://127.0.0.1:${otlp.port}`, '--metrics-address', `127.0.0.1:${metricsPort}`],
        { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(apiPort), FLAMEWIRE_SERVICEACCOUNT_DIR: saDir, NODE_NAME: NODE, OTEL_SERVICE_NAME: 'flamewire-agent' },
      );

      // The first window comes before the API server has heard of the pod.
      await until('a first window', () => windows.length >= 1, 60_000);
      const pod = apiPod({
        name: 'checkout-5d8f7c9b4-x2x9q',
        uid: podUid,
        labels: { 'app.kubernetes.io/name': 'checkout', 'pod-template-hash': '5d8f7c9b4' },
        owner: { kind: 'ReplicaSet', name: 'checkout-5d8f7c9b4' },
        containers: [{ name: 'server', id: containerId }, { name: 'istio-proxy', id: hex64() }],
      });
      api.add(pod);
      const named = () => windows.filter((w) => w['k8s.pod.name'] !== undefined);
      await until('two windows with the pod', () => named().length >= 2, 60_000);
      const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      agent.child.kill('SIGTERM');
      assert.equal(await agent.exited, 0, agent.output());

      assert.deepEqual(named()[0], {
        'host.name': hostname(),
        'service.name': 'checkout',
        'k8s.node.name': NODE,
        'process.pid': burner.pid,
        'process.executable.name': 'pod-burner',
        'process.executable.path': burner.path,
        'container.id': containerId,
        'k8s.namespace.name': 'shop',
        'k8s.pod.name': 'checkout-5d8f7c9b4-x2x9q',
        'k8s.pod.uid': podUid,
        'k8s.container.name': 'server',
      });
      // Before: the container, the node, and the agent's own service.name (no pod to name it).
      const first = windows[0]!;
      assert.equal(first['container.id'], containerId);
      assert.equal(first['k8s.node.name'], NODE);
      assert.equal(first['service.name'], 'flamewire-agent');
      // Once named, always named.
      const since = windows.indexOf(named()[0]!);
      assert.ok(windows.slice(since).every((w) => w['k8s.pod.uid'] === podUid));

      // Every request carried the token; no log line did.
      assert.ok(api.requests.length >= 2);
      assert.ok(api.requests.every((r) => r.authorization === `Bearer ${api.token}`));
      assert.ok(api.requests.every((r) => r.query.get('fieldSelector') === `spec.nodeName=${NODE}`));
      assert.ok(!agent.output().includes(api.token), 'the token is in the logs');
      assert.match(agent.output(), /"msg":"pods of this node listed"/);
      assert.match(scraped, /^flamewire_kubernetes_pods 2$/m);
      assert.match(scraped, /^flamewire_kubernetes_watch_restarts_total\{reason="gone"\} 0$/m);
    } finally {
      agent?.child.kill('SIGKILL');
      await burner.stop();
      otlp.close();
      api.close();
    }
  });

  it("outside Kubernetes, names a systemd service's process after its unit and keeps a Docker container's id, also once it has exited", { skip: cg ? false : 'no cgroup v2 hierarchy here' }, async () => {
    const [containerId, shortId] = [hex64(), hex64()];
    const service = burnerIn(['flamewire-demo.service']);
    const docker = burnerIn([`docker-${containerId}.scope`]);
    // Lives a second once told to: it is gone when its window closes.
    const short = burnerIn([`docker-${shortId}.scope`], ['1']);
    const otlp = await resourceServer();
    try {
      await until('the workloads in their cgroups', () => [service, docker, short].every((b) => readFileSync(`/proc/${b.pid}/cgroup`, 'utf8').includes('flamewire-test.slice')));
      const agent = startAgent(['-p', `${service.pid},${docker.pid},${short.pid}`, '--interval', '3s', '-d', '6500ms', '--otlp-protocol', 'http/protobuf', '--otlp-endpoint', `http://127.0.0.1:${otlp.port}`], {});
      await until('the agent', () => agent.output().includes('"msg":"agent started"'), 60_000);
      short.child.kill('SIGUSR1');
      assert.equal(await agent.exited, 0, agent.output());
      const of = (pid: number) => otlp.resources.filter((r) => r['process.pid'] === pid);
      assert.ok(of(service.pid).length >= 2 && of(docker.pid).length >= 2, JSON.stringify(otlp.resources));
      assert.ok(short.child.signalCode === 'SIGALRM', 'the short-lived process ended by itself');
      assert.ok(of(short.pid).length >= 1);
      for (const r of of(short.pid)) assert.equal(r['container.id'], shortId);
      for (const r of of(service.pid)) {
        assert.equal(r['service.name'], 'flamewire-demo');
        assert.equal(r['container.id'], undefined);
      }
      for (const r of of(docker.pid)) {
        assert.equal(r['container.id'], containerId);
        // No service.name: backends fall back to the executable's name.
        assert.equal(r['service.name'], undefined);
      }
      assert.ok(otlp.resources.every((r) => Object.keys(r).every((k) => !k.startsWith('k8s.'))));
    } finally {
      for (const b of [service, docker, short]) await b.stop();
      otlp.close();
    }
  });
});
