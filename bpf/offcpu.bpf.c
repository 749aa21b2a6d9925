// SPDX-License-Identifier: GPL-2.0
/*
 * Off-CPU time: sched_switch runs on every context switch of the machine. When a wanted
 * thread leaves the CPU, its record (stacks and leaf-repair data, as for an on-CPU sample) is
 * captured and parked with the time; when the thread is switched back in, the record is
 * emitted with the time it was off the CPU, if that is at least off_cpu_threshold_ns. Shorter
 * blocks are only counted (number and time), and so is the time of records the ring buffer
 * had no room for: no blocked time disappears unreported.
 *
 * The stacks must be taken at switch-out: sched_switch runs in the context of the thread
 * leaving, and only the current thread's user memory can be read.
 *
 * Two flavours, chosen by user space by probing: tp_btf parks the record in the thread's task
 * storage (freed with the task); raw_tp, for kernels where that is not possible, parks it in
 * a tid-keyed hash map, deleted when the thread exits.
 */
#include "capture.bpf.h"

const volatile __u64 off_cpu_threshold_ns = FW_DEFAULT_OFF_CPU_THRESHOLD_NS;
/* bpf_loop (5.17+) for the user stack walk, else bpf_get_stack; probed by user space. */
const volatile bool off_cpu_own_walk = true;
/* raw_tp: THREAD_SIZE, to find a task's user registers at the top of its kernel stack. */
const volatile __u64 task_stack_bytes = 16384;

#define FW_OFF_CPU_RECORD_MAX                                                          \
	(sizeof(struct fw_sample) + FW_OFF_CPU_MAX_SNAPSHOT_BYTES +                      \
	 FW_MAX_KERNEL_FRAMES * sizeof(__u64) + FW_MAX_USER_FRAMES * sizeof(__u64) +            \
	 FW_MAX_GO_LABEL_BYTES + 8)
/* All-ones mask at or above the largest record (verifier bounds for the copies). */
#define FW_OFF_CPU_RECORD_MASK 4095
_Static_assert(FW_OFF_CPU_RECORD_MAX <= FW_OFF_CPU_RECORD_MASK, "off-CPU record exceeds the mask");

/* What follows the kernel frames in a record: user frames, then goroutine labels. */
#define FW_OFF_CPU_TAIL_MAX (FW_MAX_USER_FRAMES * sizeof(__u64) + FW_MAX_GO_LABEL_BYTES + 8)
/* All-ones mask at or above FW_OFF_CPU_TAIL_MAX (verifier bounds for the copy). */
#define FW_OFF_CPU_TAIL_MASK 2047
_Static_assert(FW_OFF_CPU_TAIL_MAX <= FW_OFF_CPU_TAIL_MASK, "off-CPU record tail exceeds the mask");

/* TASK_DEAD (include/linux/sched.h): the thread's last switch-out, it never comes back. */
#define FW_TASK_DEAD 0x80

/* A switched-out thread: when it left and the record to emit when it comes back. */
struct parked {
	__u64 start_ns;
	__u32 size; /* bytes of rec in use; 0: nothing parked */
	__u32 go_idle; /* no record: an idle thread of a Go process left at start_ns */

	__u8 rec[FW_OFF_CPU_RECORD_MASK + 1];
};

/* tp_btf: allocated on a thread's first switch-out, so only threads that ran while we
 * watched cost memory (one record each). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct parked);
} parked_threads SEC(".maps");

/* raw_tp: by tid. Preallocated (tracing programs may not allocate on older kernels); sized
 * from user space, and a thread that finds it full is counted as off_cpu_no_storage. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_DEFAULT_OFF_CPU_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct parked);
} parked_tids SEC(".maps");

/* The idle task, kernel threads and exiting threads: their waiting is not latency. */
static __always_inline bool want_switch_out(__u32 tgid, bool has_mm, __u32 state)
{
	return tgid != 0 && has_mm && !(state & FW_TASK_DEAD) && pid_wanted(tgid);
}

/*
 * Captures the current (leaving) thread's record into p. `kernel_stack`: the kernel stack now
 * (raw_tp); tp_btf leaves it out and takes it at switch-in, from the blocked task, only for
 * blocks that pass the threshold: it is most of the cost of a capture.
 */
static __always_inline void park(void *ctx, struct parked *p, bool preempt, __u32 state, __u64 ip,
				 __u64 sp, __u64 fp, const bool kernel_stack)
{
	__u32 zero = 0;
	struct sample_buf *buf;
	__u32 flags = FW_SAMPLE_USER_REGS | (kernel_stack ? FW_SAMPLE_KERNEL_MODE : 0);
	long size;

	p->go_idle = 0;
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf) {
		count(FW_METRIC_SCRATCH_MISSING);
		return;
	}
	if (preempt)
		flags |= FW_SAMPLE_PREEMPTED;
	size = capture_record(ctx, buf, FW_RECORD_OFF_CPU, flags, ip, sp, fp,
			      FW_OFF_CPU_MAX_SNAPSHOT_BYTES, off_cpu_own_walk);
	buf->sample.task_state = state;
	if (size > FW_OFF_CPU_RECORD_MAX)
		size = FW_OFF_CPU_RECORD_MAX;
	barrier_var(size);
	size &= FW_OFF_CPU_RECORD_MASK;
	if (size < sizeof(struct fw_sample) || bpf_probe_read_kernel(p->rec, size, buf)) {
		p->size = 0;
		return;
	}
	p->size = size;
	p->start_ns = buf->sample.time_ns;
}

