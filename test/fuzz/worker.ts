// The fuzz worker: runs one input of one target at a time, on the thread's own V8 heap (the
// harness starts it with resourceLimits, so a runaway heap ends the worker, not the test), and
// reports how long the work took, how much the process's resident memory peaked above where it
// started (VmHWM after a reset through /proc/self/clear_refs: Buffers, zlib's output and native
// allocations count, not just the JS heap), the longest string in the result, the descriptors
// left open, and an error if the target threw one that is not its typed, clean answer.
// Run as a plain script (node --test runs every file under test/) it does nothing.

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort } from 'node:worker_threads';
import { closeFileRanges } from '../../src/elf/file-bytes.js';
import { targetNamed, type TargetContext } from './targets.js';

export interface WorkRequest {
  id: number;
  target: string;
  /** A file path (ELF targets), a text, or bytes. */
  input: string | Uint8Array;
  ctx: TargetContext;
  /** Runs of the work measured together (short inputs are repeated to rise above timer noise). */
  reps: number;
  /** Collect garbage first (a suspect memory peak is measured again without the garbage of earlier inputs). */
  gcFirst?: boolean;
}

export interface WorkReport {
  id: number;
  ms: number;
  /** Peak resident memory above the start of the input, in bytes. */
  peakBytes: number;
  /** Length of the longest string anywhere in the result. */
  longestString: number;
  /** Open descriptors after the work (and closeFileRanges) minus before (0: nothing leaked). */
  fdDelta: number;
  /** Set when the work threw something other than its typed error. */
  problem?: string;
  /** The name of the typed error it threw, if any. */
  typedError?: string;
}

function kib(field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'latin1'));
  return m ? Number(m[1]) * 1024 : 0;
}

let canResetPeak = true;
function resetPeak(): void {
  if (!canResetPeak) return;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    canResetPeak = false;
  }
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/** The longest string in `v` (objects, arrays, maps, sets; cycles and depth bounded). */
export function longestString(v: unknown, seen = new Set<unknown>(), depth = 0): number {
  if (typeof v === 'string') return v.length;
  if (v === null || typeof v !== 'object' || seen.has(v) || depth > 32) return 0;
  seen.add(v);
  let max = 0;
  const each = (x: unknown) => {
    const n = longestString(x, seen, depth + 1);
    if (n > max) max = n;
  };
  if (v instanceof Map) for (const [k, x] of v) (each(k), each(x));
  else if (v instanceof Set || Array.isArray(v)) for (const x of v) each(x);
  else if (ArrayBuffer.isView(v)) return 0;
  else for (const x of Object.values(v)) each(x);
  return max;
}

async function work(req: WorkRequest): Promise<WorkReport> {
  const target = targetNamed(req.target);
  const input = typeof req.input === 'string' ? req.input : Buffer.from(req.input.buffer, req.input.byteOffset, req.input.byteLength);
  if (req.gcFirst) (globalThis as { gc?: () => void }).gc?.();
  const fds = openFds();
  let result: unknown;
  let problem: string | undefined;
  let typedError: string | undefined;
  const once = async (): Promise<void> => {
    try {
      result = await target.run(input, req.ctx);
    } catch (e) {
      if (target.typed?.(e)) typedError = (e as Error).name;
      else if (e instanceof Error) problem = `threw ${e.name}: ${e.message}\n${e.stack?.split('\n').slice(1, 6).join('\n')}`;
      else problem = `threw a non-Error: ${String(e)}`;
    }
  };
  // Memory over one run (repetitions would add up their garbage), then the timed repetitions.
  resetPeak();
  const rss = kib('VmRSS');
  await once();
  const peakBytes = canResetPeak ? Math.max(0, kib('VmHWM') - rss) : 0;
  const t0 = performance.now();
  for (let r = 0; r < req.reps && !problem; r++) await once();
  const ms = performance.now() - t0;
  const longest = longestString(result);
  result = undefined;
  // The page cache of file-bytes.ts keeps up to 8 files open between reads, by design; the
  // profiler closes them at the end of every task, and so does this.
  closeFileRanges();
  return { id: req.id, ms, peakBytes, longestString: longest, fdDelta: openFds() - fds, problem, typedError };
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (req: WorkRequest) => {
    work(req).then(
      (rep) => port.postMessage(rep),
      (e: unknown) => port.postMessage({ id: req.id, ms: 0, peakBytes: 0, longestString: 0, fdDelta: 0, problem: `worker: ${String(e)}` } satisfies WorkReport),
    );
  });
}
