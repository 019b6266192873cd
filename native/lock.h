#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value TryLock(const Napi::CallbackInfo& info);
}  // namespace crashcart
