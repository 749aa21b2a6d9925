// Registration only: each concern lives in its own file (see sampler_object.cc).
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "libbpf_log.h"
#include "sampler_object.h"

namespace {

// glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
// big buffers come from the heap and their pages stay with the process when freed. A profiler
// parses large tables once (symbol tables, kallsyms) and drops them: with the threshold pinned
// at 128 KiB those buffers are mmap()ed and go back to the kernel on free (~15 MB of peak RSS
// in a whole-machine record). Called by the command, not on load: a library should not retune
// the allocator of whoever loads it. Returns false where there is nothing to tune (not glibc).
Napi::Value PinMmapThreshold(const Napi::CallbackInfo &info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  flamewire::InstallLibbpfLog();
  flamewire::RegisterSampler(env, exports);
  exports.Set("pinMmapThreshold", Napi::Function::New(env, PinMmapThreshold, "pinMmapThreshold"));
  return exports;
}

}  // namespace

NODE_API_MODULE(flamewire, Init)
