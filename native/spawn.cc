// Spawn a command inside a target's namespaces, through crashcart-wait (native/wait.cc):
//
//   node ─clone(VM|VFORK)─▶ execve crashcart-wait PLAN-FD REPORT-FD
//                    crashcart-wait: cgroups, setns (user last) ─fork─▶ command: exec
//   node ─thread─▶ waits for crashcart-wait's report and end
//
// The request becomes a CommandPlan here, with duplicates of the caller's fds, in a memfd
// that crashcart-wait reads. The clone, from the calling thread with every signal blocked,
// shares crashcart's memory only until that exec (the caller is suspended meanwhile, a
// fraction of a millisecond): no copy of Node's page tables, no copy-on-write faults in
// Node while the command runs, and no thread to start before the command can (starting one
// cost an attach a millisecond or two here). crashcart-wait's pid is the waiting process;
// its exit status is the command's, which a thread of its own waits for. A failure before
// the command's exec comes back on a close-on-exec pipe as {step, errno}.

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "command-plan.h"
#include "errors.h"
#include "spawn.h"

namespace crashcart {
namespace {

struct Spawning {
  CommandPlan plan;
  std::string helper;  // crashcart-wait's path
  std::vector<int> ownFds;  // duplicates of the caller's fds, until crashcart-wait has them
  Fault fault;
  int planFd = -1;      // the memfd holding the encoded plan
  int reportRead = -1;  // the report pipe; its write end is plan.reportFd

