// SPDX-License-Identifier: Apache-2.0
// RingBuffer: a BPF_MAP_TYPE_RINGBUF map opened from its pin, read by libbpf's
// ring_buffer on a thread of its own. start(onEvents[, onError]) runs the
// reader; every wake-up's records are copied and handed to JS as one batch
// (an array of Buffers) through a ThreadSafeFunction. stop() wakes the thread
// through an eventfd, joins it and releases the function; close() also
// closes the map fd. Batches still queued when stop() returns are dropped.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "berth_native.h"

namespace berth {

namespace {

// Records per batch at most; the rest follow in the next batch.
constexpr size_t kMaxBatch = 4096;

struct Batch {
  std::vector<std::vector<uint8_t>> records;
  ErrInfo err;  // err.err != 0: the reader failed and stopped
};

using Tsfn = Napi::ThreadSafeFunction;

int CollectSample(void* ctx, void* data, size_t size) {
  auto* batch = static_cast<Batch*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  batch->records.emplace_back(p, p + size);
  // a positive return stops this round of consuming (records stay queued)
  return batch->records.size() >= kMaxBatch ? 1 : 0;
}

}  // namespace

RingBufferWrap::RingBufferWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBufferWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowArg(env, "ringbuf.new", "", "use openRingBuffer() to get a RingBuffer");
  auto* init = info[0].As<Napi::External<MapInit>>().Data();
  fd_ = init->fd;
  init->fd = -1;
  name_ = init->name;
  maxEntries_ = init->maxEntries;
  auto ro = static_cast<napi_property_attributes>(napi_enumerable);
  info.This().As<Napi::Object>().DefineProperties({
      Napi::PropertyDescriptor::Value("name", Napi::String::New(env, name_), ro),
      Napi::PropertyDescriptor::Value("size", Napi::Number::New(env, maxEntries_), ro),
  });
}

RingBufferWrap::~RingBufferWrap() {
  StopReader();
  if (fd_ >= 0) close(fd_);
}

Napi::Function RingBufferWrap::Init(Napi::Env env) {
  return DefineClass(env, "RingBuffer",
                     {
                         InstanceAccessor<&RingBufferWrap::GetFd>("fd"),
                         InstanceAccessor<&RingBufferWrap::GetRunning>("running"),
                         InstanceMethod<&RingBufferWrap::Start>("start"),
                         InstanceMethod<&RingBufferWrap::Stop>("stop"),
                         InstanceMethod<&RingBufferWrap::Close>("close"),
                     });
}

// native.openRingBuffer(path)
Napi::Value RingBufferWrap::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "ringbuf.open", ""};
  std::string path = ArgString(c, info[0], "path");
  c.object = "'" + path + "'";
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, ErrFromRet(fd), c.op, c.object);
  UniqueFd guard(fd);
  std::string kind = BpfFdKind(fd);
  if (kind != "bpf-map")
    ThrowErrno(env, EINVAL, c.op, c.object, "pinned object is a " + (kind.empty() ? "?" : kind) + ", not a bpf-map");
  MapInit init;
  int e = MapInitFromFd(fd, init);
  if (e) ThrowErrno(env, e, c.op, c.object);
  if (init.type != BPF_MAP_TYPE_RINGBUF)
    ThrowErrno(env, EINVAL, c.op, c.object, "map '" + init.name + "' is not a ring buffer (type " +
                                                std::to_string(init.type) + ")");
  init.fd = guard.release();
  UniqueFd owned(init.fd);  // closes it unless the constructor took it
  Napi::Object o = Data(env)->ringbufCtor.New({Napi::External<MapInit>::New(env, &init)});
  owned.release();
  return o;
}

int RingBufferWrap::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, op, Label(), "ring buffer is closed");
  return fd_;
}

Napi::Value RingBufferWrap::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value RingBufferWrap::GetRunning(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), thread_.joinable());
}

