// Loading, attaching and detaching oncpu.bpf.c through its generated skeleton. No N-API
// here: every function returns 0 or a negative errno and names the failed step in *what.
#ifndef FLAMEWIRE_ONCPU_SAMPLER_H
#define FLAMEWIRE_ONCPU_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

struct oncpu_bpf;
struct fw_go_proc;
struct bpf_link;
struct bpf_program;

namespace flamewire {

struct OnCpuSettings {
  unsigned frequency = 99;
  bool filter_pids = false;
  std::vector<uint32_t> pids;
  bool follow_children = false;
  uint32_t ring_buffer_bytes = 0;  // 0: the default from oncpu.h
  uint32_t snapshot_bytes = 0;
  uint32_t max_pids = 0;           // 0: the default from oncpu.h
  // Walk user stacks with bpf_get_stack even where bpf_loop exists (for comparisons).
  bool force_get_stack = false;
  // Off-CPU time (offcpu.bpf.c): blocks of at least off_cpu_threshold_ns become records.
  bool off_cpu = false;
  uint64_t off_cpu_threshold_ns = 100000;
  // Use the raw_tp flavour even where tp_btf works (tests, comparisons).
  bool force_off_cpu_raw_tp = false;
  // Goroutine waits (gowait.bpf.c): every go_wait_period_ns (jittered), the goroutines of each
  // Go process given an allgs address are walked. Where the kernel cannot (before 5.18), off.
  bool go_waits = false;
  uint64_t go_wait_period_ns = 10000000;
  // Goroutines looked at per walk, shared among the Go processes. 0: the default from oncpu.h.
  uint32_t go_wait_max_visits = 0;
  // Capacities of the unwind-table maps (rows, page index entries, files, mapping prefixes).
  // 0: the defaults from oncpu.h.
  uint32_t unwind_rows = 0;
  uint32_t unwind_pages = 0;
  uint32_t unwind_files = 0;
  uint32_t unwind_mappings = 0;
};

// The unwind-table arrays user space writes (see oncpu.h).
enum class UnwindArray { kRows, kPages, kFiles };

struct UnwindCapacity {
  uint32_t rows = 0, pages = 0, files = 0, mappings = 0;
};

struct OnCpuProgramStats {
  uint64_t run_time_ns = 0;
  uint64_t run_count = 0;
  // Instructions the verifier went through at load (5.16+; 0 before).
  uint32_t verified_insns = 0;
};

class OnCpuSampler {
 public:
  // Opens, configures and loads the BPF object, attaches the process tracepoints and fills
  // the pid filter. Perf events are not attached yet.
  static int Open(const OnCpuSettings &settings, OnCpuSampler **out, const char **what);
  ~OnCpuSampler();

  // Opens a cpu-clock event per online CPU and attaches the sampling program to each, and
  // attaches the off-CPU switch program when off-CPU time is on.
  int AttachPerfEvents(const char **what);
  // Stops sampling: no new records are produced after this returns.
  void DetachPerfEvents();
  // After DetachPerfEvents: emits the records of threads still blocked, with the time they
  // have been blocked so far (nothing to do without off-CPU time).
  int FlushOffCpu(const char **what);

