// Turning negative errnos into JS errors, only at the N-API boundary.
#ifndef FLAMEWIRE_ERRORS_H
#define FLAMEWIRE_ERRORS_H

#include <napi.h>

namespace flamewire {

// Throws Error("<what>: <strerror> (<ENAME>)") with .code = "ENAME", .errno = err (negative,
// as in Node's own errors) and .operation = what.
void ThrowErrno(Napi::Env env, int err, const char *what);

// Throws TypeError(message): a wrong call, e.g. bad arguments.
void ThrowUsage(Napi::Env env, const char *message);

}  // namespace flamewire

#endif
