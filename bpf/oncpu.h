/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one contract between bpf/oncpu.bpf.c, bpf/offcpu.bpf.c, the native addon and
 * src/record-decoder.ts.
 * Fixed-width __u32/__u64 fields only (comm is a byte array), laid out so that no field
 * needs implicit padding: the same bytes mean the same thing to BPF, C and TypeScript.
 * test/record-layout.test.ts compiles this header and compares every size and offset with
 * the decoder's constants; change both together.
 */
#ifndef FLAMEWIRE_ONCPU_H
#define FLAMEWIRE_ONCPU_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Size limits. */
#define FW_COMM_LEN 16
/* Kernel stacks deeper than this lose their outermost (entry) frames; unwinding kernel
 * frames is the most expensive part of a sample, so the cap is well below the kernel's 127. */
#define FW_MAX_KERNEL_FRAMES 48
#define FW_MAX_USER_FRAMES 127
#define FW_MAX_SNAPSHOT_BYTES 4096
#define FW_DEFAULT_SNAPSHOT_BYTES 512
/* A snapshot read that would cross this boundary is retried up to it: no page size is
 * smaller, so the shortened read never crosses a real page boundary. */
#define FW_SNAPSHOT_BOUNDARY 4096
#define FW_DEFAULT_RINGBUF_BYTES (8u << 20)
#define FW_DEFAULT_MAX_PIDS 8192
#define FW_DEFAULT_MAX_GO_PROCS 4096
#define FW_DEFAULT_MAX_SAMPLED_PIDS 32768
/* Off-CPU: blocks shorter than this are counted (number and time) but not emitted. */
#define FW_DEFAULT_OFF_CPU_THRESHOLD_NS 100000ull
/* Off-CPU records keep at most this much stack top: the record waits in task storage while
 * its thread is blocked, one per blocked thread. */
#define FW_OFF_CPU_MAX_SNAPSHOT_BYTES 512
/* The raw_tp flavour parks records in a preallocated map: this many threads at once. */
#define FW_DEFAULT_OFF_CPU_MAX_THREADS 1024

/* Record kinds: the first __u32 of every ring-buffer record. */
enum fw_record_kind {
	FW_RECORD_SAMPLE = 1,
	FW_RECORD_EXEC = 2,
	FW_RECORD_EXIT = 3,
	/* A fw_sample whose weight is off_cpu_ns of blocked time (see offcpu.bpf.c). */
	FW_RECORD_OFF_CPU = 4,
	/* A fw_sample of a goroutine seen waiting (or runnable) by gowait.bpf.c; off_cpu_ns is
	 * the time it stands for, task_state is the Go status | waitreason << 16, tid is 0, and
	 * the user frames are the goroutine's saved pc and the return addresses above it. */
	FW_RECORD_GO_WAIT = 5,
};

/* fw_sample.flags bits. */
enum fw_sample_flag {
	/* The timer interrupted kernel code (else user code). */
	FW_SAMPLE_KERNEL_MODE = 1u << 0,
	/* user_ip/user_sp/user_bp are valid (false for kernel threads). */
	FW_SAMPLE_USER_REGS = 1u << 1,
	FW_SAMPLE_KERNEL_STACK_FAILED = 1u << 2,
	FW_SAMPLE_USER_STACK_FAILED = 1u << 3,
	FW_SAMPLE_SNAPSHOT_FAILED = 1u << 4,
	/* The full snapshot was unreadable; it stops at the next page boundary instead. */
	FW_SAMPLE_SNAPSHOT_TRUNCATED = 1u << 5,
	/* The task has no user address space (kernel thread). */
	FW_SAMPLE_KERNEL_THREAD = 1u << 6,
	/* Off-CPU: the thread was preempted while runnable (task_state is then meaningless). */
	FW_SAMPLE_PREEMPTED = 1u << 7,
	/* Go: the goroutine had labels that did not all fit (see FW_MAX_GO_LABEL*). */
	FW_SAMPLE_LABELS_TRUNCATED = 1u << 8,
	/* FW_RECORD_GO_WAIT: a goroutine's stack as it stopped, not a thread's (no user registers
	 * to repair the leaf from: the first frame is where the goroutine parked). */
	FW_SAMPLE_GO_WAIT = 1u << 9,
	/* The user stack was walked with the unwind tables (no stack top to repair it from). */
	FW_SAMPLE_TABLE_WALK = 1u << 10,
	/* Some frames were walked with the frame pointer (code without unwind information). */
	FW_SAMPLE_FP_FRAMES = 1u << 11,
	/* Bits 12-15: why the user stack ends (enum fw_stack_end). */
	FW_SAMPLE_STACK_END_SHIFT = 12,
	FW_SAMPLE_STACK_END_MASK = 0xfu << 12,
	/* The process had no unwind tables yet: its stack was walked by frame pointers only (and
	 * the record keeps the stack top, for the leaf repair). */
	FW_SAMPLE_NO_TABLES = 1u << 16,
	/* An address of the walk was in no mapping user space told the kernel about (a library
	 * mapped since, new JIT code): user space reads the process's mappings again. */
	FW_SAMPLE_UNKNOWN_MAPPING = 1u << 17,
};

