// SPDX-License-Identifier: GPL-2.0
/*
 * Goroutine waits. A goroutine that blocks (channel, mutex, sleep, network, select) does not
 * block its thread: the Go scheduler parks it and runs another one, so thread-level off-CPU
 * time (offcpu.bpf.c) never sees where goroutines wait. Probing the scheduler instead (uprobes
 * on runtime.gopark and where goroutines become ready) would see every switch, but a uprobe is
 * a trap: on the machine we measured, ~6 us per hit, and a channel ping-pong ran 185 times
 * slower.
 *
 * So the waits are sampled. User space runs this task iterator on the main thread of each Go
 * process once per sampling period (jittered). It is a sleepable program: it reads the other
 * process's memory with bpf_copy_from_user_task. It goes through runtime.allgs, the runtime's
 * list of every goroutine, and emits one FW_RECORD_GO_WAIT for each goroutine that is waiting
 * (or runnable, or preempted: ready but not running) with the stack it stopped in (g.sched.pc,
 * then the frame-pointer chain from g.sched.bp, as Go's own fpTracebackPCs walks it), its
 * goid, its pprof labels, its status and its wait reason. Each record stands for the time since
 * the previous walk of that process: the expected total is exact, as for on-CPU samples. The
 * process runs on undisturbed: nothing in it is ever probed.
 *
 * Running goroutines are left to on-CPU samples, and goroutines in system calls to thread-level
 * off-CPU time (their thread blocks with them): each moment of a goroutine is counted once.
 *
 * A walk looks at go_wait_max_visits goroutines of a process at most: a window over allgs that
 * moves on from walk to walk, each emitted goroutine then standing for allglen / visited of
 * them. That bounds the cost of a walk for processes with very many goroutines; user space
 * shares one budget among all the Go processes it walks.
 *
 * The process keeps running during the walk, so a goroutine may wake up while its stack is
 * read: the walk never leaves the goroutine's stack bounds and stops at the first frame pointer
 * that does not move up the stack, so at worst a few frames of such a record are wrong.
 */
#include "capture.bpf.h"

/* At most this many goroutines looked at per process and walk: set by user space before each. */
volatile __u32 go_wait_max_visits;
/* The nominal time between walks: what the first walk of a process stands for. */
const volatile __u64 go_wait_period_ns = 10000000;

/* Kernels before 6.1 run a per-process iterator over every task: user space names the
 * process each run is for. */
volatile __u32 go_wait_only_tgid;

/* Per process: when it was last walked and where in allgs the next walk starts. */
struct go_wait_state {
	__u64 last_ns;
	__u64 cursor;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_DEFAULT_MAX_GO_PROCS);
	__type(key, __u32);
	__type(value, struct go_wait_state);
} go_wait_state SEC(".maps");

/* allgs entries read at once. */
#define FW_GO_PTRS 32
/* Where in the record's data[] the stack chunk is read: past the frames and the labels. */
#define FW_GO_CHUNK_AT 2048
_Static_assert(FW_MAX_USER_FRAMES * 8 + FW_MAX_GO_LABEL_BYTES + 8 <= FW_GO_CHUNK_AT,
	       "goroutine frames and labels overlap the stack chunk");
_Static_assert(FW_GO_CHUNK_AT + 2 * FW_GO_STACK_CHUNK <= FW_MAX_DATA_BYTES,
	       "the stack chunk does not fit the record buffer");

/* One walk of one process; in the map value, where the verifier does not track it. */
struct go_walk {
	struct fw_go_proc go; /* the process's offsets, copied once per walk */
	__u64 array;          /* allgs: its array, length */
	__u64 n;
	__u64 cursor;         /* index of the first goroutine of this walk */
	__u64 weight;         /* nanoseconds each emitted goroutine stands for */
	__u64 now;
	__u64 ptr_base;       /* index in allgs of ptrs[0] */
	__u32 ptr_count;
	__u32 nframes;
	__u64 fp;             /* the frame walk: next frame pointer, stack bounds, chunk */
	__u64 lo;
	__u64 hi;
	__u64 chunk_base;
	__u64 chunk_len;
	char comm[FW_COMM_LEN];
	__u64 g_bytes;        /* bytes of g read */
	__u64 ptrs[FW_GO_PTRS];
	__u8 g[FW_GO_G_BYTES];
	__u8 again[FW_GO_G_BYTES]; /* g read again after its stack */
};

