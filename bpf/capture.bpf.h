/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the on-CPU (oncpu.bpf.c) and off-CPU (offcpu.bpf.c) programs share: settings, maps,
 * the process filter and the capture of one record (registers, stack top, kernel and user
 * stacks). The two files are compiled separately and linked into one object (see Makefile);
 * every global here is __weak so that the linker merges the two copies into one.
 */
#ifndef FLAMEWIRE_CAPTURE_BPF_H
#define FLAMEWIRE_CAPTURE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "oncpu.h"
#include "core_fixes.bpf.h"

/* Settings, filled through skel->rodata before load. */
const volatile bool filter_pids __weak = false;
const volatile __u32 snapshot_bytes __weak = FW_DEFAULT_SNAPSHOT_BYTES;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FW_DEFAULT_RINGBUF_BYTES);
} events SEC(".maps") __weak;

/* filter_pids: the tgids to sample. max_entries is set from user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_DEFAULT_MAX_PIDS);
	__type(key, __u32);
	__type(value, __u8);
} tracked_pids SEC(".maps") __weak;

/*
 * Whole-machine mode: tgids sampled at least once. Exec and exit matter to user space only
 * for processes it has seen (it reads /proc/PID/maps on a process's first sample anyway),
 * so emitting them only for these keeps a fork-heavy machine from flooding the ring buffer.
 * The cost is one hash lookup per sample. LRU so a long-running agent never fills it; an
 * evicted pid just misses its exit record and user space ages it out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FW_DEFAULT_MAX_SAMPLED_PIDS);
	__type(key, __u32);
	__type(value, __u8);
} sampled_pids SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FW_METRIC_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} metrics SEC(".maps") __weak;

/* Set by user space once go_procs has an entry: until then no sample pays for the lookup. */
volatile __u32 go_procs_used __weak;

/* Go processes and where their goroutine ids are (see fw_go_proc); filled by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_DEFAULT_MAX_GO_PROCS);
	__type(key, __u32);
	__type(value, struct fw_go_proc);
} go_procs SEC(".maps") __weak;

#define FW_MAX_FRAMES (FW_MAX_KERNEL_FRAMES + FW_MAX_USER_FRAMES)
/* All-ones masks that cover the largest value of each part of a record (verifier bounds). */
#define FW_USER_BYTES_MASK 1023
#define FW_KERNEL_BYTES_MASK 511
#define FW_SNAPSHOT_MASK 8191
_Static_assert(FW_MAX_USER_FRAMES * 8 <= FW_USER_BYTES_MASK, "user frames exceed the mask");
_Static_assert(FW_MAX_KERNEL_FRAMES * 8 <= FW_KERNEL_BYTES_MASK, "kernel frames exceed the mask");
_Static_assert(FW_MAX_SNAPSHOT_BYTES <= FW_SNAPSHOT_MASK, "snapshot exceeds the mask");

/*
 * Native unwinding tables, filled by user space (src/unwind/kernel-tables.ts; layout in oncpu.h):
 * every file's rows in one array, its page index in another, its extents in unwind_files, and
 * each process's executable mappings in an LPM trie keyed by (pid, address). Sized from user
 * space before load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_DEFAULT_UNWIND_ROWS);
	__type(key, __u32);
	__type(value, struct fw_unwind_row);
} unwind_rows SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_DEFAULT_UNWIND_PAGES);
	__type(key, __u32);
	__type(value, __u32);
} unwind_pages SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_DEFAULT_UNWIND_FILES);
	__type(key, __u32);
	__type(value, struct fw_unwind_file);
} unwind_files SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, FW_DEFAULT_UNWIND_MAPPINGS);
	__type(key, struct fw_unwind_mapping_key);
	__type(value, struct fw_unwind_mapping);
} unwind_mappings SEC(".maps") __weak;

/* Processes whose mappings are all in unwind_mappings (value: 1). Others are walked by frame
 * pointers, with the stack top kept for user space's leaf repair (FW_SAMPLE_NO_TABLES). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_DEFAULT_MAX_SAMPLED_PIDS);
	__type(key, __u32);
	__type(value, __u32);
} unwind_pids SEC(".maps") __weak;

/* The user stack walk's state (see walk_user_stack). */
struct walk_state {
	__u64 pc;   /* the frame being unwound */
	__u64 sp;
	__u64 rbp;
	__u64 snap_sp; /* where the stack top in data[] was read */
	/* The mapping of the last address looked up ([start, end), bias, file), and that file. */
	__u64 map_start;
	__u64 map_end;
	__u64 map_bias;
	__u32 map_file;
	__u32 file_index; /* which file `file` holds; FW_UNWIND_NO_FILE: none */
	struct fw_unwind_file file;
	__u32 pid;
	__u32 pos;     /* byte offset in data[] where the next user frame goes */
	__u32 snap;    /* bytes of stack top at data[0] */
	__u32 n;       /* frames written, the ip included */
	__u32 rbp_ok;  /* rbp holds the caller's value (else it was lost in a frame below) */
	__u32 exact;   /* pc is where the thread stopped (else a return address: look up pc - 1) */
	__u32 tables;  /* the process's mappings are in unwind_mappings */
	__u32 flags;   /* FW_SAMPLE_FP_FRAMES, FW_SAMPLE_UNKNOWN_MAPPING */
	__u32 end;     /* enum fw_stack_end */
	__u32 failed;  /* not even the first frame could be read (frame-pointer walk) */
	__u32 lo, hi;  /* rule_at()'s binary search: in memory, so that the verifier prunes it */
};

