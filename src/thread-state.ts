// Names for the scheduler state a thread blocked in (off-CPU records' task_state), as the
// `thread.state` label. The bits are the kernel's (include/linux/sched.h), stable since 2.6.

import { SAMPLE_FLAG } from './record-decoder.js';

const TASK_INTERRUPTIBLE = 0x1;
const TASK_UNINTERRUPTIBLE = 0x2;
const TASK_STOPPED = 0x4;
const TASK_TRACED = 0x8;
const TASK_PARKED = 0x40;
const TASK_NOLOAD = 0x400;

/**
 * The state's name, in the words of ps/top: "sleeping" (S: waiting for an event, a lock, a
 * read), "uninterruptible" (D: disk I/O and other waits that cannot be interrupted), "idle"
 * (I: uninterruptible but not counted in the load), "stopped" (T), "traced" (t), "parked";
 * "runnable" when it was preempted, or yielded, while it could still run (R).
 */
export function threadStateName(state: number, flags: number): string {
  if (flags & SAMPLE_FLAG.preempted || state === 0) return 'runnable';
  if (state & TASK_INTERRUPTIBLE) return 'sleeping';
  if (state & TASK_UNINTERRUPTIBLE) return state & TASK_NOLOAD ? 'idle' : 'uninterruptible';
  if (state & TASK_STOPPED) return 'stopped';
  if (state & TASK_TRACED) return 'traced';
  if (state & TASK_PARKED) return 'parked';
  return `state 0x${state.toString(16)}`;
}

/** Goroutine statuses of goroutine-wait records (runtime2.go; stable since Go 1.0 save 9, 10). */
const G_RUNNABLE = 1;
const G_PREEMPTED = 9;
const G_LEAKED = 10;
const GOROUTINE = 'goroutine ';

/**
 * The state of a goroutine-wait record (task_state: Go status | waitreason << 16), in the form
 * the aggregator keys on: "goroutine waiting: chan receive", "goroutine runnable". `reason`
 * names a wait reason code of the process's Go release.
 */
export function goroutineStateName(taskState: number, reason: (code: number) => string | undefined): string {
  const status = taskState & 0xffff;
  if (status === G_RUNNABLE || status === G_PREEMPTED) return `${GOROUTINE}runnable`;
  const code = taskState >>> 16;
  const why = reason(code) || (code === 0 ? '' : `wait reason ${code}`);
  const state = status === G_LEAKED ? 'leaked' : 'waiting';
  return why ? `${GOROUTINE}${state}: ${why}` : `${GOROUTINE}${state}`;
}

export function isGoroutineState(state: string): boolean {
  return state.startsWith(GOROUTINE);
}

/**
 * The labels that carry an off-CPU entry's state: `thread.state` for threads; for goroutines
 * `goroutine.state` (waiting, runnable, leaked) and `goroutine.wait_reason` (Go's own words, as
 * in its goroutine dumps: "chan receive", "sleep", "sync.Mutex.Lock", "IO wait", "select").
 */
export function stateLabels(state: string): Record<string, string> {
  if (!isGoroutineState(state)) return { 'thread.state': state };
  const rest = state.slice(GOROUTINE.length);
  const colon = rest.indexOf(': ');
  if (colon < 0) return { 'goroutine.state': rest };
  return { 'goroutine.state': rest.slice(0, colon), 'goroutine.wait_reason': rest.slice(colon + 2) };
}
