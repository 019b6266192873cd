// Opening a file of a container from the host, resolved as if the container's root were /:
// /proc/PID/root/etc/passwd would follow an absolute symlink planted there to the *host's*
// file. openat2 with RESOLVE_IN_ROOT (Linux 5.6) keeps every symlink and ".." inside;
// before it, the path is walked one component at a time and any symlink is refused.
//
// `crashcart cp` works on the fds so opened from then on, never on a path string: openAt
// resolves below a directory fd with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (writes with
// O_CREAT|O_EXCL), and the *At calls take one name, never a path, in a directory fd.
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "errors.h"
#include "inroot.h"

namespace crashcart {
namespace {

int WalkNoSymlinks(int rootFd, const std::string& path, int flags, mode_t mode = 0) {
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
    int next = openat(fd, parts[i].c_str(), (last ? flags : O_PATH | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC, mode);
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

int Int(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }
std::string Str(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::String>().Utf8Value(); }

// The open(2) flags of a kind; a read never blocks (a FIFO planted in the container must not
// hang crashcart) and never becomes a terminal.
int KindFlags(Napi::Env env, const std::string& kind) {
  if (kind == "read") return O_RDONLY | O_NONBLOCK | O_NOCTTY;
  if (kind == "path") return O_PATH;
  if (kind == "dir") return O_RDONLY | O_DIRECTORY;
  if (kind == "create") return O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
  throw Napi::TypeError::New(env, "Expected kind read, path, dir or create but received '" + kind + "'");
}

// One name in a directory: the *At calls below never take a path.
std::string Name(Napi::Env env, const Napi::Object& o, const char* key) {
  std::string name = Str(o, key);
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw Napi::TypeError::New(env, std::string("Expected a single file name for ") + key + " but received '" + name + "'");
  }
  return name;
}

int Openat2(int dirFd, const std::string& path, int flags, mode_t mode, uint64_t resolve) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = resolve;
  std::string rel = path;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) rel = ".";
  int fd = static_cast<int>(syscall(SYS_openat2, dirFd, rel.c_str(), &how, sizeof how));
  if (fd < 0 && errno == ENOSYS) fd = WalkNoSymlinks(dirFd, rel, flags, mode);
  return fd;
}

}  // namespace

// openInRoot({ rootFd, path, kind: 'read' | 'path' | 'dir', nofollow? }) -> fd, resolved as
// if rootFd were /. nofollow: a symlink as the last component is not followed (with 'path'
// its own fd comes back).
Napi::Value OpenInRoot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  int rootFd = Int(req, "rootFd");
  std::string path = Str(req, "path");
  std::string kind = Str(req, "kind");
  if (kind == "create") throw Napi::TypeError::New(env, "Expected kind read, path or dir but received 'create'");
  int flags = KindFlags(env, kind);
  if (req.Get("nofollow").ToBoolean().Value()) flags |= O_NOFOLLOW;
  int fd = Openat2(rootFd, path, flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  if (fd < 0) throw ErrnoError(env, errno, "openat2", path);
  return Napi::Number::New(env, fd);
}

// openAt({ dirFd, path, kind: 'read' | 'path' | 'dir' | 'create', mode? }) -> fd of `path`
// below dirFd: no symlink anywhere on the way (a trailing one comes back itself with
// 'path'), no "..", no magic link; 'create' makes a new file (O_EXCL) with `mode`.
Napi::Value OpenAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string path = Str(req, "path");
  int flags = KindFlags(env, Str(req, "kind"));
  if (flags == O_PATH) flags |= O_NOFOLLOW;
  mode_t mode = req.Has("mode") ? static_cast<mode_t>(Int(req, "mode")) : 0600;
  int fd = Openat2(Int(req, "dirFd"), path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (fd < 0) throw ErrnoError(env, errno, "openat2", path);
  return Napi::Number::New(env, fd);
}

// reopen({ fd, kind: 'read' | 'dir' }) -> a new fd on the very inode of `fd` (an O_PATH fd
// found by openAt), through /proc/self/fd: no name is looked up again.
Napi::Value Reopen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string kind = Str(req, "kind");
  if (kind != "read" && kind != "dir") throw Napi::TypeError::New(env, "Expected kind read or dir but received '" + kind + "'");
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", Int(req, "fd"));
  int fd = open(link, KindFlags(env, kind) | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "open", link);
  return Napi::Number::New(env, fd);
}

// readDir({ fd }) -> [{ name, type }] of an open directory ('.' and '..' left out); type is
// d_type as a letter: f d l p s c b, or '?' where the filesystem does not say.
Napi::Value ReadDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0].As<Napi::Object>(), "fd");
  if (lseek(fd, 0, SEEK_SET) < 0) throw ErrnoError(env, errno, "lseek");
  Napi::Array out = Napi::Array::New(env);
  uint32_t count = 0;
  alignas(8) char buf[32768];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) throw ErrnoError(env, errno, "getdents64");
    if (n == 0) break;
    for (long at = 0; at < n;) {
      struct Dirent {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[1];
      };
      auto* d = reinterpret_cast<Dirent*>(buf + at);
      at += d->reclen;
      if (strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0) continue;
      char t = '?';
      switch (d->type) {
        case DT_REG: t = 'f'; break;
        case DT_DIR: t = 'd'; break;
        case DT_LNK: t = 'l'; break;
        case DT_FIFO: t = 'p'; break;
        case DT_SOCK: t = 's'; break;
        case DT_CHR: t = 'c'; break;
        case DT_BLK: t = 'b'; break;
        default: break;
      }
      Napi::Object e = Napi::Object::New(env);
      e.Set("name", Napi::String::New(env, d->name));
      e.Set("type", Napi::String::New(env, std::string(1, t)));
      out.Set(count++, e);
    }
  }
  return out;
}

