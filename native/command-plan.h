// What crashcart-wait needs to run a command in a target's namespaces, as the addon hands
// it over: encoded in the addon (from the spawn request), decoded in crashcart-wait (a fresh
// process, which may allocate). File descriptors are inherited by number. No N-API here.
#pragma once
#include <stdint.h>
#include <string.h>

#include <string>
#include <utility>
#include <vector>

namespace crashcart {

struct CommandPlan {
  std::vector<std::pair<int32_t, int32_t>> namespaces;  // (fd, CLONE_NEW*), in setns order
  std::vector<int32_t> cgroupProcsFds;
  int32_t rootFd = -1;
  int32_t cwdFd = -1;  // -1: chdir to workdir
  std::string workdir;
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
  int32_t stdio[3] = {-1, -1, -1};  // fds that become the command's 0, 1, 2 (-1: inherited as they are)
  // --caps target: the sets as /proc/PID/status shows them
  uint8_t capsSet = 0, noNewPrivs = 0;
  uint64_t bounding = 0, permitted = 0, effective = 0, inheritable = 0, ambient = 0;
  int32_t lastCap = 40;
  uint64_t forwarded = 0;     // bit N-1: signal N, passed on whoever sent it
  uint64_t fromTerminal = 0;  // passed on only when a process sent it
  std::vector<std::string> candidates, argv, env;
  int32_t faultPoint = 0, faultAction = 0, faultCrashcart = -1;
  int32_t reportFd = -1;

  /** Every fd the plan names, for the exec that hands them over. */
  std::vector<int32_t> Fds() const {
    std::vector<int32_t> out{rootFd, cwdFd, faultCrashcart, reportFd, stdio[0], stdio[1], stdio[2]};
    for (auto& [fd, flag] : namespaces) out.push_back(fd);
    out.insert(out.end(), cgroupProcsFds.begin(), cgroupProcsFds.end());
    return out;
  }
};

namespace plan_codec {

inline void Put(std::string* out, const void* p, size_t n) { out->append(static_cast<const char*>(p), n); }
template <typename T>
void Put(std::string* out, T v) { Put(out, &v, sizeof v); }
inline void Put(std::string* out, const std::string& s) {
  Put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  Put(out, s.data(), s.size());
}
template <typename T>
void Put(std::string* out, const std::vector<T>& v) {
  Put<uint32_t>(out, static_cast<uint32_t>(v.size()));
  for (const T& x : v) Put(out, x);
}
inline void Put(std::string* out, const std::pair<int32_t, int32_t>& p) {
  Put(out, p.first);
  Put(out, p.second);
}

struct Reader {
  const char* p;
  const char* end;
  bool ok = true;

  void Get(void* out, size_t n) {
    if (static_cast<size_t>(end - p) < n) {
      ok = false;
      memset(out, 0, n);
      return;
    }
    memcpy(out, p, n);
    p += n;
  }
  template <typename T>
  void Get(T* v) { Get(static_cast<void*>(v), sizeof *v); }
  void Get(std::string* s) {
    uint32_t n = 0;
    Get(&n);
    if (!ok || static_cast<size_t>(end - p) < n) {
      ok = false;
      return;
    }
    s->assign(p, n);
    p += n;
  }
  void Get(std::pair<int32_t, int32_t>* v) {
    Get(&v->first);
    Get(&v->second);
  }
  template <typename T>
  void Get(std::vector<T>* v) {
    uint32_t n = 0;
    Get(&n);
    if (!ok || n > static_cast<size_t>(end - p)) {  // each item takes a byte at least
      ok = false;
      return;
    }
    v->resize(n);
    for (T& x : *v) Get(&x);
  }
};

// The fields in one order, for both directions.
template <typename F>
void Fields(CommandPlan& c, F&& f) {
  f(&c.namespaces), f(&c.cgroupProcsFds), f(&c.rootFd), f(&c.cwdFd), f(&c.workdir), f(&c.uid), f(&c.gid), f(&c.groups);
  f(&c.stdio[0]), f(&c.stdio[1]), f(&c.stdio[2]);
  f(&c.capsSet), f(&c.noNewPrivs), f(&c.bounding), f(&c.permitted), f(&c.effective), f(&c.inheritable), f(&c.ambient), f(&c.lastCap);
  f(&c.forwarded), f(&c.fromTerminal), f(&c.candidates), f(&c.argv), f(&c.env);
  f(&c.faultPoint), f(&c.faultAction), f(&c.faultCrashcart), f(&c.reportFd);
}

constexpr uint32_t kMagic = 0x63637770;  // "pwcc": the version of this layout

}  // namespace plan_codec

inline std::string EncodePlan(const CommandPlan& plan) {
  std::string out;
  plan_codec::Put(&out, plan_codec::kMagic);
  plan_codec::Fields(const_cast<CommandPlan&>(plan), [&](auto* field) { plan_codec::Put(&out, *field); });
  return out;
}

inline bool DecodePlan(const std::string& bytes, CommandPlan* plan) {
  plan_codec::Reader r{bytes.data(), bytes.data() + bytes.size()};
  uint32_t magic = 0;
  r.Get(&magic);
  if (magic != plan_codec::kMagic) return false;
  plan_codec::Fields(*plan, [&](auto* field) { r.Get(field); });
  return r.ok && r.p == r.end;
}

}  // namespace crashcart
