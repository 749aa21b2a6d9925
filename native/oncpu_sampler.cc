#include "oncpu_sampler.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <random>
#include <unistd.h>

#include "oncpu.h"
#include "oncpu.skel.h"
#include "perf_events.h"

namespace flamewire {
namespace {

// tp_btf needs the tracepoints' btf_trace_* types in vmlinux BTF and a kernel that loads
// BPF_TRACE_RAW_TP programs against them: probe by loading a two-instruction program per
// tracepoint (libbpf 1.1's libbpf_probe_bpf_prog_type cannot probe tracing programs). The
// kernel version never decides.
bool CanUseTpBtf(std::initializer_list<const char *> typedefs) {
  struct btf *vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return false;
  const struct bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},  // r0 = 0
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},                   // exit
  };
  bool ok = true;
  for (const char *name : typedefs) {
    int id = btf__find_by_name_kind(vmlinux, name, BTF_KIND_TYPEDEF);
    if (id < 0) {
      ok = false;
      break;
    }
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_RAW_TP,
                .attach_btf_id = static_cast<__u32>(id));
    int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, nullptr, "GPL", insns, 2, &opts);
    if (fd < 0) {
      ok = false;
      break;
    }
    close(fd);
  }
  btf__free(vmlinux);
  return ok;
}

// The tp_btf off-CPU program also needs task storage (5.11+) and bpf_task_pt_regs (5.15+);
// without them the raw_tp flavour parks records in a hash map instead.
bool CanUseOffCpuTpBtf() {
  return CanUseTpBtf({"btf_trace_sched_switch"}) &&
         libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, nullptr) == 1 &&
         libbpf_probe_bpf_helper(BPF_PROG_TYPE_PERF_EVENT, BPF_FUNC_task_pt_regs, nullptr) == 1;
}

// THREAD_SIZE, for the raw_tp flavour's task_pt_regs(): 16 KiB on x86-64 and arm64, doubled
// by KASAN. Read from the kernel's config where it is published.
uint64_t KernelStackBytes() {
  uint64_t bytes = 16384;
  FILE *f = popen("zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null", "r");
  if (!f) return bytes;
  char line[256];
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, "CONFIG_KASAN=y", 14) == 0) bytes = 32768;
  }
  pclose(f);
  return bytes;
}

// Goroutine waits need a sleepable task iterator that reads another process's memory
// (bpf_copy_from_user_task, 5.18+): probed as the helper's id in the kernel's BTF, which lists
// the helpers the kernel knows.
bool CanWalkGoroutines() {
  struct btf *vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return false;
  bool ok = false;
  int id = btf__find_by_name_kind(vmlinux, "bpf_func_id", BTF_KIND_ENUM);
  if (id > 0) {
    const struct btf_type *t = btf__type_by_id(vmlinux, id);
    const struct btf_enum *e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t) && !ok; ++i, ++e)
      ok = strcmp(btf__name_by_offset(vmlinux, e->name_off), "BPF_FUNC_copy_from_user_task") == 0;
  }
  btf__free(vmlinux);
  return ok;
}

// Reads an iterator link's seq file to the end, which runs its program over every task it
// covers (the programs write nothing to it).
int RunIterator(struct bpf_link *link) {
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) return -errno;
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
  }
  int err = n < 0 ? -errno : 0;
  close(fd);
  return err;
}

}  // namespace

