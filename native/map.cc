// SPDX-License-Identifier: Apache-2.0
// BpfMap: one map fd. Element ops are synchronous; dump/updateBatch/
// deleteBatch/lookupBatch run on the thread pool with their own dup() of the fd, so a
// concurrent close() cannot pull the fd out from under them.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "berth_native.h"

namespace berth {

namespace {

constexpr int kENOTSUPP = 524;  // kernel-internal "not supported" from bpf(2)

bool BatchUnsupported(int err) { return err == EINVAL || err == EOPNOTSUPP || err == kENOTSUPP; }

uint64_t ParseFlag(const ArgCtx& c, const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return BPF_ANY;
  if (!v.IsString()) ThrowArg(c.env, c.op, c.object, "flag must be 'any', 'noexist' or 'exist'");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "any") return BPF_ANY;
  if (s == "noexist") return BPF_NOEXIST;
  if (s == "exist") return BPF_EXIST;
  ThrowArg(c.env, c.op, c.object, "flag must be 'any', 'noexist' or 'exist', got '" + s + "'");
}

// Geometry of a map, copied into workers.
struct Geometry {
  size_t keySize;
  size_t valueSize;  // per-element value buffer size (per-CPU expanded)
  uint32_t maxEntries;
};

// Walk the map with get_next_key + lookup. Appends to keys/values
// (concatenated). Returns 0 or a positive errno.
int IterateMap(int fd, const Geometry& g, std::vector<uint8_t>& keys, std::vector<uint8_t>* values) {
  std::vector<uint8_t> cur(std::max<size_t>(g.keySize, 1)), next(std::max<size_t>(g.keySize, 1));
  std::vector<uint8_t> val(std::max<size_t>(g.valueSize, 1));
  bool first = true;
  // Bound the walk: a hash map restarts from its first key when the current
  // key is deleted concurrently, which could otherwise loop for ever.
  uint64_t budget = static_cast<uint64_t>(g.maxEntries) * 4 + 64;
  while (budget-- > 0) {
    int r = bpf_map_get_next_key(fd, first ? nullptr : cur.data(), next.data());
    if (r < 0) {
      int e = ErrFromRet(r);
      if (e == ENOENT) return 0;
      return e;
    }
    first = false;
    std::swap(cur, next);
    if (values) {
      r = bpf_map_lookup_elem(fd, cur.data(), val.data());
      if (r < 0) {
        int e = ErrFromRet(r);
        if (e == ENOENT) continue;  // deleted meanwhile
        return e;
      }
      values->insert(values->end(), val.begin(), val.begin() + g.valueSize);
    }
    keys.insert(keys.end(), cur.begin(), cur.begin() + g.keySize);
  }
  return 0;
}

Napi::Array SplitPairs(Napi::Env env, const std::vector<uint8_t>& keys, const std::vector<uint8_t>& values,
                       const Geometry& g) {
  size_t n = g.keySize ? keys.size() / g.keySize : (g.valueSize ? values.size() / g.valueSize : 0);
  Napi::Array out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, keys.data() + i * g.keySize, g.keySize));
    pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, values.data() + i * g.valueSize, g.valueSize));
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

// A worker over the elements of a batch: a failure names the element.
class ElementWorker : public PromiseWorker {
 public:
  using PromiseWorker::PromiseWorker;

 protected:
  void FailAt(int err, uint32_t i) {
    err_.element = i;
    Fail(err, " at element " + std::to_string(i));
  }
};

// Each key's value, or absent, by one lookup per key (a hash map's kernel
// batch lookup walks buckets, not given keys).
class LookupBatchWorker : public ElementWorker {
 public:
  LookupBatchWorker(const Napi::Object& recv, UniqueFd&& fd, const Geometry& g, const std::string& label,
                    std::vector<uint8_t>&& keys, uint32_t n)
      : ElementWorker(recv, "berth.map.lookupBatch"), fd_(std::move(fd)), g_(g), keys_(std::move(keys)), n_(n) {
    err_.op = "map.lookupBatch";
    err_.object = label;
  }
  void Execute() override {
    values_.resize(static_cast<size_t>(n_) * g_.valueSize);
    found_.assign(n_, 0);
    for (uint32_t i = 0; i < n_; i++) {
      int r = bpf_map_lookup_elem(fd_.get(), keys_.data() + i * g_.keySize, values_.data() + i * g_.valueSize);
      if (r == 0) {
        found_[i] = 1;
        continue;
      }
      int e = ErrFromRet(r);
      if (e == ENOENT) continue;
      FailAt(e, i);
      return;
    }
  }
  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Array out = Napi::Array::New(env, n_);
    for (uint32_t i = 0; i < n_; i++)
      out.Set(i, found_[i] ? static_cast<Napi::Value>(Napi::Buffer<uint8_t>::Copy(env, values_.data() + i * g_.valueSize, g_.valueSize))
                           : env.Null());
    return out;
  }

 private:
  UniqueFd fd_;
  Geometry g_;
  std::vector<uint8_t> keys_, values_;
  std::vector<uint8_t> found_;
  uint32_t n_;
};

