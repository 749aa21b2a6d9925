// SPDX-License-Identifier: GPL-2.0
/*
 * On-CPU sampler: a cpu-clock perf event on every CPU runs on_cpu_sample(), which emits one
 * variable-length fw_sample record (see oncpu.h) per sample of a wanted process. Small exec
 * and exit records tell user space when its cached view of a process goes stale.
 */
#include "capture.bpf.h"

/*
 * One sample. `own_walk` picks how the user stack is walked (see capture_record); user space
 * probes for bpf_loop and loads one of the two programs below.
 */
static __always_inline int sample(struct bpf_perf_event_data *ctx, const bool own_walk)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	struct sample_buf *buf;
	struct task_struct *task = NULL;
	__u32 flags = 0;
	__u64 ip = 0, sp = 0, fp = 0;
	long size;

	/* tgid 0 is the per-CPU idle task. */
	if (tgid == 0 || !pid_wanted(tgid))
		return 0;

	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf) {
		count(FW_METRIC_SCRATCH_MISSING);
		return 0;
	}

	/* Kernel-mode samples need the task (whose cache lines are likely cold here) to tell
	 * kernel threads apart and to find the user registers; user-mode samples need neither. */
	if (!fw_regs_user_mode(&ctx->regs)) {
		flags |= FW_SAMPLE_KERNEL_MODE;
		task = bpf_get_current_task_btf();
		if (!task->mm)
			flags |= FW_SAMPLE_KERNEL_THREAD;
	}

	if (!(flags & FW_SAMPLE_KERNEL_THREAD)) {
		if (flags & FW_SAMPLE_KERNEL_MODE) {
			/* Inside a syscall or interrupt: the user registers saved on kernel entry. */
			struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(task);

			ip = FW_REGS_IP(uregs);
			sp = FW_REGS_SP(uregs);
			fp = FW_REGS_FP(uregs);
		} else {
			ip = FW_REGS_IP(&ctx->regs);
			sp = FW_REGS_SP(&ctx->regs);
			fp = FW_REGS_FP(&ctx->regs);
			/* Keep clang from merging these context loads with the ones above into one
			 * load through a computed pointer, which the verifier rejects for ctx. */
			barrier_var(ip);
			barrier_var(sp);
			barrier_var(fp);
		}
		flags |= FW_SAMPLE_USER_REGS;
	}

	size = capture_record(ctx, buf, FW_RECORD_SAMPLE, flags, ip, sp, fp, FW_MAX_SNAPSHOT_BYTES,
			      own_walk);
	if (bpf_ringbuf_output(&events, buf, size, ringbuf_flags(buf->sample.flags))) {
		count(FW_METRIC_RINGBUF_FULL);
		return 0;
	}
	count(FW_METRIC_SAMPLES);
	return 0;
}

SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
	return sample(ctx, true);
}

SEC("perf_event")
int on_cpu_sample_fp(struct bpf_perf_event_data *ctx)
{
	return sample(ctx, false);
}

static __always_inline void track_child(__u32 parent_tgid, __u32 child_tgid)
{
	__u8 one = 1;
	long err;

	/* A new thread shares its parent's tgid and is covered already. */
	if (parent_tgid == child_tgid || !bpf_map_lookup_elem(&tracked_pids, &parent_tgid))
		return;
	err = bpf_map_update_elem(&tracked_pids, &child_tgid, &one, BPF_ANY);
	if (err)
		count(FW_METRIC_PID_MAP_FULL);
}

static __always_inline void emit_exec(__u32 tgid)
{
	struct fw_exec_record *r;

	/* The new image's mappings are not in unwind_mappings: frame pointers until user space
	 * has loaded them (it does on this record). */
	bpf_map_delete_elem(&unwind_pids, &tgid);
	if (!pid_known(tgid))
		return;
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count(FW_METRIC_EVENT_RINGBUF_FULL);
		return;
	}
	r->kind = FW_RECORD_EXEC;
	r->pid = tgid;
	r->time_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	count(FW_METRIC_EXEC_EMITTED);
}

static __always_inline void emit_exit(struct task_struct *task, __u32 tgid)
{
	struct fw_exit_record *r;

	/* Threads exit one by one; only the last one ends the process. */
	if (!fw_task_group_dead(task))
		return;
	bpf_map_delete_elem(&unwind_pids, &tgid);
	if (!pid_known(tgid))
		return;
	if (filter_pids)
		bpf_map_delete_elem(&tracked_pids, &tgid);
	else
		bpf_map_delete_elem(&sampled_pids, &tgid);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count(FW_METRIC_EVENT_RINGBUF_FULL);
		return;
	}
	r->kind = FW_RECORD_EXIT;
	r->pid = tgid;
	r->time_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	count(FW_METRIC_EXIT_EMITTED);
}

/*
 * Each tracepoint has a tp_btf program and a raw_tp twin; user space probes vmlinux BTF and
 * turns one of them off with bpf_program__set_autoload() before load.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(fork_btf, struct task_struct *parent, struct task_struct *child)
{
	track_child(parent->tgid, child->tgid);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(fork_raw, struct task_struct *parent, struct task_struct *child)
{
	track_child(BPF_CORE_READ(parent, tgid), BPF_CORE_READ(child, tgid));
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_btf, struct task_struct *task)
{
	emit_exec(task->tgid);
	return 0;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(exec_raw, struct task_struct *task)
{
	emit_exec(BPF_CORE_READ(task, tgid));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(exit_btf, struct task_struct *task)
{
	emit_exit(task, task->tgid);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(exit_raw, struct task_struct *task)
{
	emit_exit(task, BPF_CORE_READ(task, tgid));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
