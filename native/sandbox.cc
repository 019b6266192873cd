// The sandbox of a stopped container: its files opened in namespaces of its own, built the
// way runc's libcontainer builds a container's root: a private mount namespace, the whole
// mount table made inside it, then pivot_root and a detached old root. Every mount lives in
// that namespace only and goes with its last process; nothing is made on the host.
//
//   node ──fork──▶ box: [setns into a pod's net/ipc/uts] unshare(mnt uts ipc net cgroup),
//                   "/" private, open every source; a tmpfs (upper, work, root) over the
//                   top layer; the overlay of the layers at root; the mount table inside
//                   it; pivot_root, detach the old root; hostname, lo up; unshare(pid)
//                   └─fork──▶ init (pid 1): /proc (the late ops), reaps, passes signals on,
//                                hands the command's status to the box
//                               └─fork──▶ command: ids, chdir, execve
//
// Sources are opened after unshare: a bind or an overlay layer from a mount of another
// namespace is refused by the kernel. Targets are resolved inside the new root
// (openat2 RESOLVE_IN_ROOT), so a symlink in the container's files never reaches a host
// path; missing ones are made in the throwaway upper layer. The box mirrors the command's
// exit code or signal as its own; a failure before exec comes back as {step, errno,
// detail} on the close-on-exec report pipe (detail: which layer, op or candidate).
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "errors.h"
#include "sandbox.h"

namespace crashcart {
namespace {

// What a failed fixed step's detail says (ops, layers and candidates count from 0).
constexpr int kPartPrivate = -1;  // making "/" private
constexpr int kPartStaging = -2;  // the tmpfs that holds upper, work and root
constexpr int kPartOverlay = -3;  // the root overlay
constexpr int kPartOldRoot = -4;  // detaching the old root
constexpr int kPartInit = -5;     // forking init
constexpr int kPartCommand = -6;  // forking the command
constexpr int kPartLayer = -100;  // opening layer N: kPartLayer - N

enum OpKind : int { kOpBind, kOpMount, kOpMknod, kOpSymlink, kOpMkdir };
enum Create : int { kCreateNone, kCreateDir, kCreateFile };

struct Op {
  int kind = kOpMkdir;
  std::string target;                 // "/dev/pts", for messages
  std::vector<std::string> parts;     // {"dev", "pts"}
  std::vector<std::string> prefixes;  // {"dev", "dev/pts"}: resolved in the root as a whole
  std::string source;                 // bind: a host path; mount: the device or fs name
  int sourceFd = -1;                  // bind: opened after unshare
  bool recursive = false;
  bool readOnly = false;
  bool late = false;  // made by init after pivot_root (/proc needs the new PID namespace)
  std::string fsType, data;
  unsigned long flags = 0;
  int create = kCreateNone;
  mode_t mode = 0;
  dev_t dev = 0;
  std::string linkTo;
};

struct SandboxPlan {
  std::vector<std::string> layers;  // host paths, top first
  std::vector<int> layerFds;
  std::vector<std::pair<int, int>> join;  // (fd, CLONE_NEW*)
  int unshareFlags = 0;
  std::string hostname;
  bool loopback = false;
  std::vector<Op> ops;
  std::vector<char> overlayData;  // room for the options, written after the fds exist
  std::string workdir;
  mode_t umask = 022;  // the caller's, for the command (the box makes devices with 0)
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  sigset_t forwarded;
  sigset_t fromTerminal;
  std::unique_ptr<CStrings> candidates, argv, env;
  Fault fault;
  // a view (sandboxView): no command; the box holds the namespace until `lifeline` (the
  // read end of a pipe whose write end only crashcart has) reads EOF
  bool hold = false;
  int lifeline = -1;
  int release = -1;  // crashcart's end, closed in the box at once
};

int sys_fsopen(const char* fs, unsigned flags) { return static_cast<int>(syscall(SYS_fsopen, fs, flags)); }
int sys_fsconfig(int fd, unsigned cmd, const char* key, const void* value, int aux) {
  return static_cast<int>(syscall(SYS_fsconfig, fd, cmd, key, value, aux));
}
int sys_fsmount(int fd, unsigned flags, unsigned attrs) { return static_cast<int>(syscall(SYS_fsmount, fd, flags, attrs)); }
int sys_move_mount(int from, const char* fromPath, int to, const char* toPath, unsigned flags) {
  return static_cast<int>(syscall(SYS_move_mount, from, fromPath, to, toPath, flags));
}

// fork() without the atfork handlers: libuv's, inherited from Node, closes the descriptors
// it had for its signal lock *by number* in every child, and the box has given those numbers
// to its own pipes by then. Nothing after it uses glibc's cached thread id (no raise()).
pid_t RawFork() { return static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, 0, nullptr, nullptr, 0)); }

