// Spawn a command inside a target's namespaces.
//
//   node ──fork──▶ middle: joins cgroups, setns() in the order given (user last)
//                    └─vfork──▶ command: chroot to the target's root, chdir, capabilities,
//                                        ids, reset the signal mask, execve
//
// setns(CLONE_NEWPID) only moves *children* into the PID namespace, hence the second fork.
// The middle process stays outside it, forwards the signals it is told to, and mirrors the
// command's exit code or signal as its own. A failure before exec comes back on a
// close-on-exec pipe as {step, errno}; a dedicated thread waits, so the event loop doesn't.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <sched.h>
#include <string.h>
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

// Capability sets for the command (--caps target), as /proc/PID/status shows them.
struct Caps {
  bool set = false;
  uint64_t bounding = 0, permitted = 0, effective = 0, inheritable = 0, ambient = 0;
  int lastCap = 40;
  bool noNewPrivs = false;
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
  int stdio[3] = {-1, -1, -1};  // fds that become the command's 0, 1, 2 (-1: crashcart's own)
  Caps caps;
  sigset_t forwarded;     // passed on to the command whoever sent them
  sigset_t fromTerminal;  // passed on only when a process sent them: the terminal's reach it directly
  std::unique_ptr<CStrings> candidates, argv, env;
  Fault fault;
  ChildStack commandStack;  // made before fork: the middle cannot allocate
  std::vector<int> ownFds;  // duplicates of the caller's fds, until the middle is forked

  int Own(Napi::Env env, int fd) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0) throw ErrnoError(env, errno, "fcntl F_DUPFD_CLOEXEC");
    ownFds.push_back(dup);
    return dup;
  }
  void CloseOwnFds() {
    for (int fd : ownFds) close(fd);
    ownFds.clear();
    fault.Close();  // the children have theirs
  }
  ~SpawnPlan() { CloseOwnFds(); }
};

int Fail(int reportFd, int step, int err, int detail = 0) {
  ChildSend(reportFd, step, err, detail, 0);
  _exit(1);  // the parent reads the report; this status never becomes the user's
}

// Bounding set first (it needs CAP_SETPCAP, which the later steps drop); ids then change
// with PR_SET_KEEPCAPS so the permitted set survives a non-root --user.
void DropBounding(const SpawnPlan& p, int reportFd) {
  if (!p.caps.set) return;
  for (int cap = 0; cap <= p.caps.lastCap; cap++) {
    if (p.caps.bounding & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) Fail(reportFd, kStepCapBound, errno, cap);
  }
  prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
}

