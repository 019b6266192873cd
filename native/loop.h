#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value LoopAttach(const Napi::CallbackInfo& info);
Napi::Value LoopStatus(const Napi::CallbackInfo& info);
Napi::Value LoopDetach(const Napi::CallbackInfo& info);
Napi::Value LoopFree(const Napi::CallbackInfo& info);
}  // namespace crashcart