/* Index into the per-CPU "metrics" array. */
enum fw_metric {
	FW_METRIC_SAMPLES = 0,            /* sample records emitted */
	FW_METRIC_RINGBUF_FULL = 1,       /* sample records dropped: ring buffer full */
	FW_METRIC_KERNEL_STACK_FAILED = 2,
	FW_METRIC_USER_STACK_FAILED = 3,
	FW_METRIC_SNAPSHOT_FAILED = 4,
	FW_METRIC_PID_MAP_FULL = 5,       /* a forked child could not be tracked */
	FW_METRIC_EVENT_RINGBUF_FULL = 6, /* exec/exit records dropped: ring buffer full */
	FW_METRIC_SAMPLED_MAP_FULL = 7,   /* whole-machine: could not remember a sampled pid */
	FW_METRIC_SCRATCH_MISSING = 8,    /* per-CPU scratch lookup failed (should never happen) */
	FW_METRIC_EXEC_EMITTED = 9,
	FW_METRIC_EXIT_EMITTED = 10,
	FW_METRIC_OFF_CPU_EMITTED = 11,      /* off-CPU records emitted */
	FW_METRIC_OFF_CPU_EMITTED_NS = 12,   /* the blocked time they carry */
	FW_METRIC_OFF_CPU_SHORT = 13,        /* blocks under the threshold: not emitted */
	FW_METRIC_OFF_CPU_SHORT_NS = 14,     /* their blocked time */
	FW_METRIC_OFF_CPU_RINGBUF_FULL = 15, /* off-CPU records dropped: ring buffer full */
	FW_METRIC_OFF_CPU_DROPPED_NS = 16,   /* the blocked time they stood for */
	FW_METRIC_OFF_CPU_NO_STORAGE = 17,   /* a switch-out could not be remembered */
	/* Go processes: a thread blocked in the scheduler with no goroutine (an idle M, sysmon).
	 * Its time is not emitted: the goroutines' own waits are (gowait.bpf.c). */
	FW_METRIC_OFF_CPU_GO_IDLE = 18,
	FW_METRIC_OFF_CPU_GO_IDLE_NS = 19,
	FW_METRIC_GO_WAIT_WALKS = 20,        /* walks of one process's goroutines */
	FW_METRIC_GO_WAIT_VISITED = 21,      /* goroutines looked at */
	FW_METRIC_GO_WAIT_EMITTED = 22,      /* waiting goroutines emitted */
	FW_METRIC_GO_WAIT_EMITTED_NS = 23,   /* the time they stand for */
	FW_METRIC_GO_WAIT_RINGBUF_FULL = 24, /* dropped: ring buffer full */
	FW_METRIC_GO_WAIT_DROPPED_NS = 25,   /* the time they stood for */
	FW_METRIC_GO_WAIT_UNREADABLE = 26,   /* allgs, a g or a stack could not be read */
	FW_METRIC_GO_WAIT_MOVED = 27,        /* not emitted: the goroutine ran while its stack was read */
	FW_METRIC_COUNT = 28,
};

