#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value Spawn(const Napi::CallbackInfo& info);
Napi::Value Pipe(const Napi::CallbackInfo& info);
Napi::Value IsATty(const Napi::CallbackInfo& info);
}  // namespace crashcart
