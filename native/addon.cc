// Registers the addon's functions; each lives in the file of its concern.
#include <napi.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <signal.h>

#include "file.h"
#include "graft.h"
#include "inroot.h"
#include "lock.h"
#include "loop.h"
#include "net.h"
#include "process.h"
#include "sandbox.h"
#include "spawn.h"

namespace {

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("CLONE_NEWNS", CLONE_NEWNS);
  c.Set("CLONE_NEWUTS", CLONE_NEWUTS);
  c.Set("CLONE_NEWIPC", CLONE_NEWIPC);
  c.Set("CLONE_NEWNET", CLONE_NEWNET);
  c.Set("CLONE_NEWPID", CLONE_NEWPID);
  c.Set("CLONE_NEWUSER", CLONE_NEWUSER);
  c.Set("CLONE_NEWCGROUP", CLONE_NEWCGROUP);
  c.Set("O_PATH", O_PATH);
  c.Set("MS_RDONLY", static_cast<int>(MS_RDONLY));
  c.Set("MS_NOSUID", static_cast<int>(MS_NOSUID));
  c.Set("MS_NODEV", static_cast<int>(MS_NODEV));
  c.Set("MS_NOEXEC", static_cast<int>(MS_NOEXEC));
  c.Set("MS_RELATIME", static_cast<int>(MS_RELATIME));
  // signal numbers by name (the signals crashcart traps and forwards): node:os alone costs
  // an attach more than all of these
  c.Set("SIGHUP", SIGHUP);
  c.Set("SIGINT", SIGINT);
  c.Set("SIGQUIT", SIGQUIT);
  c.Set("SIGKILL", SIGKILL);
  c.Set("SIGUSR1", SIGUSR1);
  c.Set("SIGUSR2", SIGUSR2);
  c.Set("SIGPIPE", SIGPIPE);
  c.Set("SIGTERM", SIGTERM);
  c.Set("SIGCONT", SIGCONT);
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loopAttach", Napi::Function::New(env, crashcart::LoopAttach, "loopAttach"));
  exports.Set("loopStatus", Napi::Function::New(env, crashcart::LoopStatus, "loopStatus"));
  exports.Set("loopDetach", Napi::Function::New(env, crashcart::LoopDetach, "loopDetach"));
  exports.Set("loopFree", Napi::Function::New(env, crashcart::LoopFree, "loopFree"));
  exports.Set("graft", Napi::Function::New(env, crashcart::Graft, "graft"));
  exports.Set("ungraft", Napi::Function::New(env, crashcart::Ungraft, "ungraft"));
  exports.Set("fsopen", Napi::Function::New(env, crashcart::FsOpen, "fsopen"));
  exports.Set("spawn", Napi::Function::New(env, crashcart::Spawn, "spawn"));
  exports.Set("sandbox", Napi::Function::New(env, crashcart::Sandbox, "sandbox"));
  exports.Set("sandboxView", Napi::Function::New(env, crashcart::SandboxView, "sandboxView"));
  exports.Set("pipe", Napi::Function::New(env, crashcart::Pipe, "pipe"));
  exports.Set("isatty", Napi::Function::New(env, crashcart::IsATty, "isatty"));
  exports.Set("openInRoot", Napi::Function::New(env, crashcart::OpenInRoot, "openInRoot"));
  exports.Set("openAt", Napi::Function::New(env, crashcart::OpenAt, "openAt"));
  exports.Set("reopen", Napi::Function::New(env, crashcart::Reopen, "reopen"));
  exports.Set("readDir", Napi::Function::New(env, crashcart::ReadDir, "readDir"));
  exports.Set("readLink", Napi::Function::New(env, crashcart::ReadLink, "readLink"));
  exports.Set("mkdirAt", Napi::Function::New(env, crashcart::MkdirAt, "mkdirAt"));
  exports.Set("symlinkAt", Napi::Function::New(env, crashcart::SymlinkAt, "symlinkAt"));
  exports.Set("mkfifoAt", Napi::Function::New(env, crashcart::MkfifoAt, "mkfifoAt"));
  exports.Set("renameAt", Napi::Function::New(env, crashcart::RenameAt, "renameAt"));
  exports.Set("unlinkAt", Napi::Function::New(env, crashcart::UnlinkAt, "unlinkAt"));
  exports.Set("linkAt", Napi::Function::New(env, crashcart::LinkAt, "linkAt"));
  exports.Set("fchown", Napi::Function::New(env, crashcart::Chown, "fchown"));
  exports.Set("utimes", Napi::Function::New(env, crashcart::Utimes, "utimes"));
  exports.Set("netHelper", Napi::Function::New(env, crashcart::NetHelper, "netHelper"));
  exports.Set("netConnect", Napi::Function::New(env, crashcart::NetConnect, "netConnect"));
  exports.Set("netStop", Napi::Function::New(env, crashcart::NetStop, "netStop"));
  exports.Set("tryLock", Napi::Function::New(env, crashcart::TryLock, "tryLock"));
  exports.Set("readWhole", Napi::Function::New(env, crashcart::ReadWhole, "readWhole"));
  exports.Set("exitNow", Napi::Function::New(env, crashcart::ExitNow, "exitNow"));
  exports.Set("exchangePaths", Napi::Function::New(env, crashcart::ExchangePaths, "exchangePaths"));
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(crashcart, Init)
