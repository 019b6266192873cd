// Loop devices: attach an image read-only with autoclear, read a device's status, detach,
// find a free one.
// Autoclear makes the kernel free the device when its last user (mount or open fd) goes
// away, so a crashed crashcart can never leak one.
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "errors.h"
#include "loop.h"

namespace crashcart {
namespace {

// Another process can take the free device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE.
constexpr int kAttachAttempts = 32;

std::string LoopPath(int index) { return "/dev/loop" + std::to_string(index); }

// Kernels before 5.8 have no LOOP_CONFIGURE: the older two-step way.
// Returns 0 or an errno; on failure the device is left unbound.
int AttachLegacy(int loopFd, int imageFd, uint32_t flags) {
  if (ioctl(loopFd, LOOP_SET_FD, imageFd) < 0) return errno;
  struct loop_info64 info;
  memset(&info, 0, sizeof info);
  info.lo_flags = flags & ~LO_FLAGS_READ_ONLY;  // read-only follows the fd's open mode here
  if (ioctl(loopFd, LOOP_SET_STATUS64, &info) < 0) {
    int err = errno;
    ioctl(loopFd, LOOP_CLR_FD, 0);
    return err;
  }
  return 0;
}

}  // namespace

// loopAttach(imageFd, readOnly) -> { fd, index, path, major, minor }
Napi::Value LoopAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int imageFd = info[0].As<Napi::Number>().Int32Value();
  bool readOnly = info[1].ToBoolean().Value();
  uint32_t flags = LO_FLAGS_AUTOCLEAR | (readOnly ? LO_FLAGS_READ_ONLY : 0);

  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) throw ErrnoError(env, errno, "open", "/dev/loop-control");

  for (int attempt = 0; attempt < kAttachAttempts; attempt++) {
    int index = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (index < 0) {
      int err = errno;
      close(ctl);
      throw ErrnoError(env, err, "ioctl LOOP_CTL_GET_FREE", "/dev/loop-control");
    }
    std::string path = LoopPath(index);
    int fd = open(path.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      close(ctl);
      throw ErrnoError(env, err, "open", path);
    }

    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = static_cast<uint32_t>(imageFd);
    config.info.lo_flags = flags;
    int err = ioctl(fd, LOOP_CONFIGURE, &config) == 0 ? 0 : errno;
    if (err == EINVAL || err == ENOTTY) err = AttachLegacy(fd, imageFd, flags);
    if (err == EBUSY) {  // taken by someone else in the meantime: ask for another
      close(fd);
      continue;
    }
    if (err != 0) {
      close(fd);
      close(ctl);
      throw ErrnoError(env, err, "ioctl LOOP_CONFIGURE", path);
    }
    close(ctl);

    struct stat st;
    if (fstat(fd, &st) < 0) {
      err = errno;
      close(fd);  // autoclear: closing the only reference frees the device
      throw ErrnoError(env, err, "fstat", path);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", fd);
    out.Set("index", index);
    out.Set("path", path);
    out.Set("major", major(st.st_rdev));
    out.Set("minor", minor(st.st_rdev));
    return out;
  }
  close(ctl);
  throw ErrnoError(env, EBUSY, "ioctl LOOP_CONFIGURE", "/dev/loop-control");
}

// loopStatus(loopFd) -> { index, backingDevice, backingInode, offset, sizeLimit, readOnly, autoClear }
Napi::Value LoopStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct loop_info64 li;
  memset(&li, 0, sizeof li);
  if (ioctl(fd, LOOP_GET_STATUS64, &li) < 0) {
    throw ErrnoError(env, errno, "ioctl LOOP_GET_STATUS64", "/proc/self/fd/" + std::to_string(fd));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("index", li.lo_number);
  out.Set("backingDevice", static_cast<double>(li.lo_device));
  out.Set("backingInode", static_cast<double>(li.lo_inode));
  out.Set("offset", static_cast<double>(li.lo_offset));
  out.Set("sizeLimit", static_cast<double>(li.lo_sizelimit));
  out.Set("readOnly", (li.lo_flags & LO_FLAGS_READ_ONLY) != 0);
  out.Set("autoClear", (li.lo_flags & LO_FLAGS_AUTOCLEAR) != 0);
  return out;
}

// loopDetach(loopFd): unbinds now (with autoclear set and users left, the kernel
// defers it until the last one goes).
Napi::Value LoopDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (ioctl(fd, LOOP_CLR_FD, 0) < 0) {
    throw ErrnoError(env, errno, "ioctl LOOP_CLR_FD", "/proc/self/fd/" + std::to_string(fd));
  }
  return env.Undefined();
}

// loopFree() -> index: the free loop device the kernel would hand out next (it creates one
// when none is free); nothing is bound, so the device stays free.
Napi::Value LoopFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) throw ErrnoError(env, errno, "open", "/dev/loop-control");
  int index = ioctl(ctl, LOOP_CTL_GET_FREE);
  int err = errno;
  close(ctl);
  if (index < 0) throw ErrnoError(env, err, "ioctl LOOP_CTL_GET_FREE", "/dev/loop-control");
  return Napi::Number::New(env, index);
}

}  // namespace crashcart
