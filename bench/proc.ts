// What the benches read of a live process from /proc.

import { readFileSync } from 'node:fs';

/** CPU seconds (user + system, all threads) of a live process. */
export function processCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Peak resident set (VmHWM) of a live process, in KiB; 0 when the kernel does not say. */
export function peakRssKb(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}
