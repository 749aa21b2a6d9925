// What the agent keeps of a pod, and the resource attributes a process in it gets. A pod as the
// API sends it is 5-50 KB of JSON (spec, managed fields, conditions); the agent keeps a few
// hundred bytes: uid, name, namespace, the service name worked out once from its annotations,
// labels and owner, and its containers' ids → names (regular, init and ephemeral ones, and the
// previous id of a restarted container, whose processes may still be in the window).
//
// service.name of a process in a pod, the first found of:
//   1. annotation flamewire.io/service-name
//   2. annotation resource.opentelemetry.io/service.name (the OpenTelemetry convention)
//   3. label app.kubernetes.io/name, then label app
//   4. the workload that owns the pod: its Deployment (the ReplicaSet's name without the
//      pod-template-hash), StatefulSet, DaemonSet, Job, ...
//   5. the container's name (the pod's name while its container is not known)
// Like Pyroscope's eBPF agent and the OpenTelemetry semantic conventions (which also look at
// the annotation, the same labels and the owner): the service a pod belongs to is the pod's
// business, not the agent's: the agent's own OTEL_SERVICE_NAME names only processes outside pods.

import type { Attributes } from '../otlp/profiles.js';

export const SERVICE_NAME_ANNOTATION = 'flamewire.io/service-name';
const OTEL_SERVICE_NAME_ANNOTATION = 'resource.opentelemetry.io/service.name';
const NAME_LABELS = ['app.kubernetes.io/name', 'app'];

export interface PodMeta {
  uid: string;
  name: string;
  namespace: string;
  /** From the annotations, labels or owner; undefined: the container's name says. */
  service?: string;
  /** Container id (without the runtime's scheme) → container name. */
  containers: Map<string, string>;
}

/** The parts of the API's Pod object the agent reads. */
export interface ApiPod {
  metadata?: {
    uid?: string;
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean }>;
  };
  status?: {
    containerStatuses?: ApiContainerStatus[];
    initContainerStatuses?: ApiContainerStatus[];
    ephemeralContainerStatuses?: ApiContainerStatus[];
  };
}

interface ApiContainerStatus {
  name?: string;
  containerID?: string;
  lastState?: { terminated?: { containerID?: string } };
}

/** The slim pod of an API Pod object; undefined when it lacks what identifies it. */
export function podMeta(pod: ApiPod): PodMeta | undefined {
  const m = pod.metadata;
  if (!m?.uid || !m.name || !m.namespace) return undefined;
  const containers = new Map<string, string>();
  const s = pod.status ?? {};
  for (const list of [s.containerStatuses, s.initContainerStatuses, s.ephemeralContainerStatuses]) {
    for (const c of list ?? []) {
      if (!c.name) continue;
      // The previous instance first: the current one wins should they ever be the same.
      for (const id of [c.lastState?.terminated?.containerID, c.containerID]) {
        const bare = bareContainerId(id);
        if (bare) containers.set(bare, c.name);
      }
    }
  }
  return { uid: m.uid, name: m.name, namespace: m.namespace, service: serviceOf(m), containers };
}

/** containerd://<id>, cri-o://<id>, docker://<id> → <id>. */
function bareContainerId(id: string | undefined): string | undefined {
  if (!id) return undefined;
  const i = id.indexOf('://');
  return (i >= 0 ? id.slice(i + 3) : id).trim().toLowerCase() || undefined;
}

function serviceOf(m: NonNullable<ApiPod['metadata']>): string | undefined {
  const pick = (v: string | undefined) => (v?.trim() ? v.trim() : undefined);
  const named = pick(m.annotations?.[SERVICE_NAME_ANNOTATION]) ?? pick(m.annotations?.[OTEL_SERVICE_NAME_ANNOTATION]);
  if (named) return named;
  for (const l of NAME_LABELS) {
    const v = pick(m.labels?.[l]);
    if (v) return v;
  }
  const owner = m.ownerReferences?.find((o) => o.controller) ?? m.ownerReferences?.[0];
  // A static pod's mirror is owned by its Node: that names the machine, not a service.
  if (!owner?.name || owner.kind === 'Node') return undefined;
  const hash = m.labels?.['pod-template-hash'];
  if (owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
  return owner.name;
}

/** The resource attributes of a process in `pod`, in container `containerId` if known. */
export function podAttributes(pod: PodMeta, containerId: string | undefined): Attributes {
  const container = containerId === undefined ? undefined : pod.containers.get(containerId);
  return {
    'service.name': pod.service ?? container ?? pod.name,
    'k8s.namespace.name': pod.namespace,
    'k8s.pod.name': pod.name,
    'k8s.pod.uid': pod.uid,
    ...(container ? { 'k8s.container.name': container } : {}),
  };
}