/*
 * An idle thread of a Go process (see go_thread_idle): its time is only counted. Goroutines
 * that wait are seen by gowait.bpf.c, with their own stacks; the threads that would run them
 * waiting in the scheduler say nothing anybody can act on.
 */
static __always_inline void park_go_idle(struct parked *p)
{
	p->size = 0;
	p->go_idle = 1;
	p->start_ns = bpf_ktime_get_ns();
}

/* True when p held an idle Go thread's mark (now counted and cleared). */
static __always_inline bool unpark_go_idle(struct parked *p, __u64 now)
{
	if (!p->go_idle)
		return false;
	p->go_idle = 0;
	count(FW_METRIC_OFF_CPU_GO_IDLE);
	add(FW_METRIC_OFF_CPU_GO_IDLE_NS, now - p->start_ns);
	return true;
}

/*
 * Takes p's record (p is empty afterwards) and returns the time since it was parked, or 0
 * when the block was under the threshold (counted as short).
 */
static __always_inline __u64 unpark(struct parked *p, __u64 now)
{
	__u64 blocked;

	if (p->size == 0)
		return 0;
	p->size = 0;
	blocked = now - p->start_ns;
	if (blocked < off_cpu_threshold_ns || blocked == 0) {
		count(FW_METRIC_OFF_CPU_SHORT);
		add(FW_METRIC_OFF_CPU_SHORT_NS, blocked);
		return 0;
	}
	return blocked;
}

static __always_inline void emit(void *rec, __u32 size, __u64 blocked, __u64 rb_flags)
{
	barrier_var(size);
	size &= FW_OFF_CPU_RECORD_MASK;
	if (size < sizeof(struct fw_sample))
		return;
	if (rb_flags == BPF_RB_NO_WAKEUP)
		rb_flags = ringbuf_flags(((struct fw_sample *)rec)->flags);
	if (bpf_ringbuf_output(&events, rec, size, rb_flags)) {
		count(FW_METRIC_OFF_CPU_RINGBUF_FULL);
		add(FW_METRIC_OFF_CPU_DROPPED_NS, blocked);
		return;
	}
	count(FW_METRIC_OFF_CPU_EMITTED);
	add(FW_METRIC_OFF_CPU_EMITTED_NS, blocked);
}

/* raw_tp: the parked record is complete; it goes out as it is, with the blocked time. */
static __always_inline void emit_parked(struct parked *p, __u64 now, __u64 rb_flags)
{
	__u32 size = p->size;
	__u64 blocked;

	if (unpark_go_idle(p, now))
		return;
	blocked = unpark(p, now);

	if (blocked == 0)
		return;
	((struct fw_sample *)p->rec)->off_cpu_ns = blocked;
	emit(p->rec, size, blocked, rb_flags);
}

/*
 * tp_btf: the parked record has no kernel stack yet. The task has not run since it was parked,
 * so its kernel stack is still the one it blocked in: read it now (bpf_get_task_stack) and
 * assemble the record in the scratch buffer in record order: header and stack top, kernel
 * frames, user frames.
 */
static __always_inline void emit_parked_task(struct parked *p, struct task_struct *task, __u64 now,
					     __u64 rb_flags)
{
	struct fw_sample *parked = (struct fw_sample *)p->rec;
	__u32 zero = 0, snap, ubytes;
	struct sample_buf *buf;
	__u64 blocked;
	long kbytes;

	if (unpark_go_idle(p, now) || p->size == 0)
		return;
	snap = parked->snapshot_len;
	/* The user frames and, for goroutines, their labels: both follow the kernel frames. */
	ubytes = parked->user_frames * sizeof(__u64) + parked->labels_len;
	blocked = unpark(p, now);
	if (blocked == 0)
		return;
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf) {
		count(FW_METRIC_SCRATCH_MISSING);
		return;
	}
	if (snap > FW_OFF_CPU_MAX_SNAPSHOT_BYTES)
		snap = FW_OFF_CPU_MAX_SNAPSHOT_BYTES;
	barrier_var(snap);
	snap &= FW_SNAPSHOT_MASK;
	if (ubytes > FW_OFF_CPU_TAIL_MAX)
		ubytes = FW_OFF_CPU_TAIL_MAX;
	barrier_var(ubytes);
	ubytes &= FW_OFF_CPU_TAIL_MASK;
	if (bpf_probe_read_kernel(buf, sizeof(struct fw_sample) + snap, parked))
		return;
	kbytes = bpf_get_task_stack(task, buf->data + snap, FW_MAX_KERNEL_FRAMES * sizeof(__u64), 0);
	kbytes = kernel_stack_bytes(kbytes, &buf->sample.flags);
	if (ubytes > 0 &&
	    bpf_probe_read_kernel(buf->data + snap + kbytes, ubytes, p->rec + sizeof(struct fw_sample) + snap))
		return;
	buf->sample.flags |= FW_SAMPLE_KERNEL_MODE;
	buf->sample.kernel_frames = kbytes / sizeof(__u64);
	buf->sample.off_cpu_ns = blocked;
	emit(buf, sizeof(struct fw_sample) + snap + kbytes + ubytes, blocked, rb_flags);
}