/*
 * Room for the largest record; only the used prefix is copied into the ring buffer. data[]
 * holds the variable part in record order: the stack top (read straight into place, so the
 * walk reads it there and nothing is copied twice), then the kernel frames, then the user
 * frames.
 */
/* Sized for the masked maxima (see FW_*_MASK), so every masked offset is provably inside. */
#define FW_MAX_DATA_BYTES                                                                    \
	(FW_SNAPSHOT_MASK + 1 + FW_KERNEL_BYTES_MASK + 1 + FW_USER_BYTES_MASK + 1 +               \
	 FW_MAX_GO_LABEL_BYTES + 2 + FW_MAX_GO_LABEL_KEY + FW_MAX_GO_LABEL_VALUE + 8)
/* copy_go_labels() under way (see there): the bucket or slice it reads, what it wrote. */
struct label_state {
	__u64 key_base; /* user address of the first key (a Go string: ptr, len) */
	__u64 val_base; /* user address of the first value */
	__u64 stride;   /* bytes from one key (value) to the next */
	__u32 n;        /* cells to look at */
	__u32 pos;      /* byte offset in data[] where the labels start */
	__u32 out;      /* label bytes written so far */
	__u32 is_map;
	__u32 truncated;
	__u8 tophash[8]; /* map: which cells of the bucket are in use */
};

struct sample_buf {
	struct fw_sample sample;
	__u8 data[FW_MAX_DATA_BYTES];
	struct walk_state walk;
	struct label_state labels;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_buf);
} scratch SEC(".maps") __weak;

static __always_inline void count(__u32 metric)
{
	__u64 *v = bpf_map_lookup_elem(&metrics, &metric);

	/* Atomic because a sample (hard interrupt) can interrupt a tracepoint program. */
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void add(__u32 metric, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&metrics, &metric);

	if (p)
		__sync_fetch_and_add(p, v);
}

/*
 * Records go out without a wakeup: the reader drains the ring on its timer. A sample that
 * user space must act on at once (its process has no tables in the kernel yet, or it ran in a
 * mapping they do not cover) asks for one, at most every FW_WAKEUP_GAP_NS across all CPUs, so
 * that the tables are loaded within milliseconds of a new process or library and not a poll
 * interval later.
 */
#define FW_WAKEUP_GAP_NS (10 * 1000 * 1000ULL)
volatile __u64 last_wakeup_ns __weak;
/* Set by user space while it keeps the tables (else nobody would act on the wakeup). */
volatile __u32 table_wakeups __weak;

static __always_inline __u64 ringbuf_flags(__u32 flags)
{
	__u64 now, last;

	if (!table_wakeups || !(flags & (FW_SAMPLE_NO_TABLES | FW_SAMPLE_UNKNOWN_MAPPING)))
		return BPF_RB_NO_WAKEUP;
	now = bpf_ktime_get_ns();
	last = last_wakeup_ns;
	if (now - last < FW_WAKEUP_GAP_NS)
		return BPF_RB_NO_WAKEUP;
	last_wakeup_ns = now;
	return BPF_RB_FORCE_WAKEUP;
}

static __always_inline bool pid_wanted(__u32 tgid)
{
	if (filter_pids)
		return bpf_map_lookup_elem(&tracked_pids, &tgid) != NULL;

	if (!bpf_map_lookup_elem(&sampled_pids, &tgid)) {
		__u8 one = 1;

		if (bpf_map_update_elem(&sampled_pids, &tgid, &one, BPF_ANY))
			count(FW_METRIC_SAMPLED_MAP_FULL);
	}
	return true;
}

