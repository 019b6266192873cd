// Opening a file of a container from the host, resolved as if the container's root were /:
// /proc/PID/root/etc/passwd would follow an absolute symlink planted there to the *host's*
// file. openat2 with RESOLVE_IN_ROOT (Linux 5.6) keeps every symlink and ".." inside;
// before it, the path is walked one component at a time and any symlink is refused.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "errors.h"
#include "inroot.h"

namespace crashcart {
namespace {

int WalkNoSymlinks(int rootFd, const std::string& path, int flags) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(at, slash - at);
    if (part == "..") {
      errno = EXDEV;  // as openat2 with RESOLVE_BENEATH would say
      return -1;
    }
    if (!part.empty() && part != ".") parts.push_back(part);
    at = slash + 1;
  }
  int fd = openat(rootFd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; fd >= 0 && i < parts.size(); i++) {
    bool last = i + 1 == parts.size();
    int next = openat(fd, parts[i].c_str(), (last ? flags : O_PATH | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    close(fd);
    errno = err;
    fd = next;
  }
  if (fd >= 0 && parts.empty() && flags != O_PATH) {
    int again = openat(fd, ".", flags | O_CLOEXEC);
    close(fd);
    fd = again;
  }
  return fd;
}

}  // namespace

// openInRoot({ rootFd, path, kind: 'read' | 'path' }) -> fd. A read open never blocks (a
// FIFO planted in the container must not hang crashcart) and never becomes a terminal.
Napi::Value OpenInRoot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  int rootFd = req.Get("rootFd").As<Napi::Number>().Int32Value();
  std::string path = req.Get("path").As<Napi::String>().Utf8Value();
  std::string kind = req.Get("kind").As<Napi::String>().Utf8Value();
  if (kind != "read" && kind != "path") throw Napi::TypeError::New(env, "Expected kind 'read' or 'path' but received '" + kind + "'");
  int flags = kind == "read" ? O_RDONLY | O_NONBLOCK | O_NOCTTY : O_PATH;
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string rel = path;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) rel = ".";
  int fd = static_cast<int>(syscall(SYS_openat2, rootFd, rel.c_str(), &how, sizeof how));
  if (fd < 0 && errno == ENOSYS) fd = WalkNoSymlinks(rootFd, rel, flags);
  if (fd < 0) throw ErrnoError(env, errno, "openat2", path);
  return Napi::Number::New(env, fd);
}

}  // namespace crashcart
