// SPDX-License-Identifier: Apache-2.0
// BpfProgram: one program fd; testRun() runs BPF_PROG_TEST_RUN off the
// event loop on a dup() of the fd.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstring>

#include "berth_native.h"

namespace berth {

namespace {

class TestRunWorker : public PromiseWorker {
 public:
  TestRunWorker(const Napi::Object& recv, UniqueFd&& fd, const std::string& label, std::vector<uint8_t>&& data,
                uint32_t dataOut, std::vector<uint8_t>&& ctx, bool hasCtx, uint32_t repeat)
      : PromiseWorker(recv, "berth.program.testRun"),
        fd_(std::move(fd)),
        data_(std::move(data)),
        out_(dataOut),
        ctx_(std::move(ctx)),
        ctxOut_(ctx_.size()),
        hasCtx_(hasCtx),
        repeat_(repeat) {
    err_.op = "program.testRun";
    err_.object = label;
  }
  void Execute() override {
    LIBBPF_OPTS(bpf_test_run_opts, o);
    o.data_in = data_.data();
    o.data_size_in = static_cast<__u32>(data_.size());
    o.data_out = out_.empty() ? nullptr : out_.data();
    o.data_size_out = static_cast<__u32>(out_.size());
    if (hasCtx_) {
      o.ctx_in = ctx_.data();
      o.ctx_size_in = static_cast<__u32>(ctx_.size());
      o.ctx_out = ctxOut_.data();
      o.ctx_size_out = static_cast<__u32>(ctxOut_.size());
    }
    o.repeat = static_cast<int>(repeat_);
    int r = bpf_prog_test_run_opts(fd_.get(), &o);
    if (r < 0) {
      Fail(ErrFromRet(r));
      return;
    }
    retval_ = o.retval;
    duration_ = o.duration;
    out_.resize(std::min<size_t>(o.data_size_out, out_.size()));
    if (hasCtx_) ctxOut_.resize(std::min<size_t>(o.ctx_size_out, ctxOut_.size()));
  }
  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Object res = Napi::Object::New(env);
    // Program return values are ints (e.g. TC_ACT_UNSPEC is -1): signed.
    res.Set("retval", Napi::Number::New(env, static_cast<int32_t>(retval_)));
    res.Set("duration", Napi::Number::New(env, duration_));
    res.Set("data", Napi::Buffer<uint8_t>::Copy(env, out_.data(), out_.size()));
    if (hasCtx_) res.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctxOut_.data(), ctxOut_.size()));
    return res;
  }

 private:
  UniqueFd fd_;
  std::vector<uint8_t> data_, out_, ctx_, ctxOut_;
  bool hasCtx_;
  uint32_t repeat_;
  uint32_t retval_ = 0, duration_ = 0;
};

