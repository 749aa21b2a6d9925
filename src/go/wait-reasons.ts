// Why a goroutine waits, as the runtime writes it: g.waitreason holds a runtime.waitReason, a
// uint8 enum whose order changes between releases, and Go prints it through waitReasonStrings
// ("chan receive", "sleep", "sync.Mutex.Lock" …). And what g.atomicstatus holds: _Gwaiting and
// the other _G* states, with the _Gscan bit set while the garbage collector scans the stack.
// The tables are Go's own (src/runtime/runtime2.go and traceback.go of each release): the tests
// parse every toolchain's source and compare. Patch releases keep the enum of their minor.

/** A goroutine status (g.atomicstatus without _Gscan): just allocated, not initialized yet. */
export const G_IDLE = 0;
/** On a run queue, not running. */
export const G_RUNNABLE = 1;
/** Running on an M and a P. */
export const G_RUNNING = 2;
/** In a system call (or in cgo), on an M but without running Go code. */
export const G_SYSCALL = 3;
/** Blocked in the runtime (g.waitreason says why), on no run queue. */
export const G_WAITING = 4;
/** Unused: exited, on a free list, or just allocated (its stack may be gone). */
export const G_DEAD = 6;
/** Its stack is being moved. */
export const G_COPYSTACK = 8;
/** Stopped by an asynchronous preemption request, waiting to be resumed. */
export const G_PREEMPTED = 9;
/** Go 1.26+: found blocked forever by the goroutine leak detector. */
export const G_LEAKED = 10;
/** Go 1.26+: the goroutine of an extra M kept for C threads calling into Go ("waiting for cgo callback"). */
export const G_DEADEXTRA = 11;
/** Set in g.atomicstatus, on top of a status, while the GC scans the goroutine's stack. */
export const G_SCAN = 0x1000;

/** How Go's tracebacks name each status (gStatusStrings), by value. */
const STATUS_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [G_IDLE]: 'idle',
  [G_RUNNABLE]: 'runnable',
  [G_RUNNING]: 'running',
  [G_SYSCALL]: 'syscall',
  [G_WAITING]: 'waiting',
  [G_DEAD]: 'dead',
  [G_COPYSTACK]: 'copystack',
  [G_PREEMPTED]: 'preempted',
  [G_LEAKED]: 'leaked',
  [G_DEADEXTRA]: 'waiting for cgo callback',
});

/**
 * The name Go's tracebacks give the value of g.atomicstatus: "waiting", "runnable" …, with
 * " (scan)" when the _Gscan bit is set; "status N" for values no release uses.
 */
export function goStatusName(status: number): string {
  const scan = (status & G_SCAN) !== 0;
  const base = status & ~G_SCAN;
  const name = STATUS_NAMES[base] ?? `status ${base}`;
  return scan ? `${name} (scan)` : name;
}

/** Go 1.21: waitReasonStrings by waitReason value. */
const REASONS_121: readonly string[] = Object.freeze([
  '', // 0
  'GC assist marking', // 1
  'IO wait', // 2
  'chan receive (nil chan)', // 3
  'chan send (nil chan)', // 4
  'dumping heap', // 5
  'garbage collection', // 6
  'garbage collection scan', // 7
  'panicwait', // 8
  'select', // 9
  'select (no cases)', // 10
  'GC assist wait', // 11
  'GC sweep wait', // 12
  'GC scavenge wait', // 13
  'chan receive', // 14
  'chan send', // 15
  'finalizer wait', // 16
  'force gc (idle)', // 17
  'semacquire', // 18
  'sleep', // 19
  'sync.Cond.Wait', // 20
  'sync.Mutex.Lock', // 21
  'sync.RWMutex.RLock', // 22
  'sync.RWMutex.Lock', // 23
  'trace reader (blocked)', // 24
  'wait for GC cycle', // 25
  'GC worker (idle)', // 26
  'GC worker (active)', // 27
  'preempted', // 28
  'debug call', // 29
  'GC mark termination', // 30
  'stopping the world', // 31
]);

/** Go 1.22 added five at the end (proc caches, the new tracer, coroutines). */
const REASONS_122: readonly string[] = Object.freeze([
  ...REASONS_121,
  'flushing proc caches', // 32
  'trace goroutine status', // 33
  'trace proc status', // 34
  'page trace flush', // 35
  'coroutine', // 36
]);

/** Go 1.23 added one at the end. */
const REASONS_123: readonly string[] = Object.freeze([...REASONS_122, 'GC weak to strong wait']); // 37

/** Go 1.24 inserted sync.WaitGroup.Wait after the mutexes (moving everything after it) and added synctest. */
const REASONS_124: readonly string[] = Object.freeze([
  '', // 0
  'GC assist marking', // 1
  'IO wait', // 2
  'chan receive (nil chan)', // 3
  'chan send (nil chan)', // 4
  'dumping heap', // 5
  'garbage collection', // 6
  'garbage collection scan', // 7
  'panicwait', // 8
  'select', // 9
  'select (no cases)', // 10
  'GC assist wait', // 11
  'GC sweep wait', // 12
  'GC scavenge wait', // 13
  'chan receive', // 14
  'chan send', // 15
  'finalizer wait', // 16
  'force gc (idle)', // 17
  'semacquire', // 18
  'sleep', // 19
  'sync.Cond.Wait', // 20
  'sync.Mutex.Lock', // 21
  'sync.RWMutex.RLock', // 22
  'sync.RWMutex.Lock', // 23
  'sync.WaitGroup.Wait', // 24
  'trace reader (blocked)', // 25
  'wait for GC cycle', // 26
  'GC worker (idle)', // 27
  'GC worker (active)', // 28
  'preempted', // 29
  'debug call', // 30
  'GC mark termination', // 31
  'stopping the world', // 32
  'flushing proc caches', // 33
  'trace goroutine status', // 34
  'trace proc status', // 35
  'page trace flush', // 36
  'coroutine', // 37
  'GC weak to strong wait', // 38
  'synctest.Run', // 39
  'synctest.Wait', // 40
  'chan receive (synctest)', // 41
  'chan send (synctest)', // 42
  'select (synctest)', // 43
]);