int OnCpuSampler::Open(const OnCpuSettings &settings, OnCpuSampler **out, const char **what) {
  OnCpuSampler *s = new OnCpuSampler();
  int err = 0;
  uint32_t max_pids;
  uint8_t one = 1;

  s->settings_ = settings;
  s->skel_ = oncpu_bpf__open();
  if (!s->skel_) {
    err = -errno;
    *what = "opening the on-CPU BPF object";
    goto cleanup;
  }

  s->skel_->rodata->filter_pids = settings.filter_pids;
  s->skel_->rodata->snapshot_bytes = settings.snapshot_bytes;

  if (settings.ring_buffer_bytes) {
    err = bpf_map__set_max_entries(s->skel_->maps.events, settings.ring_buffer_bytes);
    if (err) {
      *what = "sizing the ring buffer";
      goto cleanup;
    }
  }
  max_pids = settings.max_pids ? settings.max_pids : FW_DEFAULT_MAX_PIDS;
  if (max_pids < settings.pids.size()) max_pids = static_cast<uint32_t>(settings.pids.size());
  err = bpf_map__set_max_entries(s->skel_->maps.tracked_pids, max_pids);
  if (err) {
    *what = "sizing the pid filter map";
    goto cleanup;
  }

  // The user stack walk with the unwind tables needs bpf_loop (5.17+); older kernels get the
  // program that walks with bpf_get_stack and keeps the stack top for user space's repair.
  // Probed, never decided by kernel version.
  s->own_walk_ = !settings.force_get_stack &&
                 libbpf_probe_bpf_helper(BPF_PROG_TYPE_PERF_EVENT, BPF_FUNC_loop, nullptr) == 1;
  bpf_program__set_autoload(s->skel_->progs.on_cpu_sample, s->own_walk_);
  bpf_program__set_autoload(s->skel_->progs.on_cpu_sample_fp, !s->own_walk_);
  err = s->SizeUnwindMaps(what);
  if (err) goto cleanup;

  s->use_tp_btf_ = CanUseTpBtf(
      {"btf_trace_sched_process_fork", "btf_trace_sched_process_exec", "btf_trace_sched_process_exit"});
  bpf_program__set_autoload(s->skel_->progs.fork_btf, false);
  bpf_program__set_autoload(s->skel_->progs.fork_raw, false);
  if (settings.filter_pids && settings.follow_children) {
    bpf_program__set_autoload(s->use_tp_btf_ ? s->skel_->progs.fork_btf
                                             : s->skel_->progs.fork_raw,
                              true);
  }
  err = s->ConfigureOffCpu(what);
  if (err) goto cleanup;
  // Goroutine waits: the walk uses bpf_loop as well.
  s->go_waits_ = settings.go_waits && s->own_walk_ && CanWalkGoroutines();
  bpf_program__set_autoload(s->skel_->progs.go_waits, s->go_waits_);
  bpf_program__set_autoattach(s->skel_->progs.go_waits, false);
  err = bpf_map__set_autocreate(s->skel_->maps.go_wait_state, s->go_waits_);
  if (!err) err = bpf_map__set_autocreate(s->skel_->maps.go_wait_scratch, s->go_waits_);
  if (err) {
    *what = "configuring the goroutine-wait maps";
    goto cleanup;
  }
  s->skel_->rodata->go_wait_period_ns = settings.go_wait_period_ns;
  bpf_program__set_autoload(s->skel_->progs.exec_btf, s->use_tp_btf_);
  bpf_program__set_autoload(s->skel_->progs.exit_btf, s->use_tp_btf_);
  bpf_program__set_autoload(s->skel_->progs.exec_raw, !s->use_tp_btf_);
  bpf_program__set_autoload(s->skel_->progs.exit_raw, !s->use_tp_btf_);

  err = oncpu_bpf__load(s->skel_);
  if (err) {
    *what = "loading the on-CPU BPF programs";
    goto cleanup;
  }

  // Tracepoints first, pids second: a child forked in between is then still followed.
  err = oncpu_bpf__attach(s->skel_);
  if (err) {
    *what = "attaching the process tracepoints";
    goto cleanup;
  }
  for (uint32_t pid : settings.pids) {
    err = bpf_map__update_elem(s->skel_->maps.tracked_pids, &pid, sizeof(pid), &one,
                               sizeof(one), BPF_ANY);
    if (err) {
      *what = "adding a pid to the filter";
      goto cleanup;
    }
  }

  *out = s;
  return 0;

cleanup:
  delete s;
  return err < 0 ? err : -EINVAL;
}