struct go_wait_buf {
	struct sample_buf rec;
	struct go_walk walk;
};

/* Its own scratch: an on-CPU sample may interrupt a walk on the same CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct go_wait_buf);
} go_wait_scratch SEC(".maps");

/* What the bpf_loop callbacks need that cannot live in a map value. */
struct go_walk_ctx {
	struct task_struct *task;
};

static __always_inline struct go_wait_buf *go_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&go_wait_scratch, &zero);
}

/* Fields of the g copy, at offsets user space gave (bounded for the verifier). */
static __always_inline __u64 g_u64(struct go_walk *w, __u32 off)
{
	return *(__u64 *)(w->g + (off & (FW_GO_G_BYTES - 8)));
}

static __always_inline __u32 g_u32(struct go_walk *w, __u32 off)
{
	return *(__u32 *)(w->g + (off & (FW_GO_G_BYTES - 4)));
}

/*
 * One frame of the goroutine's frame-pointer chain: the return address at fp + 8, the caller's
 * frame pointer at fp. From the chunk of stack read at sched.sp when it covers the frame, else
 * read on its own.
 */
static long go_frame_step(__u64 index, void *vctx)
{
	struct go_walk_ctx *c = vctx;
	struct go_wait_buf *buf = go_buf();
	struct go_walk *w;
	__u64 pair[2], fp, off, pos;

	if (!buf)
		return 1;
	w = &buf->walk;
	fp = w->fp;
	if (fp < w->lo || fp + sizeof(pair) > w->hi || (fp & 7))
		return 1;
	off = fp - w->chunk_base;
	if (fp >= w->chunk_base && off + sizeof(pair) <= w->chunk_len) {
		off &= FW_GO_STACK_CHUNK - 1;
		pair[0] = *(__u64 *)(buf->rec.data + FW_GO_CHUNK_AT + off);
		pair[1] = *(__u64 *)(buf->rec.data + FW_GO_CHUNK_AT + off + 8);
	} else if (bpf_copy_from_user_task(pair, sizeof(pair), (void *)fp, c->task, 0)) {
		return 1;
	}
	if (pair[1] == 0 || w->nframes >= FW_MAX_USER_FRAMES)
		return 1;
	pos = (w->nframes * sizeof(__u64)) & FW_USER_BYTES_MASK;
	*(__u64 *)(buf->rec.data + pos) = pair[1];
	w->nframes++;
	if (pair[0] <= fp)
		return 1;
	w->fp = pair[0];
	return 0;
}

