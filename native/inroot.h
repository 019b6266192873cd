#pragma once
#include <napi.h>

namespace crashcart {
Napi::Value OpenInRoot(const Napi::CallbackInfo& info);
Napi::Value OpenAt(const Napi::CallbackInfo& info);
Napi::Value Reopen(const Napi::CallbackInfo& info);
Napi::Value ReadDir(const Napi::CallbackInfo& info);
Napi::Value ReadLink(const Napi::CallbackInfo& info);
Napi::Value MkdirAt(const Napi::CallbackInfo& info);
Napi::Value SymlinkAt(const Napi::CallbackInfo& info);
Napi::Value MkfifoAt(const Napi::CallbackInfo& info);
Napi::Value RenameAt(const Napi::CallbackInfo& info);
Napi::Value UnlinkAt(const Napi::CallbackInfo& info);
Napi::Value LinkAt(const Napi::CallbackInfo& info);
Napi::Value Chown(const Napi::CallbackInfo& info);
Napi::Value Utimes(const Napi::CallbackInfo& info);
}  // namespace crashcart
