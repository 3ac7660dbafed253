// SPDX-License-Identifier: Apache-2.0
// Errors, argument checking, fd helpers and libbpf log capture.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "berth_native.h"

namespace berth {

// ---------------------------------------------------------------- errors ---

std::string ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EPIPE: return "EPIPE";
    case EDOM: return "EDOM";
    case ERANGE: return "ERANGE";
    case EDEADLK: return "EDEADLK";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case ENODATA: return "ENODATA";
    case EPROTO: return "EPROTO";
    case EOVERFLOW: return "EOVERFLOW";
    case EBADFD: return "EBADFD";
    case EOPNOTSUPP: return "EOPNOTSUPP";  // == ENOTSUP on Linux
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EADDRINUSE: return "EADDRINUSE";
    case ENETDOWN: return "ENETDOWN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EALREADY: return "EALREADY";
    case EINPROGRESS: return "EINPROGRESS";
    case ECANCELED: return "ECANCELED";
    case ENOLINK: return "ENOLINK";
    case ENETUNREACH: return "ENETUNREACH";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENOBUFS: return "ENOBUFS";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case 524: return "ENOTSUPP";  // kernel-internal, leaks out of bpf(2)
    default: return "E" + std::to_string(err);
  }
}

static std::string StrError(int err) {
  char buf[128];
  buf[0] = '\0';
  // GNU strerror_r may return a static string instead of filling buf.
  const char* s = strerror_r(err, buf, sizeof(buf));
  if (err == 524) return "Operation not supported";
  return s ? std::string(s) : std::string(buf);
}

Napi::Error MakeError(Napi::Env env, const ErrInfo& info) {
  int err = info.err > 0 ? info.err : EINVAL;
  std::string code = ErrnoName(err);
  std::string msg = info.op;
  if (!info.object.empty()) msg += " " + info.object;
  msg += ": " + (info.detail.empty() ? StrError(err) : info.detail) + info.suffix + " (" + code + ")";
  Napi::Error e = info.typeError ? static_cast<Napi::Error>(Napi::TypeError::New(env, msg))
                                 : Napi::Error::New(env, msg);
  Napi::Object o = e.Value();
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("code", Napi::String::New(env, code));
  o.Set("op", Napi::String::New(env, info.op));
  o.Set("object", Napi::String::New(env, info.object));
  if (info.hasLog) o.Set("verifierLog", Napi::String::New(env, info.log));
  if (info.element >= 0) o.Set("element", Napi::Number::New(env, static_cast<double>(info.element)));
  return e;
}

void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& object,
                const std::string& detail) {
  ErrInfo i;
  i.err = err;
  i.op = op;
  i.object = object;
  i.detail = detail;
  throw MakeError(env, i);
}

void ThrowArg(Napi::Env env, const std::string& op, const std::string& object, const std::string& detail) {
  ErrInfo i;
  i.err = EINVAL;
  i.op = op;
  i.object = object;
  i.detail = detail;
  i.typeError = true;
  throw MakeError(env, i);
}

// ------------------------------------------------------------- arguments ---

std::string ArgString(const ArgCtx& c, const Napi::Value& v, const char* what) {
  if (!v.IsString()) ThrowArg(c.env, c.op, c.object, std::string(what) + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty()) ThrowArg(c.env, c.op, c.object, std::string(what) + " must not be empty");
  if (s.find('\0') != std::string::npos)
    ThrowArg(c.env, c.op, c.object, std::string(what) + " must not contain NUL");
  return s;
}

uint32_t ArgU32(const ArgCtx& c, const Napi::Value& v, const char* what, uint32_t min, uint32_t max) {
  if (!v.IsNumber()) ThrowArg(c.env, c.op, c.object, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max)
    ThrowArg(c.env, c.op, c.object,
             std::string(what) + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                 "]");
  return static_cast<uint32_t>(d);
}

Napi::Buffer<uint8_t> ArgBuffer(const ArgCtx& c, const Napi::Value& v, const char* what) {
  if (!v.IsBuffer()) ThrowArg(c.env, c.op, c.object, std::string(what) + " must be a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

Napi::Buffer<uint8_t> ArgBufferLen(const ArgCtx& c, const Napi::Value& v, const char* what, size_t len) {
  Napi::Buffer<uint8_t> b = ArgBuffer(c, v, what);
  if (b.Length() != len)
    ThrowArg(c.env, c.op, c.object,
             std::string(what) + " must be " + std::to_string(len) + " bytes, got " + std::to_string(b.Length()));
  return b;
}

// ---------------------------------------------------------------- helpers ---

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

int DupFd(int fd) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return d < 0 ? -errno : d;
}

std::string BpfFdKind(int fd) {
  char path[64], target[128];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof(target) - 1);
  if (n <= 0) return "";
  target[n] = '\0';
  std::string t(target);
  const std::string prefix = "anon_inode:";
  if (t.compare(0, prefix.size(), prefix) != 0) return "";
  return t.substr(prefix.size());
}

int PossibleCpus(Napi::Env env) {
  static int cached = 0;
  if (cached > 0) return cached;
  int n = libbpf_num_possible_cpus();
  if (n <= 0) ThrowErrno(env, n < 0 ? -n : EINVAL, "possibleCpus", "");
  cached = n;
  return n;
}

bool IsPerCpuMapType(uint32_t type) {
  switch (type) {
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
      return true;
    default:
      return false;
  }
}

// ------------------------------------------------------------ log capture ---

static thread_local std::string* tl_sink = nullptr;
static bool g_debug = false;

static int PrintFn(enum libbpf_print_level level, const char* fmt, va_list args) {
  std::string* sink = tl_sink;
  if (sink && (level != LIBBPF_DEBUG || g_debug)) {
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n > 0) {
      size_t old = sink->size();
      sink->resize(old + static_cast<size_t>(n) + 1);
      vsnprintf(&(*sink)[old], static_cast<size_t>(n) + 1, fmt, args);
      sink->resize(old + static_cast<size_t>(n));
    }
    return n;
  }
  if (g_debug) return vfprintf(stderr, fmt, args);
  return 0;
}

void InstallLibbpfPrint() {
  const char* d = getenv("BERTH_LIBBPF_DEBUG");
  g_debug = d && *d && strcmp(d, "0") != 0;
  libbpf_set_print(PrintFn);
}

LogCapture::LogCapture() : prev_(tl_sink) { tl_sink = &text_; }
LogCapture::~LogCapture() { tl_sink = prev_; }

// ---------------------------------------------------------------- workers ---

void PromiseWorker::OnOK() {
  Finished();
  Napi::Value v;
  try {
    v = Result();
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
    return;
  }
  deferred_.Resolve(v);
}

void PromiseWorker::OnError(const Napi::Error&) {
  Finished();
  deferred_.Reject(MakeError(Env(), err_).Value());
}

AddonData* Data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

}  // namespace berth
