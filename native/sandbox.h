#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value Sandbox(const Napi::CallbackInfo& info);
}  // namespace crashcart
