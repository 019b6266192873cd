// Graft: mount the toolkit's loop device at a directory inside a target's mount namespace;
// ungraft: take it away again. setns(CLONE_NEWNS) is refused in a multithreaded process, so
// the namespace work happens in a forked, single-threaded child. Everything the child needs
// is prepared here before fork; the child makes raw syscalls only and reports one record.
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
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "child.h"
#include "errors.h"
#include "graft.h"

namespace crashcart {
namespace {

constexpr int kCreatedDir = 1;
constexpr int kRemountedParent = 2;

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

std::string ParentOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

// Mount flags of the mount at `path` that a remount must keep (statfs reports them as ST_*).
unsigned long KeptFlags(const char* path) {
  struct statfs sf;
  if (statfs(path, &sf) < 0) return 0;
  unsigned long f = 0;
  if (sf.f_flags & ST_NOSUID) f |= MS_NOSUID;
  if (sf.f_flags & ST_NODEV) f |= MS_NODEV;
  if (sf.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
  if (sf.f_flags & ST_NOATIME) f |= MS_NOATIME;
  if (sf.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sf.f_flags & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

// A read-only parent (/dev) made writable for a moment, and put back. 0: untouched,
// 1: the mount's own flag was lifted (bind remount), 2: the filesystem was remounted.
struct ParentRemount {
  const char* path;
  unsigned long kept;
  int how;

  int MakeWritable() {
    kept = KeptFlags(path);
    if (mount(nullptr, path, nullptr, MS_REMOUNT | MS_BIND | kept, nullptr) == 0) {
      how = 1;
      if (access(path, W_OK) == 0 || errno != EROFS) return 0;
    }
    if (mount(nullptr, path, nullptr, MS_REMOUNT | kept, nullptr) < 0) return errno;
    how = 2;
    return 0;
  }

  void Restore() {
    if (how == 2) mount(nullptr, path, nullptr, MS_REMOUNT | MS_RDONLY | kept, nullptr);
    if (how >= 1) mount(nullptr, path, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, nullptr);
    how = 0;
  }
};

// Runs `op` once more after making the parent writable when it failed with EROFS.
template <typename Op>
int WithWritableParent(ParentRemount* parent, Op op) {
  if (op() == 0) return 0;
  if (errno != EROFS || parent->how != 0) return errno;
  int err = parent->MakeWritable();
  if (err != 0) return err;
  return op() == 0 ? 0 : errno;
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

struct GraftPlan {
  int method;  // 0 mknod, 1 mount API
  int mntNsFd, rootFd;
  int fsUid, fsGid;
  std::string mountPoint, parent, nodePath, fsType, devicePath;
  dev_t device;
  int mountFd = -1;  // mount API: the detached mount made in the host namespace
};

// The child: never returns.
[[noreturn]] void GraftChild(const GraftPlan& p, int reportFd) {
  ParentRemount parent{p.parent.c_str(), 0, 0};
  int flags = 0;
  int step = EnterMountNamespace(p.mntNsFd, p.rootFd, p.fsUid, p.fsGid);
  if (step != kStepNone) {
    ChildSend(reportFd, step, errno, 0, 0);
    _exit(1);
  }
  const char* dir = p.mountPoint.c_str();
  int err = WithWritableParent(&parent, [&] { return mkdir(dir, 0755); });
  if (err == 0) {
    flags |= kCreatedDir;
  } else if (err != EEXIST) {
    parent.Restore();
    ChildSend(reportFd, kStepMkdir, err, 0, 0);
    _exit(1);
  }

  auto fail = [&](int failedStep, int failedErr) {
    if (flags & kCreatedDir) rmdir(dir);
    parent.Restore();
    ChildSend(reportFd, failedStep, failedErr, 0, 0);
    _exit(1);
  };

  if (p.method == 1) {
    if (sys_move_mount(p.mountFd, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH) < 0) fail(kStepMoveMount, errno);
  } else {
    const char* node = p.nodePath.c_str();
    err = WithWritableParent(&parent, [&] { return mknod(node, S_IFBLK | 0600, p.device); });
    if (err == EEXIST) {  // left by a crash: it is ours to replace
      unlink(node);
      err = mknod(node, S_IFBLK | 0600, p.device) == 0 ? 0 : errno;
    }
    if (err != 0) fail(kStepMknod, err);
    if (mount(node, dir, p.fsType.c_str(), MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) < 0) {
      err = errno;
      unlink(node);
      fail(kStepMount, err);
    }
    if (unlink(node) < 0) {
      err = errno;
      umount2(dir, MNT_DETACH);
      fail(kStepUnlink, err);
    }
  }
  if (parent.how != 0) flags |= kRemountedParent;
  parent.Restore();
  ChildSend(reportFd, kStepNone, 0, 0, flags);
  _exit(0);
}

struct UngraftPlan {
  int mntNsFd, rootFd, fsUid, fsGid;
  bool detach, removeDir;
  std::string mountPoint, parent;
};

[[noreturn]] void UngraftChild(const UngraftPlan& p, int reportFd) {
  int step = EnterMountNamespace(p.mntNsFd, p.rootFd, p.fsUid, p.fsGid);
  if (step != kStepNone) {
    ChildSend(reportFd, step, errno, 0, 0);
    _exit(1);
  }
  const char* dir = p.mountPoint.c_str();
  if (umount2(dir, p.detach ? MNT_DETACH : 0) < 0) {
    ChildSend(reportFd, kStepUmount, errno, 0, 0);
    _exit(1);
  }
  if (p.removeDir) {
    ParentRemount parent{p.parent.c_str(), 0, 0};
    int err = WithWritableParent(&parent, [&] { return rmdir(dir); });
    parent.Restore();
    if (err != 0 && err != ENOENT) {
      ChildSend(reportFd, kStepRmdir, err, 0, 0);
      _exit(1);
    }
  }
  ChildSend(reportFd, kStepNone, 0, 0, 0);
  _exit(0);
}

// Forks, runs `child` there, waits, and returns its report (throws on a failed step).
template <typename Child>
ChildReport RunChild(Napi::Env env, Child child) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) throw ErrnoError(env, errno, "pipe2");
  sigset_t old = BlockAllSignals();
  pid_t pid = fork();
  if (pid == 0) {
    ResetSignalHandlers();
    close(fds[0]);
    child(fds[1]);
  }
  int forkErr = errno;
  RestoreSignals(old);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    throw ErrnoError(env, forkErr, "fork");
  }
  ChildReport report{};
  bool got = ReadReport(fds[0], &report);
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!got) {
    report.step = kStepFork;
    report.err = ECHILD;  // the child died without a word
  }
  return report;
}

std::string Str(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::String>().Utf8Value(); }
int Int(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }

// The path a failed step is about, for the error message.
std::string StepPath(int step, const std::string& mountPoint, const std::string& parent, const std::string& node) {
  switch (step) {
    case kStepSetns: return "mnt";
    case kStepRemount: return parent;
    case kStepMknod:
    case kStepUnlink: return node;
    default: return mountPoint;
  }
}

}  // namespace

// graft(req) -> { createdDir, remountedParent }
Napi::Value Graft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  GraftPlan plan;
  std::string method = Str(req, "method");
  if (method != "mknod" && method != "mountapi") {
    throw Napi::TypeError::New(env, "Expected method 'mknod' or 'mountapi' but received '" + method + "'");
  }
  plan.method = method == "mountapi" ? 1 : 0;
  plan.mntNsFd = Int(req, "mntNsFd");
  plan.rootFd = Int(req, "rootFd");
  plan.fsUid = Int(req, "fsUid");
  plan.fsGid = Int(req, "fsGid");
  plan.mountPoint = Str(req, "mountPoint");
  plan.parent = ParentOf(plan.mountPoint);
  plan.nodePath = Str(req, "nodePath");
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

