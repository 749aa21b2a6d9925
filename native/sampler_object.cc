#include "sampler_object.h"

#include <math.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "libbpf_log.h"
#include "oncpu.h"
#include "oncpu_sampler.h"
#include "ring_reader.h"

namespace flamewire {
namespace {

constexpr unsigned kMaxFrequency = 100000;
// Each drain wakes the reader and the JS thread, which then run with cold caches: at 200 ms a
// whole-machine record at -F 999 used ~15% less CPU than at 50 ms. The ring buffer is sized
// for four intervals (defaultRingBufferBytes in src/native.ts).
constexpr unsigned kDefaultPollIntervalMs = 200;
constexpr unsigned kMaxPollIntervalMs = 60000;
constexpr uint32_t kMaxPid = 4194304;  // PID_MAX_LIMIT on 64-bit
constexpr uint32_t kMaxRingBufferBytes = 1u << 30;
constexpr uint32_t kMaxPidsLimit = 1u << 22;
constexpr uint32_t kMaxUnwindEntries = 1u << 26;

constexpr const char *kOpenUsage =
    "usage: openOnCpuSampler({ frequency: 1..100000, pids?: number[], followChildren?: boolean, "
    "ringBufferBytes?: power of two >= page size, pollIntervalMs?: 1..60000, "
    "snapshotBytes?: 0..4096, maxPids?: number, userWalk?: 'auto' | 'bpf_get_stack', "
    "offCpu?: boolean, offCpuThresholdNs?: 0..3600e9, offCpuFlavour?: 'auto' | 'raw_tp', "
    "goWaits?: boolean, goWaitPeriodNs?: 1e6..60e9, goWaitMaxVisits?: 1..1048576, "
    "unwindRows?, unwindPages?, unwindFiles?, unwindMappings?: 1..2^26 })";
constexpr double kMaxOffCpuThresholdNs = 3600e9;

struct AddonData {
  Napi::FunctionReference sampler_ctor;
};

// Reads an optional unsigned integer option; false (with a pending exception) if invalid.
bool GetUint(Napi::Env env, Napi::Object obj, const char *key, uint32_t min, uint32_t max,
             bool required, uint32_t *out) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() && !required) return true;
  if (!v.IsNumber()) {
    ThrowUsage(env, (std::string(kOpenUsage) + ": " + key + " must be a number").c_str());
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowUsage(env, (std::string(kOpenUsage) + ": " + key + " must be an integer in " +
                     std::to_string(min) + ".." + std::to_string(max))
                        .c_str());
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

class SamplerObject : public Napi::ObjectWrap<SamplerObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "OnCpuSampler",
                       {
                           InstanceMethod("start", &SamplerObject::Start),
                           InstanceMethod("addPid", &SamplerObject::AddPid),
                           InstanceMethod("writeUnwind", &SamplerObject::WriteUnwind),
                           InstanceMethod("updateUnwindMappings", &SamplerObject::UpdateUnwindMappings),
                           InstanceMethod("setUnwindPid", &SamplerObject::SetUnwindPid),
                           InstanceMethod("setTableWakeups", &SamplerObject::SetTableWakeups),
                           InstanceMethod("setGoProcess", &SamplerObject::SetGoProcess),
                           InstanceMethod("removeGoProcess", &SamplerObject::RemoveGoProcess),
                           InstanceMethod("walkGoroutines", &SamplerObject::WalkGoroutines),
                           InstanceMethod("stats", &SamplerObject::Stats),
                           InstanceMethod("programStats", &SamplerObject::ProgramStats),
                           InstanceMethod("info", &SamplerObject::Info),
                           InstanceMethod("stop", &SamplerObject::Stop),
                       });
  }

  explicit SamplerObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<SamplerObject>(info) {
    Napi::Env env = info.Env();
    OnCpuSettings settings;
    if (info.Length() != 1 || !info[0].IsObject()) {
      ThrowUsage(env, kOpenUsage);
      return;
    }
    Napi::Object cfg = info[0].As<Napi::Object>();
    uint32_t v = 0;
    if (!GetUint(env, cfg, "frequency", 1, kMaxFrequency, true, &v)) return;
    settings.frequency = v;
    Napi::Value pids = cfg.Get("pids");
    if (!pids.IsUndefined()) {
      if (!pids.IsArray()) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": pids must be an array").c_str());
        return;
      }
      Napi::Array arr = pids.As<Napi::Array>();
      settings.filter_pids = true;
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value p = arr.Get(i);
        double d = p.IsNumber() ? p.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= 1 && d <= kMaxPid) || d != static_cast<double>(static_cast<uint32_t>(d))) {
          ThrowUsage(env, (std::string(kOpenUsage) + ": pids must hold process ids").c_str());
          return;
        }
        settings.pids.push_back(static_cast<uint32_t>(d));
      }
    }
    Napi::Value follow = cfg.Get("followChildren");
    if (!follow.IsUndefined()) {
      if (!follow.IsBoolean()) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": followChildren must be a boolean").c_str());
        return;
      }
      settings.follow_children = follow.As<Napi::Boolean>().Value();
      if (settings.follow_children && !settings.filter_pids) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": followChildren needs pids").c_str());
        return;
      }
    }
    Napi::Value walk = cfg.Get("userWalk");
    if (!walk.IsUndefined()) {
      std::string w = walk.IsString() ? walk.As<Napi::String>().Utf8Value() : "";
      if (w != "auto" && w != "bpf_get_stack") {
        ThrowUsage(env, (std::string(kOpenUsage) + ": userWalk must be 'auto' or 'bpf_get_stack'").c_str());
        return;
      }
      settings.force_get_stack = w == "bpf_get_stack";
    }
    Napi::Value off_cpu = cfg.Get("offCpu");
    if (!off_cpu.IsUndefined()) {
      if (!off_cpu.IsBoolean()) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": offCpu must be a boolean").c_str());
        return;
      }
      settings.off_cpu = off_cpu.As<Napi::Boolean>().Value();
    }
    settings.off_cpu_threshold_ns = FW_DEFAULT_OFF_CPU_THRESHOLD_NS;
    Napi::Value threshold = cfg.Get("offCpuThresholdNs");
    if (!threshold.IsUndefined()) {
      double d = threshold.IsNumber() ? threshold.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= kMaxOffCpuThresholdNs) || d != static_cast<double>(static_cast<uint64_t>(d))) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": offCpuThresholdNs must be an integer in 0..3600e9").c_str());
        return;
      }
      settings.off_cpu_threshold_ns = static_cast<uint64_t>(d);
    }
    Napi::Value flavour = cfg.Get("offCpuFlavour");
    if (!flavour.IsUndefined()) {
      std::string f = flavour.IsString() ? flavour.As<Napi::String>().Utf8Value() : "";
      if (f != "auto" && f != "raw_tp") {
        ThrowUsage(env, (std::string(kOpenUsage) + ": offCpuFlavour must be 'auto' or 'raw_tp'").c_str());
        return;
      }
      settings.force_off_cpu_raw_tp = f == "raw_tp";
    }
    Napi::Value go_waits = cfg.Get("goWaits");
    if (!go_waits.IsUndefined()) {
      if (!go_waits.IsBoolean()) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": goWaits must be a boolean").c_str());
        return;
      }
      settings.go_waits = go_waits.As<Napi::Boolean>().Value();
    }
    Napi::Value go_period = cfg.Get("goWaitPeriodNs");
    if (!go_period.IsUndefined()) {
      double d = go_period.IsNumber() ? go_period.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1e6 && d <= 60e9) || d != static_cast<double>(static_cast<uint64_t>(d))) {
        ThrowUsage(env, (std::string(kOpenUsage) + ": goWaitPeriodNs must be an integer in 1e6..60e9").c_str());
        return;
      }
      settings.go_wait_period_ns = static_cast<uint64_t>(d);
    }
    if (!GetUint(env, cfg, "goWaitMaxVisits", 1, 1u << 20, false, &settings.go_wait_max_visits)) return;
    uint32_t rb = 0;
    if (!GetUint(env, cfg, "ringBufferBytes", 0, kMaxRingBufferBytes, false, &rb)) return;
    long page = sysconf(_SC_PAGESIZE);
    if (rb && ((rb & (rb - 1)) != 0 || rb < static_cast<uint32_t>(page))) {
      ThrowUsage(env, (std::string(kOpenUsage) +
                       ": ringBufferBytes must be a power of two of at least the page size")
                          .c_str());
      return;
    }
    settings.ring_buffer_bytes = rb;
    settings.snapshot_bytes = FW_DEFAULT_SNAPSHOT_BYTES;
    if (!GetUint(env, cfg, "snapshotBytes", 0, FW_MAX_SNAPSHOT_BYTES, false,
                 &settings.snapshot_bytes))
      return;
    if (!GetUint(env, cfg, "maxPids", 1, kMaxPidsLimit, false, &settings.max_pids)) return;
    if (!GetUint(env, cfg, "unwindRows", 1, kMaxUnwindEntries, false, &settings.unwind_rows) ||
        !GetUint(env, cfg, "unwindPages", 1, kMaxUnwindEntries, false, &settings.unwind_pages) ||
        !GetUint(env, cfg, "unwindFiles", 1, kMaxUnwindEntries, false, &settings.unwind_files) ||
        !GetUint(env, cfg, "unwindMappings", 1, kMaxUnwindEntries, false, &settings.unwind_mappings))
      return;
    poll_interval_ms_ = kDefaultPollIntervalMs;
    if (!GetUint(env, cfg, "pollIntervalMs", 1, kMaxPollIntervalMs, false, &poll_interval_ms_))
      return;

    const char *what = "";
    OnCpuSampler *sampler = nullptr;
    int err = OnCpuSampler::Open(settings, &sampler, &what);
    if (err) {
      ThrowErrno(env, err, what);
      return;
    }
    sampler_.reset(sampler);
  }

  ~SamplerObject() override {
    // Garbage collected or environment torn down while running: no JS may run any more.
    Shutdown();
  }

 private:
  enum class State { kOpen, kRunning, kStopped };

  bool CheckUsable(Napi::Env env, const char *method) {
    if (state_ == State::kStopped || !sampler_) {
      ThrowUsage(env, (std::string("OnCpuSampler.") + method + ": the sampler is stopped").c_str());
      return false;
    }
    return true;
  }

  Napi::Value Start(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() != 1 || !info[0].IsFunction()) {
      ThrowUsage(env, "usage: sampler.start(onBatch: (batch: Buffer) => void)");
      return env.Undefined();
    }
    if (!CheckUsable(env, "start")) return env.Undefined();
    if (state_ != State::kOpen) {
      ThrowUsage(env, "OnCpuSampler.start: already started");
      return env.Undefined();
    }
    Napi::Function on_batch = info[0].As<Napi::Function>();
    const char *what = "";
    RingReader *reader = nullptr;
    queue_ = std::make_shared<BatchQueue>();
    int err = RingReader::Create(sampler_->ring_buffer_fd(), queue_, &reader);
    if (err) {
      ThrowErrno(env, err, "creating the ring buffer reader");
      return env.Undefined();
    }
    reader_.reset(reader);
    err = sampler_->AttachPerfEvents(&what);
    if (err) {
      reader_.reset();
      ThrowErrno(env, err, what);
      return env.Undefined();
    }
    on_batch_ = Napi::Persistent(on_batch);
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_batch, "flamewire-ring-reader", 0, 1);
    // Registered after the ThreadSafeFunction so it runs before the TSFN's own teardown
    // (hooks run last-in, first-out): the reader thread is joined while the TSFN exists.
    cleanup_hook_ = env.AddCleanupHook(OnEnvCleanup, this);
    has_cleanup_hook_ = true;
    std::shared_ptr<BatchQueue> queue = queue_;
    Napi::ThreadSafeFunction tsfn = tsfn_;
    reader_->Start(poll_interval_ms_, [tsfn, queue]() mutable {
      tsfn.NonBlockingCall([queue](Napi::Env env, Napi::Function fn) { Deliver(env, fn, *queue); });
    });
    state_ = State::kRunning;
    return env.Undefined();
  }

  // On the JS thread: hands every queued batch to fn, oldest first. False if fn threw.
  static bool Deliver(Napi::Env env, Napi::Function fn, BatchQueue &queue) {
    if (env == nullptr || fn.IsEmpty()) return true;  // environment going away
    while (std::unique_ptr<Batch> batch = queue.Pop()) {
      Batch *raw = batch.release();
      Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::NewOrCopy(
          env, raw->data(), raw->size(), [](Napi::Env, uint8_t *, Batch *b) { delete b; }, raw);
      fn.Call({buf});
      if (env.IsExceptionPending()) return false;
    }
    return true;
  }

  Napi::Value AddPid(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    double d = info.Length() == 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue()
                                                        : -1;
    if (!(d >= 1 && d <= kMaxPid) || d != static_cast<double>(static_cast<uint32_t>(d))) {
      ThrowUsage(env, "usage: sampler.addPid(pid: positive integer process id)");
      return env.Undefined();
    }
    if (!CheckUsable(env, "addPid")) return env.Undefined();
    if (!sampler_->filter_pids()) {
      ThrowUsage(env, "OnCpuSampler.addPid: the sampler was opened without pids (whole machine)");
      return env.Undefined();
    }
    const char *what = "";
    int err = sampler_->AddPid(static_cast<uint32_t>(d), &what);
    if (err) ThrowErrno(env, err, what);
    return env.Undefined();
  }

  // writeUnwind('rows' | 'pages' | 'files', first, bytes): values at first, first + 1, ...
  Napi::Value WriteUnwind(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    constexpr const char *kUsage =
        "usage: sampler.writeUnwind('rows' | 'pages' | 'files', first: index, values: Buffer)";
    std::string which = info.Length() == 3 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    double first = info.Length() == 3 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if ((which != "rows" && which != "pages" && which != "files") || !(first >= 0 && first < 4294967296.0) ||
        first != static_cast<double>(static_cast<uint32_t>(first)) || !info[2].IsBuffer()) {
      ThrowUsage(env, kUsage);
      return env.Undefined();
    }
    if (!CheckUsable(env, "writeUnwind")) return env.Undefined();
    auto buf = info[2].As<Napi::Buffer<uint8_t>>();
    UnwindArray a = which == "rows" ? UnwindArray::kRows : which == "pages" ? UnwindArray::kPages : UnwindArray::kFiles;
    const char *what = "";
    int err = sampler_->WriteUnwindArray(a, static_cast<uint32_t>(first), buf.Data(), buf.Length(), &what);
    if (err) ThrowErrno(env, err, what);
    return env.Undefined();
  }

  // updateUnwindMappings(add: Buffer of (key, value) pairs, remove: Buffer of keys).
  Napi::Value UpdateUnwindMappings(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsBuffer() || !info[1].IsBuffer()) {
      ThrowUsage(env, "usage: sampler.updateUnwindMappings(add: Buffer, remove: Buffer)");
      return env.Undefined();
    }
    if (!CheckUsable(env, "updateUnwindMappings")) return env.Undefined();
    auto add = info[0].As<Napi::Buffer<uint8_t>>();
    auto del = info[1].As<Napi::Buffer<uint8_t>>();
    const char *what = "";
    size_t added = 0;
    int err = sampler_->UpdateUnwindMappings(add.Data(), add.Length(), del.Data(), del.Length(), &added, &what);
    if (err) ThrowErrno(env, err, what);
    return env.Undefined();
  }

  Napi::Value SetUnwindPid(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    double d = info.Length() == 2 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 1 && d <= kMaxPid) || d != static_cast<double>(static_cast<uint32_t>(d)) || !info[1].IsBoolean()) {
      ThrowUsage(env, "usage: sampler.setUnwindPid(pid, ready: boolean)");
      return env.Undefined();
    }
    if (!CheckUsable(env, "setUnwindPid")) return env.Undefined();
    const char *what = "";
    int err = sampler_->SetUnwindPid(static_cast<uint32_t>(d), info[1].As<Napi::Boolean>().Value(), &what);
    if (err) ThrowErrno(env, err, what);
    return env.Undefined();
  }

  Napi::Value SetTableWakeups(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() != 1 || !info[0].IsBoolean()) {
      ThrowUsage(env, "usage: sampler.setTableWakeups(on: boolean)");
      return env.Undefined();
    }
    if (!CheckUsable(env, "setTableWakeups")) return env.Undefined();
    sampler_->SetTableWakeups(info[0].As<Napi::Boolean>().Value());
    return env.Undefined();
  }

  Napi::Value SetGoProcess(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    constexpr const char *kUsage =
        "usage: sampler.setGoProcess(pid, { gTlsOffset: number, gM: number, mCurg: number, gGoid: number, "
        "gLabels: number, labelsFormat: 'map' | 'slice', allgs?: number, gStackLo, gStackHi, gSchedSp, "
        "gSchedPc, gSchedBp, gStatus, gWaitreason: number (with allgs, each below 512) })";
    double d = info.Length() == 2 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 1 && d <= kMaxPid) || d != static_cast<double>(static_cast<uint32_t>(d)) || !info[1].IsObject()) {
      ThrowUsage(env, kUsage);
      return env.Undefined();
    }
    Napi::Object o = info[1].As<Napi::Object>();
    struct fw_go_proc go = {};
    auto field = [&](const char *key, double min, double max, double *out) {
      Napi::Value v = o.Get(key);
      double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
      if (!(x >= min && x <= max) || x != static_cast<double>(static_cast<int64_t>(x))) return false;
      *out = x;
      return true;
    };
    double tls = 0, gm = 0, curg = 0, goid = 0, labels = 0;
    Napi::Value fmt = o.Get("labelsFormat");
    std::string format = fmt.IsString() ? fmt.As<Napi::String>().Utf8Value() : "";
    if (!field("gTlsOffset", -65536, 65536, &tls) || !field("gM", 0, 65536, &gm) ||
        !field("mCurg", 0, 65536, &curg) || !field("gGoid", 0, 65536, &goid) ||
        !field("gLabels", 0, 65536, &labels) || (format != "map" && format != "slice")) {
      ThrowUsage(env, kUsage);
      return env.Undefined();
    }
    go.g_labels = static_cast<uint32_t>(labels);
    go.labels_format = format == "map" ? FW_GO_LABELS_MAP : FW_GO_LABELS_SLICE;
    go.g_tls_offset = static_cast<int32_t>(tls);
    go.g_m = static_cast<uint32_t>(gm);
    go.m_curg = static_cast<uint32_t>(curg);
    go.g_goid = static_cast<uint32_t>(goid);
    // Goroutine waits: the allgs address and every g field the walk reads, all below the part
    // of a g it reads (FW_GO_G_BYTES).
    if (!o.Get("allgs").IsUndefined()) {
      double allgs = 0;
      const char *keys[] = {"gStackLo", "gStackHi", "gSchedSp", "gSchedPc", "gSchedBp", "gStatus", "gWaitreason"};
      __u32 *dst[] = {&go.g_stack_lo, &go.g_stack_hi, &go.g_sched_sp, &go.g_sched_pc,
                      &go.g_sched_bp, &go.g_status, &go.g_waitreason};
      double max_end = 0;
      if (!field("allgs", 1, 9007199254740991.0, &allgs)) {
        ThrowUsage(env, kUsage);
        return env.Undefined();
      }
      for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); ++i) {
        double v = 0;
        if (!field(keys[i], 0, FW_GO_G_BYTES - 8, &v)) {
          ThrowUsage(env, kUsage);
          return env.Undefined();
        }
        *dst[i] = static_cast<__u32>(v);
        if (v + 8 > max_end) max_end = v + 8;
      }
      if (goid + 8 > max_end) max_end = goid + 8;
      if (labels + 8 > max_end) max_end = labels + 8;
      if (max_end > FW_GO_G_BYTES) {
        ThrowUsage(env, kUsage);
        return env.Undefined();
      }
      go.allgs = static_cast<__u64>(allgs);
      go.g_read_bytes = static_cast<__u32>(max_end);
    }
    if (!CheckUsable(env, "setGoProcess")) return env.Undefined();
    const char *what = "";
    int err = sampler_->SetGoProcess(static_cast<uint32_t>(d), go, &what);
    if (err) ThrowErrno(env, err, what);
    return env.Undefined();
  }

  // Tests: one walk of every Go process's goroutines now (see OnCpuSampler::WalkGoroutines).
  Napi::Value WalkGoroutines(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env, "walkGoroutines")) return env.Undefined();
    const char *what = "";
    int err = sampler_->WalkGoroutines(&what);
    if (err) ThrowErrno(env, err, what);
    return env.Undefined();
  }

  Napi::Value RemoveGoProcess(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    double d = info.Length() == 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 1 && d <= kMaxPid) || d != static_cast<double>(static_cast<uint32_t>(d))) {
      ThrowUsage(env, "usage: sampler.removeGoProcess(pid)");
      return env.Undefined();
    }
    if (sampler_) sampler_->RemoveGoProcess(static_cast<uint32_t>(d));
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() != 0) {
      ThrowUsage(env, "usage: sampler.stats()");
      return env.Undefined();
    }
    if (sampler_) {
      const char *what = "";
      int err = sampler_->ReadMetrics(&metrics_, &what);
      if (err) {
        ThrowErrno(env, err, what);
        return env.Undefined();
      }
    }
    std::vector<uint64_t> m = metrics_;
    m.resize(FW_METRIC_COUNT, 0);
    Napi::Object o = Napi::Object::New(env);
    auto set = [&](const char *key, uint64_t v) {
      o.Set(key, Napi::Number::New(env, static_cast<double>(v)));
    };
    set("samples", m[FW_METRIC_SAMPLES]);
    set("ringBufferFull", m[FW_METRIC_RINGBUF_FULL]);
    set("kernelStackErrors", m[FW_METRIC_KERNEL_STACK_FAILED]);
    set("userStackErrors", m[FW_METRIC_USER_STACK_FAILED]);
    set("snapshotErrors", m[FW_METRIC_SNAPSHOT_FAILED]);
    set("pidMapFull", m[FW_METRIC_PID_MAP_FULL]);
    set("eventRingBufferFull", m[FW_METRIC_EVENT_RINGBUF_FULL]);
    set("sampledMapFull", m[FW_METRIC_SAMPLED_MAP_FULL]);
    set("scratchMissing", m[FW_METRIC_SCRATCH_MISSING]);
    set("execRecords", m[FW_METRIC_EXEC_EMITTED]);
    set("exitRecords", m[FW_METRIC_EXIT_EMITTED]);
    set("offCpuRecords", m[FW_METRIC_OFF_CPU_EMITTED]);
    set("offCpuNs", m[FW_METRIC_OFF_CPU_EMITTED_NS]);
    set("offCpuShort", m[FW_METRIC_OFF_CPU_SHORT]);
    set("offCpuShortNs", m[FW_METRIC_OFF_CPU_SHORT_NS]);
    set("offCpuRingBufferFull", m[FW_METRIC_OFF_CPU_RINGBUF_FULL]);
    set("offCpuDroppedNs", m[FW_METRIC_OFF_CPU_DROPPED_NS]);
    set("offCpuNoStorage", m[FW_METRIC_OFF_CPU_NO_STORAGE]);
    set("goIdleBlocks", m[FW_METRIC_OFF_CPU_GO_IDLE]);
    set("goIdleNs", m[FW_METRIC_OFF_CPU_GO_IDLE_NS]);
    set("goWaitWalks", m[FW_METRIC_GO_WAIT_WALKS]);
    set("goWaitVisited", m[FW_METRIC_GO_WAIT_VISITED]);
    set("goWaitRecords", m[FW_METRIC_GO_WAIT_EMITTED]);
    set("goWaitNs", m[FW_METRIC_GO_WAIT_EMITTED_NS]);
    set("goWaitRingBufferFull", m[FW_METRIC_GO_WAIT_RINGBUF_FULL]);
    set("goWaitDroppedNs", m[FW_METRIC_GO_WAIT_DROPPED_NS]);
    set("goWaitUnreadable", m[FW_METRIC_GO_WAIT_UNREADABLE]);
    set("goWaitMoved", m[FW_METRIC_GO_WAIT_MOVED]);
    set("recordsRead", reader_ ? reader_->records() : records_read_);
    return o;
  }

  Napi::Value ProgramStats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() != 0) {
      ThrowUsage(env, "usage: sampler.programStats()");
      return env.Undefined();
    }
    if (sampler_) {
      const char *what = "";
      int err = sampler_->ReadProgramStats(&prog_stats_, &what);
      if (!err) err = sampler_->ReadOffCpuProgramStats(&off_cpu_prog_stats_, &what);
      if (!err) err = sampler_->ReadGoWaitProgramStats(&go_wait_prog_stats_, &what);
      if (err) {
        ThrowErrno(env, err, what);
        return env.Undefined();
      }
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("runTimeNs", Napi::BigInt::New(env, prog_stats_.run_time_ns));
    o.Set("runCount", Napi::BigInt::New(env, prog_stats_.run_count));
    o.Set("verifiedInsns", Napi::Number::New(env, prog_stats_.verified_insns));
    Napi::Object off = Napi::Object::New(env);
    off.Set("runTimeNs", Napi::BigInt::New(env, off_cpu_prog_stats_.run_time_ns));
    off.Set("runCount", Napi::BigInt::New(env, off_cpu_prog_stats_.run_count));
    off.Set("verifiedInsns", Napi::Number::New(env, off_cpu_prog_stats_.verified_insns));
    o.Set("offCpu", off);
    Napi::Object gw = Napi::Object::New(env);
    gw.Set("runTimeNs", Napi::BigInt::New(env, go_wait_prog_stats_.run_time_ns));
    gw.Set("runCount", Napi::BigInt::New(env, go_wait_prog_stats_.run_count));
    gw.Set("verifiedInsns", Napi::Number::New(env, go_wait_prog_stats_.verified_insns));
    o.Set("goWaits", gw);
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env, "info")) return env.Undefined();
    Napi::Object o = Napi::Object::New(env);
    o.Set("cpus", Napi::Number::New(env, sampler_->attached_cpus()));
    o.Set("tracepoints", Napi::String::New(env, sampler_->tracepoint_flavour()));
    o.Set("userWalk", Napi::String::New(env, sampler_->user_walk()));
    const char *off_cpu = sampler_->off_cpu_flavour();
    o.Set("offCpu", off_cpu ? Napi::Value(Napi::String::New(env, off_cpu)) : env.Null());
    o.Set("goWaits", Napi::Boolean::New(env, sampler_->go_waits()));
    UnwindCapacity cap = sampler_->unwind_capacity();
    Napi::Object unwind = Napi::Object::New(env);
    unwind.Set("rows", Napi::Number::New(env, cap.rows));
    unwind.Set("pages", Napi::Number::New(env, cap.pages));
    unwind.Set("files", Napi::Number::New(env, cap.files));
    unwind.Set("mappings", Napi::Number::New(env, cap.mappings));
    o.Set("unwind", unwind);
    return o;
  }

  // Detaches, joins the reader, drains the ring buffer and delivers every remaining batch
  // before returning. The final stats stay readable.
  Napi::Value Stop(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() != 0) {
      ThrowUsage(env, "usage: sampler.stop()");
      return env.Undefined();
    }
    if (state_ == State::kStopped) return env.Undefined();
    std::shared_ptr<BatchQueue> queue = queue_;
    int drain_err = Shutdown();
    if (!on_batch_.IsEmpty() && queue) {
      Napi::Function fn = on_batch_.Value();
      on_batch_.Reset();
      if (!Deliver(env, fn, *queue)) return env.Undefined();
    }
    if (drain_err < 0) ThrowErrno(env, drain_err, "draining the ring buffer");
    else if (flush_err_ < 0) ThrowErrno(env, flush_err_, flush_what_);
    return env.Undefined();
  }

  // Everything but delivery: safe without a JS scope. Returns the drain's error, if any.
  int Shutdown() {
    if (state_ == State::kStopped) return 0;
    int drain_err = 0;
    if (sampler_) {
      sampler_->DetachPerfEvents();
      // Threads still blocked: their time so far goes into the ring buffer before the drain.
      const char *what = "";
      flush_err_ = sampler_->FlushOffCpu(&what);
      if (flush_err_) flush_what_ = what;
    }
    if (reader_) {
      reader_->Stop();
      int n = reader_->Drain();
      if (n < 0) drain_err = n;
      records_read_ = reader_->records();
    }
    if (sampler_) {
      const char *what = "";
      sampler_->ReadMetrics(&metrics_, &what);
      sampler_->ReadProgramStats(&prog_stats_, &what);
      sampler_->ReadOffCpuProgramStats(&off_cpu_prog_stats_, &what);
      sampler_->ReadGoWaitProgramStats(&go_wait_prog_stats_, &what);
    }
    reader_.reset();
    sampler_.reset();
    if (has_cleanup_hook_) {
      cleanup_hook_.Remove(Env());
      has_cleanup_hook_ = false;
    }
    if (tsfn_) {
      tsfn_.Release();
      tsfn_ = Napi::ThreadSafeFunction();
    }
    state_ = State::kStopped;
    return drain_err;
  }

  static void OnEnvCleanup(SamplerObject *self) {
    self->has_cleanup_hook_ = false;
    self->on_batch_.Reset();
    if (self->sampler_) self->sampler_->DetachPerfEvents();
    if (self->reader_) self->reader_->Stop();
  }

  std::unique_ptr<OnCpuSampler> sampler_;
  std::unique_ptr<RingReader> reader_;
  std::shared_ptr<BatchQueue> queue_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::FunctionReference on_batch_;
  Napi::Env::CleanupHook<void (*)(SamplerObject *), SamplerObject> cleanup_hook_;
  bool has_cleanup_hook_ = false;
  uint32_t poll_interval_ms_ = kDefaultPollIntervalMs;
  State state_ = State::kOpen;
  std::vector<uint64_t> metrics_;
  OnCpuProgramStats prog_stats_;
  OnCpuProgramStats off_cpu_prog_stats_;
  OnCpuProgramStats go_wait_prog_stats_;
  int flush_err_ = 0;
  const char *flush_what_ = "";
  uint64_t records_read_ = 0;
};