// The unwind-table maps: sized as asked with our own walk; one entry each without it (the
// programs still name them, but nothing reads or writes them).
int OnCpuSampler::SizeUnwindMaps(const char **what) {
  auto pick = [this](uint32_t asked, uint32_t dflt) { return !own_walk_ ? 1u : asked ? asked : dflt; };
  unwind_capacity_.rows = pick(settings_.unwind_rows, FW_DEFAULT_UNWIND_ROWS);
  unwind_capacity_.pages = pick(settings_.unwind_pages, FW_DEFAULT_UNWIND_PAGES);
  unwind_capacity_.files = pick(settings_.unwind_files, FW_DEFAULT_UNWIND_FILES);
  unwind_capacity_.mappings = pick(settings_.unwind_mappings, FW_DEFAULT_UNWIND_MAPPINGS);
  int err = bpf_map__set_max_entries(skel_->maps.unwind_rows, unwind_capacity_.rows);
  if (!err) err = bpf_map__set_max_entries(skel_->maps.unwind_pages, unwind_capacity_.pages);
  if (!err) err = bpf_map__set_max_entries(skel_->maps.unwind_files, unwind_capacity_.files);
  if (!err) err = bpf_map__set_max_entries(skel_->maps.unwind_mappings, unwind_capacity_.mappings);
  if (err) *what = "sizing the unwind-table maps";
  if (!own_walk_) unwind_capacity_ = UnwindCapacity();
  return err;
}

int OnCpuSampler::WriteUnwindArray(UnwindArray which, uint32_t first, const uint8_t *data, size_t bytes,
                                   const char **what) {
  struct bpf_map *map = which == UnwindArray::kRows    ? skel_->maps.unwind_rows
                        : which == UnwindArray::kPages ? skel_->maps.unwind_pages
                                                       : skel_->maps.unwind_files;
  size_t value = bpf_map__value_size(map);
  uint64_t count = bytes / value;
  if (!own_walk_ || bytes % value != 0 || first + count > bpf_map__max_entries(map)) {
    *what = "writing unwind tables: outside the map, or no table walk on this kernel";
    return -EINVAL;
  }
  // Batches of at most 64k values, so that the key array stays small.
  constexpr uint32_t kBatch = 65536;
  std::vector<uint32_t> keys;
  for (uint64_t done = 0; done < count;) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kBatch, count - done));
    keys.resize(n);
    for (uint32_t i = 0; i < n; ++i) keys[i] = first + static_cast<uint32_t>(done) + i;
    __u32 in_out = n;
    int err = bpf_map_update_batch(bpf_map__fd(map), keys.data(), data + done * value, &in_out, nullptr);
    if (err) {
      *what = "writing unwind tables (BPF_MAP_UPDATE_BATCH)";
      return -errno;
    }
    done += n;
  }
  return 0;
}

int OnCpuSampler::UpdateUnwindMappings(const uint8_t *add, size_t add_bytes, const uint8_t *del,
                                       size_t del_bytes, size_t *added, const char **what) {
  constexpr size_t kKey = sizeof(struct fw_unwind_mapping_key), kValue = sizeof(struct fw_unwind_mapping);
  *added = 0;
  if (!own_walk_ || add_bytes % (kKey + kValue) != 0 || del_bytes % kKey != 0) {
    *what = "updating unwind mappings: malformed entries, or no table walk on this kernel";
    return -EINVAL;
  }
  int fd = bpf_map__fd(skel_->maps.unwind_mappings);
  // Removals first: an unmapped range may have been mapped again by something else.
  for (size_t off = 0; off < del_bytes; off += kKey) {
    if (bpf_map_delete_elem(fd, del + off) && errno != ENOENT) {
      *what = "removing an unwind mapping";
      return -errno;
    }
  }
  for (size_t off = 0; off < add_bytes; off += kKey + kValue) {
    if (bpf_map_update_elem(fd, add + off, add + off + kKey, BPF_ANY)) {
      *what = "adding an unwind mapping";
      return -errno;
    }
    ++*added;
  }
  return 0;
}

void OnCpuSampler::SetTableWakeups(bool on) {
  if (own_walk_) skel_->bss->table_wakeups = on ? 1 : 0;
}

int OnCpuSampler::SetUnwindPid(uint32_t pid, bool ready, const char **what) {
  if (!own_walk_) return 0;
  int fd = bpf_map__fd(skel_->maps.unwind_pids);
  uint32_t one = 1;
  int err = ready ? bpf_map_update_elem(fd, &pid, &one, BPF_ANY) : bpf_map_delete_elem(fd, &pid);
  if (err && !(errno == ENOENT && !ready)) {
    *what = ready ? "marking a process's unwind tables ready" : "forgetting a process's unwind tables";
    return -errno;
  }
  return 0;
}

