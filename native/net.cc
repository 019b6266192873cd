// The network helper of `crashcart forward`: a long-lived child that lives in a target's
// network namespace and opens connections there, so no connection forks.
//
//   node ──fork──▶ helper: PR_SET_PDEATHSIG, setns(net), then serves requests on a
//     │              SOCK_SEQPACKET socketpair: one request {id, address} -> a non-blocking
//     │              socket() + connect() in the target's namespace; when the connect is
//     │              done, the reply {id, errno} carries the connected fd (SCM_RIGHTS)
//     └─ reader thread: recvmsg() on the parent's end, each reply to JS (ThreadSafeFunction);
//                      at EOF it reaps the helper and reports how it ended
//
// The helper never execs and makes raw syscalls only (its tables are allocated before fork).
// Unix socket paths are opened in the target's root with openat2(RESOLVE_IN_ROOT) and
// connected to through /proc/self/fd/N, so a symlink planted in the container resolves
// inside it, never to a socket of the host. It dies with crashcart (PR_SET_PDEATHSIG, and
// the socketpair's EOF), and ends by itself when the target's process exits (a pidfd).
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "errors.h"
#include "net.h"

namespace crashcart {
namespace {

enum Kind : uint16_t { kTcp = 1, kUnixPath = 2, kUnixAbstract = 3 };

constexpr size_t kMaxPath = 4096;

struct Request {
  uint32_t id;
  uint16_t kind;
  uint16_t port;
  int32_t family;  // AF_INET or AF_INET6 (kTcp)
  uint8_t addr[16];
  uint32_t pathLen;
  char path[kMaxPath];
};
constexpr size_t kRequestHeader = offsetof(Request, path);

struct Reply {
  uint32_t id;
  int32_t err;  // 0: the connected fd rides along
};

// How the helper ends, as its exit status: the parent tells the user which.
constexpr int kExitParentGone = 0;
constexpr int kExitTargetGone = 3;
constexpr int kExitBroken = 4;

struct Pending {
  int fd = -1;
  int pathFd = -1;  // unix path: the socket's inode, opened in the target's root
  uint32_t id = 0;
  bool retry = false;  // a unix connect that found the backlog full (EAGAIN): try again
  int64_t deadline = 0;
  sockaddr_storage addr{};
  socklen_t len = 0;
};

struct HelperPlan {
  int netNsFd = -1;
  int rootFd = -1;
  int targetPidfd = -1;
  int parent = -1;  // crashcart's pid, for the getppid() check
  int64_t timeoutMs = 10000;
  std::vector<Pending> pending;  // capacity slots, allocated before fork
  std::vector<pollfd> polls;
};

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void SendReply(int control, uint32_t id, int err, int fd) {
  Reply r{id, err};
  iovec iov{&r, sizeof r};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  if (err == 0) {
    memset(cbuf, 0, sizeof cbuf);
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t n = sendmsg(control, &mh, MSG_NOSIGNAL);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    _exit(errno == EPIPE || errno == ECONNRESET ? kExitParentGone : kExitBroken);
  }
  if (fd >= 0) close(fd);
}

void Finish(int control, Pending& slot, int err) {
  if (slot.pathFd >= 0) close(slot.pathFd);
  if (err != 0 && slot.fd >= 0) close(slot.fd);
  SendReply(control, slot.id, err, err == 0 ? slot.fd : -1);
  slot = Pending{};
}

// Starts one connection; returns true when it is still in progress (kept in `slot`).
bool Start(const HelperPlan& p, int control, const Request& req, size_t got, Pending& slot) {
  slot = Pending{};
  slot.id = req.id;
  size_t pathLen = std::min<size_t>(req.pathLen, got > kRequestHeader ? got - kRequestHeader : 0);
  int family = AF_UNIX;
  if (req.kind == kTcp) {
    family = req.family;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&slot.addr);
      a->sin_family = AF_INET;
      a->sin_port = htons(req.port);
      memcpy(&a->sin_addr, req.addr, 4);
      slot.len = sizeof *a;
    } else if (family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&slot.addr);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(req.port);
      memcpy(&a->sin6_addr, req.addr, 16);
      slot.len = sizeof *a;
    } else {
      Finish(control, slot, EAFNOSUPPORT);
      return false;
    }
  } else if (req.kind == kUnixPath) {
    char path[kMaxPath + 1];
    memcpy(path, req.path, pathLen);
    path[pathLen] = '\0';
    const char* rel = path;
    while (*rel == '/') rel++;
    if (*rel == '\0') rel = ".";
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    slot.pathFd = static_cast<int>(syscall(SYS_openat2, p.rootFd, rel, &how, sizeof how));
    if (slot.pathFd < 0) {
      Finish(control, slot, errno);
      return false;
    }
    struct stat st;
    if (fstat(slot.pathFd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
      Finish(control, slot, ENOTSOCK);
      return false;
    }
    auto* a = reinterpret_cast<sockaddr_un*>(&slot.addr);
    a->sun_family = AF_UNIX;
    // "/proc/self/fd/N": the inode just opened, whatever its path says now
    char digits[16];
    int n = 0;
    for (int v = slot.pathFd; v > 0 || n == 0; v /= 10) digits[n++] = static_cast<char>('0' + v % 10);
    const char prefix[] = "/proc/self/fd/";
    size_t at = sizeof prefix - 1;
    memcpy(a->sun_path, prefix, at);
    while (n > 0) a->sun_path[at++] = digits[--n];
    a->sun_path[at] = '\0';
    slot.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + at + 1);
  } else if (req.kind == kUnixAbstract) {
    auto* a = reinterpret_cast<sockaddr_un*>(&slot.addr);
    if (pathLen + 1 > sizeof a->sun_path) {
      Finish(control, slot, ENAMETOOLONG);
      return false;
    }
    a->sun_family = AF_UNIX;
    a->sun_path[0] = '\0';
    memcpy(a->sun_path + 1, req.path, pathLen);
    slot.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + pathLen);
  } else {
    Finish(control, slot, EINVAL);
    return false;
  }
  slot.fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (slot.fd < 0) {
    Finish(control, slot, errno);
    return false;
  }
  slot.deadline = NowMs() + p.timeoutMs;
  if (connect(slot.fd, reinterpret_cast<sockaddr*>(&slot.addr), slot.len) == 0) {
    Finish(control, slot, 0);
    return false;
  }
  if (errno == EINPROGRESS) return true;
  if (errno == EAGAIN && family == AF_UNIX) {  // the listener's backlog is full
    slot.retry = true;
    return true;
  }
  Finish(control, slot, errno);
  return false;
}

