// SPDX-License-Identifier: Apache-2.0
//
// berth native addon: thin, mechanism-only wrappers around libbpf.
//
// One ObjectWrap class per kernel object (BpfObject, BpfMap, BpfProgram,
// BpfLink; Netlink and NetlinkEvents for rtnetlink sockets, native/netlink.cc). Every wrapper owns exactly one file descriptor (or, for
// BpfObject, one struct bpf_object) and releases it in close() or, as a last
// resort, when the JS object is garbage collected.
//
// Ownership rule between BpfObject and its children: maps and programs handed
// out by a BpfObject own a *dup()* of the libbpf-owned fd. Closing the
// BpfObject therefore never invalidates a BpfMap/BpfProgram obtained from it;
// each child must be closed on its own (or is closed when collected).
//
// Errors are BpfError-shaped (see src/platform/native.ts): message
// "<op> <object>: <reason> (<CODE>)" plus errno/code/op/object properties.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct bpf_object;

namespace berth {

// ---------------------------------------------------------------- errors ---

// Symbolic name of a positive errno ("ENOENT"), or "E<n>" when unknown.
std::string ErrnoName(int err);

// Everything needed to build a BpfError; plain data so async workers can fill
// it on a thread-pool thread and turn it into a JS error on the main thread.
struct ErrInfo {
  int err = 0;            // positive errno
  std::string op;         // e.g. "map.update"
  std::string object;     // e.g. "map 'berth_counters'"
  std::string detail;     // replaces strerror() text when set
  std::string suffix;     // appended to the reason, e.g. " at element 3"
  int64_t element = -1;   // batch ops: index of the element that failed (-1: none), as `element`
  std::string log;        // libbpf output (verifier log) for load failures
  bool hasLog = false;
  bool typeError = false; // argument error: raised as a TypeError
};

Napi::Error MakeError(Napi::Env env, const ErrInfo& info);

// Throw a BpfError for a failed syscall/libbpf call (err is positive).
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& object,
                             const std::string& detail = "");
// Throw an argument error: TypeError with code EINVAL.
[[noreturn]] void ThrowArg(Napi::Env env, const std::string& op, const std::string& object,
                           const std::string& detail);

// libbpf >= 1.0 (the only mode of libbpf 1.x) returns -errno from its int
// APIs and also sets errno. Normalise to a positive errno.
inline int ErrFromRet(int ret) { return ret < 0 ? -ret : EINVAL; }

// ------------------------------------------------------------- arguments ---

struct ArgCtx {
  Napi::Env env;
  std::string op;
  std::string object;
};

std::string ArgString(const ArgCtx& c, const Napi::Value& v, const char* what);
uint32_t ArgU32(const ArgCtx& c, const Napi::Value& v, const char* what, uint32_t min = 0,
                uint32_t max = UINT32_MAX);
Napi::Buffer<uint8_t> ArgBuffer(const ArgCtx& c, const Napi::Value& v, const char* what);
Napi::Buffer<uint8_t> ArgBufferLen(const ArgCtx& c, const Napi::Value& v, const char* what, size_t len);

// ---------------------------------------------------------------- helpers ---

// Closes a file descriptor when it goes out of scope unless released.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// dup() with O_CLOEXEC; returns -errno on failure.
int DupFd(int fd);

// Kind of a bpf fd as the kernel names its anon inode: "bpf-map",
// "bpf-prog", "bpf_link", ... ("" when unknown).
std::string BpfFdKind(int fd);

// libbpf_num_possible_cpus(), cached; throws on failure.
int PossibleCpus(Napi::Env env);

bool IsPerCpuMapType(uint32_t type);

// Captures libbpf's print output on the current thread while alive.
// libbpf's print callback is process-global, but it is always invoked on the
// thread that made the libbpf call; a thread_local sink therefore separates
// concurrent loads (each runs on its own thread-pool thread) without a lock.
// Output outside any capture is dropped unless BERTH_LIBBPF_DEBUG is set.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::string* prev_;
};

void InstallLibbpfPrint();

// -------------------------------------------------------------- wrappers ---

struct AddonData {
  Napi::FunctionReference objectCtor;
  Napi::FunctionReference mapCtor;
  Napi::FunctionReference programCtor;
  Napi::FunctionReference linkCtor;
  Napi::FunctionReference ringbufCtor;
  Napi::FunctionReference netlinkCtor;
  Napi::FunctionReference netlinkEventsCtor;
};

AddonData* Data(Napi::Env env);

// Run body (which returns a Promise) and turn a synchronous throw (argument
// check, closed handle) into a rejected Promise, so promise-returning
// methods never throw.
template <typename F>
Napi::Value AsPromise(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error& e) {
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    d.Reject(e.Value());
    return d.Promise();
  }
}

// A promise-returning AsyncWorker: Execute() runs on the thread pool and
// calls Fail() on error; Result() builds the resolution value on the main
// thread. The receiver (the wrapper's JS object) is kept alive meanwhile.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(const Napi::Object& receiver, const char* resourceName)
      : Napi::AsyncWorker(receiver.Env(), resourceName),
        deferred_(Napi::Promise::Deferred::New(receiver.Env())),
        receiver_(Napi::Persistent(receiver)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Fail(int err, const std::string& suffix = "") {
    err_.err = err;
    err_.suffix = suffix;
    SetError(err_.op);
  }
  virtual Napi::Value Result() = 0;
  virtual void Finished() {}  // main thread, after OK or error
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

  ErrInfo err_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference receiver_;  // keeps the wrapper alive until done
};

class BpfMapWrap;
class BpfProgramWrap;

struct MapInit {
  int fd = -1;  // ownership passes to the wrapper
  std::string name;
  uint32_t type = 0, keySize = 0, valueSize = 0, maxEntries = 0, id = 0;
};

