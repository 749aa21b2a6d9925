// The container a process runs in, from /proc/PID/cgroup: the 64-hex-digit id that Docker,
// containerd (also under Kubernetes), CRI-O and Podman put in the cgroup path, with cgroup v1
// or v2. What the OpenTelemetry resource detectors report as container.id.
//
//   v2, systemd driver:  0::/system.slice/docker-<id>.scope
//                        0::/kubepods.slice/kubepods-burstable.slice/kubepods-…-pod<uid>.slice/cri-containerd-<id>.scope
//                        0::/…/crio-<id>.scope, 0::/machine.slice/libpod-<id>.scope
//   v1, cgroupfs driver: 12:pids:/docker/<id>, 4:memory:/kubepods/burstable/pod<uid>/<id>
//
// A process in no container (or in one whose runtime names cgroups otherwise) has none.
//
// Under Kubernetes the path also names the pod by its uid (`…-pod<uid>.slice` with '_' for '-'
// under the systemd driver, `pod<uid>` under cgroupfs): the agent's pod watcher knows a pod by
// its uid as soon as it is scheduled, before the kubelet reports its containers' ids.
//
// A process in no container may be a systemd service's (`…/nginx.service`, in the unified
// hierarchy or in v1's name=systemd one): its unit is the name of the service it is.

import { existsSync, readFileSync } from 'node:fs';

const ID = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$/;
const SERVICE = '.service';
const USER_MANAGER = /^user@\d+\.service$/;
const POD_UID = /(?:^|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;

/** What the cgroup path says of a process's container. */
export interface CgroupIds {
  containerId?: string;
  /** The Kubernetes pod's uid, in the API's form (with '-'). */
  podUid?: string;
  /** The innermost systemd service unit, without `.service` (not the per-user manager). */
  systemdUnit?: string;
}

/** The container id, pod uid and service unit in the text of a /proc/PID/cgroup file (each if there). */
export function idsFromCgroup(text: string): CgroupIds {
  const ids: CgroupIds = {};
  for (const line of text.split('\n')) {
    // hierarchy-id:controllers:path; the path may itself contain ':'.
    const parts = line.split(':');
    if (parts.length < 3) continue;
    const path = parts.slice(2).join(':').trim();
    // The innermost component that carries an id (a pod's own cgroup has only the pod's uid).
    const segments = path.split('/').reverse();
    for (const seg of segments) {
      const m = ids.containerId === undefined ? ID.exec(seg) : null;
      if (m) ids.containerId = m[1];
      const p = ids.podUid === undefined ? POD_UID.exec(seg) : null;
      if (p) ids.podUid = p[1]!.replace(/_/g, '-');
      if (ids.systemdUnit === undefined && seg.endsWith(SERVICE) && seg.length > SERVICE.length && !USER_MANAGER.test(seg)) ids.systemdUnit = seg.slice(0, -SERVICE.length);
    }
    if (ids.containerId !== undefined) return ids;
  }
  return ids;
}

/** What the cgroup path of process `pid` says; undefined when the process is gone. */
function readIds(pid: number, procRoot: string): CgroupIds | undefined {
  try {
    return idsFromCgroup(readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8'));
  } catch {
    return undefined;
  }
}

export interface CgroupTracker {
  /** A process was first seen (or exec'd): read its cgroup while it is there. */
  seen(pid: number): void;
  /** Its ids now: read again while it lives, else as last read (nothing if never read). */
  get(pid: number): CgroupIds;
  /** A window was handed over: processes gone since the last one are forgotten. */
  windowDone(): void;
}

/**
 * The cgroup ids of the processes the agent samples, read when each is first seen, so that one
 * that exits before its window closes (a short job in a pod) is still named in that window.
 * A gone process is kept for one more window: its last samples may be read after the window it
 * exited in has closed. Bounded by the processes alive plus those gone in one window.
 */
export function cgroupTracker(procRoot = '/proc'): CgroupTracker {
  const known = new Map<number, { ids: CgroupIds; gone: boolean }>();
  return {
    seen(pid) {
      const ids = readIds(pid, procRoot);
      if (ids) known.set(pid, { ids, gone: false });
    },
    get(pid) {
      const ids = readIds(pid, procRoot);
      if (ids) {
        known.set(pid, { ids, gone: false });
        return ids;
      }
      return known.get(pid)?.ids ?? {};
    },
    windowDone() {
      for (const [pid, k] of known) {
        if (k.gone) known.delete(pid);
        else if (!existsSync(`${procRoot}/${pid}`)) k.gone = true;
      }
    },
  };
}