/* Exec and exit records are wanted for the processes whose samples user space gets. */
static __always_inline bool pid_known(__u32 tgid)
{
	if (filter_pids)
		return bpf_map_lookup_elem(&tracked_pids, &tgid) != NULL;
	return bpf_map_lookup_elem(&sampled_pids, &tgid) != NULL;
}

/*
 * Reads `size` bytes (8 or 16) of the user stack at addr: from the stack top copied into data[]
 * when it holds them (no helper call), else with bpf_probe_read_user().
 */
static __always_inline long read_stack(struct sample_buf *buf, __u64 addr, void *dst, const __u32 size)
{
	struct walk_state *w = &buf->walk;
	__u64 off = addr - w->snap_sp;

	if (addr >= w->snap_sp && off <= FW_MAX_SNAPSHOT_BYTES - 16 && off + size <= w->snap) {
		if (size == 16)
			((__u64 *)dst)[1] = *(__u64 *)(buf->data + off + 8);
		((__u64 *)dst)[0] = *(__u64 *)(buf->data + off);
		return 0;
	}
	return bpf_probe_read_user(dst, size, (void *)addr);
}

/*
 * The packed rule (oncpu.h FW_RULE_*) for code at `pc` of the walked process: its mapping from
 * unwind_mappings (the last one is kept: most frames are in the same file as the one below),
 * then the file's page index and a bounded binary search among that page's rows, exactly as
 * src/unwind/table-builder.ts lookupRule(). 0 (FW_CFA_NONE) where there is no table.
 */
static __always_inline __u32 rule_at(struct walk_state *w, __u64 pc)
{
	struct fw_unwind_row *row;
	__u32 key, *page;
	__u64 vaddr, p;

	if (!w->tables)
		return 0;
	if (pc < w->map_start || pc >= w->map_end) {
		struct fw_unwind_mapping_key mk = {
			.prefixlen = 96,
			.pid = bpf_htonl(w->pid),
			.addr = bpf_cpu_to_be64(pc),
		};
		struct fw_unwind_mapping *m = bpf_map_lookup_elem(&unwind_mappings, &mk);

		if (!m) {
			w->map_start = 0;
			w->map_end = 0;
			w->flags |= FW_SAMPLE_UNKNOWN_MAPPING;
			return 0;
		}
		w->map_start = m->start;
		w->map_end = m->end;
		w->map_bias = m->bias;
		w->map_file = m->file;
	}
	if (w->map_file == FW_UNWIND_NO_FILE)
		return 0;
	if (w->map_file != w->file_index) {
		struct fw_unwind_file *f;

		key = w->map_file;
		f = bpf_map_lookup_elem(&unwind_files, &key);
		if (!f)
			return 0;
		w->file = *f;
		w->file_index = key;
	}
	vaddr = pc - w->map_bias;
	if (vaddr < w->file.pc_base || vaddr > 0xffffffffull || w->file.rows_count == 0)
		return 0;
	p = (vaddr - w->file.pc_base) >> (w->file.page_shift & 31);
	if (p >= w->file.pages_count)
		return 0;
	key = w->file.pages_first + (__u32)p;
	page = bpf_map_lookup_elem(&unwind_pages, &key);
	if (!page)
		return 0;
	w->lo = *page;
	w->hi = w->file.rows_count - 1;
	if (p + 1 < w->file.pages_count) {
		key++;
		page = bpf_map_lookup_elem(&unwind_pages, &key);
		if (!page)
			return 0;
		w->hi = *page;
	}
	/* The bounds go through w, not registers: otherwise every iteration's two outcomes are
	 * states the verifier cannot merge, 2^steps of them. */
	for (int i = 0; i < FW_UNWIND_SEARCH_STEPS + 1; i++) {
		__u32 lo = w->lo, hi = w->hi, mid;

		if (lo >= hi)
			break;
		mid = (lo + hi + 1) >> 1;
		key = w->file.rows_first + mid;
		row = bpf_map_lookup_elem(&unwind_rows, &key);
		if (!row)
			return 0;
		if (row->pc <= (__u32)vaddr)
			w->lo = mid;
		else
			w->hi = mid - 1;
	}
	key = w->file.rows_first + w->lo;
	row = bpf_map_lookup_elem(&unwind_rows, &key);
	return row ? row->rule : 0;
}

/* Ends the walk for `why` (enum fw_stack_end). */
static __always_inline long walk_end(struct walk_state *w, __u32 why)
{
	w->end = why;
	return 1;
}

