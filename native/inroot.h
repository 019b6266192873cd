#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value OpenInRoot(const Napi::CallbackInfo& info);
}  // namespace crashcart
