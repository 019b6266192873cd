// Spawn a command inside a target's namespaces.
//
//   node ──fork──▶ middle: joins cgroups, setns() in the order given (user last)
//                    └─fork──▶ command: chroot to the target's root, chdir, drop to the
//                                        requested ids, reset the signal mask, execve
//
// setns(CLONE_NEWPID) only moves *children* into the PID namespace, hence the second fork.
// The middle process stays outside it, forwards signals sent to it, and mirrors the
// command's exit code or signal as its own. A failure before exec comes back on a
// close-on-exec pipe as {step, errno}; a dedicated thread waits, so the event loop doesn't.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "errors.h"
#include "spawn.h"

namespace crashcart {
namespace {

// Strings and arrays the children use, made before fork and never touched after it.
struct CStrings {
  std::vector<std::string> owned;
  std::vector<char*> ptrs;

  explicit CStrings(const Napi::Array& arr) {
    owned.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) owned.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
    for (auto& s : owned) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  size_t size() const { return owned.size(); }
  char* const* data() const { return ptrs.data(); }
};

struct SpawnPlan {
  std::vector<std::pair<int, int>> namespaces;  // (fd, CLONE_NEW*)
  std::vector<int> cgroupProcsFds;
  int rootFd = -1;
  int cwdFd = -1;
  std::string workdir;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::unique_ptr<CStrings> candidates, argv, env;
};

// Signals the middle process passes on to the command. SIGINT and SIGQUIT from the
// terminal reach the command directly (same process group), so the middle forwards those
// only when a process sent them.
bool IsForwarded(int sig) {
  return sig == SIGTERM || sig == SIGHUP || sig == SIGINT || sig == SIGQUIT || sig == SIGUSR1 || sig == SIGUSR2 ||
         sig == SIGCONT;
}

[[noreturn]] void CommandChild(const SpawnPlan& p, int reportFd) {
  if (fchdir(p.rootFd) < 0 || chroot(".") < 0) {
    ChildSend(reportFd, kStepChroot, errno, 0, 0);
    _exit(125);
  }
  int rc = p.cwdFd >= 0 ? fchdir(p.cwdFd) : chdir(p.workdir.c_str());
  if (rc < 0) {
    ChildSend(reportFd, kStepChdir, errno, 0, 0);
    _exit(125);
  }
  if (setgroups(p.groups.size(), p.groups.data()) < 0) {
    ChildSend(reportFd, kStepSetgroups, errno, 0, 0);
    _exit(125);
  }
  if (setresgid(p.gid, p.gid, p.gid) < 0) {
    ChildSend(reportFd, kStepSetgid, errno, 0, 0);
    _exit(125);
  }
  if (setresuid(p.uid, p.uid, p.uid) < 0) {
    ChildSend(reportFd, kStepSetuid, errno, 0, 0);
    _exit(125);
  }
  // stdin, stdout and stderr are the caller's: make sure they survive exec (Node may have
  // marked them close-on-exec), and let nothing else of crashcart's leak into the target.
  for (int fd = 0; fd <= 2; fd++) fcntl(fd, F_SETFD, 0);
  // They must also block: Node sets O_NONBLOCK on a pipe or socket it holds as stdio, the
  // flag belongs to the open file description the command shares, and few programs retry on
  // EAGAIN (`head` or bash's printf into a slow pipe would lose output).
  for (int fd = 0; fd <= 2; fd++) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  // The PATH search was done before fork: try each candidate as execvp would, remembering
  // that one existed but could not be run (EACCES) over "not found".
  int err = ENOENT, which = 0;
  bool sawAccess = false;
  for (size_t i = 0; i < p.candidates->size(); i++) {
    execve(p.candidates->data()[i], p.argv->data(), p.env->data());
    if (errno == ENOENT || errno == ENOTDIR) continue;
    if (errno == EACCES) {
      if (!sawAccess) which = static_cast<int>(i);
      sawAccess = true;
      continue;
    }
    err = errno;
    which = static_cast<int>(i);
    sawAccess = false;
    break;
  }
  if (sawAccess) err = EACCES;
  ChildSend(reportFd, kStepExecve, err, which, 0);
  _exit(err == ENOENT ? 127 : 126);
}

// Waits for the command, forwarding signals; then becomes its exit status.
[[noreturn]] void MirrorCommand(pid_t command) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGCHLD || IsForwarded(sig)) sigaddset(&set, sig);
  }
  int status = 0;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      pid_t r = waitpid(command, &status, WNOHANG);
      if (r == command) break;
      continue;
    }
    // Terminal-generated (SI_KERNEL) SIGINT/SIGQUIT already reached the command.
    if ((sig == SIGINT || sig == SIGQUIT) && si.si_code == SI_KERNEL) continue;
    kill(command, sig);
  }
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  struct rlimit noCore = {0, 0};
  setrlimit(RLIMIT_CORE, &noCore);  // the command's core, if any, is already written
  signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  sigprocmask(SIG_UNBLOCK, &only, nullptr);
  kill(getpid(), sig);
  _exit(128 + sig);
}