Napi::Value OpenOnCpuSampler(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject()) {
    ThrowUsage(env, kOpenUsage);
    return env.Undefined();
  }
  AddonData *data = env.GetInstanceData<AddonData>();
  return data->sampler_ctor.New({info[0]});
}

Napi::Value EnableBpfStatsFn(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() != 0) {
    ThrowUsage(env, "usage: enableBpfStats()");
    return env.Undefined();
  }
  int fd = -1;
  const char *what = "";
  int err = EnableBpfStats(&fd, &what);
  if (err) {
    ThrowErrno(env, err, what);
    return env.Undefined();
  }
  // Statistics stay on while the fd is open; close() (or process exit) turns them off.
  auto state = std::make_shared<int>(fd);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("close", Napi::Function::New(env, [state](const Napi::CallbackInfo &ci) {
               if (*state >= 0) {
                 close(*state);
                 *state = -1;
               }
               return ci.Env().Undefined();
             }));
  return handle;
}

Napi::Value TakeLibbpfLogFn(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<LogLine> lines = TakeLibbpfLog();
  Napi::Array out = Napi::Array::New(env, lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("level", Napi::String::New(env, lines[i].level));
    o.Set("message", Napi::String::New(env, lines[i].message));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

}  // namespace

void RegisterSampler(Napi::Env env, Napi::Object exports) {
  AddonData *data = new AddonData();
  data->sampler_ctor = Napi::Persistent(SamplerObject::Define(env));
  env.SetInstanceData<AddonData>(data);  // deleted with the environment
  exports.Set("openOnCpuSampler", Napi::Function::New(env, OpenOnCpuSampler, "openOnCpuSampler"));
  exports.Set("enableBpfStats", Napi::Function::New(env, EnableBpfStatsFn, "enableBpfStats"));
  exports.Set("takeLibbpfLog", Napi::Function::New(env, TakeLibbpfLogFn, "takeLibbpfLog"));
}

}  // namespace flamewire