/*
 * One frame of the user stack walk: finds the caller of the frame at w->pc with the unwind
 * rule of its code (the frame pointer where there is none), and appends its return address.
 * Returns 1 to stop, with the reason in w->end.
 *
 * One step per bpf_loop() iteration. A plain bounded loop is verified iteration by iteration;
 * a bpf_loop callback is verified until its state stops changing, so the walk's state lives in
 * the scratch map value, whose contents the verifier does not track, rather than on the stack:
 * it converges at once.
 */
static long walk_step(__u64 index, void *unused)
{
	__u32 zero = 0;
	struct sample_buf *buf = bpf_map_lookup_elem(&scratch, &zero);
	struct walk_state *w;
	__u64 regs[2], cfa, ra, rbp, base, pos;
	__u32 rule;
	__s32 off;

	if (!buf)
		return 1;
	w = &buf->walk;
	rule = rule_at(w, w->exact ? w->pc : w->pc - 1);
	off = FW_RULE_CFA_OFF(rule);
	rbp = w->rbp;
	switch (FW_RULE_CFA_KIND(rule)) {
	case FW_CFA_NONE:
	case FW_CFA_STACK_SWITCH:
		/* No table: the frame pointer. rbp 0 is the outermost frame's (_start clears it). */
		if (!w->rbp_ok)
			return walk_end(w, FW_STACK_NO_RBP);
		if (w->rbp == 0)
			return walk_end(w, FW_STACK_COMPLETE);
		if ((w->rbp < w->sp && FW_RULE_CFA_KIND(rule) == FW_CFA_NONE) || (w->rbp & 7))
			return walk_end(w, FW_STACK_BAD_FRAME);
		if (read_stack(buf, w->rbp, regs, 16)) {
			w->failed = w->n == 1;
			return walk_end(w, FW_STACK_UNREADABLE);
		}
		w->flags |= FW_SAMPLE_FP_FRAMES;
		cfa = w->rbp + 16;
		rbp = regs[0];
		ra = regs[1];
		goto push;
	case FW_CFA_RSP:
		cfa = w->sp + off;
		break;
	case FW_CFA_RBP:
		if (!w->rbp_ok)
			return walk_end(w, FW_STACK_NO_RBP);
		cfa = w->rbp + off;
		break;
	case FW_CFA_PLT:
		cfa = w->sp + off + ((w->pc & 15) >= FW_RULE_RBP_FIELD(rule) ? 8 : 0);
		break;
	case FW_CFA_DEREF_RSP:
	case FW_CFA_DEREF_RBP:
		if (FW_RULE_CFA_KIND(rule) == FW_CFA_DEREF_RBP && !w->rbp_ok)
			return walk_end(w, FW_STACK_NO_RBP);
		base = FW_RULE_CFA_KIND(rule) == FW_CFA_DEREF_RBP ? w->rbp : w->sp;
		if (read_stack(buf, base + off, regs, 8))
			return walk_end(w, FW_STACK_UNREADABLE);
		cfa = regs[0];
		break;
	case FW_CFA_SIGNAL: {
		/* The interrupted context, from the ucontext at sp: rbp, ..., rsp, rip. */
		__u64 ctx[7];

		if (bpf_probe_read_user(ctx, sizeof(ctx), (void *)(w->sp + FW_SIGFRAME_RBP)))
			return walk_end(w, FW_STACK_UNREADABLE);
		if (ctx[6] == 0)
			return walk_end(w, FW_STACK_COMPLETE);
		if (w->n >= FW_MAX_USER_FRAMES)
			return walk_end(w, FW_STACK_FRAME_CAP);
		pos = w->pos;
		if (pos > FW_MAX_DATA_BYTES - sizeof(__u64))
			return walk_end(w, FW_STACK_FRAME_CAP);
		*(__u64 *)(buf->data + pos) = ctx[6];
		w->pos = pos + sizeof(__u64);
		w->n++;
		w->pc = ctx[6];
		w->sp = ctx[(FW_SIGFRAME_RSP - FW_SIGFRAME_RBP) / 8];
		w->rbp = ctx[0];
		w->rbp_ok = 1;
		/* The interrupted instruction itself, not a return address. */
		w->exact = 1;
		return 0;
	}
	case FW_CFA_END:
		return walk_end(w, FW_STACK_COMPLETE);
	default:
		return walk_end(w, FW_STACK_NO_RULE);
	}
	if (cfa <= w->sp)
		return walk_end(w, FW_STACK_BAD_FRAME);
	switch (FW_RULE_RBP_KIND(rule)) {
	case FW_RBP_SAVED:
		if (FW_RULE_RBP_OFF(rule) == -16) {
			/* The usual prologue (push rbp right after the call): one read for both. */
			if (read_stack(buf, cfa - 16, regs, 16))
				return walk_end(w, FW_STACK_UNREADABLE);
			rbp = regs[0];
			ra = regs[1];
			break;
		}
		if (read_stack(buf, cfa + FW_RULE_RBP_OFF(rule), regs, 8))
			return walk_end(w, FW_STACK_UNREADABLE);
		rbp = regs[0];
		if (read_stack(buf, cfa - 8, regs, 8))
			return walk_end(w, FW_STACK_UNREADABLE);
		ra = regs[0];
		break;
	case FW_RBP_UNKNOWN:
		w->rbp_ok = 0;
		/* fallthrough */
	default:
		if (read_stack(buf, cfa - 8, regs, 8))
			return walk_end(w, FW_STACK_UNREADABLE);
		ra = regs[0];
	}
push:
	if (ra == 0)
		return walk_end(w, FW_STACK_COMPLETE);
	if (w->n >= FW_MAX_USER_FRAMES)
		return walk_end(w, FW_STACK_FRAME_CAP);
	pos = w->pos;
	if (pos > FW_MAX_DATA_BYTES - sizeof(__u64))
		return walk_end(w, FW_STACK_FRAME_CAP);
	*(__u64 *)(buf->data + pos) = ra;
	w->pos = pos + sizeof(__u64);
	w->n++;
	w->pc = ra;
	w->sp = cfa;
	w->rbp = rbp;
	w->exact = 0;
	return 0;
}

