// Graft: mount the toolkit's loop device at a directory inside a target's mount namespace;
// ungraft: take it away again. setns(CLONE_NEWNS) is refused to a thread that shares its
// filesystem attributes, so the namespace work happens in a child (CloneVfork: it shares
// crashcart's memory but not its root, cwd or mount namespace), started from a thread of
// its own. Everything the child needs is prepared here before; the child makes raw
// syscalls only and reports one record.
//
// The container is hostile: every path inside it is walked one component at a time from
// its root with O_NOFOLLOW, and every later step works on the directory fds so found
// (mkdirat, mknodat, mount on ".", move_mount to an fd, umount2 with UMOUNT_NOFOLLOW), so a
// symlink planted in the container can never send the toolkit, or a remount, elsewhere.
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "child.h"
#include "errors.h"
#include "graft.h"

#ifndef ST_NOSYMFOLLOW
#define ST_NOSYMFOLLOW 0x2000
#endif
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif

namespace crashcart {
namespace {

constexpr int kCreatedDir = 1;  // graft: made the directory; ungraft: removed it
constexpr int kRemountedParent = 2;
constexpr int kRemovedNodes = 4;

// The new mount API has no glibc wrappers that coexist with <linux/mount.h>.
int sys_fsopen(const char* fs, unsigned flags) { return static_cast<int>(syscall(SYS_fsopen, fs, flags)); }
int sys_fsconfig(int fd, unsigned cmd, const char* key, const void* value, int aux) {
  return static_cast<int>(syscall(SYS_fsconfig, fd, cmd, key, value, aux));
}
int sys_fsmount(int fd, unsigned flags, unsigned attrs) {
  return static_cast<int>(syscall(SYS_fsmount, fd, flags, attrs));
}
int sys_move_mount(int from, const char* fromPath, int to, const char* toPath, unsigned flags) {
  return static_cast<int>(syscall(SYS_move_mount, from, fromPath, to, toPath, flags));
}

// A path inside the target split before fork: the parent's components and the last name.
struct InnerPath {
  std::vector<std::string> parent;  // {"dev"}
  std::string name;                 // "crashcart"
  std::string text;                 // "/dev/crashcart", for messages
  std::string parentText;           // "/dev"
};

InnerPath SplitPath(Napi::Env env, const std::string& path) {
  InnerPath out;
  out.text = path;
  std::vector<std::string> parts;
  size_t at = 0;
  while (at < path.size()) {
    size_t slash = path.find('/', at);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(at, slash - at);
    if (part == "." || part == "..") throw Napi::TypeError::New(env, "Expected a plain absolute path but received '" + path + "'");
    if (!part.empty()) parts.push_back(part);
    at = slash + 1;
  }
  if (path.empty() || path[0] != '/' || parts.empty()) {
    throw Napi::TypeError::New(env, "Expected an absolute path below / but received '" + path + "'");
  }
  out.name = parts.back();
  parts.pop_back();
  out.parent = parts;
  out.parentText = "/";
  for (size_t i = 0; i < parts.size(); i++) out.parentText += (i ? "/" : "") + parts[i];
  return out;
}

// In the child: opens the parent directory of `p` from the current root without following
// a symlink anywhere. Returns the fd, or -1 with errno (ELOOP for a symlink on the way).
int OpenParent(const InnerPath& p, int lastFlags) {
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  for (size_t i = 0; i < p.parent.size(); i++) {
    bool last = i + 1 == p.parent.size();
    int next = openat(fd, p.parent[i].c_str(), (last ? lastFlags : O_PATH) | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      int err = errno;
      struct stat st;
      if (err == ENOTDIR && fstatat(fd, p.parent[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
      close(fd);
      errno = err;
      return -1;
    }
    close(fd);
    fd = next;
  }
  if (p.parent.empty() && lastFlags != O_PATH) {
    close(fd);
    fd = open("/", lastFlags | O_DIRECTORY | O_CLOEXEC);
  }
  return fd;
}

// Mount flags of the mount at `fd` that a remount must keep, or false when they cannot be
// read: then there is no remount at all, rather than one that could drop nosuid or nodev.
bool KeptFlags(int fd, unsigned long* out) {
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) return false;
  unsigned long f = 0;
  if (sf.f_flags & ST_NOSUID) f |= MS_NOSUID;
  if (sf.f_flags & ST_NODEV) f |= MS_NODEV;
  if (sf.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
  if (sf.f_flags & ST_NOATIME) f |= MS_NOATIME;
  if (sf.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sf.f_flags & ST_RELATIME) f |= MS_RELATIME;
  if (sf.f_flags & ST_NOSYMFOLLOW) f |= MS_NOSYMFOLLOW;
  *out = f;
  return true;
}

// A read-only parent (/dev) made writable for a moment, and put back. how: 0 untouched,
// 1 the mount's own flag lifted (bind remount), 2 the filesystem remounted as well. The
// remounts are made on "." with the parent as working directory, never on a path.
struct ParentRemount {
  int dirFd = -1;
  const Fault* fault = nullptr;
  unsigned long kept = 0;
  int how = 0;

  int Lift() {
    if (how == 0 && !KeptFlags(dirFd, &kept)) return errno;
    if (fchdir(dirFd) < 0) return errno;
    if (how == 0) {
      if (mount(nullptr, ".", nullptr, MS_REMOUNT | MS_BIND | kept, nullptr) < 0) return errno;
      how = 1;
      return 0;
    }
    if (mount(nullptr, ".", nullptr, MS_REMOUNT | kept, nullptr) < 0) return errno;
    how = 2;
    return 0;
  }

  // 0, or the errno of the remount that failed (how then says what is still writable).
  int Restore() {
    if (how == 0) return 0;
    if (FaultHere(*fault, kFaultRestoreDev)) return EPERM;
    if (fchdir(dirFd) < 0) return errno;
    if (how == 2) {
      if (mount(nullptr, ".", nullptr, MS_REMOUNT | MS_RDONLY | kept, nullptr) < 0) return errno;
      how = 1;
    }
    if (mount(nullptr, ".", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, nullptr) < 0) return errno;
    how = 0;
    return 0;
  }
};

// Runs `op` again after lifting the parent's read-only flag when it fails with EROFS (first
// the mount's, then the filesystem's). Returns 0 or an errno; *step says which failed.
template <typename Op>
int WithWritableParent(ParentRemount* parent, int opStep, int* step, Op op) {
  *step = opStep;
  for (;;) {
    if (op() == 0) return 0;
    if (errno != EROFS || parent->how == 2) return errno;
    int err = parent->Lift();
    if (err != 0) {
      *step = kStepRemount;
      return err;
    }
  }
}

// Enter the target's mount namespace and its root, as the target's root user for files.
// Returns the failed step or kStepNone (errno set).
int EnterMountNamespace(int mntNsFd, int rootFd, int fsUid, int fsGid) {
  if (setns(mntNsFd, CLONE_NEWNS) < 0) return kStepSetns;
  if (fchdir(rootFd) < 0) return kStepChroot;
  if (chroot(".") < 0) return kStepChroot;
  if (chdir("/") < 0) return kStepChdir;
  // setfsuid reports the previous id, never an error: check by asking again.
  setfsgid(static_cast<gid_t>(fsGid));
  setfsuid(static_cast<uid_t>(fsUid));
  if (setfsuid(static_cast<uid_t>(-1)) != fsUid) {
    errno = EPERM;
    return kStepSetfsuid;
  }
  return kStepNone;
}

// The target's fds are the plan's own duplicates: the child starts on another thread, after
// the caller may have closed (and reused) the numbers it passed.
struct Target {
  int mntNsFd = -1, rootFd = -1, fsUid = 0, fsGid = 0;

  Target() = default;
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;
  ~Target() {
    if (mntNsFd >= 0) close(mntNsFd);
    if (rootFd >= 0) close(rootFd);
  }
};

void ReadTarget(Napi::Env env, const Napi::Object& req, Target* t) {
  auto i = [&](const char* k) { return req.Get(k).As<Napi::Number>().Int32Value(); };
  t->mntNsFd = DupFd(env, i("mntNsFd"), "mntNsFd");
  t->rootFd = DupFd(env, i("rootFd"), "rootFd");
  t->fsUid = i("fsUid");
  t->fsGid = i("fsGid");
}

struct GraftPlan {
  int method;  // 0 mknod, 1 mount API
  Target target;
  InnerPath mountPoint;
  std::string nodeName;      // in the mount point's parent, e.g. ".crashcart-loop3"
  std::string nodeFromMount; // the same node seen from inside the mount point: "../.crashcart-loop3"
  std::string fsType, devicePath;
  dev_t device;
  int mountFd = -1;  // mount API: the detached mount made in the host namespace
  Fault fault;

  ~GraftPlan() {
    if (mountFd >= 0) close(mountFd);  // the mount lives on where the child moved it
  }
};

// The child: never returns. Undoes its own work on any failure, in reverse order.
[[noreturn]] void GraftChild(const GraftPlan& p, int reportFd) {
  ParentRemount parent;
  parent.fault = &p.fault;
  int flags = 0, step = kStepNone, err = 0;
  int mountFd = -1;
  bool nodeMade = false, mounted = false;
  const char* name = p.mountPoint.name.c_str();
  const char* node = p.nodeName.c_str();

  auto undo = [&] {
    if (mounted && fchdir(parent.dirFd) == 0) umount2(name, MNT_DETACH | UMOUNT_NOFOLLOW);
    if (nodeMade) unlinkat(parent.dirFd, node, 0);
    if (flags & kCreatedDir) unlinkat(parent.dirFd, name, AT_REMOVEDIR);
    return parent.Restore();
  };
  auto fail = [&](int failedStep, int failedErr) {
    int restoreErr = parent.dirFd >= 0 ? undo() : 0;
    // /dev left writable is worth more than the step's own error: say that first
    if (restoreErr != 0) ChildSend(reportFd, kStepRestore, restoreErr, 1, flags);
    else ChildSend(reportFd, failedStep, failedErr, 0, flags);
    _exit(1);
  };

  step = EnterMountNamespace(p.target.mntNsFd, p.target.rootFd, p.target.fsUid, p.target.fsGid);
  if (step != kStepNone) fail(step, errno);
  parent.dirFd = OpenParent(p.mountPoint, O_PATH);
  if (parent.dirFd < 0) fail(kStepOpen, errno);

  struct stat st;
  if (fstatat(parent.dirFd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) fail(kStepMountPoint, ELOOP);
    if (!S_ISDIR(st.st_mode)) fail(kStepMountPoint, ENOTDIR);
  } else if (errno != ENOENT) {
    fail(kStepMountPoint, errno);
  } else {
    err = WithWritableParent(&parent, kStepMkdir, &step, [&] { return mkdirat(parent.dirFd, name, 0755); });
    if (err != 0) fail(step, err);
    flags |= kCreatedDir;
  }
  // Opened once and used from here on: a swap of the name for a symlink changes nothing.
  mountFd = openat(parent.dirFd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (mountFd < 0) fail(kStepMountPoint, errno == ENOTDIR ? ELOOP : errno);

  if (p.method == 1) {
    if (sys_move_mount(p.mountFd, "", mountFd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
      fail(kStepMoveMount, errno);
    }
    mounted = true;
  } else {
    auto makeNode = [&] { return mknodat(parent.dirFd, node, S_IFBLK | 0600, p.device); };
    err = WithWritableParent(&parent, kStepMknod, &step, makeNode);
    if (err == EEXIST) {  // left by a crash: it is ours to replace
      unlinkat(parent.dirFd, node, 0);
      err = makeNode() == 0 ? 0 : errno;
    }
    if (err != 0) fail(step, err);
    nodeMade = true;
    if (FaultHere(p.fault, kFaultAfterMknod)) fail(kStepFault, EIO);
    // The target is the directory opened above (the working directory), the source the
    // node next to it.
    if (fchdir(mountFd) < 0) fail(kStepMount, errno);
    if (mount(p.nodeFromMount.c_str(), ".", p.fsType.c_str(), MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) < 0) {
      fail(kStepMount, errno);
    }
    mounted = true;
  }
  if (FaultHere(p.fault, kFaultAfterMount)) fail(kStepFault, EIO);
  if (nodeMade) {
    if (unlinkat(parent.dirFd, node, 0) < 0) fail(kStepUnlink, errno);
    nodeMade = false;
  }
  if (parent.how != 0) flags |= kRemountedParent;
  err = parent.Restore();
  if (err != 0) {
    // The container must not be left with a writable /dev: take the graft back out.
    int again = undo();
    ChildSend(reportFd, kStepRestore, err, again != 0 ? 1 : 0, flags);
    _exit(1);
  }
  ChildSend(reportFd, kStepNone, 0, 0, flags);
  _exit(0);
}

struct UngraftPlan {
  Target target;
  InnerPath mountPoint;
  bool unmount, detach, removeDir;
  std::string nodePrefix;  // stale device nodes to sweep from the parent ("" for none)
  Fault fault;
};

// Removes block device nodes named prefix* from the directory fd (a crash between mknod and
// unlink leaves one). getdents64 directly: no allocation in the child.
int SweepNodes(ParentRemount* parent, const std::string& prefix, int* step, bool* removed) {
  int dir = openat(parent->dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return 0;  // nothing to read: nothing to sweep
  char buf[4096];
  int result = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
    if (n <= 0) break;
    for (long at = 0; at < n;) {
      struct Entry {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      };
      const Entry* e = reinterpret_cast<const Entry*>(buf + at);
      at += e->reclen;
      if (strncmp(e->name, prefix.c_str(), prefix.size()) != 0) continue;
      struct stat st;
      if (fstatat(parent->dirFd, e->name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISBLK(st.st_mode)) continue;
      int err = WithWritableParent(parent, kStepUnlink, step, [&] { return unlinkat(parent->dirFd, e->name, 0); });
      if (err == 0) *removed = true;
      if (err != 0 && err != ENOENT && result == 0) result = err;
    }
  }
  close(dir);
  return result;
}

[[noreturn]] void UngraftChild(const UngraftPlan& p, int reportFd) {
  ParentRemount parent;
  parent.fault = &p.fault;
  int flags = 0;
  int step = EnterMountNamespace(p.target.mntNsFd, p.target.rootFd, p.target.fsUid, p.target.fsGid);
  auto report = [&](int failedStep, int failedErr) {
    int restoreErr = parent.dirFd >= 0 ? parent.Restore() : 0;
    if (restoreErr != 0) ChildSend(reportFd, kStepRestore, restoreErr, 1, flags);
    else ChildSend(reportFd, failedStep, failedErr, 0, flags);
    _exit(failedStep == kStepNone && restoreErr == 0 ? 0 : 1);
  };
  if (step != kStepNone) report(step, errno);
  parent.dirFd = OpenParent(p.mountPoint, O_PATH);
  if (parent.dirFd < 0) report(kStepOpen, errno);
  const char* name = p.mountPoint.name.c_str();
  if (p.unmount) {
    if (fchdir(parent.dirFd) < 0) report(kStepUmount, errno);
    if (umount2(name, (p.detach ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW) < 0) report(kStepUmount, errno);
  }
  if (FaultHere(p.fault, kFaultDuringUngraft)) report(kStepFault, EIO);
  if (!p.nodePrefix.empty()) {
    bool removed = false;
    int err = SweepNodes(&parent, p.nodePrefix, &step, &removed);
    if (removed) flags |= kRemovedNodes;
    if (err != 0) report(step, err);
  }
  if (p.removeDir) {
    struct stat st;
    // Only an empty directory of that name is taken away; a symlink or file is not ours.
    if (fstatat(parent.dirFd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
      int err = WithWritableParent(&parent, kStepRmdir, &step, [&] { return unlinkat(parent.dirFd, name, AT_REMOVEDIR); });
      if (err == 0) flags |= kCreatedDir;  // as for a graft: the directory's bit
      if (err != 0 && err != ENOENT) report(step, err);
    }
  }
  report(kStepNone, 0);
  _exit(0);  // not reached: report exits
}

std::string Str(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::String>().Utf8Value(); }
int Int(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }

// The path a failed step is about, for the error message.
std::string StepPath(int step, const InnerPath& mp, const std::string& node) {
  switch (step) {
    case kStepSetns: return "mnt";
    case kStepOpen:
    case kStepRemount:
    case kStepRestore: return mp.parentText;
    case kStepMknod: return node.empty() ? mp.parentText : mp.parentText + "/" + node;
    case kStepUnlink: return node.empty() ? mp.parentText : mp.parentText + "/" + node;
    default: return mp.text;
  }
}

// The error for a failed report, with the step and its detail for the TypeScript side.
Napi::Error ReportError(Napi::Env env, const ChildReport& r, const InnerPath& mp, const std::string& node) {
  Napi::Error error = ErrnoError(env, r.err, StepName(r.step), StepPath(r.step, mp, node));
  error.Value().Set("step", StepName(r.step));
  error.Value().Set("detail", r.detail);
  error.Value().Set("createdDir", (r.flags & kCreatedDir) != 0);
  return error;
}

}  // namespace

// graft(req) -> Promise<{ createdDir, remountedParent }>
Napi::Value Graft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto owned = std::make_shared<GraftPlan>();
  GraftPlan& plan = *owned;
  std::string method = Str(req, "method");
  if (method != "mknod" && method != "mountapi") {
    throw Napi::TypeError::New(env, "Expected method 'mknod' or 'mountapi' but received '" + method + "'");
  }
  plan.method = method == "mountapi" ? 1 : 0;
  ReadTarget(env, req, &plan.target);
  plan.mountPoint = SplitPath(env, Str(req, "mountPoint"));
  plan.nodeName = Str(req, "nodeName");
  if (plan.nodeName.empty() || plan.nodeName.find('/') != std::string::npos || plan.nodeName == "." || plan.nodeName == "..") {
    throw Napi::TypeError::New(env, "Expected a plain file name for nodeName but received '" + plan.nodeName + "'");
  }
  plan.nodeFromMount = "../" + plan.nodeName;
  plan.fsType = Str(req, "fsType");
  plan.devicePath = Str(req, "devicePath");
  plan.device = makedev(Int(req, "major"), Int(req, "minor"));

  if (plan.method == 1) {
    // Superblock and mount are made here, in the host's namespaces, where the loop device
    // path resolves; the child only moves the finished mount into place.
    int fs = sys_fsopen(plan.fsType.c_str(), FSOPEN_CLOEXEC);
    if (fs < 0) throw ErrnoError(env, errno, "fsopen", plan.fsType);
    auto check = [&](int rc, const char* what) {
      if (rc < 0) {
        int err = errno;
        close(fs);
        throw ErrnoError(env, err, what, plan.devicePath);
      }
    };
    check(sys_fsconfig(fs, FSCONFIG_SET_STRING, "source", plan.devicePath.c_str(), 0), "fsconfig source");
    check(sys_fsconfig(fs, FSCONFIG_SET_FLAG, "ro", nullptr, 0), "fsconfig ro");
    check(sys_fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0), "fsconfig create");
    plan.mountFd = sys_fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    check(plan.mountFd, "fsmount");
    close(fs);
  }

  plan.fault = ParseFault(env, req);
  std::string node = plan.method == 0 ? plan.nodeName : "";
  return RunReporting(env, "graft", [owned](int fd) { GraftChild(*owned, fd); },
                      [owned, node](Napi::Env env, const ChildReport& report) -> Napi::Value {
                        if (report.step != kStepNone) throw ReportError(env, report, owned->mountPoint, node);
                        Napi::Object out = Napi::Object::New(env);
                        out.Set("createdDir", (report.flags & kCreatedDir) != 0);
                        out.Set("remountedParent", (report.flags & kRemountedParent) != 0);
                        return out;
                      });
}

// ungraft(req) -> Promise<{ removedDir, removedNodes }>
Napi::Value Ungraft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto owned = std::make_shared<UngraftPlan>();
  UngraftPlan& plan = *owned;
  ReadTarget(env, req, &plan.target);
  plan.unmount = req.Get("unmount").ToBoolean().Value();
  plan.detach = req.Get("detach").ToBoolean().Value();
  plan.removeDir = req.Get("removeDir").ToBoolean().Value();
  plan.mountPoint = SplitPath(env, Str(req, "mountPoint"));
  plan.nodePrefix = req.Has("sweepNodes") ? Str(req, "sweepNodes") : "";
  plan.fault = ParseFault(env, req);
  return RunReporting(env, "ungraft", [owned](int fd) { UngraftChild(*owned, fd); },
                      [owned](Napi::Env env, const ChildReport& report) -> Napi::Value {
                        if (report.step != kStepNone) throw ReportError(env, report, owned->mountPoint, "");
                        Napi::Object out = Napi::Object::New(env);
                        out.Set("removedDir", (report.flags & kCreatedDir) != 0);
                        out.Set("removedNodes", (report.flags & kRemovedNodes) != 0);
                        return out;
                      });
}

// fsopen({ fsType }) -> fd: a filesystem context, nothing configured or mounted; the
// caller closes it. Tells whether the kernel has the new mount API and the filesystem.
Napi::Value FsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string fsType = Str(info[0].As<Napi::Object>(), "fsType");
  int fd = sys_fsopen(fsType.c_str(), FSOPEN_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "fsopen", fsType);
  return Napi::Number::New(env, fd);
}

}  // namespace crashcart