void SetCaps(const SpawnPlan& p, int reportFd) {
  if (!p.caps.set) return;
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = static_cast<uint32_t>(p.caps.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(p.caps.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(p.caps.inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) < 0) Fail(reportFd, kStepCapSet, errno);
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap <= p.caps.lastCap; cap++) {
    if (!(p.caps.ambient & (1ULL << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) Fail(reportFd, kStepCapAmbient, errno, cap);
  }
  if (p.caps.noNewPrivs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) Fail(reportFd, kStepNoNewPrivs, errno);
}

// Nothing of crashcart's but stdio may reach the command. close_range needs Linux 5.11;
// before that, every descriptor up to the limit is marked close-on-exec one by one.
void CloseOnExecAbove2(const SpawnPlan& p) {
  if (!FaultHere(p.fault, kFaultNoCloseRange) && syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  struct rlimit rl;
  rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 1 << 20;
  for (rlim_t fd = 3; fd < max; fd++) {
    int fl = fcntl(static_cast<int>(fd), F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl(static_cast<int>(fd), F_SETFD, fl | FD_CLOEXEC);
  }
}

// A kill at a point of the command's is done by the middle, before it forks: from inside the
// target's PID namespace crashcart cannot be signalled.
bool CommandFault(const SpawnPlan& p, int point) { return p.fault.action != kFaultKill && FaultHere(p.fault, point); }

[[noreturn]] void CommandChild(const SpawnPlan& p, int reportFd) {
  // In the target's namespaces, still host root with host fds: the window in which not
  // being dumpable matters most.
  if (CommandFault(p, kFaultInTarget)) Fail(reportFd, kStepFault, EIO);
  if (fchdir(p.rootFd) < 0 || chroot(".") < 0) Fail(reportFd, kStepChroot, errno);
  int rc = p.cwdFd >= 0 ? fchdir(p.cwdFd) : chdir(p.workdir.c_str());
  if (rc < 0) Fail(reportFd, kStepChdir, errno);
  DropBounding(p, reportFd);
  if (setgroups(p.groups.size(), p.groups.data()) < 0) Fail(reportFd, kStepSetgroups, errno);
  if (setresgid(p.gid, p.gid, p.gid) < 0) Fail(reportFd, kStepSetgid, errno);
  if (setresuid(p.uid, p.uid, p.uid) < 0) Fail(reportFd, kStepSetuid, errno);
  SetCaps(p, reportFd);
  // stdin, stdout and stderr are the caller's, or the pipes crashcart reads (several targets
  // at once): make sure they survive exec (Node may have marked them close-on-exec), and let
  // nothing else of crashcart's leak into the target.
  for (int fd = 0; fd <= 2; fd++) {
    if (p.stdio[fd] >= 0 && p.stdio[fd] != fd && dup2(p.stdio[fd], fd) < 0) Fail(reportFd, kStepDup2, errno, fd);
  }
  for (int fd = 0; fd <= 2; fd++) fcntl(fd, F_SETFD, 0);
  // They must also block: Node sets O_NONBLOCK on a pipe or socket it holds as stdio, the
  // flag belongs to the open file description the command shares, and few programs retry on
  // EAGAIN (`head` or bash's printf into a slow pipe would lose output).
  for (int fd = 0; fd <= 2; fd++) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  CloseOnExecAbove2(p);
  if (CommandFault(p, kFaultBeforeExec)) Fail(reportFd, kStepFault, EIO);
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
  Fail(reportFd, kStepExecve, err, which);
  _exit(1);
}

// Waits for the command, forwarding signals; then becomes its exit status.
[[noreturn]] void MirrorCommand(const SpawnPlan& p, pid_t command) {
  sigset_t set = p.forwarded;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sigismember(&p.fromTerminal, sig) == 1) sigaddset(&set, sig);
  }
  sigaddset(&set, SIGCHLD);
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
    // Sent by the terminal (SI_KERNEL): it already reached the command, in the same group.
    if (sigismember(&p.fromTerminal, sig) == 1 && si.si_code == SI_KERNEL) continue;
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
  _exit(128 + sig);  // a signal that cannot end a process: the parent reads the code
}

struct CommandStart {
  const SpawnPlan* plan;
  int reportFd;
};

int StartCommand(void* arg) {
  auto* start = static_cast<CommandStart*>(arg);
  CommandChild(*start->plan, start->reportFd);
}

[[noreturn]] void MiddleChild(const SpawnPlan& p, int reportFd) {
  prctl(PR_SET_NAME, "crashcart-wait");  // what `ps` on the host shows for it
  // Join the target's cgroups first, as docker exec does ("0" means the writer itself).
  for (size_t i = 0; i < p.cgroupProcsFds.size(); i++) {
    if (write(p.cgroupProcsFds[i], "0", 1) < 0) Fail(reportFd, kStepCgroup, errno, static_cast<int>(i));
  }
  for (size_t i = 0; i < p.namespaces.size(); i++) {
    if (setns(p.namespaces[i].first, p.namespaces[i].second) < 0) Fail(reportFd, kStepSetns, errno, static_cast<int>(i));
  }
  bool commandPoint = p.fault.point == kFaultInTarget || p.fault.point == kFaultBeforeExec;
  if (commandPoint && p.fault.action == kFaultKill) FaultHere(p.fault, p.fault.point);
  // The command shares the middle's memory until its exec (CloneVfork): no second copy of
  // Node's page tables. It is not dumpable either, since the flag belongs to that memory.
  CommandStart start{&p, reportFd};
  pid_t command = CloneVfork(StartCommand, &start, p.commandStack.bytes.get(), ChildStack::kSize);
  if (command < 0) Fail(reportFd, kStepFork, errno);
  close(reportFd);  // the command has exec'd by now (closing it) or reported and exited
  MirrorCommand(p, command);
}

struct Waiter {
  std::shared_ptr<SpawnPlan> plan;  // keeps the strings alive for error messages
  Napi::Promise::Deferred started, exited;
  Napi::ThreadSafeFunction tsfn;
  // what `started` resolves to: { exited } made here (a promise's value lives only in the
  // scope that made it), and pid added once there is one
  Napi::ObjectReference handle;
  Forked child{};
  int forkErr = 0;
  const char* forkStep = nullptr;
  ChildReport report{};
  bool failed = false;
  int status = 0;
};

void Settle(Napi::Env env, Waiter* w) {
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
    w->exited.Reject(error.Value());
  } else {
    Napi::Object result = Napi::Object::New(env);
    if (WIFEXITED(w->status)) {
      result.Set("code", WEXITSTATUS(w->status));
      result.Set("signal", env.Null());
    } else {
      result.Set("code", env.Null());
      result.Set("signal", WTERMSIG(w->status));
    }
    w->exited.Resolve(result);
  }
}

// On a thread of its own: fork there (a fork of Node's size costs the event loop
// milliseconds), say so, then wait for the command's end.
void ForkAndWait(Waiter* w) {
  BlockAllSignals();  // this thread's own; the middle keeps them blocked and waits with sigwaitinfo
  w->forkErr = ForkChild([w](int fd) { MiddleChild(*w->plan, fd); }, &w->child, &w->forkStep);
  w->plan->CloseOwnFds();  // the middle has its copies
  w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function, Waiter* waiter) {
    if (waiter->forkStep) {
      waiter->started.Reject(ErrnoError(env, waiter->forkErr, waiter->forkStep).Value());  // exited never settles: nobody has it
      return;
    }
    Napi::Object out = waiter->handle.Value();
    out.Set("pid", waiter->child.pid);
    waiter->started.Resolve(out);
    waiter->handle.Reset();
  });
  if (!w->forkStep) {
    w->failed = ReadReport(w->child.reportFd, &w->report) && w->report.step != kStepNone;
    close(w->child.reportFd);
    while (waitpid(w->child.pid, &w->status, 0) < 0 && errno == EINTR) {
    }
  }
  w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function, Waiter* waiter) {
    if (!waiter->forkStep) Settle(env, waiter);
    waiter->tsfn.Release();
    delete waiter;
  });
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

