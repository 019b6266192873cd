// What a child of the addon may use between fork (or clone) and exec: raw syscalls only (no
// malloc, no stdio, no exceptions, no N-API). A child reports a failure to its parent as
// one fixed-size record (report.h) on a close-on-exec pipe; the parent turns it into a
// NativeError. Graft and ungraft clone through RunReporting below, spawn clones and execs
// crashcart-wait (spawn.cc), sandboxes and the network helper fork through ForkReporting.
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "report.h"

namespace crashcart {

// Reads one record; returns false at EOF with nothing read.
bool ReadReport(int fd, ChildReport* out);
// Blocks every signal in the calling thread (before fork) and returns the old mask.
sigset_t BlockAllSignals();
void RestoreSignals(const sigset_t& old);
// In a child right after fork: every handler back to SIG_DFL (Node's handlers must not run
// there). The mask stays as the caller sets it.
void ResetSignalHandlers();

// The request's `fault: { point, action }` (absent: none); kill opens crashcart's pidfd.
Fault ParseFault(Napi::Env env, const Napi::Object& req);

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

// A close-on-exec duplicate of one of the caller's fds, for a plan whose child starts later
// on another thread (the caller may close, and reuse, its number meanwhile). `what` names it.
inline int DupFd(Napi::Env env, int fd, const char* what) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) throw ErrnoError(env, errno, "fcntl F_DUPFD_CLOEXEC", what);
  return dup;
}

// Runs fn(arg) in a child that shares this process's memory until it execs or exits (clone
// with CLONE_VM | CLONE_VFORK, as posix_spawn does): no page tables are copied, which for a
// process of Node's size is most of what a fork costs. The calling thread is suspended
// meanwhile, and fn runs on `stack` (a ChildStack's). Only for children that make raw
// syscalls on memory prepared before: joining a user namespace refuses a shared mm, and PR_SET_DUMPABLE would
// change the parent's. Returns the pid, or -1 with errno.
pid_t CloneVfork(int (*fn)(void*), void* arg, char* stack, size_t size);

// A child's stack: not zeroed, so only the pages the child touches are ever faulted in.
struct ChildStack {
  static constexpr size_t kSize = 256 * 1024;
  std::unique_ptr<char[]> bytes{new char[kSize]};
};

// What becomes of a child that reports once and exits: settle(env, report) runs on the
// main thread and returns the promise's value, or throws a Napi::Error that rejects it.
using Settle = std::function<Napi::Value(Napi::Env, const ChildReport&)>;

// Runs body(reportFd) in such a child (CloneVfork), from a thread of its own so that the
// event loop runs on meanwhile (many targets graft at once), and returns a promise that
// settle decides. In the child every handler is back to SIG_DFL and all signals stay
// blocked. body never returns. A child that died without a report (a signal, or a crash)
// rejects it with code ECHILDDIED, and the signal or status; `what` names the child in that
// message ("graft") and must outlive it (a literal).
Napi::Promise RunReporting(Napi::Env env, const char* what, std::function<void(int)> body, Settle settle);

// Strings made before fork and never touched after it.
struct CStrings {
  std::vector<std::string> owned;
  std::vector<char*> ptrs;

  explicit CStrings(const Napi::Array& arr);
  size_t size() const { return owned.size(); }
  char* const* data() const { return ptrs.data(); }
};

}  // namespace crashcart
