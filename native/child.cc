#include "child.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/wait.h>

#include <thread>

namespace crashcart {

const char* StepName(int step) {
  switch (step) {
    case kStepSetns: return "setns";
    case kStepChroot: return "chroot";
    case kStepChdir: return "chdir";
    case kStepOpen: return "openat";
    case kStepMountPoint: return "openat";
    case kStepMkdir: return "mkdirat";
    case kStepRemount: return "remount rw";
    case kStepRestore: return "remount ro";
    case kStepMknod: return "mknodat";
    case kStepMount: return "mount";
    case kStepMoveMount: return "move_mount";
    case kStepUnlink: return "unlinkat";
    case kStepUmount: return "umount2";
    case kStepRmdir: return "rmdir";
    case kStepCgroup: return "write cgroup.procs";
    case kStepFork: return "fork";
    case kStepSetgroups: return "setgroups";
    case kStepSetgid: return "setresgid";
    case kStepSetuid: return "setresuid";
    case kStepCapBound: return "prctl PR_CAPBSET_DROP";
    case kStepCapSet: return "capset";
    case kStepCapAmbient: return "prctl PR_CAP_AMBIENT_RAISE";
    case kStepNoNewPrivs: return "prctl PR_SET_NO_NEW_PRIVS";
    case kStepExecve: return "execve";
    case kStepSetfsuid: return "setfsuid";
    case kStepFault: return "fault";
    case kStepUnshare: return "unshare";
    case kStepPivotRoot: return "pivot_root";
    case kStepSethostname: return "sethostname";
    case kStepLoopback: return "ioctl SIOCSIFFLAGS";
    case kStepSymlink: return "symlinkat";
    case kStepMountSetattr: return "mount_setattr";
    case kStepDup2: return "dup2";
    case kStepHelper: return "execve crashcart-wait";
    case kStepPlan: return "read plan";
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

Fault ParseFault(Napi::Env env, const Napi::Object& req) {
  Fault f;
  Napi::Value v = req.Get("fault");
  if (!v.IsObject()) return f;
  Napi::Object o = v.As<Napi::Object>();
  std::string point = o.Get("point").ToString().Utf8Value();
  std::string action = o.Get("action").ToString().Utf8Value();
  static const std::pair<const char*, int> kPoints[] = {
      {"after-mknod", kFaultAfterMknod},         {"after-mount", kFaultAfterMount},
      {"restore-dev", kFaultRestoreDev},         {"during-ungraft", kFaultDuringUngraft},
      {"in-target", kFaultInTarget},             {"before-exec", kFaultBeforeExec},         {"no-close-range", kFaultNoCloseRange},
      {"sandbox-unshared", kFaultSandboxUnshared},   {"sandbox-overlay", kFaultSandboxOverlay},
      {"sandbox-mounted", kFaultSandboxMounted},     {"sandbox-pivoted", kFaultSandboxPivoted},
      {"sandbox-before-exec", kFaultSandboxBeforeExec},
  };
  for (const auto& [name, id] : kPoints) {
    if (point == name) f.point = id;
  }
  if (f.point == kFaultNone) return f;  // a point of the TypeScript side
  if (action == "kill") {
    f.action = kFaultKill;
    f.crashcart = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    if (f.crashcart < 0) throw ErrnoError(env, errno, "pidfd_open");
    fcntl(f.crashcart, F_SETFD, FD_CLOEXEC);
  }
  else if (action == "stop") f.action = kFaultStop;
  else if (action == "fail") f.action = kFaultFail;
  else throw Napi::TypeError::New(env, "Expected fault action fail, kill or stop but received '" + action + "'");
  return f;
}

pid_t CloneVfork(int (*fn)(void*), void* arg, char* stack, size_t size) {
  // the stack grows down from its end, which must be 16-byte aligned
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t{15};
  return clone(fn, reinterpret_cast<void*>(top), CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
}

namespace {

struct ReportWaiter {
  const char* what;
  std::function<void(int)> body;
  Settle settle;
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  int reportFd = -1;  // the child's end, while it runs
  int startErr = 0;   // pipe2 or clone failed: errno
  const char* startStep = nullptr;
  ChildReport report{};
  bool got = false;
  int status = 0;
};

Napi::Error DiedError(Napi::Env env, const char* what, int status) {
  std::string how;
  if (WIFSIGNALED(status)) {
    const char* abbrev = sigabbrev_np(WTERMSIG(status));
    how = abbrev ? std::string("was killed by SIG") + abbrev : "was killed by signal " + std::to_string(WTERMSIG(status));
  } else {
    how = "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  Napi::Error error = Napi::Error::New(env, std::string("the ") + what + " process " + how + " before it reported");
  error.Value().Set("code", "ECHILDDIED");
  error.Value().Set("errno", 0);
  error.Value().Set("syscall", what);
  if (WIFSIGNALED(status)) error.Value().Set("signal", WTERMSIG(status));
  return error;
}

void SettleReport(Napi::Env env, ReportWaiter* w) {
  if (w->startStep) {
    w->deferred.Reject(ErrnoError(env, w->startErr, w->startStep).Value());
    return;
  }
  if (!w->got) {
    w->deferred.Reject(DiedError(env, w->what, w->status).Value());
    return;
  }
  try {
    w->deferred.Resolve(w->settle(env, w->report));
  } catch (const Napi::Error& e) {
    w->deferred.Reject(e.Value());
  }
}

int ReportingChild(void* arg) {
  auto* w = static_cast<ReportWaiter*>(arg);
  ResetSignalHandlers();  // a copy of the table: without CLONE_SIGHAND, Node's stays as it is
  w->body(w->reportFd);
  _exit(1);  // bodies never return; this is only a guard
}

void RunAndWait(ReportWaiter* w) {
  BlockAllSignals();  // this thread's own mask, which the child inherits
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    w->startErr = errno;
    w->startStep = "pipe2";
  } else {
    ChildStack stack;
    w->reportFd = fds[1];
    pid_t pid = CloneVfork(ReportingChild, w, stack.bytes.get(), ChildStack::kSize);
    if (pid < 0) {
      w->startErr = errno;
      w->startStep = "clone";
    }
    close(fds[1]);
    if (pid > 0) {
      // it has exited by now (these children never exec): the report is in the pipe
      w->got = ReadReport(fds[0], &w->report);
      while (waitpid(pid, &w->status, 0) < 0 && errno == EINTR) {
      }
    }
    close(fds[0]);
  }
  w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function, ReportWaiter* waiter) {
    SettleReport(env, waiter);
    waiter->tsfn.Release();
    delete waiter;
  });
}

}  // namespace

Napi::Promise RunReporting(Napi::Env env, const char* what, std::function<void(int)> body, Settle settle) {
  auto deferred = Napi::Promise::Deferred::New(env);
  auto* waiter = new ReportWaiter{what, std::move(body), std::move(settle), deferred,
                                  Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), what, 0, 1)};
  std::thread(RunAndWait, waiter).detach();
  return deferred.Promise();
}

CStrings::CStrings(const Napi::Array& arr) {
  owned.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) owned.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  for (auto& s : owned) ptrs.push_back(s.data());
  ptrs.push_back(nullptr);
}

}  // namespace crashcart