[[noreturn]] void MiddleChild(const SpawnPlan& p, int reportFd) {
  prctl(PR_SET_NAME, "crashcart-wait");  // what `ps` on the host shows for it
  // Join the target's cgroups first, as docker exec does ("0" means the writer itself).
  for (size_t i = 0; i < p.cgroupProcsFds.size(); i++) {
    if (write(p.cgroupProcsFds[i], "0", 1) < 0) {
      ChildSend(reportFd, kStepCgroup, errno, static_cast<int>(i), 0);
      _exit(125);
    }
  }
  for (size_t i = 0; i < p.namespaces.size(); i++) {
    if (setns(p.namespaces[i].first, p.namespaces[i].second) < 0) {
      ChildSend(reportFd, kStepSetns, errno, static_cast<int>(i), 0);
      _exit(125);
    }
  }
  pid_t command = fork();
  if (command < 0) {
    ChildSend(reportFd, kStepFork, errno, 0, 0);
    _exit(125);
  }
  if (command == 0) CommandChild(p, reportFd);
  close(reportFd);  // from here on only the command holds it, until its exec closes it
  MirrorCommand(command);
}

struct Waiter {
  pid_t pid;
  int reportFd;
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  std::shared_ptr<SpawnPlan> plan;  // keeps the strings alive for error messages
  ChildReport report{};
  bool failed = false;
  int status = 0;
};

void Settle(Napi::Env env, Napi::Function, Waiter* w) {
  if (w->failed) {
    const SpawnPlan& p = *w->plan;
    int step = w->report.step;
    int detail = w->report.detail;
    std::string path;
    if (step == kStepExecve && detail >= 0 && static_cast<size_t>(detail) < p.candidates->size()) {
      path = p.candidates->owned[detail];
    } else if (step == kStepChdir) {
      path = p.cwdFd >= 0 ? "(the target's working directory)" : p.workdir;
    }
    Napi::Error error = ErrnoError(env, w->report.err, StepName(step), path);
    error.Value().Set("step", StepName(step));
    error.Value().Set("detail", detail);
    w->deferred.Reject(error.Value());
  } else {
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
}

void Wait(Waiter* w) {
  w->failed = ReadReport(w->reportFd, &w->report) && w->report.step != kStepNone;
  close(w->reportFd);
  while (waitpid(w->pid, &w->status, 0) < 0 && errno == EINTR) {
  }
  w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function fn, Waiter* waiter) {
    Settle(env, fn, waiter);
    waiter->tsfn.Release();
    delete waiter;
  });
}

std::vector<int> Ints(const Napi::Array& arr) {
  std::vector<int> out;
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  return out;
}

}  // namespace

// spawn(req) -> { pid, exited: Promise<{code, signal}> }
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto plan = std::make_shared<SpawnPlan>();
  Napi::Array nss = req.Get("namespaces").As<Napi::Array>();
  for (uint32_t i = 0; i < nss.Length(); i++) {
    Napi::Array pair = nss.Get(i).As<Napi::Array>();
    plan->namespaces.emplace_back(pair.Get(0u).As<Napi::Number>().Int32Value(),
                                  pair.Get(1u).As<Napi::Number>().Int32Value());
  }
  plan->cgroupProcsFds = Ints(req.Get("cgroupProcsFds").As<Napi::Array>());
  plan->rootFd = req.Get("rootFd").As<Napi::Number>().Int32Value();
  plan->cwdFd = req.Get("cwdFd").As<Napi::Number>().Int32Value();
  plan->workdir = req.Get("workdir").As<Napi::String>().Utf8Value();
  plan->uid = req.Get("uid").As<Napi::Number>().Uint32Value();
  plan->gid = req.Get("gid").As<Napi::Number>().Uint32Value();
  for (int g : Ints(req.Get("groups").As<Napi::Array>())) plan->groups.push_back(static_cast<gid_t>(g));
  plan->candidates = std::make_unique<CStrings>(req.Get("candidates").As<Napi::Array>());
  plan->argv = std::make_unique<CStrings>(req.Get("argv").As<Napi::Array>());
  plan->env = std::make_unique<CStrings>(req.Get("env").As<Napi::Array>());
  if (plan->argv->size() == 0 || plan->candidates->size() == 0) {
    throw Napi::TypeError::New(env, "Expected a non-empty argv and candidates");
  }

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) throw ErrnoError(env, errno, "pipe2");
  sigset_t old = BlockAllSignals();
  pid_t pid = fork();
  if (pid == 0) {
    ResetSignalHandlers();  // the mask stays full: the middle waits with sigwaitinfo
    close(fds[0]);
    MiddleChild(*plan, fds[1]);
  }
  int forkErr = errno;
  RestoreSignals(old);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    throw ErrnoError(env, forkErr, "fork");
  }

  auto deferred = Napi::Promise::Deferred::New(env);
  auto* waiter = new Waiter{pid, fds[0], deferred,
                            Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                          "crashcart-wait", 0, 1),
                            plan};
  std::thread(Wait, waiter).detach();

  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", pid);
  out.Set("exited", deferred.Promise());
  return out;
}

}  // namespace crashcart
