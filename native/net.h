#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value NetHelper(const Napi::CallbackInfo& info);
Napi::Value NetConnect(const Napi::CallbackInfo& info);
Napi::Value NetStop(const Napi::CallbackInfo& info);
}  // namespace crashcart