[[noreturn]] void Fail(int reportFd, int step, int err, int detail) {
  ChildSend(reportFd, step, err, detail, 0);
  _exit(1);  // the parent reads the report; this status never becomes the user's
}

// Appends without allocating (after fork). Returns false when it does not fit.
bool Append(std::vector<char>* buf, size_t* len, const char* s) {
  size_t n = strlen(s);
  if (*len + n + 1 > buf->size()) return false;
  memcpy(buf->data() + *len, s, n);
  *len += n;
  (*buf)[*len] = '\0';
  return true;
}

// "/proc/self/fd/N", written into `out` (32 bytes).
const char* FdPath(char* out, int fd) {
  static const char kPrefix[] = "/proc/self/fd/";
  size_t n = sizeof kPrefix - 1;
  memcpy(out, kPrefix, n);
  char digits[12];
  int d = 0;
  unsigned v = static_cast<unsigned>(fd);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (d > 0) out[n++] = digits[--d];
  out[n] = '\0';
  return out;
}

// The first `count` components of op's target, opened O_PATH inside the root: symlinks
// resolve as if root were "/". Before Linux 5.6 (no openat2) one component at a time, and
// no symlink at all.
int OpenPrefix(int rootFd, const Op& op, size_t count, int flags) {
  if (count == 0) return fcntl(rootFd, F_DUPFD_CLOEXEC, 0);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(O_PATH | O_CLOEXEC | flags);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(syscall(SYS_openat2, rootFd, op.prefixes[count - 1].c_str(), &how, sizeof how));
  if (fd >= 0 || errno != ENOSYS) return fd;
  fd = fcntl(rootFd, F_DUPFD_CLOEXEC, 0);
  for (size_t i = 0; fd >= 0 && i < count; i++) {
    int next = openat(fd, op.parts[i].c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC | (i + 1 < count ? O_DIRECTORY : flags));
    int err = errno;
    close(fd);
    errno = err;
    fd = next;
  }
  return fd;
}

// The directory that holds op's target, missing directories made on the way.
int OpenParent(int rootFd, const Op& op) {
  int parent = OpenPrefix(rootFd, op, 0, O_DIRECTORY);
  for (size_t i = 0; parent >= 0 && i + 1 < op.parts.size(); i++) {
    int fd = OpenPrefix(rootFd, op, i + 1, O_DIRECTORY);
    if (fd < 0 && errno == ENOENT) {
      if (mkdirat(parent, op.parts[i].c_str(), 0755) < 0 && errno != EEXIST) fd = -1;
      else fd = OpenPrefix(rootFd, op, i + 1, O_DIRECTORY);
    }
    int err = errno;
    close(parent);
    errno = err;
    parent = fd;
  }
  return parent;
}

// op's target itself, made as op.create says when it is missing.
int OpenTarget(int rootFd, const Op& op) {
  int parent = OpenParent(rootFd, op);
  if (parent < 0) return -1;
  size_t n = op.parts.size();
  int fd = OpenPrefix(rootFd, op, n, op.create == kCreateDir ? O_DIRECTORY : 0);
  if (fd < 0 && errno == ENOENT && op.create != kCreateNone) {
    const char* name = op.parts[n - 1].c_str();
    int rc;
    if (op.create == kCreateDir) {
      rc = mkdirat(parent, name, 0755);
    } else {
      rc = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (rc >= 0) close(rc);
    }
    fd = rc < 0 && errno != EEXIST ? -1 : OpenPrefix(rootFd, op, n, op.create == kCreateDir ? O_DIRECTORY : 0);
  }
  int err = errno;
  close(parent);
  errno = err;
  return fd;
}