// Many BPF_PROG_TEST_RUN calls (repeat 1) on one worker: for callers that
// run a stream of packets (the fuzzer), where a worker, a dup() and a
// promise per packet cost more than the run itself. A run the kernel refuses
// is reported in its own slot (errno and code), not as a rejection.
class TestRunBatchWorker : public PromiseWorker {
 public:
  struct Run {
    std::vector<uint8_t> data, out, ctx, ctxOut;
    bool hasCtx = false;
    int err = 0;
    uint32_t retval = 0, duration = 0;
  };
  TestRunBatchWorker(const Napi::Object& recv, UniqueFd&& fd, const std::string& label, std::vector<Run>&& runs)
      : PromiseWorker(recv, "berth.program.testRunBatch"), fd_(std::move(fd)), runs_(std::move(runs)) {
    err_.op = "program.testRunBatch";
    err_.object = label;
  }
  void Execute() override {
    for (Run& r : runs_) {
      LIBBPF_OPTS(bpf_test_run_opts, o);
      o.data_in = r.data.data();
      o.data_size_in = static_cast<__u32>(r.data.size());
      o.data_out = r.out.data();
      o.data_size_out = static_cast<__u32>(r.out.size());
      if (r.hasCtx) {
        o.ctx_in = r.ctx.data();
        o.ctx_size_in = static_cast<__u32>(r.ctx.size());
        o.ctx_out = r.ctxOut.data();
        o.ctx_size_out = static_cast<__u32>(r.ctxOut.size());
      }
      o.repeat = 1;
      int ret = bpf_prog_test_run_opts(fd_.get(), &o);
      if (ret < 0) {
        r.err = ErrFromRet(ret);
        continue;
      }
      r.retval = o.retval;
      r.duration = o.duration;
      r.out.resize(std::min<size_t>(o.data_size_out, r.out.size()));
    }
  }
  Napi::Value Result() override {
    Napi::Env env = Env();
    Napi::Array res = Napi::Array::New(env, runs_.size());
    for (size_t i = 0; i < runs_.size(); i++) {
      const Run& r = runs_[i];
      Napi::Object o = Napi::Object::New(env);
      if (r.err) {
        o.Set("errno", Napi::Number::New(env, r.err));
        o.Set("code", Napi::String::New(env, ErrnoName(r.err)));
      } else {
        o.Set("retval", Napi::Number::New(env, static_cast<int32_t>(r.retval)));
        o.Set("duration", Napi::Number::New(env, r.duration));
        o.Set("data", Napi::Buffer<uint8_t>::Copy(env, r.out.data(), r.out.size()));
      }
      res.Set(static_cast<uint32_t>(i), o);
    }
    return res;
  }

 private:
  UniqueFd fd_;
  std::vector<Run> runs_;
};

}  // namespace

int ProgramInitFromFd(int fd, ProgramInit& init) {
  struct bpf_prog_info pi;
  memset(&pi, 0, sizeof(pi));
  __u32 len = sizeof(pi);
  int r = bpf_obj_get_info_by_fd(fd, &pi, &len);
  if (r < 0) return ErrFromRet(r);
  init.name = pi.name;
  init.type = pi.type;
  init.id = pi.id;
  return 0;
}

Napi::Object NewProgram(Napi::Env env, ProgramInit& init) {
  UniqueFd guard(init.fd);  // closes it unless the constructor took it
  Napi::Object o = Data(env)->programCtor.New({Napi::External<ProgramInit>::New(env, &init)});
  guard.release();
  return o;
}

int ProgramFdArg(const ArgCtx& c, const Napi::Value& v, std::string* name) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Data(c.env)->programCtor.Value()))
    ThrowArg(c.env, c.op, c.object, "prog must be a BpfProgram");
  BpfProgramWrap* p = BpfProgramWrap::Unwrap(v.As<Napi::Object>());
  if (name) *name = p->name();
  return p->Fd(c.env, c.op);
}

Napi::Function BpfProgramWrap::Init(Napi::Env env) {
  return DefineClass(env, "BpfProgram",
                     {
                         InstanceAccessor<&BpfProgramWrap::GetFd>("fd"),
                         InstanceMethod<&BpfProgramWrap::Pin>("pin"),
                         InstanceMethod<&BpfProgramWrap::TestRun>("testRun"),
                         InstanceMethod<&BpfProgramWrap::TestRunBatch>("testRunBatch"),
                         InstanceMethod<&BpfProgramWrap::Close>("close"),
                     });
}

BpfProgramWrap::BpfProgramWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfProgramWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowArg(env, "program.new", "", "use BpfObject.program() or openPinnedProgram() to get a BpfProgram");
  auto* init = info[0].As<Napi::External<ProgramInit>>().Data();
  fd_ = init->fd;
  init->fd = -1;
  name_ = init->name;
  type_ = init->type;
  id_ = init->id;
  auto ro = static_cast<napi_property_attributes>(napi_enumerable);
  info.This().As<Napi::Object>().DefineProperties({
      Napi::PropertyDescriptor::Value("name", Napi::String::New(env, name_), ro),
      Napi::PropertyDescriptor::Value("type", Napi::Number::New(env, type_), ro),
      Napi::PropertyDescriptor::Value("id", Napi::Number::New(env, id_), ro),
  });
}