/* Emits the record of the goroutine at gp, whose g is in w->g and whose status is st. */
static __always_inline void emit_goroutine(struct go_walk_ctx *c, struct go_wait_buf *buf, __u64 gp,
					   __u32 st)
{
	struct go_walk *w = &buf->walk;
	struct fw_sample *s = &buf->rec.sample;
	__u64 pc, sp, len, size;
	__u8 reason;

	pc = g_u64(w, w->go.g_sched_pc);
	sp = g_u64(w, w->go.g_sched_sp);
	if (!pc)
		return;
	w->lo = g_u64(w, w->go.g_stack_lo);
	w->hi = g_u64(w, w->go.g_stack_hi);
	w->fp = g_u64(w, w->go.g_sched_bp);
	reason = w->g[w->go.g_waitreason & (FW_GO_G_BYTES - 1)];

	/* One read for the frames near the stack top, which is where most of them are. */
	w->chunk_base = sp;
	w->chunk_len = 0;
	if (sp >= w->lo && sp < w->hi) {
		len = w->hi - sp;
		if (len > FW_GO_STACK_CHUNK)
			len = FW_GO_STACK_CHUNK;
		barrier_var(len);
		len &= 2 * FW_GO_STACK_CHUNK - 1;
		if (!bpf_copy_from_user_task(buf->rec.data + FW_GO_CHUNK_AT, len, (void *)sp, c->task, 0))
			w->chunk_len = len;
	}
	*(__u64 *)buf->rec.data = pc;
	w->nframes = 1;
	if (w->fp == 0 && w->chunk_len >= sizeof(__u64)) {
		/* A goroutine that never ran: pc is its function's entry, and the return address
		 * newproc put at sp is runtime.goexit's. Then its start function shows, as for
		 * every other goroutine, right above runtime.goexit. */
		*(__u64 *)(buf->rec.data + sizeof(__u64)) = *(__u64 *)(buf->rec.data + FW_GO_CHUNK_AT);
		w->nframes = 2;
	} else {
		bpf_loop(FW_MAX_USER_FRAMES - 1, go_frame_step, c, 0);
	}

	/* The process runs on while we read: had the goroutine run meanwhile, the stack read may
	 * mix its old frames with new ones. So its g is read again, and the record goes only if
	 * it still stops at the same place in the same state (it would have to wake, run and park
	 * again at the same stack pointer, pc and frame pointer for this to miss a change). */
	len = w->g_bytes;
	barrier_var(len);
	len &= 2 * FW_GO_G_BYTES - 1;
	if (len == 0 || len > FW_GO_G_BYTES || bpf_copy_from_user_task(w->again, len, (void *)gp, c->task, 0))
		return;
	if (*(__u64 *)(w->again + (w->go.g_sched_sp & (FW_GO_G_BYTES - 8))) != sp ||
	    *(__u64 *)(w->again + (w->go.g_sched_pc & (FW_GO_G_BYTES - 8))) != pc ||
	    *(__u64 *)(w->again + (w->go.g_sched_bp & (FW_GO_G_BYTES - 8))) != g_u64(w, w->go.g_sched_bp) ||
	    *(__u32 *)(w->again + (w->go.g_status & (FW_GO_G_BYTES - 4))) != g_u32(w, w->go.g_status) ||
	    w->again[w->go.g_waitreason & (FW_GO_G_BYTES - 1)] != reason) {
		count(FW_METRIC_GO_WAIT_MOVED);
		return;
	}

	s->kind = FW_RECORD_GO_WAIT;
	/* pid: set once per walk (go_waits). */
	s->tid = 0;
	s->cpu = 0;
	s->time_ns = w->now;
	__builtin_memcpy(s->comm, w->comm, sizeof(s->comm));
	s->flags = FW_SAMPLE_GO_WAIT;
	s->kernel_frames = 0;
	s->user_frames = w->nframes;
	s->snapshot_len = 0;
	s->user_ip = pc;
	s->user_sp = sp;
	s->user_bp = g_u64(w, w->go.g_sched_bp);
	s->off_cpu_ns = w->weight;
	s->task_state = st | ((__u32)reason << 16);
	s->goid = g_u64(w, w->go.g_goid);
	s->labels_len = 0;
	size = sizeof(*s) + copy_go_labels(&buf->rec, (w->nframes * sizeof(__u64)) & FW_USER_BYTES_MASK,
					   &w->go, gp, c->task);
	barrier_var(size);
	if (size > sizeof(struct sample_buf))
		return;
	if (bpf_ringbuf_output(&events, &buf->rec, size, 0)) {
		count(FW_METRIC_GO_WAIT_RINGBUF_FULL);
		add(FW_METRIC_GO_WAIT_DROPPED_NS, w->weight);
		return;
	}
	count(FW_METRIC_GO_WAIT_EMITTED);
	add(FW_METRIC_GO_WAIT_EMITTED_NS, w->weight);
}

