// Which processes are Go programs, and where the BPF sampler finds their goroutine: the
// runtime offsets for the binary's Go release (src/go/runtime-offsets.ts), worked out once per
// binary and handed to the sampler per process (bpf/oncpu.h fw_go_proc). With them, where the
// process keeps its list of goroutines (runtime.allgs, src/go/allgs.ts), for goroutine waits.

import { statSync } from 'node:fs';
import { ElfFile, ET_DYN } from './elf/elf-file.js';
import { readGoBuildInfo } from './elf/go-buildinfo.js';
import { findAllgs, loadBias } from './go/allgs.js';
import { goRuntimeOffsets } from './go/runtime-offsets.js';
import { logger } from './logger.js';
import { exeOnUserFuse } from './untrusted-file.js';
import { goWaitReasonName } from './go/wait-reasons.js';
import type { GoProcessOffsets, OnCpuSampler } from './native.js';

/** Sections only Go's linker writes, and Go's build-id note. */
const GO_SECTIONS = ['.go.buildinfo', '.gopclntab', '.data.rel.ro.gopclntab', '.note.go.buildid', '.go.module'];

/**
 * True when the section headers or notes say Go. Binaries stripped of their section headers
 * (rare: sstrip) are not recognized, and their samples carry no goroutine ids.
 */
function looksLikeGo(elf: ElfFile): boolean {
  return GO_SECTIONS.some((n) => elf.section(n) !== undefined) || elf.goBuildId !== '';
}

/** What a Go binary tells, whatever process runs it. */
interface GoBinary {
  offsets: GoProcessOffsets;
  /** Link-time address of runtime.allgs; the process's address needs the load bias for a PIE. */
  allgs: number | undefined;
  pie: boolean;
}

/** Binaries seen, by device and inode: undefined when not Go, or not supported. */
const byBinary = new Map<string, GoBinary | undefined>();

/**
 * The goroutine offsets for process `pid`'s current image, or undefined when it is not a Go
 * program or its goroutines cannot be found (unsupported release, architecture, unknown TLS).
 * With allgs (goroutine waits) when the binary tells where it is.
 */
export function goProcessOffsets(pid: number, procRoot = '/proc'): GoProcessOffsets | undefined {
  const exe = `${procRoot}/${pid}/exe`;
  // Even a stat of a binary on a user's FUSE mount waits on that user's daemon.
  if (exeOnUserFuse(`${procRoot}/${pid}`)) return undefined;
  const bin = goBinary(exe);
  if (!bin) return undefined;
  if (bin.allgs === undefined) return bin.offsets;
  const bias = bin.pie ? loadBias(pid, exe) : 0;
  return bias === undefined ? bin.offsets : { ...bin.offsets, allgs: bin.allgs + bias };
}

/**
 * The same for an executable file, before any process runs it: a PIE's allgs address is not
 * known yet, so it has none.
 */
export function goBinaryOffsets(exe: string): GoProcessOffsets | undefined {
  const bin = goBinary(exe);
  if (!bin) return undefined;
  return bin.pie || bin.allgs === undefined ? bin.offsets : { ...bin.offsets, allgs: bin.allgs };
}

function goBinary(exe: string): GoBinary | undefined {
  let key: string;
  try {
    const st = statSync(exe);
    key = `${st.dev}:${st.ino}:${st.mtimeMs}`;
  } catch {
    return undefined; // gone, or a kernel thread
  }
  if (byBinary.has(key)) return byBinary.get(key);
  let found: GoBinary | undefined;
  try {
    found = ElfFile.withFile(exe, (elf) => {
      // Cheap checks first: on a non-Go binary the full probe falls back to scanning its
      // segments, which for a large one (node) reads tens of megabytes into memory.
      if (!looksLikeGo(elf)) return undefined;
      const info = readGoBuildInfo(elf);
      if (!info) return undefined;
      const o = goRuntimeOffsets(elf, info.goVersion);
      if (!o || o.tls.arch !== 'amd64' || o.tls.offset === undefined) {
        logger().debug({ exe, goVersion: info.goVersion, tls: o?.tls }, 'Go process without goroutine ids');
        return undefined;
      }
      const offsets: GoProcessOffsets = {
        gTlsOffset: o.tls.offset,
        gM: o.g.m,
        mCurg: o.m.curg,
        gGoid: o.g.goid,
        gLabels: o.g.labels,
        labelsFormat: o.labels.format,
        goMinor: o.minor,
        gStackLo: o.g.stackLo,
        gStackHi: o.g.stackHi,
        gSchedSp: o.g.schedSp,
        gSchedPc: o.g.schedPc,
        gSchedBp: o.g.schedBp,
        gStatus: o.g.atomicstatus,
        gWaitreason: o.g.waitreason,
      };
      const allgs = findAllgs(elf)?.address;
      if (allgs === undefined) logger().debug({ exe, goVersion: info.goVersion }, 'Go binary without a findable runtime.allgs: no goroutine waits');
      return { offsets, allgs, pie: elf.type === ET_DYN };
    });
  } catch {
    found = undefined; // not ELF, unreadable: not ours to report here
  }
  if (byBinary.size >= 1024) byBinary.clear();
  byBinary.set(key, found);
  return found;
}

/**
 * The Go processes a sampler knows, kept in step with the processes it sees (the capture's
 * onProcess events), and their Go release, which names their goroutines' wait reasons.
 */
export class GoRegistry {
  private readonly minors = new Map<number, number>();

  constructor(private readonly sampler: Pick<OnCpuSampler, 'setGoProcess' | 'removeGoProcess'>) {}

  /**
   * A process appeared ('new', or 'start': already running), replaced its image, or exited.
   * Events after the sampler stopped (its last batches) change nothing.
   */
  update(pid: number, event: 'new' | 'exec' | 'exit' | 'start'): void {
    const go = event === 'exit' ? undefined : goProcessOffsets(pid);
    if (go) this.set(pid, go);
    else if (event === 'exit' || event === 'exec') {
      this.minors.delete(pid);
      this.quietly(() => this.sampler.removeGoProcess(pid));
    }
  }

  /** Registers `pid` with offsets known beforehand (a command about to exec its binary). */
  set(pid: number, go: GoProcessOffsets): void {
    this.minors.set(pid, go.goMinor ?? 0);
    this.quietly(() => this.sampler.setGoProcess(pid, go));
  }

  private quietly(f: () => void): void {
    try {
      f();
    } catch (e) {
      logger().debug({ err: (e as Error).message }, 'Go process not updated');
    }
  }

  /** The name of wait reason `code` in process `pid`'s Go release. */
  waitReason(pid: number, code: number): string | undefined {
    return goWaitReasonName(this.minors.get(pid) ?? 0, code);
  }
}