class DumpWorker : public PromiseWorker {
 public:
  DumpWorker(const Napi::Object& recv, UniqueFd&& fd, const Geometry& g, const std::string& label)
      : PromiseWorker(recv, "berth.map.dump"), fd_(std::move(fd)), g_(g) {
    err_.op = "map.dump";
    err_.object = label;
  }
  void Execute() override {
    int e = Batch();
    if (e < 0) {  // batch not usable: walk the map instead
      keys_.clear();
      values_.clear();
      e = IterateMap(fd_.get(), g_, keys_, &values_);
    }
    if (e > 0) Fail(e);
  }
  Napi::Value Result() override { return SplitPairs(Env(), keys_, values_, g_); }

 private:
  // 0 on success, positive errno on a real failure, -1 when the map (or
  // kernel) does not support batch lookups.
  int Batch() {
    if (g_.keySize == 0) return -1;
    uint32_t chunk = std::max<uint32_t>(1, std::min<uint32_t>(g_.maxEntries, 256));
    const uint32_t cap = std::max<uint32_t>(g_.maxEntries, 1) * 2;
    // The batch token is a bucket/index cursor; key-sized (>= 8) is enough.
    size_t tok = std::max<size_t>(g_.keySize, 8);
    std::vector<uint8_t> in(tok), out(tok), kb, vb;
    bool first = true;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    for (;;) {
      kb.resize(static_cast<size_t>(chunk) * g_.keySize);
      vb.resize(static_cast<size_t>(chunk) * g_.valueSize);
      uint32_t count = chunk;
      int r = bpf_map_lookup_batch(fd_.get(), first ? nullptr : in.data(), out.data(), kb.data(), vb.data(),
                                   &count, &opts);
      int e = r < 0 ? ErrFromRet(r) : 0;
      if (e && e != ENOENT) {
        if (e == ENOSPC && count == 0 && chunk < cap) {
          // a hash bucket holds more entries than fit: retry bigger
          chunk = std::min<uint32_t>(chunk * 2, cap);
          continue;
        }
        if (BatchUnsupported(e) || e == ENOSPC) return -1;
        return e;
      }
      keys_.insert(keys_.end(), kb.begin(), kb.begin() + static_cast<size_t>(count) * g_.keySize);
      values_.insert(values_.end(), vb.begin(), vb.begin() + static_cast<size_t>(count) * g_.valueSize);
      if (e == ENOENT) return 0;
      std::swap(in, out);
      first = false;
    }
  }

  UniqueFd fd_;
  Geometry g_;
  std::vector<uint8_t> keys_, values_;
};

class UpdateBatchWorker : public ElementWorker {
 public:
  UpdateBatchWorker(const Napi::Object& recv, UniqueFd&& fd, const Geometry& g, const std::string& label,
                    std::vector<uint8_t>&& keys, std::vector<uint8_t>&& values, uint32_t n, uint64_t flag)
      : ElementWorker(recv, "berth.map.updateBatch"),
        fd_(std::move(fd)),
        g_(g),
        keys_(std::move(keys)),
        values_(std::move(values)),
        n_(n),
        flag_(flag) {
    err_.op = "map.updateBatch";
    err_.object = label;
  }
  void Execute() override {
    uint32_t done = 0;
    // The kernel's batch update accepts no elem_flags but BPF_F_LOCK, so
    // 'noexist'/'exist' go element by element.
    if (g_.keySize > 0 && flag_ == BPF_ANY) {
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      uint32_t count = n_;
      int r = bpf_map_update_batch(fd_.get(), keys_.data(), values_.data(), &count, &opts);
      if (r == 0) return;
      int e = ErrFromRet(r);
      if (!BatchUnsupported(e)) {
        // the kernel counts the elements it wrote before the one that failed
        FailAt(e, count < n_ ? count : 0);
        return;
      }
      // An unchanged count means the kernel refused before processing
      // anything; otherwise resume after what it managed.
      done = count < n_ ? count : 0;
    }
    for (uint32_t i = done; i < n_; i++) {
      int r = bpf_map_update_elem(fd_.get(), keys_.data() + i * g_.keySize, values_.data() + i * g_.valueSize,
                                  flag_);
      if (r < 0) {
        FailAt(ErrFromRet(r), i);
        return;
      }
    }
  }
  Napi::Value Result() override { return Env().Undefined(); }

