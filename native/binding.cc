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

// Gives the free pages of every malloc arena back to the kernel. The ring reader and the walker
// threads allocate in arenas of their own, and glibc trims an arena only from its top, so a
// long-running agent keeps the high-water mark of every burst it ever had. The agent calls this
// after each window; it costs a walk over the free lists (well under a millisecond here).
// Returns false where there is nothing to trim (not glibc).
Napi::Value TrimMemory(const Napi::CallbackInfo &info) {
#if defined(__GLIBC__)
  malloc_trim(0);
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  flamewire::InstallLibbpfLog();
  flamewire::RegisterSampler(env, exports);
  exports.Set("pinMmapThreshold", Napi::Function::New(env, PinMmapThreshold, "pinMmapThreshold"));
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory, "trimMemory"));
  return exports;
}

}  // namespace

NODE_API_MODULE(flamewire, Init)
