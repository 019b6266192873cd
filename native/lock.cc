// Advisory locks on session state: the kernel drops them when the holder dies, so a crash
// can never leave the state locked. Open file description locks (F_OFD_*) on byte ranges of
// one lock file: each holder opens the file itself, so holders in one process (a fan-out's
// targets) exclude each other as holders in different processes do. Never blocking: the
// caller retries, so the event loop runs on while another holder waits for its graft.
#include <fcntl.h>

#include "errors.h"
#include "lock.h"

namespace crashcart {

// tryLock({ fd, start, length }) -> boolean: an exclusive lock granted, or held by someone else.
// length 0 means to the end of the file (the whole file with start 0). Closing the fd
// unlocks: no unlock call is needed.
Napi::Value TryLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(req.Get("start").As<Napi::Number>().Int64Value());
  fl.l_len = static_cast<off_t>(req.Get("length").As<Napi::Number>().Int64Value());
  int fd = req.Get("fd").As<Napi::Number>().Int32Value();
  while (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
    if (errno == EAGAIN || errno == EACCES) return Napi::Boolean::New(env, false);  // another description holds it
    if (errno != EINTR) throw ErrnoError(env, errno, "fcntl F_OFD_SETLK");
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace crashcart