// Closes every descriptor but the ones the helper works with (Node's listening sockets,
// connections, pipes and epoll fds are none of its business).
void CloseAllBut(int* keep, int count) {
  std::sort(keep, keep + count);
  unsigned from = 3;
  for (int i = 0; i < count; i++) {
    if (keep[i] < 3) continue;
    if (static_cast<unsigned>(keep[i]) > from) syscall(SYS_close_range, from, keep[i] - 1, 0);
    from = static_cast<unsigned>(keep[i]) + 1;
  }
  syscall(SYS_close_range, from, ~0U, 0);
}

[[noreturn]] void Helper(HelperPlan& p, int control, int reportFd) {
  // Dies with crashcart; a crashcart that died before the prctl is seen by getppid().
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != p.parent) _exit(kExitParentGone);
  prctl(PR_SET_NAME, "crashcart-net");
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    for (int fd = 0; fd <= 2; fd++) dup2(null, fd);
    close(null);
  }
  int keep[] = {control, reportFd, p.netNsFd, p.rootFd, p.targetPidfd};
  CloseAllBut(keep, sizeof keep / sizeof keep[0]);
  if (setns(p.netNsFd, CLONE_NEWNET) < 0) {
    ChildSend(reportFd, kStepSetns, errno, 0, 0);
    _exit(1);
  }
  close(p.netNsFd);
  ChildSend(reportFd, kStepNone, 0, 0, 0);
  close(reportFd);

  const size_t capacity = p.pending.size();
  size_t used = 0;
  Request req;
  for (;;) {
    size_t n = 0;
    p.polls[n++] = {control, static_cast<short>(used < capacity ? POLLIN : 0), 0};
    p.polls[n++] = {p.targetPidfd, POLLIN, 0};
    int64_t now = NowMs();
    int64_t next = -1;
    bool retrying = false;
    for (size_t i = 0; i < used; i++) {
      const Pending& s = p.pending[i];
      if (s.retry) retrying = true;
      p.polls[n++] = {s.retry ? -1 : s.fd, POLLOUT, 0};
      if (next < 0 || s.deadline < next) next = s.deadline;
    }
    int timeout = next < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, next - now));
    if (retrying && (timeout < 0 || timeout > 5)) timeout = 5;
    int ready = poll(p.polls.data(), n, timeout);
    if (ready < 0 && errno != EINTR) _exit(kExitBroken);
    if (p.polls[1].revents) _exit(kExitTargetGone);

    // Finished connects first: their slots make room for new requests.
    now = NowMs();
    for (size_t i = 0; i < used;) {
      Pending& s = p.pending[i];
      short revents = ready > 0 ? p.polls[2 + i].revents : 0;
      int err = -1;  // -1: still going
      if (s.retry) {
        if (connect(s.fd, reinterpret_cast<sockaddr*>(&s.addr), s.len) == 0) err = 0;
        else if (errno != EAGAIN) err = errno;
      } else if (revents) {
        socklen_t len = sizeof err;
        if (getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
      }
      if (err < 0 && now >= s.deadline) err = ETIMEDOUT;
      if (err < 0) {
        i++;
        continue;
      }
      Finish(control, s, err);
      // the last slot (and its poll result) moves into this one, and is looked at next
      if (i != used - 1) {
        p.pending[i] = p.pending[used - 1];
        p.polls[2 + i] = p.polls[2 + used - 1];
        p.pending[used - 1] = Pending{};
      }
      used--;
    }

    if (p.polls[0].revents & POLLIN) {
      while (used < capacity) {
        ssize_t got = recv(control, &req, sizeof req, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN) break;
        if (got <= 0) _exit(kExitParentGone);  // crashcart stopped (EOF) or is gone
        if (static_cast<size_t>(got) < kRequestHeader) continue;
        if (Start(p, control, req, static_cast<size_t>(got), p.pending[used])) used++;
      }
    } else if (p.polls[0].revents & (POLLHUP | POLLERR)) {
      _exit(kExitParentGone);
    }
  }
}