// Runs one op of the mount table inside the root; returns the failed step or kStepNone.
int RunOp(int rootFd, const Op& op) {
  if (op.kind == kOpMknod || op.kind == kOpSymlink) {
    int parent = OpenParent(rootFd, op);
    if (parent < 0) return kStepOpen;
    const char* name = op.parts.back().c_str();
    int rc = op.kind == kOpMknod ? mknodat(parent, name, op.mode, op.dev) : symlinkat(op.linkTo.c_str(), parent, name);
    int err = errno;
    close(parent);
    errno = err;
    if (rc < 0) return op.kind == kOpMknod ? kStepMknod : kStepSymlink;
    return kStepNone;
  }
  int target = OpenTarget(rootFd, op);
  if (target < 0) return op.create == kCreateDir && errno != ENOENT ? kStepMkdir : kStepOpen;
  if (op.kind == kOpMkdir) {
    close(target);
    return kStepNone;
  }
  // mounted on ".", with the target as working directory, or on the opened file through
  // /proc/self/fd (a bind of a file: hostname, resolv.conf): never on a path
  char source[32];
  char onFile[32];
  struct stat st;
  int rc = fstat(target, &st);
  bool isFile = rc == 0 && !S_ISDIR(st.st_mode);
  if (rc == 0 && !isFile) rc = fchdir(target);
  if (rc == 0 && op.kind == kOpBind) {
    rc = mount(FdPath(source, op.sourceFd), isFile ? FdPath(onFile, target) : ".", nullptr, MS_BIND | (op.recursive ? MS_REC : 0), nullptr);
  } else if (rc == 0 && isFile) {
    errno = ENOTDIR;
    rc = -1;
  } else if (rc == 0) {
    rc = mount(op.source.c_str(), ".", op.fsType.c_str(), op.flags, op.data.empty() ? nullptr : op.data.c_str());
  }
  int err = errno;
  close(target);
  errno = err;
  if (rc < 0) return kStepMount;
  if (op.kind != kOpBind || !op.readOnly) return kStepNone;
  // Read-only, submounts included: on the mount just made, opened anew.
  int mounted = OpenPrefix(rootFd, op, op.parts.size(), 0);
  if (mounted < 0) return kStepOpen;
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_RDONLY;
  rc = static_cast<int>(syscall(SYS_mount_setattr, mounted, "", AT_EMPTY_PATH | (op.recursive ? AT_RECURSIVE : 0), &attr, sizeof attr));
  int step = kStepMountSetattr;
  if (rc < 0 && errno == ENOSYS) {  // before Linux 5.12: the top mount only
    rc = isFile ? mount(nullptr, FdPath(onFile, mounted), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr)
                : fchdir(mounted) == 0 ? mount(nullptr, ".", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) : -1;
    step = kStepMount;
  }
  err = errno;
  close(mounted);
  errno = err;
  return rc < 0 ? step : kStepNone;
}

// Closes every descriptor above 2 but `keep` (at most three, -1 for none).
void CloseAllBut(int a, int b, int c = -1) {
  int keep[3] = {a, b, c};
  for (int i = 0; i < 3; i++) {  // sorted, at most three: a bubble is enough
    for (int j = i + 1; j < 3; j++) {
      if (keep[j] < keep[i]) std::swap(keep[i], keep[j]);
    }
  }
  int from = 3;
  for (int k : keep) {
    if (k < from) continue;
    if (k > from && syscall(SYS_close_range, from, k - 1, 0) < 0) {
      for (int fd = from; fd < k; fd++) close(fd);
    }
    from = k + 1;
  }
  if (syscall(SYS_close_range, from, ~0U, 0) == 0) return;
  struct rlimit rl;
  rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 1 << 20;
  for (rlim_t fd = static_cast<rlim_t>(from); fd < max; fd++) close(static_cast<int>(fd));
}

// The loopback interface up, in the new network namespace.
int LoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int err = errno;
  close(s);
  errno = err;
  return rc;
}

