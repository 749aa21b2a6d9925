// SPDX-License-Identifier: GPL-2.0
/*
 * Off-CPU time: sched_switch runs on every context switch of the machine. When a wanted
 * thread leaves the CPU, its record (stacks and leaf-repair data, as for an on-CPU sample) is
 * captured and parked in the thread's task storage with the time; when the thread is switched
 * back in, the record is emitted with the time it was off the CPU, if that is at least
 * off_cpu_threshold_ns. Shorter blocks are only counted (number and time), and so is the time
 * of records the ring buffer had no room for: no blocked time disappears unreported.
 *
 * The stacks must be taken at switch-out: sched_switch runs in the context of the thread
 * leaving, and only the current thread's user memory can be read.
 */
#include "capture.bpf.h"

const volatile __u64 off_cpu_threshold_ns = FW_DEFAULT_OFF_CPU_THRESHOLD_NS;
/* bpf_loop (5.17+) for the user stack walk, else bpf_get_stack; probed by user space. */
const volatile bool off_cpu_own_walk = true;

#define FW_OFF_CPU_RECORD_MAX                                                          \
	(sizeof(struct fw_sample) + FW_OFF_CPU_MAX_SNAPSHOT_BYTES +                      \
	 FW_MAX_KERNEL_FRAMES * sizeof(__u64) + FW_MAX_USER_FRAMES * sizeof(__u64))
/* All-ones mask at or above the largest record (verifier bounds for the copies). */
#define FW_OFF_CPU_RECORD_MASK 4095
_Static_assert(FW_OFF_CPU_RECORD_MAX <= FW_OFF_CPU_RECORD_MASK, "off-CPU record exceeds the mask");

/* A switched-out thread: when it left and the record to emit when it comes back. */
struct parked {
	__u64 start_ns;
	__u32 size; /* bytes of rec in use; 0: nothing parked */
	__u32 pad;
	__u8 rec[FW_OFF_CPU_RECORD_MASK + 1];
};

/* Freed with the task; allocated on a thread's first switch-out, so only threads that ran
 * while we watched cost memory (one record each). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct parked);
} parked_threads SEC(".maps");

static __always_inline void add(__u32 metric, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&metrics, &metric);

	if (p)
		__sync_fetch_and_add(p, v);
}

static __always_inline void park(void *ctx, struct task_struct *prev, bool preempt, __u32 state)
{
	__u32 tgid = prev->tgid;
	__u32 zero = 0;
	struct sample_buf *buf;
	struct parked *p;
	struct pt_regs *uregs;
	__u32 flags = FW_SAMPLE_KERNEL_MODE | FW_SAMPLE_USER_REGS;
	long size;

	/* The idle task, and kernel threads: their waiting is the kernel's idle, not latency. */
	if (tgid == 0 || !prev->mm || !pid_wanted(tgid))
		return;
	p = bpf_task_storage_get(&parked_threads, prev, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p) {
		count(FW_METRIC_OFF_CPU_NO_STORAGE);
		return;
	}
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf) {
		count(FW_METRIC_SCRATCH_MISSING);
		return;
	}
	if (preempt)
		flags |= FW_SAMPLE_PREEMPTED;
	uregs = (struct pt_regs *)bpf_task_pt_regs(prev);
	size = capture_record(ctx, buf, FW_RECORD_OFF_CPU, flags, FW_REGS_IP(uregs), FW_REGS_SP(uregs),
			      FW_REGS_FP(uregs), FW_OFF_CPU_MAX_SNAPSHOT_BYTES, off_cpu_own_walk);
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

static __always_inline void unpark(struct task_struct *next)
{
	struct parked *p;
	struct fw_sample *s;
	__u64 blocked;
	__u32 size;

	if (next->tgid == 0)
		return;
	p = bpf_task_storage_get(&parked_threads, next, NULL, 0);
	if (!p || p->size == 0)
		return;
	size = p->size;
	p->size = 0;
	blocked = bpf_ktime_get_ns() - p->start_ns;
	if (blocked < off_cpu_threshold_ns) {
		count(FW_METRIC_OFF_CPU_SHORT);
		add(FW_METRIC_OFF_CPU_SHORT_NS, blocked);
		return;
	}
	s = (struct fw_sample *)p->rec;
	s->off_cpu_ns = blocked;
	barrier_var(size);
	size &= FW_OFF_CPU_RECORD_MASK;
	if (size < sizeof(struct fw_sample))
		return;
	if (bpf_ringbuf_output(&events, p->rec, size, BPF_RB_NO_WAKEUP)) {
		count(FW_METRIC_OFF_CPU_RINGBUF_FULL);
		add(FW_METRIC_OFF_CPU_DROPPED_NS, blocked);
		return;
	}
	count(FW_METRIC_OFF_CPU_EMITTED);
	add(FW_METRIC_OFF_CPU_EMITTED_NS, blocked);
}

/*
 * tp_btf has (preempt, prev, next[, prev_state]); the state argument only exists from 5.18,
 * so it is read from the task instead (see fw_task_state). IRQs are off in here, so the
 * per-CPU scratch buffer cannot be in use by an interrupted on-CPU sample.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(off_cpu_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	park(ctx, prev, preempt, fw_task_state(prev));
	unpark(next);
	return 0;
}

/*
 * No raw_tp twin yet: task storage needs the BTF task pointers only tp_btf provides. Kernels
 * without tp_btf need a tid-keyed hash map instead (and a delete at thread exit).
 */