// The parent's side: one per helper, alive until the reader thread has reported its end.
struct HelperHandle {
  int control = -1;
  pid_t pid = -1;
  Napi::ThreadSafeFunction tsfn;
  Napi::FunctionReference onConnect;
  Napi::FunctionReference onExit;
};

struct Event {
  bool exited = false;
  uint32_t id = 0;
  int err = 0;
  int fd = -1;
  int status = 0;
};

void Deliver(Napi::Env env, Napi::Function, HelperHandle* h, Event* e) {
  if (e->exited) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("code", WIFEXITED(e->status) ? Napi::Value(Napi::Number::New(env, WEXITSTATUS(e->status))) : env.Null());
    r.Set("signal", WIFSIGNALED(e->status) ? Napi::Value(Napi::Number::New(env, WTERMSIG(e->status))) : env.Null());
    h->onExit.Call({r});
  } else {
    h->onConnect.Call({Napi::Number::New(env, e->id), Napi::Number::New(env, e->fd), Napi::Number::New(env, e->err)});
  }
}

void ReadReplies(HelperHandle* h) {
  for (;;) {
    Reply r{};
    iovec iov{&r, sizeof r};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(h->control, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    auto* e = new Event{};
    e->id = r.id;
    e->err = r.err;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&e->fd, CMSG_DATA(c), sizeof(int));
    }
    if (e->err == 0 && e->fd < 0) e->err = EPROTO;
    if (h->tsfn.BlockingCall(e, [h](Napi::Env env, Napi::Function fn, Event* ev) {
          Deliver(env, fn, h, ev);
          delete ev;
        }) != napi_ok) {
      if (e->fd >= 0) close(e->fd);
      delete e;
    }
  }
  int status = 0;
  while (waitpid(h->pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(h->control);
  auto* e = new Event{};
  e->exited = true;
  e->status = status;
  h->tsfn.BlockingCall(e, [h](Napi::Env env, Napi::Function fn, Event* ev) {
    Deliver(env, fn, h, ev);
    delete ev;
    h->tsfn.Release();
    delete h;
  });
}

}  // namespace

