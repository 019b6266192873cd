#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value Spawn(const Napi::CallbackInfo& info);
}  // namespace crashcart
