/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Architecture and kernel-version differences, kept out of oncpu.bpf.c. Include after
 * vmlinux.h and the libbpf headers.
 */
#ifndef FLAMEWIRE_CORE_FIXES_BPF_H
#define FLAMEWIRE_CORE_FIXES_BPF_H

#if defined(__TARGET_ARCH_x86)

/* The low two bits of the saved code segment selector are the privilege level. */
#define FW_X86_CPL_MASK 3

/*
 * The perf_event context only allows whole 8-byte loads, and newer kernels made cs a u16 in a
 * union: load the full word at cs's offset (the pt_regs layout is fixed user ABI).
 */
static __always_inline bool fw_regs_user_mode(const struct pt_regs *regs)
{
	__u64 cs = *(volatile const __u64 *)((const char *)regs +
					     __builtin_offsetof(struct pt_regs, cs));

	return (cs & FW_X86_CPL_MASK) != 0;
}
/* Direct loads: regs is the perf_event context or a trusted BTF pointer. */
#define FW_REGS_IP(regs) ((regs)->ip)
#define FW_REGS_SP(regs) ((regs)->sp)
#define FW_REGS_FP(regs) ((regs)->bp)

#elif defined(__TARGET_ARCH_arm64)

/* PSR_MODE_MASK / PSR_MODE_EL0t from arch/arm64/include/uapi/asm/ptrace.h. */
#define FW_ARM64_PSR_MODE_MASK 0x0000000fULL
#define FW_ARM64_PSR_MODE_EL0T 0x00000000ULL
#define FW_ARM64_FP_REG 29

/* On arm64 the perf_event context is struct user_pt_regs, the first member of pt_regs. */
static __always_inline bool fw_regs_user_mode(const struct user_pt_regs *regs)
{
	return (regs->pstate & FW_ARM64_PSR_MODE_MASK) == FW_ARM64_PSR_MODE_EL0T;
}
#define FW_REGS_IP(regs) (((const struct user_pt_regs *)(regs))->pc)
#define FW_REGS_SP(regs) (((const struct user_pt_regs *)(regs))->sp)
#define FW_REGS_FP(regs) (((const struct user_pt_regs *)(regs))->regs[FW_ARM64_FP_REG])

#else
#error "flamewire: unsupported __TARGET_ARCH (x86 and arm64 are supported)"
#endif

/*
 * True when the exiting task is the last live thread of its process. Newer kernels pass
 * group_dead to the tracepoint, older ones do not; signal->live has been decremented before
 * the tracepoint fires on every kernel with BTF, so read that instead of the argument.
 */
static __always_inline bool fw_task_group_dead(struct task_struct *task)
{
	return BPF_CORE_READ(task, signal, live.counter) == 0;
}

/* task_struct.state became __state in 5.14. */
struct task_struct___pre_5_14 {
	long state;
} __attribute__((preserve_access_index));

/* The task's scheduler state (TASK_INTERRUPTIBLE, TASK_UNINTERRUPTIBLE, ...). */
static __always_inline __u32 fw_task_state(struct task_struct *task)
{
	if (bpf_core_field_exists(task->__state))
		return BPF_CORE_READ(task, __state);
	return BPF_CORE_READ((struct task_struct___pre_5_14 *)task, state);
}

#endif /* FLAMEWIRE_CORE_FIXES_BPF_H */