 private:
  UniqueFd fd_;
  Geometry g_;
  std::vector<uint8_t> keys_, values_;
  uint32_t n_;
  uint64_t flag_;
};

class DeleteBatchWorker : public ElementWorker {
 public:
  DeleteBatchWorker(const Napi::Object& recv, UniqueFd&& fd, const Geometry& g, const std::string& label,
                    std::vector<uint8_t>&& keys, uint32_t n)
      : ElementWorker(recv, "berth.map.deleteBatch"), fd_(std::move(fd)), g_(g), keys_(std::move(keys)), n_(n) {
    err_.op = "map.deleteBatch";
    err_.object = label;
  }
  void Execute() override {
    // Per element: bpf_map_delete_batch stops at the first missing key,
    // and we want to count the ones that existed.
    for (uint32_t i = 0; i < n_; i++) {
      int r = bpf_map_delete_elem(fd_.get(), keys_.data() + i * g_.keySize);
      if (r == 0) {
        deleted_++;
        continue;
      }
      int e = ErrFromRet(r);
      if (e == ENOENT) continue;
      FailAt(e, i);
      return;
    }
  }
  Napi::Value Result() override { return Napi::Number::New(Env(), deleted_); }

 private:
  UniqueFd fd_;
  Geometry g_;
  std::vector<uint8_t> keys_;
  uint32_t n_;
  uint32_t deleted_ = 0;
};

}  // namespace

// ------------------------------------------------------------ construction ---

int MapInitFromFd(int fd, MapInit& init) {
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  __u32 len = sizeof(mi);
  int r = bpf_obj_get_info_by_fd(fd, &mi, &len);
  if (r < 0) return ErrFromRet(r);
  init.name = mi.name;
  init.type = mi.type;
  init.keySize = mi.key_size;
  init.valueSize = mi.value_size;
  init.maxEntries = mi.max_entries;
  init.id = mi.id;
  return 0;
}

Napi::Object NewMap(Napi::Env env, MapInit& init) {
  UniqueFd guard(init.fd);  // closes it unless the constructor took it
  Napi::Object o = Data(env)->mapCtor.New({Napi::External<MapInit>::New(env, &init)});
  guard.release();
  return o;
}

Napi::Function BpfMapWrap::Init(Napi::Env env) {
  return DefineClass(env, "BpfMap",
                     {
                         InstanceAccessor<&BpfMapWrap::GetFd>("fd"),
                         InstanceMethod<&BpfMapWrap::Lookup>("lookup"),
                         InstanceMethod<&BpfMapWrap::Update>("update"),
                         InstanceMethod<&BpfMapWrap::Delete>("delete"),
                         InstanceMethod<&BpfMapWrap::Keys>("keys"),
                         InstanceMethod<&BpfMapWrap::Dump>("dump"),
                         InstanceMethod<&BpfMapWrap::LookupBatch>("lookupBatch"),
                         InstanceMethod<&BpfMapWrap::UpdateBatch>("updateBatch"),
                         InstanceMethod<&BpfMapWrap::DeleteBatch>("deleteBatch"),
                         InstanceMethod<&BpfMapWrap::Pin>("pin"),
                         InstanceMethod<&BpfMapWrap::Layout>("layout"),
                         InstanceMethod<&BpfMapWrap::Close>("close"),
                     });
}