// netHelper({ netNsFd, rootFd, targetPid, capacity, connectTimeoutMs, onConnect, onExit })
//   -> { pid, control }
Napi::Value NetHelper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object req = info[0].As<Napi::Object>();
  HelperPlan plan;
  plan.netNsFd = req.Get("netNsFd").As<Napi::Number>().Int32Value();
  plan.rootFd = req.Get("rootFd").As<Napi::Number>().Int32Value();
  int targetPid = req.Get("targetPid").As<Napi::Number>().Int32Value();
  int capacity = req.Get("capacity").As<Napi::Number>().Int32Value();
  plan.timeoutMs = req.Get("connectTimeoutMs").As<Napi::Number>().Int64Value();
  if (capacity < 1 || capacity > 65536) throw Napi::RangeError::New(env, "Expected capacity in 1..65536");
  plan.pending.resize(static_cast<size_t>(capacity));
  plan.polls.resize(static_cast<size_t>(capacity) + 2);
  plan.parent = getpid();

  plan.targetPidfd = static_cast<int>(syscall(SYS_pidfd_open, targetPid, 0));
  if (plan.targetPidfd < 0) throw ErrnoError(env, errno, "pidfd_open", std::to_string(targetPid));
  fcntl(plan.targetPidfd, F_SETFD, FD_CLOEXEC);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    int err = errno;
    close(plan.targetPidfd);
    throw ErrnoError(env, err, "socketpair");
  }
  Forked child{-1, -1};
  try {
    child = ForkReporting(env, [&](int reportFd) {
      close(sv[0]);
      Helper(plan, sv[1], reportFd);
    });
  } catch (...) {
    close(sv[0]);
    close(sv[1]);
    close(plan.targetPidfd);
    throw;
  }
  close(sv[1]);
  close(plan.targetPidfd);
  ChildReport report{};
  bool got = ReadReport(child.reportFd, &report);
  close(child.reportFd);
  if (!got || report.step != kStepNone) {
    close(sv[0]);
    int status = 0;
    while (waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got) throw ErrnoError(env, report.err, StepName(report.step), "net");
    Napi::Error error = Napi::Error::New(env, "the network helper process exited before it reported");
    error.Value().Set("code", "ECHILDDIED");
    error.Value().Set("errno", 0);
    error.Value().Set("syscall", "net helper");
    throw error;
  }

  auto* h = new HelperHandle{};
  h->control = sv[0];
  h->pid = child.pid;
  h->onConnect = Napi::Persistent(req.Get("onConnect").As<Napi::Function>());
  h->onExit = Napi::Persistent(req.Get("onExit").As<Napi::Function>());
  h->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "crashcart-net", 0, 1);
  std::thread(ReadReplies, h).detach();

  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", child.pid);
  out.Set("control", sv[0]);
  return out;
}

// netConnect({ control, id, kind: 'tcp'|'unix'|'abstract', family, address: Buffer, port, path })
//   -> true when sent, false when the socket buffer is full (try again later)
Napi::Value NetConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  int control = o.Get("control").As<Napi::Number>().Int32Value();
  Request req{};
  req.id = o.Get("id").As<Napi::Number>().Uint32Value();
  std::string kind = o.Get("kind").As<Napi::String>().Utf8Value();
  size_t len = kRequestHeader;
  if (kind == "tcp") {
    req.kind = kTcp;
    req.family = o.Get("family").As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
    req.port = static_cast<uint16_t>(o.Get("port").As<Napi::Number>().Uint32Value());
    Napi::Buffer<uint8_t> a = o.Get("address").As<Napi::Buffer<uint8_t>>();
    if (a.Length() != (req.family == AF_INET ? 4u : 16u)) throw Napi::TypeError::New(env, "Expected a 4- or 16-byte address");
    memcpy(req.addr, a.Data(), a.Length());
  } else if (kind == "unix" || kind == "abstract") {
    req.kind = kind == "unix" ? kUnixPath : kUnixAbstract;
    std::string path = o.Get("path").As<Napi::String>().Utf8Value();
    if (path.size() > kMaxPath) throw ErrnoError(env, ENAMETOOLONG, "connect", path);
    req.pathLen = static_cast<uint32_t>(path.size());
    memcpy(req.path, path.data(), path.size());
    len += path.size();
  } else {
    throw Napi::TypeError::New(env, "Expected kind tcp, unix or abstract but received '" + kind + "'");
  }
  for (;;) {
    ssize_t n = send(control, &req, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, errno, "send", "net helper");
  }
}

// netStop({ control }): the helper sees EOF and exits; onExit reports it.
Napi::Value NetStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int control = info[0].As<Napi::Object>().Get("control").As<Napi::Number>().Int32Value();
  shutdown(control, SHUT_RDWR);
  return env.Undefined();
}

}  // namespace crashcart
