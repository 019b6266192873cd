#include "child.h"

#include <pthread.h>
#include <string.h>

namespace crashcart {

const char* StepName(int step) {
  switch (step) {
    case kStepSetns: return "setns";
    case kStepChroot: return "chroot";
    case kStepChdir: return "chdir";
    case kStepMkdir: return "mkdir";
    case kStepRemount: return "remount";
    case kStepMknod: return "mknod";
    case kStepMount: return "mount";
    case kStepMoveMount: return "move_mount";
    case kStepUnlink: return "unlink";
    case kStepUmount: return "umount";
    case kStepRmdir: return "rmdir";
    case kStepCgroup: return "write cgroup.procs";
    case kStepFork: return "fork";
    case kStepSetgroups: return "setgroups";
    case kStepSetgid: return "setresgid";
    case kStepSetuid: return "setresuid";
    case kStepExecve: return "execve";
    case kStepSetfsuid: return "setfsuid";
    default: return "child";
  }
}

bool ReadReport(int fd, ChildReport* out) {
  size_t got = 0;
  char* p = reinterpret_cast<char*>(out);
  while (got < sizeof *out) {
    ssize_t n = read(fd, p + got, sizeof *out - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  return got == sizeof *out;
}

sigset_t BlockAllSignals() {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  return old;
}

void RestoreSignals(const sigset_t& old) { pthread_sigmask(SIG_SETMASK, &old, nullptr); }

void ResetSignalHandlers() {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &dfl, nullptr);  // fails harmlessly for the signals glibc reserves
  }
}

}  // namespace crashcart
