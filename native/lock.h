#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value Lock(const Napi::CallbackInfo& info);
Napi::Value Unlock(const Napi::CallbackInfo& info);
}  // namespace crashcart