BpfProgramWrap::~BpfProgramWrap() {
  if (fd_ >= 0) close(fd_);
}

int BpfProgramWrap::Fd(Napi::Env env, const std::string& op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, op, Label(), "program is closed");
  return fd_;
}

Napi::Value BpfProgramWrap::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value BpfProgramWrap::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "program.pin", Label()};
  int fd = Fd(env, c.op);
  std::string path = ArgString(c, info[0], "path");
  int r = bpf_obj_pin(fd, path.c_str());
  if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, c.object + " at '" + path + "'");
  return env.Undefined();
}

Napi::Value BpfProgramWrap::TestRun(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ArgCtx c{env, "program.testRun", Label()};
    Fd(env, c.op);
    if (!info[0].IsObject()) ThrowArg(env, c.op, c.object, "options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto data = ArgBuffer(c, o.Get("data"), "data");
    uint32_t repeat = 1;
    Napi::Value rv = o.Get("repeat");
    if (!rv.IsUndefined()) repeat = ArgU32(c, rv, "repeat", 0, INT32_MAX);
    uint32_t dataOut = static_cast<uint32_t>(data.Length()) + 256;
    Napi::Value dv = o.Get("dataSizeOut");
    if (!dv.IsUndefined()) dataOut = ArgU32(c, dv, "dataSizeOut", 0, 1u << 24);
    std::vector<uint8_t> ctx;
    bool hasCtx = false;
    Napi::Value cv = o.Get("ctx");
    if (!cv.IsUndefined() && !cv.IsNull()) {
      auto cb = ArgBuffer(c, cv, "ctx");
      ctx.assign(cb.Data(), cb.Data() + cb.Length());
      hasCtx = true;
    }
    std::vector<uint8_t> in(data.Data(), data.Data() + data.Length());
    UniqueFd fd(DupFd(fd_));
    if (fd.get() < 0) ThrowErrno(env, -fd.release(), c.op, c.object);
    auto* w = new TestRunWorker(info.This().As<Napi::Object>(), std::move(fd), Label(), std::move(in), dataOut,
                                std::move(ctx), hasCtx, repeat);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value BpfProgramWrap::TestRunBatch(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ArgCtx c{env, "program.testRunBatch", Label()};
    Fd(env, c.op);
    if (!info[0].IsArray()) ThrowArg(env, c.op, c.object, "runs must be an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    if (arr.Length() > 65536) ThrowArg(env, c.op, c.object, "at most 65536 runs at once");
    std::vector<TestRunBatchWorker::Run> runs(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value item = arr.Get(i);
      if (!item.IsObject()) ThrowArg(env, c.op, c.object, "runs[" + std::to_string(i) + "] must be an object");
      Napi::Object o = item.As<Napi::Object>();
      auto data = ArgBuffer(c, o.Get("data"), "data");
      TestRunBatchWorker::Run& r = runs[i];
      r.data.assign(data.Data(), data.Data() + data.Length());
      r.out.resize(data.Length() + 256);
      Napi::Value cv = o.Get("ctx");
      if (!cv.IsUndefined() && !cv.IsNull()) {
        auto cb = ArgBuffer(c, cv, "ctx");
        r.ctx.assign(cb.Data(), cb.Data() + cb.Length());
        r.ctxOut.resize(cb.Length());
        r.hasCtx = true;
      }
    }
    UniqueFd fd(DupFd(fd_));
    if (fd.get() < 0) ThrowErrno(env, -fd.release(), c.op, c.object);
    auto* w = new TestRunBatchWorker(info.This().As<Napi::Object>(), std::move(fd), Label(), std::move(runs));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value BpfProgramWrap::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

}  // namespace berth
