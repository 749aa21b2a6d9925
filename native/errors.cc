#include "errors.h"

#include <string.h>

#include <string>

namespace flamewire {

void ThrowErrno(Napi::Env env, int err, const char *what) {
  int positive = err < 0 ? -err : err;
  const char *name = strerrorname_np(positive);
  std::string code = name ? name : "E" + std::to_string(positive);
  std::string message = std::string(what) + ": " + strerror(positive) + " (" + code + ")";
  if (positive == EPERM || positive == EACCES) {
    message += "; on-CPU sampling needs root or CAP_BPF + CAP_PERFMON";
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -positive));
  error.Set("operation", Napi::String::New(env, what));
  error.ThrowAsJavaScriptException();
}

void ThrowUsage(Napi::Env env, const char *message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

}  // namespace flamewire
