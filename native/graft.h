#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value Graft(const Napi::CallbackInfo& info);
Napi::Value Ungraft(const Napi::CallbackInfo& info);
Napi::Value FsOpen(const Napi::CallbackInfo& info);
}  // namespace crashcart
