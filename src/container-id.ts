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

import { readFileSync } from 'node:fs';

const ID = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$/;

/** The container id in the text of a /proc/PID/cgroup file, or undefined. */
export function containerIdFromCgroup(text: string): string | undefined {
  for (const line of text.split('\n')) {
    // hierarchy-id:controllers:path; the path may itself contain ':'.
    const parts = line.split(':');
    if (parts.length < 3) continue;
    const path = parts.slice(2).join(':').trim();
    // The innermost component that carries an id (a pod's own cgroup has only the pod's uid).
    const segments = path.split('/').reverse();
    for (const seg of segments) {
      const m = ID.exec(seg);
      if (m) return m[1];
    }
  }
  return undefined;
}

/** container.id of process `pid`, or undefined (no container, or gone). */
export function containerId(pid: number, procRoot = '/proc'): string | undefined {
  try {
    return containerIdFromCgroup(readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8'));
  } catch {
    return undefined;
  }
}
