// What a forked child may use between fork and exec: raw syscalls only (no malloc, no
// stdio, no exceptions, no N-API). A child reports a failure to its parent as one
// fixed-size record on a close-on-exec pipe; the parent turns it into a NativeError.
// Graft, ungraft and spawn all fork through ForkReporting below.
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <napi.h>

#include <string>
#include <vector>

#include "errors.h"

namespace crashcart {

// Steps a child can fail at. The parent maps them to syscall names.
enum Step : int {
  kStepNone = 0,
  kStepSetns,
  kStepChroot,
  kStepChdir,
  kStepOpen,        // a directory on the way to the mount point
  kStepMountPoint,  // the mount point itself: a symlink, a file, or unopenable
  kStepMkdir,
  kStepRemount,     // making a read-only parent writable
  kStepRestore,     // making it read-only again
  kStepMknod,
  kStepMount,
  kStepMoveMount,
  kStepUnlink,
  kStepUmount,
  kStepRmdir,
  kStepCgroup,
  kStepFork,
  kStepSetgroups,
  kStepSetgid,
  kStepSetuid,
  kStepCapBound,
  kStepCapSet,
  kStepCapAmbient,
  kStepNoNewPrivs,
  kStepExecve,
  kStepSetfsuid,
  kStepFault,  // a fault injected on purpose (CRASHCART_FAULT)
  // the sandbox of a stopped container (sandbox.cc)
  kStepUnshare,
  kStepPivotRoot,
  kStepSethostname,
  kStepLoopback,
  kStepSymlink,
  kStepMountSetattr,
  kStepDup2,   // the command's stdin, stdout or stderr onto the pipe it was given
};

const char* StepName(int step);

struct ChildReport {
  int step;    // kStepNone when all went well
  int err;     // errno of the failed step
  int detail;  // which namespace / candidate / cgroup file (step-specific)
  int flags;   // step-specific results (graft: dir created, parent remounted)
};

// Writes the record in one write (it is far below PIPE_BUF, so it is atomic).
inline void ChildSend(int fd, int step, int err, int detail, int flags) {
  ChildReport r{step, err, detail, flags};
  ssize_t unused = write(fd, &r, sizeof r);
  (void)unused;
}

// Reads one record; returns false at EOF with nothing read.
bool ReadReport(int fd, ChildReport* out);

// Blocks every signal in the calling thread (before fork) and returns the old mask.
sigset_t BlockAllSignals();
void RestoreSignals(const sigset_t& old);

// In a child right after fork: every handler back to SIG_DFL (Node's handlers must not run
// there). The mask stays as the caller sets it.
void ResetSignalHandlers();

// Faults injected on purpose at named points of a child's work, so tests can fail or kill
// crashcart at each step deterministically. Parsed before fork from the request's
// `fault: { point, action }` (absent: none).
enum FaultPoint : int {
  kFaultNone = 0,
  kFaultAfterMknod,
  kFaultAfterMount,
  kFaultRestoreDev,
  kFaultDuringUngraft,
  kFaultInTarget,
  kFaultBeforeExec,
  kFaultNoCloseRange,
  kFaultSandboxUnshared,
  kFaultSandboxOverlay,
  kFaultSandboxMounted,
  kFaultSandboxPivoted,
  kFaultSandboxBeforeExec,
};
enum FaultAction : int { kFaultFail = 0, kFaultKill, kFaultStop };

struct Fault {
  int point = kFaultNone;
  int action = kFaultFail;
  // The Node process, which `kill` ends: a pidfd, since a child inside the target's PID
  // namespace cannot name it by pid (and must never signal a pid of the container's).
  // The parent's copy closes when the plan goes; a child exits without running destructors.
  int crashcart = -1;

  Fault() = default;
  Fault(const Fault&) = delete;
  Fault& operator=(const Fault&) = delete;
  Fault(Fault&& o) noexcept : point(o.point), action(o.action), crashcart(o.crashcart) { o.crashcart = -1; }
  Fault& operator=(Fault&& o) noexcept {
    if (this != &o) {
      Close();
      point = o.point;
      action = o.action;
      crashcart = o.crashcart;
      o.crashcart = -1;
    }
    return *this;
  }
  ~Fault() { Close(); }
  void Close() {
    if (crashcart >= 0) close(crashcart);
    crashcart = -1;
  }
};

Fault ParseFault(Napi::Env env, const Napi::Object& req);

// At `point` in a child: kill ends crashcart with SIGKILL (the child goes on, as it would
// after a real `kill -9`), stop stops the child itself until SIGCONT. Returns true when the
// step is to fail instead.
inline bool FaultHere(const Fault& f, int point) {
  if (f.point != point) return false;
  if (f.action == kFaultKill) {
    syscall(SYS_pidfd_send_signal, f.crashcart, SIGKILL, nullptr, 0);
    return false;
  }
  if (f.action == kFaultStop) {
    kill(getpid(), SIGSTOP);  // cannot be blocked
    return false;
  }
  return true;
}

// A forked child and the read end of its report pipe.
struct Forked {
  pid_t pid;
  int reportFd;
};

// Forks a child that runs body(reportFd) and never returns. In the child every handler is
// back to SIG_DFL, the caller's blocked mask (all signals) stays, and the process is not
// dumpable: a process in the container with CAP_SYS_PTRACE must not attach to it while it
// holds host file descriptors (runc does the same since CVE-2016-9962). Exec restores
// dumpability for the command, which by then holds none of crashcart's descriptors.
template <typename Body>
Forked ForkReporting(Napi::Env env, Body body) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) throw ErrnoError(env, errno, "pipe2");
  sigset_t old = BlockAllSignals();
  pid_t pid = fork();
  if (pid == 0) {
    ResetSignalHandlers();
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    close(fds[0]);
    body(fds[1]);
    _exit(1);  // bodies never return; this is only a guard
  }
  int forkErr = errno;
  RestoreSignals(old);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    throw ErrnoError(env, forkErr, "fork");
  }
  return {pid, fds[0]};
}

// Waits for a child that reports once and exits. A child that died without a report (a
// signal, or a crash) is an error of its own: code ECHILDDIED, with the signal or status.
ChildReport AwaitReport(Napi::Env env, const Forked& child, const char* what);

// Strings made before fork and never touched after it.
struct CStrings {
  std::vector<std::string> owned;
  std::vector<char*> ptrs;

  explicit CStrings(const Napi::Array& arr);
  size_t size() const { return owned.size(); }
  char* const* data() const { return ptrs.data(); }
};

}  // namespace crashcart