BpfMapWrap::BpfMapWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfMapWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowArg(env, "map.new", "", "use BpfObject.map() or openPinnedMap() to get a BpfMap");
  auto* init = info[0].As<Napi::External<MapInit>>().Data();
  fd_ = init->fd;
  init->fd = -1;
  name_ = init->name;
  type_ = init->type;
  keySize_ = init->keySize;
  valueSize_ = init->valueSize;
  maxEntries_ = init->maxEntries;
  id_ = init->id;
  perCpu_ = IsPerCpuMapType(type_);
  valueBufSize_ = perCpu_ ? ((static_cast<size_t>(valueSize_) + 7) & ~static_cast<size_t>(7)) *
                                static_cast<size_t>(PossibleCpus(env))
                          : valueSize_;
  auto ro = static_cast<napi_property_attributes>(napi_enumerable);
  info.This().As<Napi::Object>().DefineProperties({
      Napi::PropertyDescriptor::Value("name", Napi::String::New(env, name_), ro),
      Napi::PropertyDescriptor::Value("type", Napi::Number::New(env, type_), ro),
      Napi::PropertyDescriptor::Value("keySize", Napi::Number::New(env, keySize_), ro),
      Napi::PropertyDescriptor::Value("valueSize", Napi::Number::New(env, valueSize_), ro),
      Napi::PropertyDescriptor::Value("maxEntries", Napi::Number::New(env, maxEntries_), ro),
      Napi::PropertyDescriptor::Value("perCpu", Napi::Boolean::New(env, perCpu_), ro),
      Napi::PropertyDescriptor::Value("id", Napi::Number::New(env, id_), ro),
      Napi::PropertyDescriptor::Value("valueBufferSize", Napi::Number::New(env, static_cast<double>(valueBufSize_)),
                                      ro),
  });
}

BpfMapWrap::~BpfMapWrap() {
  if (fd_ >= 0) close(fd_);
}

int BpfMapWrap::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, op, Label(), "map is closed");
  return fd_;
}

Napi::Value BpfMapWrap::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

// -------------------------------------------------------------- element ops ---

Napi::Value BpfMapWrap::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "map.lookup", Label()};
  int fd = Fd(env, "map.lookup");
  auto key = ArgBufferLen(c, info[0], "key", keySize_);
  Napi::Buffer<uint8_t> val = Napi::Buffer<uint8_t>::New(env, valueBufSize_);
  int r = bpf_map_lookup_elem(fd, key.Data(), val.Data());
  if (r < 0) {
    int e = ErrFromRet(r);
    if (e == ENOENT) return env.Null();
    ThrowErrno(env, e, c.op, c.object);
  }
  return val;
}

Napi::Value BpfMapWrap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "map.update", Label()};
  int fd = Fd(env, "map.update");
  auto key = ArgBufferLen(c, info[0], "key", keySize_);
  auto val = ArgBufferLen(c, info[1], "value", valueBufSize_);
  uint64_t flag = ParseFlag(c, info[2]);
  int r = bpf_map_update_elem(fd, key.Data(), val.Data(), flag);
  if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, c.object);
  return env.Undefined();
}

Napi::Value BpfMapWrap::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "map.delete", Label()};
  int fd = Fd(env, "map.delete");
  auto key = ArgBufferLen(c, info[0], "key", keySize_);
  int r = bpf_map_delete_elem(fd, key.Data());
  if (r < 0) {
    int e = ErrFromRet(r);
    if (e == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, e, c.op, c.object);
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value BpfMapWrap::Keys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "map.keys");
  Geometry g{keySize_, valueBufSize_, maxEntries_};
  std::vector<uint8_t> keys;
  int e = IterateMap(fd, g, keys, nullptr);
  if (e) ThrowErrno(env, e, "map.keys", Label());
  size_t n = keySize_ ? keys.size() / keySize_ : 0;
  Napi::Array out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++)
    out.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, keys.data() + i * keySize_, keySize_));
  return out;
}

// --------------------------------------------------------------- async ops ---