/*
 * Walks the user stack into data[pos...]; returns its size in bytes, or -1 when not even the
 * first frame was readable. `tables`: the process's unwind tables are loaded (else every frame
 * is walked by its frame pointer). Why the walk ended is in buf->walk.end.
 */
static __always_inline long walk_user_stack(struct sample_buf *buf, __u32 pos, __u32 pid, __u64 ip,
					    __u64 fp, __u64 sp, __u32 snap, bool tables)
{
	struct walk_state *w = &buf->walk;

	w->end = FW_STACK_COMPLETE;
	w->flags = 0;
	w->n = 0;
	if (pos > FW_MAX_DATA_BYTES - sizeof(__u64))
		return 0;
	*(__u64 *)(buf->data + pos) = ip;
	w->pc = ip;
	w->sp = sp;
	w->rbp = fp;
	w->snap_sp = sp;
	w->map_start = 0;
	w->map_end = 0;
	w->file_index = FW_UNWIND_NO_FILE;
	w->pid = pid;
	w->pos = pos + sizeof(__u64);
	w->snap = snap;
	w->n = 1;
	w->rbp_ok = 1;
	w->exact = 1;
	w->tables = tables;
	w->failed = 0;
	bpf_loop(FW_MAX_USER_FRAMES, walk_step, NULL, 0);
	return w->failed ? -1 : (long)w->n * sizeof(__u64);
}


/*
 * A thread of a Go process user space told us about, as the runtime sees it: g from thread-local
 * storage, then g->m->curg, the user goroutine the thread runs (g itself for a user goroutine;
 * from g0 or gsignal, the goroutine they serve; 0 when the thread is in the scheduler with
 * none). False when the thread has no g and m (not Go, a C thread of a cgo program, or
 * unreadable); *go_out is the process's settings whenever it is a Go process.
 */
static __always_inline bool go_thread(__u32 tgid, struct fw_go_proc **go_out, __u64 *curg)
{
	struct fw_go_proc *go;
	__u64 g = 0, m = 0;

	if (!go_procs_used)
		return false;
	go = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!go)
		return false;
	*go_out = go;
#if defined(__TARGET_ARCH_x86)
	{
		struct task_struct *task = bpf_get_current_task_btf();
		__u64 fsbase = task->thread.fsbase;

		if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + go->g_tls_offset)))
			return false;
	}
#else
	/* arm64 keeps g in R28: not wired yet. */
	return false;
#endif
	*curg = 0;
	return g && !bpf_probe_read_user(&m, sizeof(m), (void *)(g + go->g_m)) && m &&
	       !bpf_probe_read_user(curg, sizeof(*curg), (void *)(m + go->m_curg));
}

/* The goroutine the current thread runs (see go_thread); 0 when none. */
static __always_inline __u64 current_g(__u32 tgid, struct fw_go_proc **go_out)
{
	__u64 curg = 0;

	return go_thread(tgid, go_out, &curg) ? curg : 0;
}

