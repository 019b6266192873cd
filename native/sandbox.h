#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value Sandbox(const Napi::CallbackInfo& info);
Napi::Value SandboxView(const Napi::CallbackInfo& info);
}  // namespace crashcart