Napi::Value RingBufferWrap::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "ringbuf.start", Label()};
  int fd = Fd(env, "ringbuf.start");
  if (thread_.joinable()) ThrowErrno(env, EBUSY, c.op, c.object, "already started");
  if (!info[0].IsFunction()) ThrowArg(env, c.op, c.object, "onEvents must be a function");
  if (!info[1].IsUndefined() && !info[1].IsFunction()) ThrowArg(env, c.op, c.object, "onError must be a function");

  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (wake.get() < 0) ThrowErrno(env, errno, c.op, c.object, "eventfd: " + std::string(strerror(errno)));
  // The sample callback's context is the batch being filled; it lives in the
  // reader thread, so the ring_buffer is created with a stable pointer to it.
  auto batch = std::make_shared<Batch>();
  struct ring_buffer* rb = ring_buffer__new(fd, CollectSample, batch.get(), nullptr);
  if (!rb) ThrowErrno(env, errno ? errno : EINVAL, c.op, c.object);
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (ep.get() < 0) {
    int e = errno;
    ring_buffer__free(rb);
    ThrowErrno(env, e, c.op, c.object, "epoll_create1: " + std::string(strerror(e)));
  }
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u32 = 0;  // the ring
  int r1 = epoll_ctl(ep.get(), EPOLL_CTL_ADD, ring_buffer__epoll_fd(rb), &ev);
  ev.data.u32 = 1;  // the wake-up
  int r2 = r1 == 0 ? epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) : -1;
  if (r1 < 0 || r2 < 0) {
    int e = errno;
    ring_buffer__free(rb);
    ThrowErrno(env, e, c.op, c.object, "epoll_ctl: " + std::string(strerror(e)));
  }

  // shared by the wrapper, the reader thread and queued JS calls
  auto live = std::make_shared<std::atomic<bool>>(true);
  Napi::Function onError = info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function();
  auto* onErrorRef = new Napi::FunctionReference();
  if (!onError.IsEmpty()) *onErrorRef = Napi::Persistent(onError);
  Tsfn tsfn = Tsfn::New(env, info[0].As<Napi::Function>(), "berth.ringbuf", 0, 1, onErrorRef,
                        [](Napi::Env, Napi::FunctionReference* ref) { delete ref; });

  std::string label = Label();
  int rbEpoll = ep.release(), wakeFd = wake.release();
  wakeFd_ = wakeFd;
  live_ = live;
  tsfn_ = tsfn;
  thread_ = std::thread([rb, batch, live, tsfn, onErrorRef, rbEpoll, wakeFd, label]() mutable {
    auto deliver = [&](Batch* b) {
      auto call = [live, onErrorRef](Napi::Env env, Napi::Function onEvents, Batch* b) {
        std::unique_ptr<Batch> own(b);
        if (!*live) return;
        if (b->err.err) {
          Napi::Value e = MakeError(env, b->err).Value();
          if (!onErrorRef->IsEmpty())
            onErrorRef->Call({e});
          else
            throw Napi::Error(env, e);
          return;
        }
        Napi::Array arr = Napi::Array::New(env, b->records.size());
        for (size_t i = 0; i < b->records.size(); i++)
          arr.Set(static_cast<uint32_t>(i),
                  Napi::Buffer<uint8_t>::Copy(env, b->records[i].data(), b->records[i].size()));
        onEvents.Call({arr});
      };
      if (tsfn.BlockingCall(b, call) != napi_ok) delete b;
    };
    struct epoll_event evs[2];
    for (;;) {
      int n = epoll_wait(rbEpoll, evs, 2, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        auto* b = new Batch();
        b->err.err = errno;
        b->err.op = "ringbuf.poll";
        b->err.object = label;
        deliver(b);
        break;
      }
      bool stop = false;
      for (int i = 0; i < n; i++)
        if (evs[i].data.u32 == 1) stop = true;
      if (stop || !*live) break;
      // the ring's epoll fd is ready: let libbpf consume what is there
      for (;;) {
        int r = ring_buffer__poll(rb, 0);
        if (r < 0 && r != -EINTR) {
          auto* b = new Batch();
          b->err.err = ErrFromRet(r);
          b->err.op = "ringbuf.poll";
          b->err.object = label;
          deliver(b);
          stop = true;
          break;
        }
        if (batch->records.empty()) break;
        auto* b = new Batch();
        b->records.swap(batch->records);
        bool full = b->records.size() >= kMaxBatch;
        deliver(b);
        if (!full) break;  // a full batch may have left records behind
      }
      if (stop) break;
    }
    ring_buffer__free(rb);
    close(rbEpoll);
  });
  return env.Undefined();
}

void RingBufferWrap::StopReader() {
  if (!thread_.joinable()) return;
  if (live_) *live_ = false;
  uint64_t one = 1;
  ssize_t w = write(wakeFd_, &one, sizeof(one));
  (void)w;
  thread_.join();
  close(wakeFd_);
  wakeFd_ = -1;
  tsfn_.Release();
  live_.reset();
}

Napi::Value RingBufferWrap::Stop(const Napi::CallbackInfo& info) {
  StopReader();
  return info.Env().Undefined();
}

Napi::Value RingBufferWrap::Close(const Napi::CallbackInfo& info) {
  StopReader();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

}  // namespace berth