// Which off-CPU programs and maps exist: none without off-CPU time, else one flavour. The
// switch and flush programs are attached by hand (AttachPerfEvents, FlushOffCpu).
int OnCpuSampler::ConfigureOffCpu(const char **what) {
  auto *progs = &skel_->progs;
  auto *maps = &skel_->maps;
  bool on = settings_.off_cpu;
  off_cpu_tp_btf_ = on && !settings_.force_off_cpu_raw_tp && CanUseOffCpuTpBtf();
  bool btf = on && off_cpu_tp_btf_, raw = on && !off_cpu_tp_btf_;
  bpf_program__set_autoload(progs->off_cpu_switch_btf, btf);
  bpf_program__set_autoload(progs->off_cpu_flush_btf, btf);
  bpf_program__set_autoload(progs->off_cpu_switch_raw, raw);
  bpf_program__set_autoload(progs->off_cpu_flush_raw, raw);
  bpf_program__set_autoload(progs->off_cpu_exit_raw, raw);
  bpf_program__set_autoattach(progs->off_cpu_switch_btf, false);
  bpf_program__set_autoattach(progs->off_cpu_switch_raw, false);
  bpf_program__set_autoattach(progs->off_cpu_flush_btf, false);
  bpf_program__set_autoattach(progs->off_cpu_flush_raw, false);
  int err = bpf_map__set_autocreate(maps->parked_threads, btf);
  if (!err) err = bpf_map__set_autocreate(maps->parked_tids, raw);
  if (err) {
    *what = "configuring the off-CPU maps";
    return err;
  }
  skel_->rodata->off_cpu_threshold_ns = settings_.off_cpu_threshold_ns;
  skel_->rodata->off_cpu_own_walk = own_walk_;
  if (raw) skel_->rodata->task_stack_bytes = KernelStackBytes();
  return 0;
}

::bpf_program *OnCpuSampler::SwitchProgram() const {
  if (!settings_.off_cpu) return nullptr;
  return off_cpu_tp_btf_ ? skel_->progs.off_cpu_switch_btf : skel_->progs.off_cpu_switch_raw;
}

OnCpuSampler::~OnCpuSampler() {
  DetachPerfEvents();
  for (auto &entry : go_links_) bpf_link__destroy(entry.second);
  go_links_.clear();
  oncpu_bpf__destroy(skel_);
}

int OnCpuSampler::AttachPerfEvents(const char **what) {
  std::vector<int> cpus;
  int err = OnlineCpus(&cpus);
  if (err) {
    *what = "reading /sys/devices/system/cpu/online";
    return err;
  }
  for (int cpu : cpus) {
    int fd = OpenCpuClockEvent(cpu, settings_.frequency);
    if (fd == -ENODEV) continue;  // went offline since we read the list
    if (fd < 0) {
      err = fd;
      *what = "opening a cpu-clock perf event (perf_event_open)";
      goto cleanup;
    }
    struct bpf_link *link = bpf_program__attach_perf_event(SampleProgram(), fd);
    if (!link) {
      err = -errno;
      close(fd);
      *what = "attaching the sampling program to a perf event";
      goto cleanup;
    }
    perf_links_.push_back(link);
  }
  if (perf_links_.empty()) {
    *what = "opening a cpu-clock perf event on any online CPU";
    return -ENODEV;
  }
  if (SwitchProgram()) {
    switch_link_ = bpf_program__attach(SwitchProgram());
    if (!switch_link_) {
      err = -errno;
      *what = "attaching the off-CPU program to sched_switch";
      goto cleanup;
    }
  }
  if (go_waits_) {
    go_stopping_ = false;
    go_thread_ = std::thread([this] { GoWaitLoop(); });
  }
  return 0;

cleanup:
  DetachPerfEvents();
  return err;
}

