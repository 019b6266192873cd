// A whole file in memory that V8 uses where it lies, for bin/crashcart's bundle and its
// code cache: readFileSync would read the file into one buffer and toString() copy it again
// into V8's heap, and every page that a copy touches is a page fault, which costs more than
// the copy itself in a virtual machine. Here the pages are populated in one call
// (MAP_POPULATE) and read into once; the text is a V8 external string over them. Read, not
// mapped from the file: a mapping of a file that is then truncated (a rebuild that writes
// in place) would raise SIGBUS when V8 later compiles a function from it.
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "file.h"

// Node.js has it since 20.4 (experimental there, stable from 22.x); declared here so that
// the rest of the addon is not built with NAPI_EXPERIMENTAL.
#ifndef NODE_API_EXPERIMENTAL_HAS_EXTERNAL_STRINGS
extern "C" napi_status node_api_create_external_string_latin1(napi_env env, char* str, size_t length,
                                                              napi_finalize finalize_callback, void* finalize_hint,
                                                              napi_value* result, bool* copied);
#endif

namespace crashcart {
namespace {

struct Pages {
  void* base;
  size_t length;
};

void Unmap(napi_env, void*, void* hint) {
  auto* pages = static_cast<Pages*>(hint);
  munmap(pages->base, pages->length);
  delete pages;
}

}  // namespace

// readWhole({ fd, as: 'latin1' | 'bytes' }) -> string | ArrayBuffer: the file's bytes from
// offset 0, as a one-byte string (each byte one character, as Buffer's 'latin1') or as an
// ArrayBuffer. The caller keeps and closes the fd.
Napi::Value ReadWhole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  int fd = req.Get("fd").As<Napi::Number>().Int32Value();
  bool text = req.Get("as").As<Napi::String>().Utf8Value() == "latin1";
  struct stat st {};
  if (fstat(fd, &st) < 0) throw ErrnoError(env, errno, "fstat");
  if (!S_ISREG(st.st_mode)) throw ErrnoError(env, EINVAL, "read");
  size_t size = static_cast<size_t>(st.st_size);
  size_t length = size > 0 ? size : 1;  // mmap refuses 0 bytes
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (base == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  size_t got = 0;
  while (got < size) {
    ssize_t n = pread(fd, static_cast<char*>(base) + got, size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;  // shorter than fstat said: changed while read
      munmap(base, length);
      throw ErrnoError(env, err, "read");
    }
    got += static_cast<size_t>(n);
  }
  auto* pages = new Pages{base, length};
  napi_value result;
  napi_status status;
  if (text) {
    bool copied = false;
    status = node_api_create_external_string_latin1(env, static_cast<char*>(base), size, Unmap, pages, &result, &copied);
  } else {
    status = napi_create_external_arraybuffer(env, base, size, Unmap, pages, &result);
  }
  if (status != napi_ok) {
    Unmap(env, nullptr, pages);
    NAPI_THROW(Napi::Error::New(env, "readWhole: V8 did not take the pages"), Napi::Value());
  }
  return Napi::Value(env, result);
}

// exchangePaths({ from, to }): renameat2(RENAME_EXCHANGE), both names swapped at once.
// Session records are replaced this way, the old one kept as the next write's spare: a
// rename over the old record would free its inode, and freeing blocks on a filesystem
// mounted with discard (ext4 without a journal) waits for the device, milliseconds.
Napi::Value ExchangePaths(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string from = req.Get("from").As<Napi::String>().Utf8Value();
  std::string to = req.Get("to").As<Napi::String>().Utf8Value();
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE) < 0) throw ErrnoError(env, errno, "renameat2", from, to);
  return env.Undefined();
}

}  // namespace crashcart