[[noreturn]] void CommandChild(const SandboxPlan& p, int reportFd) {
  if (setgroups(p.groups.size(), p.groups.data()) < 0) Fail(reportFd, kStepSetgroups, errno, 0);
  if (setresgid(p.gid, p.gid, p.gid) < 0) Fail(reportFd, kStepSetgid, errno, 0);
  if (setresuid(p.uid, p.uid, p.uid) < 0) Fail(reportFd, kStepSetuid, errno, 0);
  if (chdir(p.workdir.c_str()) < 0) Fail(reportFd, kStepChdir, errno, 0);
  umask(p.umask);
  // stdio are the caller's: kept across exec, and blocking (see spawn.cc)
  for (int fd = 0; fd <= 2; fd++) {
    fcntl(fd, F_SETFD, 0);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  if (p.fault.action != kFaultKill && FaultHere(p.fault, kFaultSandboxBeforeExec)) Fail(reportFd, kStepFault, EIO, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int which = 0;
  int err = ExecCandidates(p.candidates->data(), p.candidates->size(), p.argv->data(), p.env->data(), &which);
  Fail(reportFd, kStepExecve, err, which);
}


// PID 1 of the sandbox: mounts /proc, runs the command, reaps whatever else ends, passes
// signals on, and writes the command's wait status for the box when it ends. When init
// exits, the kernel ends every other process of the namespace.
[[noreturn]] void InitChild(const SandboxPlan& p, int reportFd, int statusFd) {
  prctl(PR_SET_NAME, "crashcart-init");
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) Fail(reportFd, kStepOpen, errno, kPartOldRoot);
  for (size_t i = 0; i < p.ops.size(); i++) {
    if (!p.ops[i].late) continue;
    int step = RunOp(root, p.ops[i]);
    if (step != kStepNone) Fail(reportFd, step, errno, static_cast<int>(i));
  }
  close(root);
  pid_t command = RawFork();
  if (command < 0) Fail(reportFd, kStepFork, errno, kPartCommand);
  if (command == 0) {
    close(statusFd);
    CommandChild(p, reportFd);
  }
  CloseAllBut(statusFd, -1);  // the report pipe too: its last copy is the command's
  sigset_t set = WaitSet(p.forwarded, p.fromTerminal);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      // the terminal's own reached the command directly, in the same process group
      if (!(sigismember(&p.fromTerminal, sig) == 1 && si.si_code == SI_KERNEL)) kill(command, sig);
      continue;
    }
    int status = 0;
    pid_t r;
    while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
      if (r != command) continue;
      ssize_t unused = write(statusFd, &status, sizeof status);
      (void)unused;
      _exit(0);
    }
  }
}

// Reads one int written in one write; false at EOF.
bool ReadStatus(int fd, int* out) {
  for (;;) {
    ssize_t n = read(fd, out, sizeof *out);
    if (n < 0 && errno == EINTR) continue;
    return n == static_cast<ssize_t>(sizeof *out);
  }
}

