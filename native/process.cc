// exitNow({ code }): _exit(2) with the code, for bin/crashcart once an attach is over and
// nothing is in flight. process.exit() first stops V8's platform (joining its worker
// threads) and runs the C++ exit handlers, about 3 ms of an attach here; with every write
// done (bin/crashcart checks that no handle or request is active) there is nothing left
// for them to do.
#include <unistd.h>

#include "process.h"

namespace crashcart {

Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  Napi::Object req = info[0].As<Napi::Object>();
  _exit(req.Get("code").As<Napi::Number>().Int32Value() & 0xff);
}

}  // namespace crashcart