/*
 * A sample. Variable length: the fixed part below, then snapshot_len bytes copied from user
 * memory at user_sp (a multiple of 8, so what follows stays aligned), then kernel_frames
 * __u64 kernel addresses, then user_frames __u64 user addresses (both leaf first;
 * user_frames[0] is the user ip). Only the used bytes are emitted. The stack top comes first
 * because the BPF program reads it straight into place and walks the user stack over it.
 */
struct fw_sample {
	__u32 kind; /* FW_RECORD_SAMPLE */
	__u32 pid;  /* tgid */
	__u32 tid;
	__u32 cpu;
	__u64 time_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	char comm[FW_COMM_LEN];
	__u32 flags; /* enum fw_sample_flag */
	__u32 kernel_frames;
	__u32 user_frames;
	__u32 snapshot_len;
	__u64 user_ip;
	__u64 user_sp;
	__u64 user_bp;
	/* FW_RECORD_OFF_CPU: nanoseconds off the CPU from time_ns on, and the task's state
	 * (TASK_INTERRUPTIBLE, TASK_UNINTERRUPTIBLE, ...) when it left. 0 in on-CPU samples. */
	__u64 off_cpu_ns;
	__u32 task_state;
	/* Bytes of goroutine labels after the user frames (a multiple of 8; see fw_go_proc). */
	__u32 labels_len;
	/* Go processes (see go_procs): the id of the goroutine the thread was running, 0 for
	 * none (the scheduler, or not a Go process). */
	__u64 goid;
	/* __u8 snapshot[snapshot_len]; __u64 frames[kernel_frames + user_frames];
	 * __u8 labels[labels_len]: per label [__u8 key_len][__u8 value_len][key][value], until
	 * labels_len or a key_len of 0 (padding). */
};

/*
 * Where a Go process keeps its current goroutine, from user space per process (the offsets
 * depend on the Go release; see src/go/). amd64: the g pointer is at fs_base + g_tls_offset;
 * the goroutine is g->m->curg (g itself when it is a user goroutine; g0 or gsignal otherwise).
 */
struct fw_go_proc {
	__s32 g_tls_offset;
	__u32 g_m;     /* offsetof(runtime.g, m) */
	__u32 m_curg;  /* offsetof(runtime.m, curg) */
	__u32 g_goid;  /* offsetof(runtime.g, goid) */
	__u32 g_labels; /* offsetof(runtime.g, labels): pprof labels (*labelMap) */
	__u32 labels_format; /* enum fw_go_labels */
	/* Goroutine waits (gowait.bpf.c); allgs 0: not walked. The address of runtime.allgs (a
	 * []*g: array, len, cap) in the process, and where a g keeps what the walk reads. */
	__u64 allgs;
	__u32 g_stack_lo;  /* g.stack.lo, g.stack.hi: the goroutine's stack */
	__u32 g_stack_hi;
	__u32 g_sched_sp;  /* g.sched.sp, .pc, .bp: where a goroutine that is not running stopped */
	__u32 g_sched_pc;
	__u32 g_sched_bp;
	__u32 g_status;     /* g.atomicstatus (uint32) */
	__u32 g_waitreason; /* g.waitreason (uint8) */
	__u32 g_read_bytes; /* bytes of a g the walk reads: past every offset above, <= FW_GO_G_BYTES */
};

/* Goroutine waits: at most this much of a g is read (covers every offset of 1.21-1.27). */
#define FW_GO_G_BYTES 512
/* Goroutine statuses (runtime2.go): the ones a walk emits, and the GC's scan bit. */
#define FW_G_RUNNABLE 1
#define FW_G_WAITING 4
#define FW_G_PREEMPTED 9
#define FW_G_LEAKED 10
#define FW_G_SCAN 0x1000
/* A walk looks at this many goroutines of a process at most (a rotating window of allgs;
 * each emitted one then stands for allglen / visited goroutines), unless told otherwise. */
#define FW_DEFAULT_GO_WAIT_MAX_VISITS 256
/* Bytes of a parked goroutine's stack read at once from its saved sp (deeper frames are read
 * one by one). */
#define FW_GO_STACK_CHUNK 2048

/* How a Go release keeps a goroutine's pprof labels (what g.labels points to). */
enum fw_go_labels {
	FW_GO_LABELS_NONE = 0,
	/* Go 1.21-1.23: *map[string]string; an hmap whose 8-cell buckets hold the strings. */
	FW_GO_LABELS_MAP = 1,
	/* Go 1.24+: *struct { []struct { key, value string } }, sorted by key. */
	FW_GO_LABELS_SLICE = 2,
};