struct ProgramInit {
  int fd = -1;  // ownership passes to the wrapper
  std::string name;
  uint32_t type = 0, id = 0;
};

struct LinkInit {
  int fd = -1;  // ownership passes to the wrapper
  std::string label;  // used in error messages, e.g. "link 12"
};

// Create wrapper instances. They take ownership of init.fd even when they
// throw (the fd is closed in that case).
Napi::Object NewMap(Napi::Env env, MapInit& init);
Napi::Object NewProgram(Napi::Env env, ProgramInit& init);
Napi::Object NewLink(Napi::Env env, LinkInit& init);

// Fill a MapInit/ProgramInit from the kernel's info for fd (name, type, ...).
int MapInitFromFd(int fd, MapInit& init);
int ProgramInitFromFd(int fd, ProgramInit& init);

// Returns the program's fd (throws EBADF when closed) if v is a BpfProgram
// wrapper, throws an argument error otherwise.
int ProgramFdArg(const ArgCtx& c, const Napi::Value& v, std::string* name);

class BpfObjectWrap : public Napi::ObjectWrap<BpfObjectWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Open(const Napi::CallbackInfo& info);  // native.openObject
  explicit BpfObjectWrap(const Napi::CallbackInfo& info);
  ~BpfObjectWrap() override;

  // used by the load worker
  struct bpf_object* obj() const { return obj_; }
  void LoadFinished(bool ok);

 private:
  Napi::Value GetPath(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Program(const Napi::CallbackInfo& info);
  Napi::Value BtfStruct(const Napi::CallbackInfo& info);
  Napi::Value BtfEnum(const Napi::CallbackInfo& info);
  Napi::Value MapLayout(const Napi::CallbackInfo& info);  // native/layout.cc
  Napi::Value Close(const Napi::CallbackInfo& info);

  struct bpf_object* Require(Napi::Env env, const char* op, bool needLoaded);
  std::string Label() const { return "object '" + path_ + "'"; }
  void Destroy();

  struct bpf_object* obj_ = nullptr;
  std::string path_;
  bool loaded_ = false;
  bool loading_ = false;
  bool closed_ = false;
};

class BpfMapWrap : public Napi::ObjectWrap<BpfMapWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfMapWrap(const Napi::CallbackInfo& info);
  ~BpfMapWrap() override;

  int fd() const { return fd_; }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value Keys(const Napi::CallbackInfo& info);
  Napi::Value Dump(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  std::vector<uint8_t> PackKeys(const ArgCtx& c, const Napi::Value& v, uint32_t* n);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Layout(const Napi::CallbackInfo& info);  // native/layout.cc
  Napi::Value Close(const Napi::CallbackInfo& info);

  int Fd(Napi::Env env, const char* op) const;
  std::string Label() const { return "map '" + name_ + "'"; }

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, keySize_ = 0, valueSize_ = 0, maxEntries_ = 0, id_ = 0;
  bool perCpu_ = false;
  size_t valueBufSize_ = 0;
};

class BpfProgramWrap : public Napi::ObjectWrap<BpfProgramWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfProgramWrap(const Napi::CallbackInfo& info);
  ~BpfProgramWrap() override;

  int Fd(Napi::Env env, const std::string& op) const;
  const std::string& name() const { return name_; }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value TestRunBatch(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::string Label() const { return "program '" + name_ + "'"; }

  int fd_ = -1;
  std::string name_;
  uint32_t type_ = 0, id_ = 0;
};

class BpfLinkWrap : public Napi::ObjectWrap<BpfLinkWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfLinkWrap(const Napi::CallbackInfo& info);
  ~BpfLinkWrap() override;

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);  // bpf_link_update: a new program on the live hook
  Napi::Value Close(const Napi::CallbackInfo& info);

  int Fd(Napi::Env env, const char* op) const;

  int fd_ = -1;
  std::string label_;
};

// RingBuffer (native/ringbuf.cc): a pinned BPF_MAP_TYPE_RINGBUF read on a
// thread of its own; batches reach JS through a ThreadSafeFunction.
class RingBufferWrap : public Napi::ObjectWrap<RingBufferWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Open(const Napi::CallbackInfo& info);  // native.openRingBuffer
  explicit RingBufferWrap(const Napi::CallbackInfo& info);
  ~RingBufferWrap() override;

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetRunning(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int Fd(Napi::Env env, const char* op) const;
  void StopReader();
  std::string Label() const { return "ring buffer '" + name_ + "'"; }

  int fd_ = -1;
  int wakeFd_ = -1;
  std::string name_;
  uint32_t maxEntries_ = 0;
  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<std::atomic<bool>> live_;  // false: drop queued batches
};

// Top-level functions (native/attach.cc)
Napi::Value OpenPinnedMap(const Napi::CallbackInfo& info);
Napi::Value OpenPinnedProgram(const Napi::CallbackInfo& info);
Napi::Value OpenPinnedLink(const Napi::CallbackInfo& info);
Napi::Value AttachTcx(const Napi::CallbackInfo& info);
Napi::Value AttachXdp(const Napi::CallbackInfo& info);
Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
Napi::Value TcAttach(const Napi::CallbackInfo& info);
Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info);  // notify.cc
Napi::Value TcDetach(const Napi::CallbackInfo& info);
Napi::Value ProbeTcx(const Napi::CallbackInfo& info);

// Netlink, NetlinkEvents and the netns helpers (native/netlink.cc): adds
// openNetlink, subscribeNetlink, netnsAdd, netnsDelete, writeSysctl.
void InitNetlink(Napi::Env env, Napi::Object exports);

}  // namespace berth
