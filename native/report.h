// The record a child (a forked or cloned one of the addon's, or crashcart-wait) sends its
// parent when a step fails, and the faults tests inject at named steps. No N-API here:
// crashcart-wait includes it too.
#pragma once
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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
  kStepHelper,  // execve of crashcart-wait (detail: 0)
  kStepPlan,    // crashcart-wait could not read the plan it was given
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

// Tries each candidate with execve as execvp would (the PATH search was done in crashcart),
// remembering that one existed but could not be run (EACCES) over "not found". Returns only
// when none could run: the errno, and in *which the candidate it is about.
inline int ExecCandidates(char* const* candidates, size_t n, char* const* argv, char* const* envp, int* which) {
  int err = ENOENT;
  *which = 0;
  bool sawAccess = false;
  for (size_t i = 0; i < n; i++) {
    execve(candidates[i], argv, envp);
    if (errno == ENOENT || errno == ENOTDIR) continue;
    if (errno == EACCES) {
      if (!sawAccess) *which = static_cast<int>(i);
      sawAccess = true;
      continue;
    }
    err = errno;
    *which = static_cast<int>(i);
    sawAccess = false;
    break;
  }
  return sawAccess ? EACCES : err;
}

// The signals a waiting process waits for: those it passes on, the terminal's, SIGCHLD.
inline sigset_t WaitSet(const sigset_t& forwarded, const sigset_t& fromTerminal) {
  sigset_t set = forwarded;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sigismember(&fromTerminal, sig) == 1) sigaddset(&set, sig);
  }
  sigaddset(&set, SIGCHLD);
  return set;
}

// Becomes a command's wait status: its exit code, or its signal raised on itself (with no
// core: the command's, if any, is written already).
[[noreturn]] inline void BecomeStatus(int status) {
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  struct rlimit noCore = {0, 0};
  setrlimit(RLIMIT_CORE, &noCore);
  signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  sigprocmask(SIG_UNBLOCK, &only, nullptr);
  kill(getpid(), sig);
  _exit(128 + sig);  // a signal that cannot end a process: the parent reads the code
}

}  // namespace crashcart