/* Label limits: longer keys and values are cut, further labels dropped (flagged). */
#define FW_MAX_GO_LABELS 8
#define FW_MAX_GO_LABEL_KEY 32
#define FW_MAX_GO_LABEL_VALUE 64
#define FW_MAX_GO_LABEL_BYTES 512

/*
 * Native unwinding tables: the layout src/unwind/table-builder.ts builds and the kernel walk
 * (capture.bpf.h walk_step) reads. User space turns each mapped file's
 * .eh_frame / .debug_frame into rows: address ranges with one rule each, sorted by address, for
 * a shared unwind_rows array; a page index per file narrows the search for an address to a few
 * rows. Each process's executable mappings live in an LPM trie keyed by (pid, address).
 */

/* A row: from pc (an ELF virtual address, below 4 GiB) up to the next row's pc, `rule` holds. */
struct fw_unwind_row {
	__u32 pc;
	__u32 rule; /* FW_RULE_* packed, see below */
};

/* How the canonical frame address (the caller's sp) is found: rule bits 0-3. The return
 * address is at CFA - 8 for every kind that has a CFA. */
enum fw_cfa_kind {
	/* No unwind information here (assembly without CFI, a gap): the frame pointer is used. */
	FW_CFA_NONE = 0,
	FW_CFA_RSP = 1,       /* CFA = rsp + cfa_off */
	FW_CFA_RBP = 2,       /* CFA = rbp + cfa_off */
	/* PLT stubs: CFA = rsp + cfa_off, + 8 when (pc & 15) >= the threshold in the rbp field. */
	FW_CFA_PLT = 3,
	FW_CFA_DEREF_RSP = 4, /* CFA = *(rsp + cfa_off) */
	FW_CFA_DEREF_RBP = 5, /* CFA = *(rbp + cfa_off): gcc's realigned frames (DRAP) */
	/* A signal trampoline (__restore_rt): sp points at the ucontext the kernel saved; the
	 * interrupted rip, rsp and rbp are read from its mcontext (FW_SIGFRAME_*). */
	FW_CFA_SIGNAL = 6,
	/* The return address is undefined: the outermost frame (_start, clone's child). */
	FW_CFA_END = 7,
	/* Unwind information this walk cannot follow (another register, an expression): the
	 * stack ends here, counted as FW_STACK_NO_RULE. */
	FW_CFA_UNSUPPORTED = 8,
	/* Code that switches stacks (the Go runtime's cgo calls and system stack): the frame
	 * pointer, which it leaves pointing at the caller's frame on the other stack, so CFA =
	 * rbp + 16 with no check that the caller's frame is above this one. */
	FW_CFA_STACK_SWITCH = 9,
};

/* Where the caller's rbp is: rule bits 4-5. */
enum fw_rbp_kind {
	FW_RBP_SAME = 0,      /* unchanged by this frame */
	FW_RBP_SAVED = 1,     /* saved at CFA + rbp_off */
	FW_RBP_UNKNOWN = 2,   /* not recoverable: rules that need rbp further up end the stack */
};

#define FW_RULE_CFA_KIND(r) ((r) & 0xf)
#define FW_RULE_RBP_KIND(r) (((r) >> 4) & 0x3)
/* Bits 6-13: rbp_off / 8 as a signed byte (FW_CFA_PLT: the threshold, 0-15, unsigned). */
#define FW_RULE_RBP_FIELD(r) (((r) >> 6) & 0xff)
#define FW_RULE_RBP_OFF(r) ((__s32)(__s8)FW_RULE_RBP_FIELD(r) * 8)
/* Bits 14-31: cfa_off, signed, in bytes (-131072 .. 131071). */
#define FW_RULE_CFA_OFF(r) ((__s32)(r) >> 14)
#define FW_RULE(kind, rbp_kind, rbp_field, cfa_off)                                           \
	((__u32)(kind) | ((__u32)(rbp_kind) << 4) | (((__u32)(rbp_field) & 0xff) << 6) |         \
	 ((__u32)(cfa_off) << 14))
