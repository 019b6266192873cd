#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value ReadWhole(const Napi::CallbackInfo& info);
Napi::Value ExchangePaths(const Napi::CallbackInfo& info);
}  // namespace crashcart