/*
 * Reads user memory of `task`, or of the current task when task is NULL. Callers pass a literal
 * NULL or a task: this is always inlined, so programs that never name a task never reference
 * bpf_copy_from_user_task (sleepable programs only, 5.18+).
 */
static __always_inline long fw_read_user(void *dst, __u32 size, const void *src, struct task_struct *task)
{
	if (task)
		return bpf_copy_from_user_task(dst, size, src, task, 0);
	return bpf_probe_read_user(dst, size, src);
}

/*
 * A thread of a Go process that is on its scheduler stack with no goroutine to run: its g is
 * set, but g->m->curg is 0. An idle M parking in the scheduler, or sysmon. Threads that never
 * ran Go code (g 0: C threads of a cgo program) are not idle here.
 */
static __always_inline bool go_thread_idle(__u32 tgid)
{
	struct fw_go_proc *go = NULL;
	__u64 curg = 0;

	return go_thread(tgid, &go, &curg) && curg == 0;
}

/* Go's map bucket for map[string]string (Go 1.21-1.23): tophash[8], keys[8], values[8]. */
#define FW_GO_BUCKET_KEYS 8
#define FW_GO_BUCKET_VALUES 136
#define FW_GO_MIN_TOPHASH 5

/* Sized for the masked maxima, like FW_MAX_DATA_BYTES: where the labels may start. */
#define FW_LABELS_POS_MAX (FW_SNAPSHOT_MASK + FW_KERNEL_BYTES_MASK + FW_USER_BYTES_MASK)

/*
 * One label: cell i of the bucket or slice to data[pos + out...]. Returns 1 to stop.
 *
 * Everything that varies from label to label (out above all, the offset of every write) lives
 * in the scratch map value, whose contents the verifier does not track, and is bounded again
 * here. Kept in registers, as first written, each label's offsets depended on every earlier
 * branch taken (label present, cut, ...): the verifier could prune nothing and walked every
 * combination, ~500,000 instructions and most of a second of CPU per program load.
 */
static __always_inline long copy_go_label(struct sample_buf *buf, __u32 i, struct task_struct *task)
{
	struct label_state *st = &buf->labels;
	__u64 k[2], v[2], pos, out, klen, vlen, at;

	if (i >= st->n || i >= FW_MAX_GO_LABELS)
		return 1;
	if (st->is_map && st->tophash[i & 7] < FW_GO_MIN_TOPHASH)
		return 0;
	if (fw_read_user(k, sizeof(k), (void *)(st->key_base + st->stride * i), task) ||
	    fw_read_user(v, sizeof(v), (void *)(st->val_base + st->stride * i), task))
		return 1;
	klen = k[1] > FW_MAX_GO_LABEL_KEY ? FW_MAX_GO_LABEL_KEY : k[1];
	vlen = v[1] > FW_MAX_GO_LABEL_VALUE ? FW_MAX_GO_LABEL_VALUE : v[1];
	out = st->out;
	/* Below the limit, not up to it: out stays under the mask below, padded at most to it. */
	if (klen == 0 || out + 2 + klen + vlen >= FW_MAX_GO_LABEL_BYTES) {
		st->truncated = 1;
		return 1;
	}
	if (klen < k[1] || vlen < v[1])
		st->truncated = 1;
	pos = st->pos;
	/* For the verifier (clang may bound a copy): bounds and masks that are no-ops here. */
	barrier_var(pos);
	if (pos > FW_LABELS_POS_MAX)
		return 1;
	barrier_var(pos);
	barrier_var(out);
	out &= FW_MAX_GO_LABEL_BYTES - 1;
	barrier_var(klen);
	klen &= 2 * FW_MAX_GO_LABEL_KEY - 1;
	barrier_var(vlen);
	vlen &= 2 * FW_MAX_GO_LABEL_VALUE - 1;
	at = pos + out;
	buf->data[at] = klen;
	buf->data[at + 1] = vlen;
	if (fw_read_user(buf->data + at + 2, klen, (void *)k[0], task) ||
	    fw_read_user(buf->data + at + 2 + klen, vlen, (void *)v[0], task))
		return 1;
	st->out = out + 2 + klen + vlen;
	return 0;
}

/*
 * Copies goroutine g's pprof labels to buf->data[pos...] (see struct fw_sample), sets the
 * header's labels_len (a multiple of 8) and LABELS_TRUNCATED flag, and returns pos +
 * labels_len: the bytes of data[] the record uses. Go 1.24+ keeps labels in a sorted slice;
 * 1.21-1.23 in a map, of which the first bucket is read: a map of up to 8 labels has only that
 * one. The end is computed from pos as stored in the map value, not from the caller's
 * registers, so that no path into here (snapshot read or not, kernel stack or not, ...) is
 * kept apart from the others: the verifier checks the copy once, not once per path.
 */
