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
