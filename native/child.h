// What a forked child may use between fork and exec: raw syscalls only (no malloc, no
// stdio, no exceptions, no N-API). A child reports a failure to its parent as one
// fixed-size record on a close-on-exec pipe; the parent turns it into a NativeError.
#pragma once
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <napi.h>

#include <string>

namespace crashcart {

// Steps a child can fail at. The parent maps them to syscall names.
enum Step : int {
  kStepNone = 0,
  kStepSetns,
  kStepChroot,
  kStepChdir,
  kStepMkdir,
  kStepRemount,
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
  kStepExecve,
  kStepSetfsuid,
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

}  // namespace crashcart