/*
 * tp_btf has (preempt, prev, next[, prev_state]); the state argument only exists from 5.18,
 * so it is read from the task instead (see fw_task_state). IRQs are off in here, so the
 * per-CPU scratch buffer cannot be in use by an interrupted on-CPU sample.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(off_cpu_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 state = fw_task_state(prev);
	struct parked *p;

	if (want_switch_out(prev->tgid, prev->mm != NULL, state)) {
		p = bpf_task_storage_get(&parked_threads, prev, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (p && go_thread_idle(prev->tgid)) {
			park_go_idle(p);
		} else if (p) {
			struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(prev);

			park(ctx, p, preempt, state, FW_REGS_IP(uregs), FW_REGS_SP(uregs),
			     FW_REGS_FP(uregs), false);
		} else {
			count(FW_METRIC_OFF_CPU_NO_STORAGE);
		}
	}
	if (next->tgid != 0) {
		p = bpf_task_storage_get(&parked_threads, next, NULL, 0);
		if (p)
			emit_parked_task(p, next, bpf_ktime_get_ns(), BPF_RB_NO_WAKEUP);
	}
	return 0;
}

/* A task's user registers sit at the top of its kernel stack (task_pt_regs()). */
static __always_inline const struct pt_regs *fw_task_pt_regs_raw(struct task_struct *task)
{
	void *stack = BPF_CORE_READ(task, stack);

	return (const struct pt_regs *)(stack + task_stack_bytes) - 1;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(off_cpu_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 state = fw_task_state(prev);
	__u32 tid;
	struct parked *p;

	if (want_switch_out(BPF_CORE_READ(prev, tgid), BPF_CORE_READ(prev, mm) != NULL, state)) {
		struct pt_regs regs;
		__u32 zero = 0;

		tid = BPF_CORE_READ(prev, pid);
		p = bpf_map_lookup_elem(&parked_tids, &tid);
		if (!p) {
			/* Any bytes will do as the first value: park() overwrites them. */
			void *any = bpf_map_lookup_elem(&scratch, &zero);

			if (any)
				bpf_map_update_elem(&parked_tids, &tid, any, BPF_NOEXIST);
			p = bpf_map_lookup_elem(&parked_tids, &tid);
		}
		if (p && go_thread_idle(BPF_CORE_READ(prev, tgid)))
			park_go_idle(p);
		else if (p && !bpf_probe_read_kernel(&regs, sizeof(regs), fw_task_pt_regs_raw(prev)))
			park(ctx, p, preempt, state, FW_REGS_IP(&regs), FW_REGS_SP(&regs),
			     FW_REGS_FP(&regs), true);
		else
			count(FW_METRIC_OFF_CPU_NO_STORAGE);
	}
	if (BPF_CORE_READ(next, tgid) != 0) {
		tid = BPF_CORE_READ(next, pid);
		p = bpf_map_lookup_elem(&parked_tids, &tid);
		if (p)
			emit_parked(p, bpf_ktime_get_ns(), BPF_RB_NO_WAKEUP);
	}
	return 0;
}

/* raw_tp: a thread's entry goes with the thread (its last switch-out parks nothing). */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(off_cpu_exit_raw, struct task_struct *task)
{
	__u32 tid = BPF_CORE_READ(task, pid);

	bpf_map_delete_elem(&parked_tids, &tid);
	return 0;
}

/*
 * At the end of a recording, threads that are still blocked have records parked: emit each
 * with the time blocked so far (run through a task iterator, one program per flavour).
 */
SEC("iter/task")
int off_cpu_flush_btf(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct parked *p;

	if (!task)
		return 0;
	p = bpf_task_storage_get(&parked_threads, task, NULL, 0);
	if (p)
		emit_parked_task(p, task, bpf_ktime_get_ns(), 0);
	return 0;
}

SEC("iter/task")
int off_cpu_flush_raw(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct parked *p;
	__u32 tid;

	if (!task)
		return 0;
	tid = task->pid;
	p = bpf_map_lookup_elem(&parked_tids, &tid);
	if (p)
		emit_parked(p, bpf_ktime_get_ns(), 0);
	return 0;
}