// readLink({ fd }) -> the target of the symlink that `fd` (O_PATH, not followed) is.
Napi::Value ReadLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0].As<Napi::Object>(), "fd");
  std::vector<char> buf(4097);
  ssize_t n = readlinkat(fd, "", buf.data(), buf.size());
  if (n < 0) throw ErrnoError(env, errno, "readlinkat");
  if (static_cast<size_t>(n) >= buf.size()) throw ErrnoError(env, ENAMETOOLONG, "readlinkat");
  return Napi::String::New(env, std::string(buf.data(), static_cast<size_t>(n)));
}

// mkdirAt({ dirFd, name, mode })
Napi::Value MkdirAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string name = Name(env, req, "name");
  if (mkdirat(Int(req, "dirFd"), name.c_str(), static_cast<mode_t>(Int(req, "mode"))) < 0) throw ErrnoError(env, errno, "mkdirat", name);
  return env.Undefined();
}

// symlinkAt({ dirFd, name, target })
Napi::Value SymlinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string name = Name(env, req, "name");
  std::string target = Str(req, "target");
  if (symlinkat(target.c_str(), Int(req, "dirFd"), name.c_str()) < 0) throw ErrnoError(env, errno, "symlinkat", name, target);
  return env.Undefined();
}

// mkfifoAt({ dirFd, name, mode })
Napi::Value MkfifoAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string name = Name(env, req, "name");
  if (mknodat(Int(req, "dirFd"), name.c_str(), S_IFIFO | (static_cast<mode_t>(Int(req, "mode")) & 07777), 0) < 0) {
    throw ErrnoError(env, errno, "mknodat", name);
  }
  return env.Undefined();
}

// renameAt({ dirFd, from, to, noReplace }): within one directory; a symlink at `to` is
// replaced, never followed.
Napi::Value RenameAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string from = Name(env, req, "from");
  std::string to = Name(env, req, "to");
  int dirFd = Int(req, "dirFd");
  unsigned flags = req.Get("noReplace").ToBoolean().Value() ? RENAME_NOREPLACE : 0;
  if (syscall(SYS_renameat2, dirFd, from.c_str(), dirFd, to.c_str(), flags) < 0) throw ErrnoError(env, errno, "renameat2", from, to);
  return env.Undefined();
}

// unlinkAt({ dirFd, name, dir })
Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string name = Name(env, req, "name");
  if (unlinkat(Int(req, "dirFd"), name.c_str(), req.Get("dir").ToBoolean().Value() ? AT_REMOVEDIR : 0) < 0) {
    throw ErrnoError(env, errno, "unlinkat", name);
  }
  return env.Undefined();
}

// linkAt({ fd, dirFd, name }): a hard link to the inode of `fd` (AT_EMPTY_PATH: no name of it
// is looked up).
Napi::Value LinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  std::string name = Name(env, req, "name");
  if (linkat(Int(req, "fd"), "", Int(req, "dirFd"), name.c_str(), AT_EMPTY_PATH) < 0) throw ErrnoError(env, errno, "linkat", name);
  return env.Undefined();
}

// chown({ fd, uid, gid }): the inode of `fd` itself, an O_PATH fd of a symlink included.
Napi::Value Chown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  uid_t uid = req.Get("uid").As<Napi::Number>().Uint32Value();
  gid_t gid = req.Get("gid").As<Napi::Number>().Uint32Value();
  if (fchownat(Int(req, "fd"), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) throw ErrnoError(env, errno, "fchownat");
  return env.Undefined();
}

// utimes({ dirFd, name?, atime: [sec, nsec], mtime: [sec, nsec] }): of `name` in dirFd, not
// followed (symlinks have no fd to set them on), or without a name of dirFd itself.
Napi::Value Utimes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  struct timespec ts[2];
  const char* keys[2] = {"atime", "mtime"};
  for (int i = 0; i < 2; i++) {
    Napi::Array a = req.Get(keys[i]).As<Napi::Array>();
    ts[i].tv_sec = a.Get(0u).As<Napi::Number>().Int64Value();
    ts[i].tv_nsec = a.Get(1u).As<Napi::Number>().Int64Value();
  }
  int rc;
  std::string name;
  if (req.Has("name")) {
    name = Name(env, req, "name");
    rc = utimensat(Int(req, "dirFd"), name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  } else {
    rc = futimens(Int(req, "dirFd"), ts);
  }
  if (rc < 0) throw ErrnoError(env, errno, "utimensat", name);
  return env.Undefined();
}

}  // namespace crashcart