/** Go 1.25 inserted the GOMAXPROCS updater after force gc, renamed "(synctest)" to "(durable)", added two. */
const REASONS_125: readonly string[] = Object.freeze([
  '', // 0
  'GC assist marking', // 1
  'IO wait', // 2
  'chan receive (nil chan)', // 3
  'chan send (nil chan)', // 4
  'dumping heap', // 5
  'garbage collection', // 6
  'garbage collection scan', // 7
  'panicwait', // 8
  'select', // 9
  'select (no cases)', // 10
  'GC assist wait', // 11
  'GC sweep wait', // 12
  'GC scavenge wait', // 13
  'chan receive', // 14
  'chan send', // 15
  'finalizer wait', // 16
  'force gc (idle)', // 17
  'GOMAXPROCS updater (idle)', // 18
  'semacquire', // 19
  'sleep', // 20
  'sync.Cond.Wait', // 21
  'sync.Mutex.Lock', // 22
  'sync.RWMutex.RLock', // 23
  'sync.RWMutex.Lock', // 24
  'sync.WaitGroup.Wait', // 25
  'trace reader (blocked)', // 26
  'wait for GC cycle', // 27
  'GC worker (idle)', // 28
  'GC worker (active)', // 29
  'preempted', // 30
  'debug call', // 31
  'GC mark termination', // 32
  'stopping the world', // 33
  'flushing proc caches', // 34
  'trace goroutine status', // 35
  'trace proc status', // 36
  'page trace flush', // 37
  'coroutine', // 38
  'GC weak to strong wait', // 39
  'synctest.Run', // 40
  'synctest.Wait', // 41
  'chan receive (durable)', // 42
  'chan send (durable)', // 43
  'select (durable)', // 44
  'sync.WaitGroup.Wait (durable)', // 45
  'cleanup wait', // 46
]);

/**
 * Go 1.26 (and 1.27, unchanged) moved the channel and select reasons right before the sync ones,
 * so that its goroutine leak detector tests one range: chan receive (nil chan) … WaitGroup.Wait.
 */
const REASONS_126: readonly string[] = Object.freeze([
  '', // 0
  'GC assist marking', // 1
  'IO wait', // 2
  'dumping heap', // 3
  'garbage collection', // 4
  'garbage collection scan', // 5
  'panicwait', // 6
  'GC assist wait', // 7
  'GC sweep wait', // 8
  'GC scavenge wait', // 9
  'finalizer wait', // 10
  'force gc (idle)', // 11
  'GOMAXPROCS updater (idle)', // 12
  'semacquire', // 13
  'sleep', // 14
  'chan receive (nil chan)', // 15
  'chan send (nil chan)', // 16
  'select (no cases)', // 17
  'select', // 18
  'chan receive', // 19
  'chan send', // 20
  'sync.Cond.Wait', // 21
  'sync.Mutex.Lock', // 22
  'sync.RWMutex.RLock', // 23
  'sync.RWMutex.Lock', // 24
  'sync.WaitGroup.Wait', // 25
  'trace reader (blocked)', // 26
  'wait for GC cycle', // 27
  'GC worker (idle)', // 28
  'GC worker (active)', // 29
  'preempted', // 30
  'debug call', // 31
  'GC mark termination', // 32
  'stopping the world', // 33
  'flushing proc caches', // 34
  'trace goroutine status', // 35
  'trace proc status', // 36
  'page trace flush', // 37
  'coroutine', // 38
  'GC weak to strong wait', // 39
  'synctest.Run', // 40
  'synctest.Wait', // 41
  'chan receive (durable)', // 42
  'chan send (durable)', // 43
  'select (durable)', // 44
  'sync.WaitGroup.Wait (durable)', // 45
  'cleanup wait', // 46
]);

const BY_MINOR: Readonly<Record<number, readonly string[]>> = Object.freeze({
  21: REASONS_121,
  22: REASONS_122,
  23: REASONS_123,
  24: REASONS_124,
  25: REASONS_125,
  26: REASONS_126,
  27: REASONS_126,
});

/**
 * Go's waitReasonStrings for Go 1.`minor` in enum order: index i names the wait reason whose
 * value g.waitreason holds. Undefined outside 1.21–1.27.
 */
export function goWaitReasons(minor: number): readonly string[] | undefined {
  return BY_MINOR[minor];
}

/** The text Go prints for wait reason `value` in Go 1.`minor` ('' for none); undefined when unknown. */
export function goWaitReasonName(minor: number, value: number): string | undefined {
  return goWaitReasons(minor)?.[value];
}
