// Advisory locks on session state: the kernel drops them when the holder dies, so a crash
// can never leave the state locked.
#include <sys/file.h>

#include "errors.h"
#include "lock.h"

namespace crashcart {

// lock(fd, exclusive): blocks until granted.
Napi::Value Lock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].ToBoolean().Value() ? LOCK_EX : LOCK_SH;
  while (flock(fd, op) < 0) {
    if (errno != EINTR) throw ErrnoError(env, errno, "flock");
  }
  return env.Undefined();
}

Napi::Value Unlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (flock(info[0].As<Napi::Number>().Int32Value(), LOCK_UN) < 0) throw ErrnoError(env, errno, "flock");
  return env.Undefined();
}

}  // namespace crashcart
