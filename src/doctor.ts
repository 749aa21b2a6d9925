// `flamewire doctor`: what this kernel and these privileges allow, what is missing, and the fix.
// Every check is real: the last one loads and attaches the sampler for a moment.

import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { btfProblem, CAP, CAPABILITY_USES, effectiveCaps, hasCap, kallsymsReadable, maxSampleRate, readSysctl, tracefsPath, type CapName } from './system-checks.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export async function runChecks(): Promise<Check[]> {
  const checks: Check[] = [];
  const caps = effectiveCaps();
  const root = process.getuid?.() === 0;

  checks.push({ name: 'kernel', status: 'ok', detail: `Linux ${release()} ${process.arch}` });

  const canBpf = hasCap(caps, 'SYS_ADMIN') || (hasCap(caps, 'BPF') && hasCap(caps, 'PERFMON'));
  const capList = (Object.keys(CAP) as CapName[]).filter((c) => hasCap(caps, c)).map((c) => 'CAP_' + c);
  checks.push({
    name: 'privileges',
    status: canBpf ? 'ok' : 'fail',
    detail: `${root ? 'root' : `uid ${process.getuid?.()}`}; effective: ${capList.join(' ') || 'none of the profiling capabilities'}`,
    fix: canBpf ? undefined : 'run as root (sudo flamewire …), or grant CAP_BPF, CAP_PERFMON (plus CAP_SYS_PTRACE, CAP_SYSLOG for symbols)',
  });

  checks.push(...capabilityChecks(caps));

  if (!hasCap(caps, 'SYSLOG') && !hasCap(caps, 'SYS_ADMIN')) {
    checks.push({ name: 'kernel symbols', status: 'warn', detail: 'no CAP_SYSLOG: kernel frames will show as [kernel]', fix: 'grant CAP_SYSLOG or run as root' });
  } else {
    const ok = kallsymsReadable();
    checks.push({
      name: 'kernel symbols',
      status: ok ? 'ok' : 'warn',
      detail: ok ? '/proc/kallsyms has addresses' : '/proc/kallsyms shows zero addresses (kernel.kptr_restrict)',
      fix: ok ? undefined : 'sysctl kernel.kptr_restrict=1 (and run as root)',
    });
  }

  const btf = btfProblem();
  checks.push({
    name: 'BTF',
    status: btf ? 'fail' : 'ok',
    detail: btf ?? '/sys/kernel/btf/vmlinux present (CO-RE works)',
    fix: btf ? 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y' : undefined,
  });

  const paranoid = readSysctl('/proc/sys/kernel/perf_event_paranoid');
  const needsPerfmon = paranoid !== undefined && Number(paranoid) > 0;
  const perfOk = !needsPerfmon || hasCap(caps, 'PERFMON') || hasCap(caps, 'SYS_ADMIN');
  checks.push({
    name: 'perf_event_paranoid',
    status: perfOk ? 'ok' : 'fail',
    detail: `${paranoid ?? 'unknown'}${needsPerfmon ? (perfOk ? ' (CAP_PERFMON/root overrides it)' : ' (system-wide sampling needs CAP_PERFMON)') : ''}`,
    fix: perfOk ? undefined : 'run as root, grant CAP_PERFMON, or sysctl kernel.perf_event_paranoid=-1',
  });

  const rate = maxSampleRate();
  checks.push({ name: 'max sample rate', status: 'ok', detail: `kernel.perf_event_max_sample_rate = ${rate ?? 'unknown'} Hz (the ceiling for -F)` });

  const unpriv = readSysctl('/proc/sys/kernel/unprivileged_bpf_disabled');
  checks.push({ name: 'unprivileged BPF', status: 'ok', detail: `kernel.unprivileged_bpf_disabled = ${unpriv ?? 'unknown'} (flamewire always needs privileges)` });

  const tracefs = tracefsPath();
  checks.push({
    name: 'tracefs',
    status: 'ok',
    // The programs attach through bpf() and perf_event_open(): nothing reads tracefs, so a
    // container needs no host mount of it.
    detail: tracefs ? `mounted at ${tracefs}` : 'not mounted (flamewire does not use it)',
  });

  checks.push({
    name: 'cgroup',
    status: 'ok',
    detail: existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2 (unified hierarchy)' : 'v1 or hybrid hierarchy',
  });

  checks.push(await probeSampler(canBpf && !btf));
  checks.push(await probeOffCpu(canBpf && !btf));
  return checks;
}