/* Goroutine number i of this walk. */
static long go_visit(__u64 i, void *vctx)
{
	struct go_walk_ctx *c = vctx;
	struct go_wait_buf *buf = go_buf();
	struct go_walk *w;
	__u64 idx, cnt, gp, size;
	__u32 st;

	if (!buf)
		return 1;
	w = &buf->walk;
	idx = w->cursor + i;
	if (idx >= w->n)
		idx -= w->n;
	if (idx < w->ptr_base || idx >= w->ptr_base + w->ptr_count) {
		cnt = w->n - idx;
		if (cnt > FW_GO_PTRS)
			cnt = FW_GO_PTRS;
		barrier_var(cnt);
		cnt &= 2 * FW_GO_PTRS - 1;
		if (cnt == 0 || cnt > FW_GO_PTRS ||
		    bpf_copy_from_user_task(w->ptrs, cnt * sizeof(__u64),
					    (void *)(w->array + idx * sizeof(__u64)), c->task, 0)) {
			count(FW_METRIC_GO_WAIT_UNREADABLE);
			return 1;
		}
		w->ptr_base = idx;
		w->ptr_count = cnt;
	}
	count(FW_METRIC_GO_WAIT_VISITED);
	gp = w->ptrs[(idx - w->ptr_base) & (FW_GO_PTRS - 1)];
	if (!gp)
		return 0;
	size = w->go.g_read_bytes;
	if (size > FW_GO_G_BYTES)
		size = FW_GO_G_BYTES;
	barrier_var(size);
	size &= 2 * FW_GO_G_BYTES - 1;
	if (size == 0 || size > FW_GO_G_BYTES ||
	    bpf_copy_from_user_task(w->g, size, (void *)gp, c->task, 0)) {
		count(FW_METRIC_GO_WAIT_UNREADABLE);
		return 0;
	}
	w->g_bytes = size;
	st = g_u32(w, w->go.g_status) & ~FW_G_SCAN;
	if (st == FW_G_WAITING || st == FW_G_RUNNABLE || st == FW_G_PREEMPTED || st == FW_G_LEAKED)
		emit_goroutine(c, buf, gp, st);
	return 0;
}

SEC("iter.s/task")
int go_waits(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct go_walk_ctx c = {};
	struct go_wait_state *state, fresh = {};
	struct go_wait_buf *buf;
	struct fw_go_proc *go;
	struct go_walk *w;
	__u64 hdr[3], now, elapsed, visits;
	__u32 tgid;

	/* Once per process: on its main thread. */
	if (!task || task->pid != task->tgid)
		return 0;
	tgid = task->tgid;
	if (go_wait_only_tgid && tgid != go_wait_only_tgid)
		return 0;
	go = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!go || !go->allgs)
		return 0;
	buf = go_buf();
	if (!buf)
		return 0;
	if (bpf_copy_from_user_task(hdr, sizeof(hdr), (void *)go->allgs, task, 0)) {
		count(FW_METRIC_GO_WAIT_UNREADABLE);
		return 0;
	}
	/* array, len, cap of a []*g; a process still starting has none. */
	if (!hdr[0] || hdr[1] == 0 || hdr[1] > hdr[2] || hdr[1] > (1u << 24))
		return 0;
	state = bpf_map_lookup_elem(&go_wait_state, &tgid);
	if (!state) {
		bpf_map_update_elem(&go_wait_state, &tgid, &fresh, BPF_NOEXIST);
		state = bpf_map_lookup_elem(&go_wait_state, &tgid);
		if (!state)
			return 0;
	}
	now = bpf_ktime_get_ns();
	elapsed = state->last_ns && now > state->last_ns ? now - state->last_ns : go_wait_period_ns;
	state->last_ns = now;

	w = &buf->walk;
	__builtin_memcpy(&w->go, go, sizeof(w->go));
	w->array = hdr[0];
	w->n = hdr[1];
	visits = go_wait_max_visits ? go_wait_max_visits : 1;
	if (visits > w->n)
		visits = w->n;
	w->cursor = state->cursor < w->n ? state->cursor : 0;
	w->weight = elapsed * w->n / visits;
	w->now = now;
	w->ptr_base = 0;
	w->ptr_count = 0;
	__builtin_memcpy(w->comm, task->comm, sizeof(w->comm));
	buf->rec.sample.pid = tgid;
	state->cursor = (w->cursor + visits) % w->n;
	count(FW_METRIC_GO_WAIT_WALKS);

	c.task = task;
	bpf_loop(visits, go_visit, &c, 0);
	return 0;
}