uint64_t Hex(Napi::Env env, const Napi::Object& o, const char* key) {
  std::string s = o.Get(key).As<Napi::String>().Utf8Value();
  char* end = nullptr;
  unsigned long long v = strtoull(s.c_str(), &end, 16);
  if (s.empty() || *end != '\0') throw Napi::TypeError::New(env, std::string("Expected hex digits for caps.") + key + " but received '" + s + "'");
  return v;
}

}  // namespace

// spawn(req) -> Promise<{ pid, exited: Promise<{code, signal}> }>, once the middle is forked
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto plan = std::make_shared<SpawnPlan>();
  // The fork happens on another thread, later: every fd the middle needs is the plan's own
  // duplicate, so the caller may close (and reuse) its numbers meanwhile.
  auto own = [&](int fd) { return plan->Own(env, fd); };
  Napi::Array nss = req.Get("namespaces").As<Napi::Array>();
  for (uint32_t i = 0; i < nss.Length(); i++) {
    Napi::Array pair = nss.Get(i).As<Napi::Array>();
    plan->namespaces.emplace_back(own(pair.Get(0u).As<Napi::Number>().Int32Value()),
                                  pair.Get(1u).As<Napi::Number>().Int32Value());
  }
  for (int fd : Ints(req.Get("cgroupProcsFds").As<Napi::Array>())) plan->cgroupProcsFds.push_back(own(fd));
  plan->rootFd = own(req.Get("rootFd").As<Napi::Number>().Int32Value());
  int cwdFd = req.Get("cwdFd").As<Napi::Number>().Int32Value();
  plan->cwdFd = cwdFd >= 0 ? own(cwdFd) : -1;
  plan->workdir = req.Get("workdir").As<Napi::String>().Utf8Value();
  plan->uid = req.Get("uid").As<Napi::Number>().Uint32Value();
  plan->gid = req.Get("gid").As<Napi::Number>().Uint32Value();
  for (int g : Ints(req.Get("groups").As<Napi::Array>())) plan->groups.push_back(static_cast<gid_t>(g));
  Napi::Value stdio = req.Get("stdio");
  if (stdio.IsArray()) {
    std::vector<int> fds = Ints(stdio.As<Napi::Array>());
    if (fds.size() != 3) throw Napi::TypeError::New(env, "Expected stdio as three fds (-1: keep crashcart's)");
    for (int i = 0; i < 3; i++) plan->stdio[i] = fds[i] >= 0 ? own(fds[i]) : -1;
  }
  plan->forwarded = Signals(req.Get("forwardSignals"));
  plan->fromTerminal = Signals(req.Get("terminalSignals"));
  Napi::Value caps = req.Get("caps");
  if (caps.IsObject()) {
    Napi::Object c = caps.As<Napi::Object>();
    plan->caps.set = true;
    plan->caps.bounding = Hex(env, c, "bounding");
    plan->caps.permitted = Hex(env, c, "permitted");
    plan->caps.effective = Hex(env, c, "effective");
    plan->caps.inheritable = Hex(env, c, "inheritable");
    plan->caps.ambient = Hex(env, c, "ambient");
    plan->caps.lastCap = c.Get("lastCap").As<Napi::Number>().Int32Value();
    plan->caps.noNewPrivs = c.Get("noNewPrivs").ToBoolean().Value();
    if (plan->caps.lastCap < 0 || plan->caps.lastCap > 63) throw Napi::RangeError::New(env, "Expected caps.lastCap in 0..63");
  }
  plan->candidates = std::make_unique<CStrings>(req.Get("candidates").As<Napi::Array>());
  plan->argv = std::make_unique<CStrings>(req.Get("argv").As<Napi::Array>());
  plan->env = std::make_unique<CStrings>(req.Get("env").As<Napi::Array>());
  plan->fault = ParseFault(env, req);
  if (plan->argv->size() == 0 || plan->candidates->size() == 0) {
    throw Napi::TypeError::New(env, "Expected a non-empty argv and candidates");
  }

  auto* waiter = new Waiter{plan, Napi::Promise::Deferred::New(env), Napi::Promise::Deferred::New(env),
                            Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                          "crashcart-wait", 0, 1),
                            {}};
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("exited", waiter->exited.Promise());
  waiter->handle = Napi::Persistent(handle);
  Napi::Promise started = waiter->started.Promise();
  std::thread(ForkAndWait, waiter).detach();
  return started;
}

// isatty(fd) -> boolean. process.stdin.isTTY would make Node open stdin as a stream, and
// node:tty loads node:net: both cost an attach more than the rest of its checks.
Napi::Value IsATty(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), isatty(info[0].As<Napi::Number>().Int32Value()) == 1);
}

// pipe() -> [readFd, writeFd], both close-on-exec: a command's stdout or stderr for crashcart
// to read (the command gets the write end as its own fd 1 or 2 through spawn's stdio).
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) throw ErrnoError(env, errno, "pipe2");
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, fds[0]);
  out.Set(1u, fds[1]);
  return out;
}

}  // namespace crashcart