  ChildReport report;
  try {
    report = RunChild(env, [&](int fd) { GraftChild(plan, fd); });
  } catch (...) {
    if (plan.mountFd >= 0) close(plan.mountFd);
    throw;
  }
  if (plan.mountFd >= 0) close(plan.mountFd);  // the mount lives on where it was moved
  if (report.step != kStepNone) {
    std::string syscallName = StepName(report.step);
    throw ErrnoError(env, report.err, syscallName, StepPath(report.step, plan.mountPoint, plan.parent, plan.nodePath));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("createdDir", (report.flags & kCreatedDir) != 0);
  out.Set("remountedParent", (report.flags & kRemountedParent) != 0);
  return out;
}

// ungraft(req)
Napi::Value Ungraft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  UngraftPlan plan;
  plan.mntNsFd = Int(req, "mntNsFd");
  plan.rootFd = Int(req, "rootFd");
  plan.fsUid = Int(req, "fsUid");
  plan.fsGid = Int(req, "fsGid");
  plan.detach = req.Get("detach").ToBoolean().Value();
  plan.removeDir = req.Get("removeDir").ToBoolean().Value();
  plan.mountPoint = Str(req, "mountPoint");
  plan.parent = ParentOf(plan.mountPoint);
  ChildReport report = RunChild(env, [&](int fd) { UngraftChild(plan, fd); });
  if (report.step != kStepNone) {
    throw ErrnoError(env, report.err, StepName(report.step), StepPath(report.step, plan.mountPoint, plan.parent, ""));
  }
  return env.Undefined();
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