#define FW_RULE_CFA_OFF_MIN (-131072)
#define FW_RULE_CFA_OFF_MAX 131071

/* x86-64 signal frames: offsets from the ucontext (rt_sigframe after its return address) of
 * the registers the kernel saved (uc_mcontext at 40; rbp, rsp, rip are its words 10, 15, 16). */
#define FW_SIGFRAME_RBP 120
#define FW_SIGFRAME_RSP 160
#define FW_SIGFRAME_RIP 168

/*
 * A file's table: rows [rows_first, rows_first + rows_count) of unwind_rows, sorted by pc, the
 * last one FW_CFA_NONE (past the end of the covered code); pages [pages_first, pages_first +
 * pages_count) of unwind_pages, where page p holds the index (from rows_first) of the last row
 * whose pc <= pc_base + (p << page_shift). An address of page p is covered by one of the rows
 * page[p] .. page[p + 1] (the last row for the last page), at most FW_UNWIND_MAX_BUCKET of them.
 */
struct fw_unwind_file {
	__u32 rows_first;
	__u32 rows_count;
	__u32 pages_first;
	__u32 pages_count;
	__u32 pc_base;
	__u32 page_shift;
};

/* The binary search among a page's rows runs at most this many halvings. */
#define FW_UNWIND_SEARCH_STEPS 16
#define FW_UNWIND_MAX_BUCKET (1u << FW_UNWIND_SEARCH_STEPS)

/* The key of unwind_mappings (an LPM trie): pid and address big-endian, prefixlen in bits of
 * both (32 + the address bits that matter). */
struct fw_unwind_mapping_key {
	__u32 prefixlen;
	__u32 pid;
	__u64 addr;
};

/* An executable mapping of a process: [start, end) maps the file's vaddr = addr - bias. */
struct fw_unwind_mapping {
	__u64 start;
	__u64 end;
	__u64 bias;
	__u32 file;  /* index into unwind_files; FW_UNWIND_NO_FILE: no table, frame pointers */
	__u32 pad;
};

#define FW_UNWIND_NO_FILE 0xffffffffu
#define FW_DEFAULT_UNWIND_ROWS (2u << 20)
#define FW_DEFAULT_UNWIND_PAGES (512u << 10)
#define FW_DEFAULT_UNWIND_FILES 4096
#define FW_DEFAULT_UNWIND_MAPPINGS (256u << 10)

/* Why a user stack ends: fw_sample.flags bits 12-15 (FW_SAMPLE_STACK_END). */
enum fw_stack_end {
	/* The outermost frame was reached (undefined return address, a zero frame pointer or
	 * return address). */
	FW_STACK_COMPLETE = 0,
	FW_STACK_FRAME_CAP = 1,   /* FW_MAX_USER_FRAMES frames: the outermost ones are missing */
	FW_STACK_UNREADABLE = 2,  /* stack memory could not be read */
	FW_STACK_NO_RULE = 3,     /* unwind information the walk cannot follow */
	FW_STACK_BAD_FRAME = 4,   /* the next frame would not be above this one (garbage) */
	FW_STACK_NO_RBP = 5,      /* a rule needs rbp, whose value was lost further down */
	FW_STACK_KERNEL_WALK = 15, /* walked by bpf_get_stack (kernels without bpf_loop): unknown */
};

/* The process replaced its image: cached mappings of pid are stale. */
struct fw_exec_record {
	__u32 kind; /* FW_RECORD_EXEC */
	__u32 pid;
	__u64 time_ns;
	char comm[FW_COMM_LEN];
};

/* The last thread of the process exited. */
struct fw_exit_record {
	__u32 kind; /* FW_RECORD_EXIT */
	__u32 pid;
	__u64 time_ns;
};

/*
 * The batch format the addon hands to JavaScript: records back to back, each as
 * [__u32 length][__u32 zero][length record bytes][zero pad to a multiple of 8]. The length
 * word is padded to 8 bytes so every record starts 8-byte aligned and its __u64 arrays can be
 * read in place.
 */
#define FW_BATCH_PREFIX_BYTES 8
#define FW_BATCH_ALIGN 8

#endif /* FLAMEWIRE_ONCPU_H */