// A view: the root is ready once the box reports kStepNone; then it
// only waits for EOF on its lifeline (crashcart closed it, or died) and exits, and the
// namespace, with every mount in it, goes with it.
[[noreturn]] void Hold(const SandboxPlan& p, int reportFd) {
  ChildSend(reportFd, kStepNone, 0, 0, 0);
  close(reportFd);
  char byte;
  for (;;) {
    ssize_t n = read(p.lifeline, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
  }
}

[[noreturn]] void BoxChild(SandboxPlan& p, int reportFd) {
  prctl(PR_SET_NAME, p.hold ? "crashcart-view" : "crashcart-box");
  if (p.release >= 0) close(p.release);
  p.umask = umask(0);  // devices and directories get exactly the modes the table says
  auto fault = [&](int point) {
    if (FaultHere(p.fault, point)) Fail(reportFd, kStepFault, EIO, 0);
  };
  for (size_t i = 0; i < p.join.size(); i++) {
    if (setns(p.join[i].first, p.join[i].second) < 0) Fail(reportFd, kStepSetns, errno, static_cast<int>(i));
  }
  if (unshare(p.unshareFlags & ~CLONE_NEWPID) < 0) Fail(reportFd, kStepUnshare, errno, 0);
  // nothing made from here on may reach the host's mount namespace
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) Fail(reportFd, kStepMount, errno, kPartPrivate);
  // every source is opened now, in this namespace, before anything can be mounted over it
  for (size_t i = 0; i < p.layers.size(); i++) {
    p.layerFds[i] = open(p.layers[i].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (p.layerFds[i] < 0) Fail(reportFd, kStepOpen, errno, kPartLayer - static_cast<int>(i));
  }
  for (size_t i = 0; i < p.ops.size(); i++) {
    Op& op = p.ops[i];
    if (op.kind != kOpBind) continue;
    op.sourceFd = open(op.source.c_str(), O_PATH | O_CLOEXEC);
    if (op.sourceFd < 0) Fail(reportFd, kStepOpen, errno, static_cast<int>(i));
  }
  fault(kFaultSandboxUnshared);

  // The staging tmpfs: upper and work of the overlay, and root, its mount point. Attached
  // over the top layer, which is opened already and so still seen as it is.
  int fs = sys_fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0 || sys_fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
      sys_fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    Fail(reportFd, kStepMount, errno, kPartStaging);
  }
  int staging = sys_fsmount(fs, FSMOUNT_CLOEXEC, 0);
  if (staging < 0) Fail(reportFd, kStepMount, errno, kPartStaging);
  close(fs);
  if (mkdirat(staging, "upper", 0755) < 0 || mkdirat(staging, "work", 0700) < 0 || mkdirat(staging, "root", 0755) < 0) {
    Fail(reportFd, kStepMkdir, errno, kPartStaging);
  }
  if (sys_move_mount(staging, "", p.layerFds[0], "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
    Fail(reportFd, kStepMoveMount, errno, kPartStaging);
  }
  int upper = openat(staging, "upper", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int work = openat(staging, "work", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int mountPoint = openat(staging, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (upper < 0 || work < 0 || mountPoint < 0) Fail(reportFd, kStepOpen, errno, kPartStaging);

  // The root: every layer of the container below a throwaway upper.
  char fdPath[32];
  size_t len = 0;
  bool fits = Append(&p.overlayData, &len, "lowerdir=");
  for (size_t i = 0; i < p.layerFds.size(); i++) {
    fits = fits && (i == 0 || Append(&p.overlayData, &len, ":")) && Append(&p.overlayData, &len, FdPath(fdPath, p.layerFds[i]));
  }
  fits = fits && Append(&p.overlayData, &len, ",upperdir=") && Append(&p.overlayData, &len, FdPath(fdPath, upper)) &&
         Append(&p.overlayData, &len, ",workdir=") && Append(&p.overlayData, &len, FdPath(fdPath, work));
  if (!fits) Fail(reportFd, kStepMount, E2BIG, kPartOverlay);
  if (fchdir(mountPoint) < 0 || mount("overlay", ".", "overlay", 0, p.overlayData.data()) < 0) {
    Fail(reportFd, kStepMount, errno, kPartOverlay);
  }
  int root = openat(staging, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);  // the overlay, mounted there now
  if (root < 0) Fail(reportFd, kStepOpen, errno, kPartOverlay);
  fault(kFaultSandboxOverlay);

  for (size_t i = 0; i < p.ops.size(); i++) {
    if (p.ops[i].late) continue;
    int step = RunOp(root, p.ops[i]);
    if (step != kStepNone) Fail(reportFd, step, errno, static_cast<int>(i));
  }
  fault(kFaultSandboxMounted);

  // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the
  // sandbox alone in this namespace (runc's way, no put_old directory needed)
  if (fchdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0) Fail(reportFd, kStepPivotRoot, errno, 0);
  if (umount2(".", MNT_DETACH) < 0) Fail(reportFd, kStepUmount, errno, kPartOldRoot);
  if (chdir("/") < 0) Fail(reportFd, kStepChdir, errno, kPartOldRoot);
  // layers, sources, staging (the mounts hold what they need), and crashcart's end of the lifeline
  CloseAllBut(reportFd, p.fault.crashcart, p.lifeline);
  if ((p.unshareFlags & CLONE_NEWUTS) && !p.hostname.empty() && sethostname(p.hostname.data(), p.hostname.size()) < 0) {
    Fail(reportFd, kStepSethostname, errno, 0);
  }
  if (p.loopback && LoopbackUp() < 0) Fail(reportFd, kStepLoopback, errno, 0);
  fault(kFaultSandboxPivoted);
  if (p.hold) Hold(p, reportFd);

  if ((p.unshareFlags & CLONE_NEWPID) && unshare(CLONE_NEWPID) < 0) Fail(reportFd, kStepUnshare, errno, 1);
  // a kill at the command's point is done here: from inside the new PID namespace crashcart
  // cannot be signalled
  if (p.fault.point == kFaultSandboxBeforeExec && p.fault.action == kFaultKill) FaultHere(p.fault, p.fault.point);
  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) < 0) Fail(reportFd, kStepFork, errno, kPartInit);
  pid_t init = RawFork();
  if (init < 0) Fail(reportFd, kStepFork, errno, kPartInit);
  if (init == 0) {
    close(pipeFds[0]);
    InitChild(p, reportFd, pipeFds[1]);
  }
  close(pipeFds[1]);
  CloseAllBut(pipeFds[0], -1);  // from here on only init and the command hold the report pipe
  sigset_t set = WaitSet(p.forwarded, p.fromTerminal);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (!(sigismember(&p.fromTerminal, sig) == 1 && si.si_code == SI_KERNEL)) kill(init, sig);
      continue;
    }
    int initStatus = 0;
    if (waitpid(init, &initStatus, WNOHANG) != init) continue;
    int status = 0;
    if (ReadStatus(pipeFds[0], &status)) BecomeStatus(status);
    _exit(1);  // init failed before the command ended; its report says why
  }
}