void OnCpuSampler::DetachPerfEvents() {
  StopGoWaits();
  // Destroying a perf-event link also closes the event's fd.
  for (auto it = perf_links_.rbegin(); it != perf_links_.rend(); ++it) bpf_link__destroy(*it);
  perf_links_.clear();
  bpf_link__destroy(switch_link_);
  switch_link_ = nullptr;
}

int OnCpuSampler::FlushOffCpu(const char **what) {
  if (!settings_.off_cpu) return 0;
  ::bpf_program *prog =
      off_cpu_tp_btf_ ? skel_->progs.off_cpu_flush_btf : skel_->progs.off_cpu_flush_raw;
  struct bpf_link *link = bpf_program__attach_iter(prog, nullptr);
  if (!link) {
    *what = "attaching the off-CPU flush iterator";
    return -errno;
  }
  int err = 0;
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) {
    err = -errno;
    *what = "creating the off-CPU flush iterator";
  } else {
    // The program writes nothing to the seq file; reading to the end runs it over every task.
    char buf[64];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
    }
    if (n < 0) {
      err = -errno;
      *what = "running the off-CPU flush iterator";
    }
    close(fd);
  }
  bpf_link__destroy(link);
  return err;
}

int OnCpuSampler::AddPid(uint32_t pid, const char **what) {
  uint8_t one = 1;
  int err = bpf_map__update_elem(skel_->maps.tracked_pids, &pid, sizeof(pid), &one, sizeof(one),
                                 BPF_ANY);
  if (err) *what = "adding a pid to the filter";
  return err;
}

int OnCpuSampler::SetGoProcess(uint32_t pid, const struct fw_go_proc &go, const char **what) {
  int err = bpf_map__update_elem(skel_->maps.go_procs, &pid, sizeof(pid), &go, sizeof(go), BPF_ANY);
  if (err) {
    *what = "adding a Go process";
    return err;
  }
  skel_->bss->go_procs_used = 1;
  if (go_waits_ && go.allgs) return AddGoWaitLink(pid, what);
  return 0;
}

void OnCpuSampler::RemoveGoProcess(uint32_t pid) {
  bpf_map__delete_elem(skel_->maps.go_procs, &pid, sizeof(pid), 0);
  if (go_waits_) {
    RemoveGoWaitLink(pid);
    bpf_map__delete_elem(skel_->maps.go_wait_state, &pid, sizeof(pid), 0);
  }
}

// One iterator link per process, limited to its main thread (6.1+). An older kernel ignores
// the limit and iterates every task: the program then skips all but the process the walk is
// for (go_wait_only_tgid), so the result is the same, only slower.
int OnCpuSampler::AddGoWaitLink(uint32_t pid, const char **what) {
  std::lock_guard<std::mutex> lock(go_mu_);
  if (go_links_.count(pid)) return 0;
  union bpf_iter_link_info linfo = {};
  linfo.task.tid = pid;
  LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo, .link_info_len = sizeof(linfo));
  struct bpf_link *link = bpf_program__attach_iter(skel_->progs.go_waits, &opts);
  if (!link) {
    *what = "attaching the goroutine-wait iterator";
    return -errno;
  }
  go_links_[pid] = link;
  return 0;
}

void OnCpuSampler::RemoveGoWaitLink(uint32_t pid) {
  std::lock_guard<std::mutex> lock(go_mu_);
  auto it = go_links_.find(pid);
  if (it == go_links_.end()) return;
  bpf_link__destroy(it->second);
  go_links_.erase(it);
}

// One walk of every Go process. The goroutines a walk may look at are shared among them, so
// that a machine with many Go processes costs no more than one with a single one: each looks
// at least at one goroutine a walk (its records then stand for all of them).
int OnCpuSampler::WalkLocked(const char **what) {
  int first_err = 0;
  if (go_links_.empty()) return 0;
  uint32_t budget = settings_.go_wait_max_visits ? settings_.go_wait_max_visits : FW_DEFAULT_GO_WAIT_MAX_VISITS;
  uint32_t n = static_cast<uint32_t>(go_links_.size());
  skel_->bss->go_wait_max_visits = (budget + n - 1) / n;
  for (auto &entry : go_links_) {
    skel_->bss->go_wait_only_tgid = entry.first;
    int err = RunIterator(entry.second);
    // A process that exited between its exit and our removing it: ESRCH, nothing to walk.
    if (err && err != -ESRCH && !first_err) {
      first_err = err;
      *what = "running the goroutine-wait iterator";
    }
  }
  return first_err;
}

