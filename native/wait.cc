// crashcart-wait: runs one command inside a target's namespaces for the addon's spawn, and
// waits for it.
//
//   crashcart ──clone(VM|VFORK)+execve──▶ crashcart-wait PLAN-FD: joins cgroups, setns() in
//                                           the order given (user last)
//                                             └─fork──▶ command: chroot to the target's root,
//                                                        chdir, capabilities, ids, exec
//
// A program of its own rather than a fork of crashcart: a copy of Node's memory would make
// every page Node then writes a copy-on-write fault for as long as the command runs, and a
// fork of Node's size costs milliseconds. setns(CLONE_NEWPID) only moves *children* into
// the PID namespace, hence the fork. This process stays outside it, forwards the signals it
// is told to, and mirrors the command's exit code or signal as its own. A failure before
// exec comes back on the report pipe as {step, errno}. It is not dumpable, so a process in
// the container with CAP_SYS_PTRACE cannot reach the host fds it holds (runc does the same
// since CVE-2016-9962); exec restores dumpability for the command, which by then holds none.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "command-plan.h"
#include "report.h"

namespace crashcart {
namespace {

struct Running {
  const CommandPlan& p;
  Fault fault;
  std::vector<char*> candidates, argv, env;
  sigset_t forwarded, fromTerminal;
};

std::vector<char*> Pointers(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

sigset_t SignalSet(uint64_t bits) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig = 1; sig <= 64; sig++) {
    if (bits & (1ULL << (sig - 1))) sigaddset(&set, sig);
  }
  return set;
}

[[noreturn]] void Fail(int reportFd, int step, int err, int detail = 0) {
  ChildSend(reportFd, step, err, detail, 0);
  _exit(1);  // the parent reads the report; this status never becomes the user's
}

// Bounding set first (it needs CAP_SETPCAP, which the later steps drop); ids then change
// with PR_SET_KEEPCAPS so the permitted set survives a non-root --user.
void DropBounding(const CommandPlan& p) {
  if (!p.capsSet) return;
  for (int cap = 0; cap <= p.lastCap; cap++) {
    if (p.bounding & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) Fail(p.reportFd, kStepCapBound, errno, cap);
  }
  prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
}

void SetCaps(const CommandPlan& p) {
  if (!p.capsSet) return;
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = static_cast<uint32_t>(p.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(p.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(p.inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) < 0) Fail(p.reportFd, kStepCapSet, errno);
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap <= p.lastCap; cap++) {
    if (!(p.ambient & (1ULL << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) Fail(p.reportFd, kStepCapAmbient, errno, cap);
  }
  if (p.noNewPrivs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) Fail(p.reportFd, kStepNoNewPrivs, errno);
}

// Nothing of crashcart's but stdio may reach the command. close_range needs Linux 5.11;
// before that, every descriptor up to the limit is marked close-on-exec one by one.
void CloseOnExecAbove2(const Running& r) {
  if (!FaultHere(r.fault, kFaultNoCloseRange) && syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  struct rlimit rl;
  rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 1 << 20;
  for (rlim_t fd = 3; fd < max; fd++) {
    int fl = fcntl(static_cast<int>(fd), F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl(static_cast<int>(fd), F_SETFD, fl | FD_CLOEXEC);
  }
}

// A kill at a point of the command's is done here, before the fork: from inside the
// target's PID namespace crashcart cannot be signalled.
bool CommandFault(const Running& r, int point) { return r.fault.action != kFaultKill && FaultHere(r.fault, point); }

[[noreturn]] void Command(const Running& r) {
  const CommandPlan& p = r.p;
  // In the target's namespaces, still host root with host fds: the window in which not
  // being dumpable matters most.
  if (CommandFault(r, kFaultInTarget)) Fail(p.reportFd, kStepFault, EIO);
  if (fchdir(p.rootFd) < 0 || chroot(".") < 0) Fail(p.reportFd, kStepChroot, errno);
  int rc = p.cwdFd >= 0 ? fchdir(p.cwdFd) : chdir(p.workdir.c_str());
  if (rc < 0) Fail(p.reportFd, kStepChdir, errno);
  DropBounding(p);
  if (setgroups(p.groups.size(), p.groups.data()) < 0) Fail(p.reportFd, kStepSetgroups, errno);
  if (setresgid(p.gid, p.gid, p.gid) < 0) Fail(p.reportFd, kStepSetgid, errno);
  if (setresuid(p.uid, p.uid, p.uid) < 0) Fail(p.reportFd, kStepSetuid, errno);
  SetCaps(p);
  // stdin, stdout and stderr are the caller's, or the pipes crashcart reads (several targets
  // at once): make sure they survive exec, and let nothing else of crashcart's leak into the
  // target.
  for (int fd = 0; fd <= 2; fd++) {
    if (p.stdio[fd] >= 0 && p.stdio[fd] != fd && dup2(p.stdio[fd], fd) < 0) Fail(p.reportFd, kStepDup2, errno, fd);
  }
  for (int fd = 0; fd <= 2; fd++) fcntl(fd, F_SETFD, 0);
  // They must also block: Node sets O_NONBLOCK on a pipe or socket it holds as stdio, the
  // flag belongs to the open file description the command shares, and few programs retry on
  // EAGAIN (`head` or bash's printf into a slow pipe would lose output).
  for (int fd = 0; fd <= 2; fd++) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  CloseOnExecAbove2(r);
  if (CommandFault(r, kFaultBeforeExec)) Fail(p.reportFd, kStepFault, EIO);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  int which = 0;
  int err = ExecCandidates(r.candidates.data(), r.candidates.size() - 1, r.argv.data(), r.env.data(), &which);
  Fail(p.reportFd, kStepExecve, err, which);
}

// Waits for the command, forwarding signals; then becomes its exit status.
[[noreturn]] void Mirror(const Running& r, pid_t command) {
  sigset_t set = WaitSet(r.forwarded, r.fromTerminal);
  int status = 0;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      pid_t done = waitpid(command, &status, WNOHANG);
      if (done == command) break;
      continue;
    }
    // Sent by the terminal (SI_KERNEL): it already reached the command, in the same group.
    if (sigismember(&r.fromTerminal, sig) == 1 && si.si_code == SI_KERNEL) continue;
    kill(command, sig);
  }
  BecomeStatus(status);
}

bool ReadPlan(int fd, CommandPlan* plan) {
  struct stat st;
  if (fstat(fd, &st) < 0) return false;
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = pread(fd, &bytes[got], bytes.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  close(fd);
  return DecodePlan(bytes, plan);
}

}  // namespace
}  // namespace crashcart

int main(int argc, char** argv) {
  using namespace crashcart;
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // first: it holds host fds
  // All signals arrive blocked (the addon's thread blocks them): they are waited for below.
  CommandPlan p;
  int planFd = argc == 3 ? atoi(argv[1]) : -1;
  int reportFd = argc == 3 ? atoi(argv[2]) : -1;
  if (planFd < 0 || !ReadPlan(planFd, &p) || p.reportFd != reportFd) {
    if (reportFd >= 0) Fail(reportFd, kStepPlan, EINVAL);
    _exit(125);
  }
  // none of the fds handed over may reach the command but its stdio
  for (int fd : p.Fds()) {
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  Running r{p, {}, Pointers(p.candidates), Pointers(p.argv), Pointers(p.env), SignalSet(p.forwarded), SignalSet(p.fromTerminal)};
  r.fault.point = p.faultPoint;
  r.fault.action = p.faultAction;
  r.fault.crashcart = p.faultCrashcart;
  // Join the target's cgroups first, as docker exec does ("0" means the writer itself).
  for (size_t i = 0; i < p.cgroupProcsFds.size(); i++) {
    if (write(p.cgroupProcsFds[i], "0", 1) < 0) Fail(p.reportFd, kStepCgroup, errno, static_cast<int>(i));
  }
  for (size_t i = 0; i < p.namespaces.size(); i++) {
    if (setns(p.namespaces[i].first, p.namespaces[i].second) < 0) Fail(p.reportFd, kStepSetns, errno, static_cast<int>(i));
  }
  bool commandPoint = p.faultPoint == kFaultInTarget || p.faultPoint == kFaultBeforeExec;
  if (commandPoint && p.faultAction == kFaultKill) FaultHere(r.fault, p.faultPoint);
  pid_t command = fork();
  if (command < 0) Fail(p.reportFd, kStepFork, errno);
  if (command == 0) Command(r);  // still not dumpable: inherited across fork
  close(p.reportFd);  // from here on only the command holds it, until its exec closes it
  Mirror(r, command);
}