struct Waiter {
  Forked child;
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  std::shared_ptr<SandboxPlan> plan;  // keeps the strings alive for error messages
  ChildReport report{};
  bool failed = false;
  int status = 0;
};

// The object a failed step is about, for the error's path.
std::string FailedPath(const SandboxPlan& p, int step, int detail) {
  if (step == kStepExecve && detail >= 0 && static_cast<size_t>(detail) < p.candidates->size()) return p.candidates->owned[detail];
  if (step == kStepChdir && detail == 0) return p.workdir;
  if (detail <= kPartLayer && static_cast<size_t>(kPartLayer - detail) < p.layers.size()) return p.layers[kPartLayer - detail];
  if (detail >= 0 && static_cast<size_t>(detail) < p.ops.size() && step != kStepSetns && step != kStepFault) {
    const Op& op = p.ops[detail];
    return step == kStepOpen && op.kind == kOpBind && op.sourceFd < 0 ? op.source : op.target;
  }
  return "";
}

void Settle(Napi::Env env, Napi::Function, Waiter* w) {
  if (w->failed) {
    int step = w->report.step;
    int detail = w->report.detail;
    Napi::Error error = ErrnoError(env, w->report.err, StepName(step), FailedPath(*w->plan, step, detail));
    error.Value().Set("step", StepName(step));
    error.Value().Set("detail", detail);
    w->deferred.Reject(error.Value());
    return;
  }
  Napi::Object result = Napi::Object::New(env);
  if (WIFEXITED(w->status)) {
    result.Set("code", WEXITSTATUS(w->status));
    result.Set("signal", env.Null());
  } else {
    result.Set("code", env.Null());
    result.Set("signal", WTERMSIG(w->status));
  }
  w->deferred.Resolve(result);
}

void Wait(Waiter* w) {
  w->failed = ReadReport(w->child.reportFd, &w->report) && w->report.step != kStepNone;
  close(w->child.reportFd);
  while (waitpid(w->child.pid, &w->status, 0) < 0 && errno == EINTR) {
  }
  w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function fn, Waiter* waiter) {
    Settle(env, fn, waiter);
    waiter->tsfn.Release();
    delete waiter;
  });
}

std::string Str(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
}
int Int(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : 0;
}

std::vector<int> Ints(const Napi::Array& arr) {
  std::vector<int> out;
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  return out;
}

sigset_t Signals(const Napi::Value& v) {
  sigset_t set;
  sigemptyset(&set);
  if (v.IsArray()) {
    for (int sig : Ints(v.As<Napi::Array>())) sigaddset(&set, sig);
  }
  return set;
}