/**
 * One line per capability flamewire uses: granted (or covered by a broader one) and what it
 * does with it, or missing and what that costs. BPF and PERFMON are needed; the others make
 * profiles complete.
 */
function capabilityChecks(caps: bigint): Check[] {
  const oldKernel = (() => {
    const [major, minor] = release().split('.').map(Number);
    return major < 5 || (major === 5 && minor < 11);
  })();
  return CAPABILITY_USES.map(({ cap, use, without, coveredBy }): Check => {
    const name = `CAP_${cap}`;
    if (hasCap(caps, cap)) return { name, status: 'ok', detail: `granted: ${use}` };
    if (coveredBy && hasCap(caps, coveredBy)) return { name, status: 'ok', detail: `covered by CAP_${coveredBy}: ${use}` };
    const needed = cap === 'BPF' || cap === 'PERFMON';
    const status = needed ? 'fail' : cap === 'SYS_RESOURCE' && !oldKernel ? 'ok' : 'warn';
    const detail = cap === 'SYS_RESOURCE' && !oldKernel ? 'not granted, not needed on this kernel (5.11+)' : `missing: ${without}`;
    return { name, status, detail, fix: status === 'ok' ? undefined : `grant CAP_${cap}, or run as root` };
  });
}

/** Loads the BPF programs and attaches the sampler for a moment: bpf(), perf_event, ring buffer. */
async function probeSampler(possible: boolean): Promise<Check> {
  const name = 'bpf() + perf_event + ring buffer';
  if (!possible) return { name, status: 'fail', detail: 'not tried: privileges or BTF missing (see above)' };
  try {
    const { openOnCpuSampler } = await import('./native.js');
    const sampler = openOnCpuSampler({ frequency: 49, pids: [process.pid] });
    let batches = 0;
    sampler.start(() => batches++);
    const until = Date.now() + 200;
    while (Date.now() < until) {
      // Burn CPU so the sampler has something to see.
    }
    const { userWalk } = sampler.info();
    sampler.stop();
    const s = sampler.stats();
    const walk =
      userWalk === 'tables'
        ? 'user stacks walked in the kernel with unwind tables'
        : 'user stacks walked by bpf_get_stack (frame pointers) and repaired from a copy of the stack top: no bpf_loop on this kernel (5.17+), callers in code without frame pointers may be lost';
    return { name, status: 'ok', detail: `loaded, attached on every CPU, ${s.samples} samples through the ring buffer; ${walk}` };
  } catch (e) {
    return { name, status: 'fail', detail: (e as Error).message.split('\n')[0], fix: 'see the error; run with root privileges on a BTF kernel ≥ 5.8' };
  }
}

/** Loads and attaches the off-CPU program for a moment, and blocks so that it has a record. */
async function probeOffCpu(possible: boolean): Promise<Check> {
  const name = 'off-CPU (sched_switch)';
  if (!possible) return { name, status: 'warn', detail: 'not tried: privileges or BTF missing (see above)' };
  try {
    const { openOnCpuSampler } = await import('./native.js');
    // With goroutine waits: their program is loaded (verified) too where the kernel can.
    const sampler = openOnCpuSampler({ frequency: 49, pids: [process.pid], offCpu: true, goWaits: true });
    sampler.start(() => undefined);
    // Off the CPU for 20 ms, twice: each block becomes a record when the thread wakes.
    for (let i = 0; i < 2; i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    const { offCpu: flavour, goWaits } = sampler.info();
    sampler.stop();
    const s = sampler.stats();
    const go = goWaits ? 'goroutine waits of Go programs: program loaded' : 'goroutine waits of Go programs: not on this kernel (needs 5.18+)';
    return { name, status: 'ok', detail: `${flavour} program loaded and attached, ${s.offCpuRecords} blocks recorded (record --off-cpu works); ${go}` };
  } catch (e) {
    return { name, status: 'warn', detail: `${(e as Error).message.split('\n')[0]} (record --off-cpu will not work; on-CPU recording is not affected)` };
  }
}

export function formatChecks(checks: Check[]): string {
  const mark: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };
  const width = Math.max(...checks.map((c) => c.name.length));
  const lines = checks.map((c) => `[${mark[c.status]}] ${c.name.padEnd(width)}  ${c.detail}${c.fix ? `\n       ${' '.repeat(width)}  fix: ${c.fix}` : ''}`);
  const failed = checks.filter((c) => c.status === 'fail').length;
  lines.push(failed === 0 ? 'flamewire can record on this machine.' : `flamewire cannot record here: ${failed} check(s) failed.`);
  return lines.join('\n');
}