  int AddPid(uint32_t pid, const char **what);
  // Unwind tables (our own walk only): writes `bytes` of values (a whole number of the map's
  // values) to consecutive indices of one of the arrays from `first` on.
  int WriteUnwindArray(UnwindArray which, uint32_t first, const uint8_t *data, size_t bytes,
                       const char **what);
  // Adds (key, value) pairs to unwind_mappings and removes keys from it (struct
  // fw_unwind_mapping_key / fw_unwind_mapping). *added counts the pairs in before an error
  // (-ENOSPC: the trie is full).
  int UpdateUnwindMappings(const uint8_t *add, size_t add_bytes, const uint8_t *del, size_t del_bytes,
                           size_t *added, const char **what);
  // Marks a process's mappings complete (its samples are walked with the tables) or not.
  int SetUnwindPid(uint32_t pid, bool ready, const char **what);
  // Whether samples of a process without tables wake the reader (a few per second at most):
  // only while user space loads tables on them.
  void SetTableWakeups(bool on);
  UnwindCapacity unwind_capacity() const { return unwind_capacity_; }
  // Whether goroutine waits are walked: asked for and possible on this kernel.
  bool go_waits() const { return go_waits_; }
  // Runs one walk of every registered Go process now, on the calling thread (tests).
  int WalkGoroutines(const char **what);
  // A Go process: where its goroutine ids are (fw_go_proc). Samples of it carry the goroutine
  // id from then on; RemoveGoProcess when its image goes (exec, exit).
  int SetGoProcess(uint32_t pid, const struct fw_go_proc &go, const char **what);
  void RemoveGoProcess(uint32_t pid);
  // Sums the per-CPU metrics; values has FW_METRIC_COUNT entries afterwards.
  int ReadMetrics(std::vector<uint64_t> *values, const char **what);
  int ReadProgramStats(OnCpuProgramStats *stats, const char **what);
  // The off-CPU switch program's run time (zero when off-CPU time is off).
  int ReadOffCpuProgramStats(OnCpuProgramStats *stats, const char **what);
  // The goroutine-wait walk's (zero when goroutine waits are off).
  int ReadGoWaitProgramStats(OnCpuProgramStats *stats, const char **what);

  int ring_buffer_fd() const;
  bool filter_pids() const { return settings_.filter_pids; }
  unsigned attached_cpus() const { return static_cast<unsigned>(perf_links_.size()); }
  // "tp_btf" or "raw_tp": which process tracepoint flavour was loaded.
  const char *tracepoint_flavour() const { return use_tp_btf_ ? "tp_btf" : "raw_tp"; }
  // How the user stack is walked: "tables" (our walk with the unwind tables, bpf_loop) or
  // "bpf_get_stack" (kernels without bpf_loop: frame pointers, the leaf repaired in user space).
  const char *user_walk() const { return own_walk_ ? "tables" : "bpf_get_stack"; }
  // "tp_btf" or "raw_tp": the off-CPU flavour loaded; nullptr when off-CPU time is off.
  const char *off_cpu_flavour() const {
    return !settings_.off_cpu ? nullptr : off_cpu_tp_btf_ ? "tp_btf" : "raw_tp";
  }

 private:
  OnCpuSampler() = default;
  OnCpuSampler(const OnCpuSampler &) = delete;
  OnCpuSampler &operator=(const OnCpuSampler &) = delete;

  OnCpuSettings settings_;
  struct oncpu_bpf *skel_ = nullptr;
  std::vector<struct bpf_link *> perf_links_;
  struct bpf_link *switch_link_ = nullptr;
  bool use_tp_btf_ = true;
  bool off_cpu_tp_btf_ = true;
  bool own_walk_ = true;
  UnwindCapacity unwind_capacity_;
  int SizeUnwindMaps(const char **what);
  // The sampling program that was loaded (see own_walk_).
  ::bpf_program *SampleProgram() const;
  ::bpf_program *SwitchProgram() const;
  int ConfigureOffCpu(const char **what);

  // Goroutine waits: an iterator link per Go process (its main thread), walked by a thread.
  bool go_waits_ = false;
  std::mutex go_mu_;  // go_links_ and the walks
  std::map<uint32_t, struct bpf_link *> go_links_;
  std::thread go_thread_;
  std::condition_variable go_cv_;
  bool go_stopping_ = false;
  int AddGoWaitLink(uint32_t pid, const char **what);
  void RemoveGoWaitLink(uint32_t pid);
  int WalkLocked(const char **what);
  void GoWaitLoop();
  void StopGoWaits();
};

// Turns on kernel.bpf_stats_enabled for as long as the returned fd is open.
int EnableBpfStats(int *fd, const char **what);

}  // namespace flamewire

#endif
