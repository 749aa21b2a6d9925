// What this kernel and these privileges allow. Used by `record` to refuse early with one clear
// line, and by `doctor` to print everything with the fix for each missing piece.

import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';

export const CAP = {
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  SYS_PTRACE: 19,
  SYS_ADMIN: 21,
  SYS_RESOURCE: 24,
  SYSLOG: 34,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
} as const;

export type CapName = keyof typeof CAP;

/**
 * The capabilities flamewire uses, what it does with each, what is lost without it, and the
 * broader capability that covers it too. deploy/daemonset.yaml grants exactly these.
 */
export const CAPABILITY_USES: ReadonlyArray<{ cap: CapName; use: string; without: string; coveredBy?: CapName }> = [
  { cap: 'BPF', use: 'creates the BPF maps and loads the programs', without: 'nothing can be recorded', coveredBy: 'SYS_ADMIN' },
  {
    cap: 'PERFMON',
    use: 'samples every process on every CPU (perf_event_open) and loads tracing programs',
    without: 'nothing can be recorded',
    coveredBy: 'SYS_ADMIN',
  },
  {
    cap: 'SYS_PTRACE',
    use: "reads other users' and more privileged processes' /proc/PID/maps, root, exe and mem",
    without: 'their binaries go unsymbolized',
  },
  {
    cap: 'DAC_READ_SEARCH',
    use: 'opens binaries and perf maps that are not readable by everyone',
    without: 'those go unsymbolized',
    coveredBy: 'DAC_OVERRIDE',
  },
  {
    cap: 'CHECKPOINT_RESTORE',
    use: 'opens mapped files through /proc/PID/map_files, deleted or replaced ones too',
    without: 'deleted or replaced binaries go unsymbolized',
    coveredBy: 'SYS_ADMIN',
  },
  { cap: 'SYSLOG', use: 'reads kernel symbol addresses from /proc/kallsyms', without: 'kernel frames show as [kernel]' },
  {
    cap: 'SYS_RESOURCE',
    use: 'raises RLIMIT_MEMLOCK for the BPF maps (kernels before 5.11 charge them to it)',
    without: 'on kernels before 5.11 loading can fail with EPERM',
  },
];

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCaps(): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt('0x' + m[1]) : 0n;
  } catch {
    return 0n;
  }
}

export function hasCap(caps: bigint, name: CapName): boolean {
  return ((caps >> BigInt(CAP[name])) & 1n) === 1n;
}

/** Can this process load BPF programs and open system-wide perf events? */
export function privilegeProblem(): string | undefined {
  const caps = effectiveCaps();
  if (hasCap(caps, 'SYS_ADMIN')) return undefined;
  const missing = (['BPF', 'PERFMON'] as CapName[]).filter((c) => !hasCap(caps, c));
  if (missing.length === 0) return undefined;
  const who = process.getuid?.() === 0 ? 'root without the needed capabilities' : 'not root';
  return `permission denied: loading BPF programs needs root (or CAP_BPF and CAP_PERFMON); this process is ${who} (missing CAP_${missing.join(', CAP_')})`;
}

/** FLAMEWIRE_KERNEL_BTF points the check elsewhere (tests use it to play a kernel without BTF). */
export function btfProblem(path = process.env.FLAMEWIRE_KERNEL_BTF ?? '/sys/kernel/btf/vmlinux'): string | undefined {
  if (existsSync(path)) return undefined;
  return `this kernel has no BTF (${path} is missing): flamewire needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.4 or newer; most distributions since 2020)`;
}

export function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The kernel's ceiling for perf sampling frequency (kernel.perf_event_max_sample_rate). */
export function maxSampleRate(): number | undefined {
  const v = readSysctl('/proc/sys/kernel/perf_event_max_sample_rate');
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

export function tracefsPath(): string | undefined {
  for (const p of ['/sys/kernel/tracing', '/sys/kernel/debug/tracing']) {
    if (existsSync(`${p}/events`)) return p;
  }
  return undefined;
}

/** kallsyms gives real addresses only to privileged readers (kptr_restrict). */
export function kallsymsReadable(): boolean {
  // The first line tells: hidden addresses are all zero. Read that, not the whole 5 MB file.
  let fd: number | undefined;
  try {
    fd = openSync('/proc/kallsyms', 'r');
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, null);
    const first = buf.toString('latin1', 0, n).split('\n').find((l) => l.length > 0) ?? '';
    return !/^0+ /.test(first);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
