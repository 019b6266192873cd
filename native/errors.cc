#include "errors.h"

#include <string.h>

namespace crashcart {

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                       const std::string& path, const std::string& dest) {
  std::string code = ErrnoName(err);
  std::string message = syscall;
  if (!path.empty()) message += " '" + path + "'";
  if (!dest.empty()) message += " -> '" + dest + "'";
  message += ": " + code + " (" + strerror(err) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("code", code);
  obj.Set("errno", err);
  obj.Set("syscall", syscall);
  if (!path.empty()) obj.Set("path", path);
  if (!dest.empty()) obj.Set("dest", dest);
  return error;
}

}  // namespace crashcart