static __always_inline __u64 copy_go_labels(struct sample_buf *buf, __u32 pos, struct fw_go_proc *go,
					    __u64 g, struct task_struct *task)
{
	struct label_state *st = &buf->labels;
	__u64 p = 0, hdr[4] = {}, start, out;

	st->pos = pos;
	st->out = 0;
	st->truncated = 0;
	if (go->labels_format == FW_GO_LABELS_NONE ||
	    fw_read_user(&p, sizeof(p), (void *)(g + go->g_labels), task) || !p)
		goto done;
	if (go->labels_format == FW_GO_LABELS_MAP) {
		/* The map variable holds the *hmap: count, flags, B, ..., buckets, oldbuckets. */
		if (fw_read_user(&p, sizeof(p), (void *)p, task) || !p ||
		    fw_read_user(hdr, sizeof(hdr), (void *)p, task) || !hdr[2] ||
		    fw_read_user(st->tophash, sizeof(st->tophash), (void *)hdr[2], task))
			goto done;
		if (((hdr[1] >> 8) & 0xff) != 0 || hdr[3] != 0)
			st->truncated = 1;
		st->is_map = 1;
		st->key_base = hdr[2] + FW_GO_BUCKET_KEYS;
		st->val_base = hdr[2] + FW_GO_BUCKET_VALUES;
		st->stride = 16;
		st->n = 8;
	} else {
		if (fw_read_user(hdr, 2 * sizeof(__u64), (void *)p, task))
			goto done;
		st->is_map = 0;
		st->key_base = hdr[0];
		st->val_base = hdr[0] + 16;
		st->stride = 32;
		st->n = hdr[1] > FW_MAX_GO_LABELS ? FW_MAX_GO_LABELS : hdr[1];
		if (hdr[1] > FW_MAX_GO_LABELS)
			st->truncated = 1;
	}
#pragma unroll
	for (int i = 0; i < FW_MAX_GO_LABELS; i++)
		if (copy_go_label(buf, i, task))
			break;
done:
	start = st->pos;
	barrier_var(start);
	if (start > FW_LABELS_POS_MAX)
		return 0;
	barrier_var(start);
	out = st->out;
	barrier_var(out);
	out &= FW_MAX_GO_LABEL_BYTES - 1;
	/* Zero padding to 8 bytes: a key length of 0 ends the list. */
	*(__u64 *)(buf->data + start + out) = 0;
	out = (out + 7) & ~7ull;
	buf->sample.labels_len = out;
	if (st->truncated)
		buf->sample.flags |= FW_SAMPLE_LABELS_TRUNCATED;
	return start + out;
}

/*
 * The bytes of kernel stack a stack helper returned, bounded for the verifier; a failure
 * (negative) is flagged, counted, and becomes an empty stack.
 */
static __always_inline long kernel_stack_bytes(long kbytes, __u32 *flags)
{
	if (kbytes < 0) {
		*flags |= FW_SAMPLE_KERNEL_STACK_FAILED;
		count(FW_METRIC_KERNEL_STACK_FAILED);
		kbytes = 0;
	}
	if (kbytes > FW_MAX_KERNEL_FRAMES * sizeof(__u64))
		kbytes = FW_MAX_KERNEL_FRAMES * sizeof(__u64);
	barrier_var(kbytes);
	return kbytes & FW_KERNEL_BYTES_MASK;
}

/*
 * Fills buf with a record of kind `kind` for the current task: the stack top read at sp (at
 * most max_snap bytes), the kernel stack (when flags has FW_SAMPLE_KERNEL_MODE), the user
 * stack from ip/fp (when flags has FW_SAMPLE_USER_REGS), and the header. `own_walk` picks how
 * the user stack is walked: walk_user_stack() (needs bpf_loop, 5.17+) or bpf_get_stack(). With
 * our own walk, a process whose unwind tables are loaded gets no stack top (nothing is left to
 * repair); one whose tables are not loaded yet keeps it, for user space's leaf repair.
 * Returns the record's size in bytes, header included.
 */