  int Own(Napi::Env env, int fd) {
    if (fd < 0) return -1;
    ownFds.push_back(DupFd(env, fd, "spawn"));
    return ownFds.back();
  }
  // Once crashcart-wait has exec'd (or failed to): it holds its copies.
  void CloseHandedOver() {
    for (int fd : ownFds) close(fd);
    ownFds.clear();
    fault.Close();
    if (planFd >= 0) close(planFd);
    if (plan.reportFd >= 0) close(plan.reportFd);
    planFd = plan.reportFd = -1;
  }
  ~Spawning() {
    CloseHandedOver();
    if (reportRead >= 0) close(reportRead);
  }
};

// The clone's body, until execve: handlers back to SIG_DFL (the mask, all blocked, stays),
// the fds crashcart-wait needs made inheritable (in the clone's own fd table), exec. It
// shares crashcart's memory: no allocation here, only what Spawn prepared.
int StartHelper(void* arg) {
  auto* s = static_cast<Spawning*>(arg);
  ResetSignalHandlers();
  for (int fd : s->ownFds) fcntl(fd, F_SETFD, 0);
  for (int fd : {s->planFd, s->plan.reportFd, s->fault.crashcart}) {
    if (fd >= 0) fcntl(fd, F_SETFD, 0);
  }
  for (int fd = 0; fd <= 2; fd++) fcntl(fd, F_SETFD, 0);  // crashcart's own stdio (Node may mark it close-on-exec)
  char planArg[16], reportArg[16];
  // no snprintf between clone and exec: digits by hand
  auto digits = [](int v, char* out) {
    char tmp[16];
    int n = 0;
    do tmp[n++] = static_cast<char>('0' + v % 10); while ((v /= 10) > 0);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
  };
  digits(s->planFd, planArg);
  digits(s->plan.reportFd, reportArg);
  char* argv[] = {const_cast<char*>("crashcart-wait"), planArg, reportArg, nullptr};
  char* envp[] = {nullptr};
  execve(s->helper.c_str(), argv, envp);
  ChildSend(s->plan.reportFd, kStepHelper, errno, 0, 0);
  _exit(127);
}

struct Waiter {
  std::shared_ptr<Spawning> spawning;  // keeps the strings alive for error messages
  Napi::Promise::Deferred exited;
  Napi::ThreadSafeFunction tsfn;
  pid_t pid = -1;  // crashcart-wait's
  ChildReport report{};
  bool failed = false;
  int status = 0;
};

void Settle(Napi::Env env, Waiter* w) {
  if (w->failed) {
    const Spawning& s = *w->spawning;
    int step = w->report.step;
    int detail = w->report.detail;
    std::string path;
    if (step == kStepExecve && detail >= 0 && static_cast<size_t>(detail) < s.plan.candidates.size()) {
      path = s.plan.candidates[detail];
    } else if (step == kStepChdir) {
      path = s.plan.cwdFd >= 0 ? "(the target's working directory)" : s.plan.workdir;
    } else if (step == kStepHelper) {
      path = s.helper;
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

// On a thread of its own, once crashcart-wait runs: its report, then its end.
void WaitForEnd(Waiter* w) {
  BlockAllSignals();  // this thread's own: Node's handlers run on its main thread
  w->failed = ReadReport(w->spawning->reportRead, &w->report) && w->report.step != kStepNone;
  while (waitpid(w->pid, &w->status, 0) < 0 && errno == EINTR) {
  }
  w->tsfn.BlockingCall(w, [](Napi::Env env, Napi::Function, Waiter* waiter) {
    Settle(env, waiter);
    waiter->tsfn.Release();
    delete waiter;
  });
}

std::vector<int> Ints(const Napi::Array& arr) {
  std::vector<int> out;
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  return out;
}

uint64_t Hex(Napi::Env env, const Napi::Object& o, const char* key) {
  std::string s = o.Get(key).As<Napi::String>().Utf8Value();
  char* end = nullptr;
  unsigned long long v = strtoull(s.c_str(), &end, 16);
  if (s.empty() || *end != '\0') throw Napi::TypeError::New(env, std::string("Expected hex digits for caps.") + key + " but received '" + s + "'");
  return v;
}

uint64_t SignalBits(const Napi::Value& v) {
  uint64_t bits = 0;
  if (v.IsArray()) {
    for (int sig : Ints(v.As<Napi::Array>())) {
      if (sig >= 1 && sig <= 64) bits |= 1ULL << (sig - 1);
    }
  }
  return bits;
}

std::vector<std::string> Strings(const Napi::Array& arr) {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

}  // namespace

// spawn(req) -> Promise<{ pid, exited: Promise<{code, signal}> }>, once crashcart-wait runs
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  auto spawning = std::make_shared<Spawning>();
  Spawning& s = *spawning;
  CommandPlan& plan = s.plan;
  auto own = [&](int fd) { return s.Own(env, fd); };
  s.helper = req.Get("helper").As<Napi::String>().Utf8Value();
  Napi::Array nss = req.Get("namespaces").As<Napi::Array>();
  for (uint32_t i = 0; i < nss.Length(); i++) {
    Napi::Array pair = nss.Get(i).As<Napi::Array>();
    plan.namespaces.emplace_back(own(pair.Get(0u).As<Napi::Number>().Int32Value()), pair.Get(1u).As<Napi::Number>().Int32Value());
  }
  for (int fd : Ints(req.Get("cgroupProcsFds").As<Napi::Array>())) plan.cgroupProcsFds.push_back(own(fd));
  plan.rootFd = own(req.Get("rootFd").As<Napi::Number>().Int32Value());
  plan.cwdFd = own(req.Get("cwdFd").As<Napi::Number>().Int32Value());
  plan.workdir = req.Get("workdir").As<Napi::String>().Utf8Value();
  plan.uid = req.Get("uid").As<Napi::Number>().Uint32Value();
  plan.gid = req.Get("gid").As<Napi::Number>().Uint32Value();
  for (int g : Ints(req.Get("groups").As<Napi::Array>())) plan.groups.push_back(static_cast<uint32_t>(g));
  Napi::Value stdio = req.Get("stdio");
  if (stdio.IsArray()) {
    std::vector<int> fds = Ints(stdio.As<Napi::Array>());
    if (fds.size() != 3) throw Napi::TypeError::New(env, "Expected stdio as three fds (-1: keep crashcart's)");
    for (int i = 0; i < 3; i++) plan.stdio[i] = own(fds[i]);
  }
  plan.forwarded = SignalBits(req.Get("forwardSignals"));
  plan.fromTerminal = SignalBits(req.Get("terminalSignals"));
  Napi::Value caps = req.Get("caps");
  if (caps.IsObject()) {
    Napi::Object c = caps.As<Napi::Object>();
    plan.capsSet = 1;
    plan.bounding = Hex(env, c, "bounding");
    plan.permitted = Hex(env, c, "permitted");
    plan.effective = Hex(env, c, "effective");
    plan.inheritable = Hex(env, c, "inheritable");
    plan.ambient = Hex(env, c, "ambient");
    plan.lastCap = c.Get("lastCap").As<Napi::Number>().Int32Value();
    plan.noNewPrivs = c.Get("noNewPrivs").ToBoolean().Value() ? 1 : 0;
    if (plan.lastCap < 0 || plan.lastCap > 63) throw Napi::RangeError::New(env, "Expected caps.lastCap in 0..63");
  }
  plan.candidates = Strings(req.Get("candidates").As<Napi::Array>());
  plan.argv = Strings(req.Get("argv").As<Napi::Array>());
  plan.env = Strings(req.Get("env").As<Napi::Array>());
  if (plan.argv.empty() || plan.candidates.empty()) throw Napi::TypeError::New(env, "Expected a non-empty argv and candidates");
  s.fault = ParseFault(env, req);
  plan.faultPoint = s.fault.point;
  plan.faultAction = s.fault.action;
  plan.faultCrashcart = s.fault.crashcart;

  int report[2];
  if (pipe2(report, O_CLOEXEC) < 0) throw ErrnoError(env, errno, "pipe2");
  s.reportRead = report[0];
  plan.reportFd = report[1];
  s.planFd = memfd_create("crashcart-plan", MFD_CLOEXEC);
  if (s.planFd < 0) throw ErrnoError(env, errno, "memfd_create");
  std::string bytes = EncodePlan(plan);
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = write(s.planFd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(env, errno, "write", "memfd crashcart-plan");
    done += static_cast<size_t>(n);
  }

  // Everything that can fail (throw) is made before the clone: once crashcart-wait runs,
  // only the thread that waits for it is left to start.
  Napi::Promise::Deferred started = Napi::Promise::Deferred::New(env);
  auto* waiter = new Waiter{spawning, Napi::Promise::Deferred::New(env),
                            Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "crashcart-wait", 0, 1)};
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("exited", waiter->exited.Promise());
  // The clone inherits this thread's mask: every signal blocked until crashcart-wait, which
  // keeps them blocked and waits with sigwaitinfo; Node's handlers never run in the clone.
  int cloneErr;
  {
    ChildStack stack;
    sigset_t old = BlockAllSignals();
    waiter->pid = CloneVfork(StartHelper, &s, stack.bytes.get(), ChildStack::kSize);
    cloneErr = errno;
    RestoreSignals(old);
  }
  s.CloseHandedOver();
  if (waiter->pid < 0) {
    waiter->tsfn.Release();
    delete waiter;  // exited never settles: nobody has it
    started.Reject(ErrnoError(env, cloneErr, "clone").Value());
    return started.Promise();
  }
  handle.Set("pid", waiter->pid);
  std::thread(WaitForEnd, waiter).detach();
  started.Resolve(handle);
  return started.Promise();
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