int OnCpuSampler::WalkGoroutines(const char **what) {
  if (!go_waits_) return 0;
  std::lock_guard<std::mutex> lock(go_mu_);
  return WalkLocked(what);
}

// The walker thread: a walk every period, jittered uniformly by +-50% so that it cannot lock
// into step with a periodic workload (the weight of each record is the time since the last
// walk, measured in BPF, so the jitter costs no accuracy).
void OnCpuSampler::GoWaitLoop() {
  std::minstd_rand rng(static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  std::unique_lock<std::mutex> lock(go_mu_);
  while (!go_stopping_) {
    auto wait = std::chrono::nanoseconds(
        static_cast<int64_t>(static_cast<double>(settings_.go_wait_period_ns) * jitter(rng)));
    if (go_cv_.wait_for(lock, wait, [this] { return go_stopping_; })) break;
    const char *what = "";
    WalkLocked(&what);
  }
}

void OnCpuSampler::StopGoWaits() {
  if (!go_thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(go_mu_);
    go_stopping_ = true;
  }
  go_cv_.notify_all();
  go_thread_.join();
}

int OnCpuSampler::ReadMetrics(std::vector<uint64_t> *values, const char **what) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus < 0) {
    *what = "counting the possible CPUs";
    return ncpus;
  }
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpus));
  values->assign(FW_METRIC_COUNT, 0);
  for (uint32_t key = 0; key < FW_METRIC_COUNT; ++key) {
    int err = bpf_map__lookup_elem(skel_->maps.metrics, &key, sizeof(key), per_cpu.data(),
                                   per_cpu.size() * sizeof(uint64_t), 0);
    if (err) {
      *what = "reading the BPF metrics map";
      return err;
    }
    for (uint64_t v : per_cpu) (*values)[key] += v;
  }
  return 0;
}

::bpf_program *OnCpuSampler::SampleProgram() const {
  return own_walk_ ? skel_->progs.on_cpu_sample : skel_->progs.on_cpu_sample_fp;
}

namespace {

// The kernel's run-time statistics of one loaded program (kernel.bpf_stats_enabled) and what
// verifying it cost.
int ReadStatsOf(::bpf_program *prog, OnCpuProgramStats *stats) {
  struct bpf_prog_info info;
  __u32 len = sizeof(info);
  memset(&info, 0, sizeof(info));
  int err = bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len);
  if (err) return err;
  stats->run_time_ns = info.run_time_ns;
  stats->run_count = info.run_cnt;
  stats->verified_insns = info.verified_insns;
  return 0;
}

}  // namespace

int OnCpuSampler::ReadProgramStats(OnCpuProgramStats *stats, const char **what) {
  int err = ReadStatsOf(SampleProgram(), stats);
  if (err) *what = "reading the sampling program's info";
  return err;
}

int OnCpuSampler::ReadOffCpuProgramStats(OnCpuProgramStats *stats, const char **what) {
  *stats = OnCpuProgramStats();
  if (!SwitchProgram()) return 0;
  int err = ReadStatsOf(SwitchProgram(), stats);
  if (err) *what = "reading the off-CPU program's info";
  return err;
}

int OnCpuSampler::ReadGoWaitProgramStats(OnCpuProgramStats *stats, const char **what) {
  *stats = OnCpuProgramStats();
  if (!go_waits_) return 0;
  int err = ReadStatsOf(skel_->progs.go_waits, stats);
  if (err) *what = "reading the goroutine-wait program's info";
  return err;
}

int OnCpuSampler::ring_buffer_fd() const { return bpf_map__fd(skel_->maps.events); }

int EnableBpfStats(int *fd, const char **what) {
  int r = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (r < 0) {
    *what = "enabling BPF run-time statistics (BPF_ENABLE_STATS)";
    return -errno;
  }
  *fd = r;
  return 0;
}

}  // namespace flamewire