Op ReadOp(Napi::Env env, const Napi::Object& o) {
  Op op;
  std::string kind = Str(o, "op");
  if (kind == "bind") op.kind = kOpBind;
  else if (kind == "mount") op.kind = kOpMount;
  else if (kind == "mknod") op.kind = kOpMknod;
  else if (kind == "symlink") op.kind = kOpSymlink;
  else if (kind == "mkdir") op.kind = kOpMkdir;
  else throw Napi::TypeError::New(env, "Expected op bind, mount, mknod, symlink or mkdir but received '" + kind + "'");
  op.target = Str(o, "target");
  size_t at = 0;
  std::string prefix;
  while (at < op.target.size()) {
    size_t slash = op.target.find('/', at);
    if (slash == std::string::npos) slash = op.target.size();
    std::string part = op.target.substr(at, slash - at);
    if (part == "." || part == "..") throw Napi::TypeError::New(env, "Expected a plain absolute path but received '" + op.target + "'");
    if (!part.empty()) {
      prefix += (prefix.empty() ? "" : "/") + part;
      op.parts.push_back(part);
      op.prefixes.push_back(prefix);
    }
    at = slash + 1;
  }
  if (op.target.empty() || op.target[0] != '/' || op.parts.empty()) {
    throw Napi::TypeError::New(env, "Expected an absolute path below / but received '" + op.target + "'");
  }
  op.source = Str(o, "source");
  op.recursive = o.Get("recursive").ToBoolean().Value();
  op.readOnly = o.Get("readOnly").ToBoolean().Value();
  op.late = o.Get("late").ToBoolean().Value();
  op.fsType = Str(o, "fsType");
  op.data = Str(o, "data");
  op.flags = static_cast<unsigned long>(Int(o, "flags"));
  std::string create = Str(o, "create");
  op.create = create == "dir" ? kCreateDir : create == "file" ? kCreateFile : kCreateNone;
  op.mode = static_cast<mode_t>(Int(o, "mode"));
  op.dev = makedev(Int(o, "major"), Int(o, "minor"));
  op.linkTo = Str(o, "linkTo");
  if (op.late && op.kind == kOpBind) throw Napi::TypeError::New(env, "Expected no late bind (its source is the host's): " + op.target);
  return op;
}

// The part of a request a sandbox and a view share: the layers and the mount table.
std::shared_ptr<SandboxPlan> ReadRoot(Napi::Env env, const Napi::Object& req) {
  auto plan = std::make_shared<SandboxPlan>();
  Napi::Array layers = req.Get("layers").As<Napi::Array>();
  for (uint32_t i = 0; i < layers.Length(); i++) plan->layers.push_back(layers.Get(i).As<Napi::String>().Utf8Value());
  if (plan->layers.empty()) throw Napi::TypeError::New(env, "Expected at least one layer");
  plan->layerFds.assign(plan->layers.size(), -1);
  Napi::Array ops = req.Get("ops").As<Napi::Array>();
  for (uint32_t i = 0; i < ops.Length(); i++) plan->ops.push_back(ReadOp(env, ops.Get(i).As<Napi::Object>()));
  // "lowerdir=" and per layer "/proc/self/fd/N:" (N up to 10 digits), upper and work alike
  plan->overlayData.assign(64 + 26 * plan->layers.size() + 2 * 40, '\0');
  plan->fault = ParseFault(env, req);
  return plan;
}

// A view's waiter: `ready` settles when the box reports its root made (or its failure),
// `exited` when it has ended.
struct ViewWaiter {
  Forked child;
  Napi::Promise::Deferred ready, exited;
  Napi::ThreadSafeFunction tsfn;
  std::shared_ptr<SandboxPlan> plan;
  ChildReport report{};
  bool got = false;
  int status = 0;
};

void SettleExited(Napi::Env env, ViewWaiter* w) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("code", WIFEXITED(w->status) ? Napi::Value(Napi::Number::New(env, WEXITSTATUS(w->status))) : env.Null());
  result.Set("signal", WIFSIGNALED(w->status) ? Napi::Value(Napi::Number::New(env, WTERMSIG(w->status))) : env.Null());
  w->exited.Resolve(result);
}

void WaitView(ViewWaiter* w) {
  w->got = ReadReport(w->child.reportFd, &w->report);
  close(w->child.reportFd);
  bool ready = w->got && w->report.step == kStepNone;
  if (ready) {
    w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function, ViewWaiter* v) { v->ready.Resolve(env.Undefined()); });
  }
  while (waitpid(w->child.pid, &w->status, 0) < 0 && errno == EINTR) {
  }
  w->tsfn.BlockingCall(w, [ready](Napi::Env env, Napi::Function, ViewWaiter* v) {
    if (!ready) {
      Napi::Error error = v->got ? ErrnoError(env, v->report.err, StepName(v->report.step), FailedPath(*v->plan, v->report.step, v->report.detail))
                                 : Napi::Error::New(env, "the view process ended before its root was ready");
      if (v->got) {
        error.Value().Set("step", StepName(v->report.step));
        error.Value().Set("detail", v->report.detail);
      } else {
        error.Value().Set("code", "ECHILDDIED");
        error.Value().Set("errno", 0);
        error.Value().Set("syscall", "sandboxView");
      }
      v->ready.Reject(error.Value());
    }
    SettleExited(env, v);
    v->tsfn.Release();
    delete v;
  });
}

}  // namespace

