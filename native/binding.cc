// Registration only: each concern lives in its own file (see sampler_object.cc).
#include <napi.h>

#include "libbpf_log.h"
#include "sampler_object.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  flamewire::InstallLibbpfLog();
  flamewire::RegisterSampler(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(flamewire, Init)
