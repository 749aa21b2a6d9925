// The JS-facing on-CPU sampler object and the other exported functions' implementations.
#ifndef FLAMEWIRE_SAMPLER_OBJECT_H
#define FLAMEWIRE_SAMPLER_OBJECT_H

#include <napi.h>

namespace flamewire {

// Defines the sampler class for this environment (kept in the environment's instance data)
// and adds openOnCpuSampler, enableBpfStats and takeLibbpfLog to exports.
void RegisterSampler(Napi::Env env, Napi::Object exports);

}  // namespace flamewire

#endif
