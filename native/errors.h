// Errors that cross into JavaScript shaped like Node's own system errors:
// { code: 'EBUSY', errno: 16, syscall: 'mount', path: '/dev/crashcart' }.
#pragma once
#include <napi.h>
#include <string>

namespace crashcart {

// Builds the error; the message names all of its parts:
//   mount '/dev/loop3' -> '/dev/crashcart': EBUSY (Device or resource busy)
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                       const std::string& path = "", const std::string& dest = "");

// The errno's symbolic name ("EBUSY"), or "E<number>" when glibc has none.
std::string ErrnoName(int err);

}  // namespace crashcart