// sandbox(req) -> { pid, exited: Promise<{code, signal}> }
Napi::Value Sandbox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto plan = ReadRoot(env, req);
  Napi::Array join = req.Get("join").As<Napi::Array>();
  for (uint32_t i = 0; i < join.Length(); i++) {
    Napi::Array pair = join.Get(i).As<Napi::Array>();
    plan->join.emplace_back(pair.Get(0u).As<Napi::Number>().Int32Value(), pair.Get(1u).As<Napi::Number>().Int32Value());
  }
  plan->unshareFlags = Int(req, "unshare");
  if (!(plan->unshareFlags & CLONE_NEWNS)) throw Napi::TypeError::New(env, "Expected CLONE_NEWNS in unshare");
  plan->hostname = Str(req, "hostname");
  plan->loopback = req.Get("loopback").ToBoolean().Value();
  plan->workdir = Str(req, "workdir");
  plan->uid = static_cast<uid_t>(req.Get("uid").As<Napi::Number>().Uint32Value());
  plan->gid = static_cast<gid_t>(req.Get("gid").As<Napi::Number>().Uint32Value());
  for (int g : Ints(req.Get("groups").As<Napi::Array>())) plan->groups.push_back(static_cast<gid_t>(g));
  plan->forwarded = Signals(req.Get("forwardSignals"));
  plan->fromTerminal = Signals(req.Get("terminalSignals"));
  plan->candidates = std::make_unique<CStrings>(req.Get("candidates").As<Napi::Array>());
  plan->argv = std::make_unique<CStrings>(req.Get("argv").As<Napi::Array>());
  plan->env = std::make_unique<CStrings>(req.Get("env").As<Napi::Array>());
  if (plan->argv->size() == 0 || plan->candidates->size() == 0) throw Napi::TypeError::New(env, "Expected a non-empty argv and candidates");
  if (plan->workdir.empty() || plan->workdir[0] != '/') throw Napi::TypeError::New(env, "Expected an absolute workdir but received '" + plan->workdir + "'");

  // The box waits with sigwaitinfo, so the mask ForkReporting leaves (all blocked) stays.
  Forked child = ForkReporting(env, [&](int fd) { BoxChild(*plan, fd); });
  plan->fault.Close();  // the children have theirs; the plan lives on until the command ends
  auto deferred = Napi::Promise::Deferred::New(env);
  auto* waiter = new Waiter{child, deferred,
                            Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                          "crashcart-sandbox", 0, 1),
                            plan};
  std::thread(Wait, waiter).detach();
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", child.pid);
  out.Set("exited", deferred.Promise());
  return out;
}

// sandboxView(req) -> { pid, release, ready: Promise<void>, exited: Promise<{code, signal}> }
// The root alone, in a new mount namespace only, held by the box until `release` (crashcart's
// end of its lifeline) is closed, or crashcart dies. No command runs there.
Napi::Value SandboxView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto plan = ReadRoot(env, req);
  for (const Op& op : plan->ops) {
    if (op.late) throw Napi::TypeError::New(env, "Expected no late op in a view (no init makes them): " + op.target);
  }
  plan->unshareFlags = CLONE_NEWNS;
  plan->hold = true;
  int lifeline[2];
  if (pipe2(lifeline, O_CLOEXEC) < 0) throw ErrnoError(env, errno, "pipe2");
  plan->lifeline = lifeline[0];
  plan->release = lifeline[1];
  Forked child;
  try {
    child = ForkReporting(env, [&](int fd) { BoxChild(*plan, fd); });
  } catch (...) {
    close(lifeline[0]);
    close(lifeline[1]);
    throw;
  }
  close(lifeline[0]);
  plan->fault.Close();
  auto* waiter = new ViewWaiter{child, Napi::Promise::Deferred::New(env), Napi::Promise::Deferred::New(env),
                                Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                              "crashcart-view", 0, 1),
                                plan};
  std::thread(WaitView, waiter).detach();
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", child.pid);
  out.Set("release", lifeline[1]);
  out.Set("ready", waiter->ready.Promise());
  out.Set("exited", waiter->exited.Promise());
  return out;
}

}  // namespace crashcart