static __always_inline long capture_record(void *ctx, struct sample_buf *buf, __u32 kind, __u32 flags,
					   __u64 ip, __u64 sp, __u64 fp, __u32 max_snap,
					   const bool own_walk)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct fw_sample *s = &buf->sample;
	long kbytes = 0, ubytes = 0, snap = 0;
	__u32 pid = pid_tgid >> 32;
	bool tables = own_walk && bpf_map_lookup_elem(&unwind_pids, &pid) != NULL;

	if (flags & FW_SAMPLE_USER_REGS) {
		s->user_ip = ip;
		s->user_sp = sp;
		s->user_bp = fp;

		/* A whole number of words, so that the frames after it stay 8-byte aligned. */
		snap = snapshot_bytes & ~7u;
		if (snap > max_snap)
			snap = max_snap & ~7u;
		if (snap > FW_MAX_SNAPSHOT_BYTES)
			snap = FW_MAX_SNAPSHOT_BYTES;
		if (tables)
			snap = 0;
		if (snap > 0 && bpf_probe_read_user(buf->data, snap, (void *)sp)) {
			/* Near the top of the stack the full read runs off the mapping. */
			long to_boundary = (FW_SNAPSHOT_BOUNDARY - (sp & (FW_SNAPSHOT_BOUNDARY - 1))) & ~7ul;

			if (to_boundary < snap && to_boundary > 0 &&
			    !bpf_probe_read_user(buf->data, to_boundary, (void *)sp)) {
				snap = to_boundary;
				flags |= FW_SAMPLE_SNAPSHOT_TRUNCATED;
			} else {
				flags |= FW_SAMPLE_SNAPSHOT_FAILED;
				count(FW_METRIC_SNAPSHOT_FAILED);
				snap = 0;
			}
		}
	} else {
		/* No user registers, stack or snapshot. */
		s->user_ip = 0;
		s->user_sp = 0;
		s->user_bp = 0;
	}
	/* For the verifier: clang may apply the clamps above to a copy of the value, so bound the
	 * register used as an offset below with a mask (a no-op here). The barrier keeps clang
	 * from proving the mask redundant and dropping it. */
	barrier_var(snap);
	snap &= FW_SNAPSHOT_MASK;

	if (flags & FW_SAMPLE_KERNEL_MODE) {
		kbytes = bpf_get_stack(ctx, buf->data + snap, FW_MAX_KERNEL_FRAMES * sizeof(__u64), 0);
		kbytes = kernel_stack_bytes(kbytes, &flags);
	}

	if (flags & FW_SAMPLE_USER_REGS) {
		if (own_walk) {
			ubytes = walk_user_stack(buf, snap + kbytes, pid, ip, fp, sp, snap, tables);
			flags |= buf->walk.flags | (tables ? FW_SAMPLE_TABLE_WALK : FW_SAMPLE_NO_TABLES) |
				 ((buf->walk.end << FW_SAMPLE_STACK_END_SHIFT) & FW_SAMPLE_STACK_END_MASK);
		} else {
			ubytes = bpf_get_stack(ctx, buf->data + snap + kbytes,
					       FW_MAX_USER_FRAMES * sizeof(__u64), BPF_F_USER_STACK);
			flags |= FW_STACK_KERNEL_WALK << FW_SAMPLE_STACK_END_SHIFT;
		}
		if (ubytes < 0) {
			flags |= FW_SAMPLE_USER_STACK_FAILED;
			count(FW_METRIC_USER_STACK_FAILED);
			ubytes = 0;
		}
		if (ubytes > FW_MAX_USER_FRAMES * sizeof(__u64))
			ubytes = FW_MAX_USER_FRAMES * sizeof(__u64);
		barrier_var(ubytes);
		ubytes &= FW_USER_BYTES_MASK;
	}

	s->kind = kind;
	s->pid = pid;
	s->tid = (__u32)pid_tgid;
	s->cpu = bpf_get_smp_processor_id();
	s->time_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	s->flags = flags;
	s->kernel_frames = kbytes / sizeof(__u64);
	s->user_frames = ubytes / sizeof(__u64);
	s->snapshot_len = snap;
	s->off_cpu_ns = 0;
	s->task_state = 0;
	s->goid = 0;
	s->labels_len = 0;
	{
		struct fw_go_proc *go = NULL;
		__u64 g = current_g(s->pid, &go);

		if (g && go) {
			if (bpf_probe_read_user(&s->goid, sizeof(s->goid), (void *)(g + go->g_goid)))
				s->goid = 0;
			return sizeof(*s) + copy_go_labels(buf, snap + kbytes + ubytes, go, g, NULL);
		}
	}
	return sizeof(*s) + kbytes + ubytes + snap;
}

#endif /* FLAMEWIRE_CAPTURE_BPF_H */