Napi::Value BpfMapWrap::Dump(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    UniqueFd fd(DupFd(Fd(env, "map.dump")));
    if (fd.get() < 0) ThrowErrno(env, -fd.release(), "map.dump", Label());
    auto* w = new DumpWorker(info.This().As<Napi::Object>(), std::move(fd), Geometry{keySize_, valueBufSize_, maxEntries_},
                             Label());
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value BpfMapWrap::UpdateBatch(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ArgCtx c{env, "map.updateBatch", Label()};
    Fd(env, "map.updateBatch");
    if (!info[0].IsArray()) ThrowArg(env, c.op, c.object, "keys must be an array of Buffers");
    if (!info[1].IsArray()) ThrowArg(env, c.op, c.object, "values must be an array of Buffers");
    Napi::Array ka = info[0].As<Napi::Array>(), va = info[1].As<Napi::Array>();
    if (ka.Length() != va.Length())
      ThrowArg(env, c.op, c.object,
               "keys and values differ in length (" + std::to_string(ka.Length()) + " vs " +
                   std::to_string(va.Length()) + ")");
    uint64_t flag = ParseFlag(c, info[2]);
    uint32_t n = ka.Length();
    std::vector<uint8_t> keys, values;
    keys.reserve(static_cast<size_t>(n) * keySize_);
    values.reserve(static_cast<size_t>(n) * valueBufSize_);
    for (uint32_t i = 0; i < n; i++) {
      std::string idx = std::to_string(i);
      auto k = ArgBufferLen(c, ka.Get(i), ("keys[" + idx + "]").c_str(), keySize_);
      auto v = ArgBufferLen(c, va.Get(i), ("values[" + idx + "]").c_str(), valueBufSize_);
      keys.insert(keys.end(), k.Data(), k.Data() + keySize_);
      values.insert(values.end(), v.Data(), v.Data() + valueBufSize_);
    }
    if (n == 0) {
      Napi::Promise::Deferred early = Napi::Promise::Deferred::New(env);
      early.Resolve(env.Undefined());
      return early.Promise();
    }
    UniqueFd fd(DupFd(fd_));
    if (fd.get() < 0) ThrowErrno(env, -fd.release(), c.op, c.object);
    auto* w = new UpdateBatchWorker(info.This().As<Napi::Object>(), std::move(fd), Geometry{keySize_, valueBufSize_, maxEntries_},
                                    Label(), std::move(keys), std::move(values), n, flag);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

// keys (an array of Buffers of keySize_ each), checked and packed back to back for a batch call
std::vector<uint8_t> BpfMapWrap::PackKeys(const ArgCtx& c, const Napi::Value& v, uint32_t* n) {
  if (!v.IsArray()) ThrowArg(c.env, c.op, c.object, "keys must be an array of Buffers");
  Napi::Array ka = v.As<Napi::Array>();
  *n = ka.Length();
  std::vector<uint8_t> keys;
  keys.reserve(static_cast<size_t>(*n) * keySize_);
  for (uint32_t i = 0; i < *n; i++) {
    auto k = ArgBufferLen(c, ka.Get(i), ("keys[" + std::to_string(i) + "]").c_str(), keySize_);
    keys.insert(keys.end(), k.Data(), k.Data() + keySize_);
  }
  return keys;
}

Napi::Value BpfMapWrap::LookupBatch(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ArgCtx c{env, "map.lookupBatch", Label()};
    Fd(env, "map.lookupBatch");
    uint32_t n = 0;
    std::vector<uint8_t> keys = PackKeys(c, info[0], &n);
    UniqueFd fd(DupFd(fd_));
    if (fd.get() < 0) ThrowErrno(env, -fd.release(), c.op, c.object);
    auto* w = new LookupBatchWorker(info.This().As<Napi::Object>(), std::move(fd), Geometry{keySize_, valueBufSize_, maxEntries_},
                                    Label(), std::move(keys), n);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value BpfMapWrap::DeleteBatch(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ArgCtx c{env, "map.deleteBatch", Label()};
    Fd(env, "map.deleteBatch");
    uint32_t n = 0;
    std::vector<uint8_t> keys = PackKeys(c, info[0], &n);
    UniqueFd fd(DupFd(fd_));
    if (fd.get() < 0) ThrowErrno(env, -fd.release(), c.op, c.object);
    auto* w = new DeleteBatchWorker(info.This().As<Napi::Object>(), std::move(fd), Geometry{keySize_, valueBufSize_, maxEntries_},
                                    Label(), std::move(keys), n);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

// ------------------------------------------------------------------- misc ---

Napi::Value BpfMapWrap::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "map.pin", Label()};
  int fd = Fd(env, "map.pin");
  std::string path = ArgString(c, info[0], "path");
  int r = bpf_obj_pin(fd, path.c_str());
  if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, c.object + " at '" + path + "'");
  return env.Undefined();
}

Napi::Value BpfMapWrap::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

}  // namespace berth
