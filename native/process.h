#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value ExitNow(const Napi::CallbackInfo& info);
}  // namespace crashcart
