// SPDX-License-Identifier: Apache-2.0
// BpfObject: an ELF object opened with libbpf, loaded off the event loop.
//
// Children (maps(), map(), programs(), program()) get dup()ed fds, so they
// remain valid after BpfObject.close(); a fresh wrapper (with its own fd) is
// returned by every call. close() while load() is in flight is deferred until
// the load worker has finished with the bpf_object.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstring>

#include "berth_native.h"

namespace berth {

namespace {

struct ObjectInit {
  struct bpf_object* obj = nullptr;  // ownership passes to the wrapper
  std::string path;
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Find the internal map backing the ".rodata" section (libbpf names it
// "<obj-name-prefix>.rodata").
struct bpf_map* FindRodataMap(struct bpf_object* obj) {
  struct bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    if (bpf_map__is_internal(m) && EndsWith(bpf_map__name(m), ".rodata")) return m;
  }
  return nullptr;
}

void ApplyRodata(const ArgCtx& c, struct bpf_object* obj, const std::string& var, const Napi::Buffer<uint8_t>& buf) {
  const struct btf* btf = bpf_object__btf(obj);
  if (!btf) ThrowErrno(c.env, ENOENT, c.op, c.object, "object has no BTF, cannot set rodata '" + var + "'");
  int secId = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  struct bpf_map* map = FindRodataMap(obj);
  if (secId < 0 || !map) ThrowErrno(c.env, ENOENT, c.op, c.object, "object has no .rodata, cannot set '" + var + "'");
  const struct btf_type* sec = btf__type_by_id(btf, secId);
  const struct btf_var_secinfo* vsi = btf_var_secinfos(sec);
  for (unsigned i = 0; i < btf_vlen(sec); i++, vsi++) {
    const struct btf_type* vt = btf__type_by_id(btf, vsi->type);
    if (!vt) continue;
    const char* name = btf__name_by_offset(btf, vt->name_off);
    if (!name || var != name) continue;
    if (buf.Length() != vsi->size)
      ThrowArg(c.env, c.op, c.object,
               "rodata '" + var + "' must be " + std::to_string(vsi->size) + " bytes, got " +
                   std::to_string(buf.Length()));
    size_t size = 0;
    const void* cur = bpf_map__initial_value(map, &size);
    if (!cur || static_cast<size_t>(vsi->offset) + vsi->size > size)
      ThrowErrno(c.env, EINVAL, c.op, c.object, "rodata '" + var + "' lies outside the .rodata image");
    std::vector<uint8_t> image(static_cast<const uint8_t*>(cur), static_cast<const uint8_t*>(cur) + size);
    memcpy(image.data() + vsi->offset, buf.Data(), vsi->size);
    int r = bpf_map__set_initial_value(map, image.data(), image.size());
    if (r < 0) ThrowErrno(c.env, ErrFromRet(r), c.op, c.object, "cannot set rodata '" + var + "'");
    return;
  }
  ThrowErrno(c.env, ENOENT, c.op, c.object, "no rodata variable '" + var + "'");
}

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(const Napi::Object& receiver, BpfObjectWrap* self, const std::string& label)
      : PromiseWorker(receiver, "berth.object.load"), self_(self) {
    err_.op = "object.load";
    err_.object = label;
  }
  void Execute() override {
    LogCapture cap;
    int r = bpf_object__load(self_->obj());
    if (r < 0) {
      err_.log = cap.text();
      err_.hasLog = true;
      Fail(ErrFromRet(r));
      return;
    }
    ok_ = true;
  }
  void Finished() override { self_->LoadFinished(ok_); }
  Napi::Value Result() override { return Env().Undefined(); }

 private:
  BpfObjectWrap* self_;
  bool ok_ = false;
};

Napi::Object MapFromObject(Napi::Env env, struct bpf_map* m, const std::string& op) {
  MapInit init;
  init.name = bpf_map__name(m);
  int fd = bpf_map__fd(m);
  if (fd < 0) ThrowErrno(env, EBADF, op, "map '" + init.name + "'", "map has no fd (not created)");
  fd = DupFd(fd);
  if (fd < 0) ThrowErrno(env, -fd, op, "map '" + init.name + "'");
  init.fd = fd;
  init.type = bpf_map__type(m);
  init.keySize = bpf_map__key_size(m);
  init.valueSize = bpf_map__value_size(m);
  init.maxEntries = bpf_map__max_entries(m);
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) == 0) {
    init.id = mi.id;
    init.maxEntries = mi.max_entries;
  }
  return NewMap(env, init);
}

Napi::Object ProgramFromObject(Napi::Env env, struct bpf_program* p, const std::string& op) {
  ProgramInit init;
  init.name = bpf_program__name(p);
  int fd = bpf_program__fd(p);
  if (fd < 0) ThrowErrno(env, EBADF, op, "program '" + init.name + "'", "program was not loaded");
  fd = DupFd(fd);
  if (fd < 0) ThrowErrno(env, -fd, op, "program '" + init.name + "'");
  init.fd = fd;
  init.type = bpf_program__type(p);
  struct bpf_prog_info pi;
  memset(&pi, 0, sizeof(pi));
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(fd, &pi, &len) == 0) init.id = pi.id;
  return NewProgram(env, init);
}

}  // namespace

Napi::Function BpfObjectWrap::Init(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceAccessor<&BpfObjectWrap::GetPath>("path"),
                         InstanceMethod<&BpfObjectWrap::Load>("load"),
                         InstanceMethod<&BpfObjectWrap::Maps>("maps"),
                         InstanceMethod<&BpfObjectWrap::Map>("map"),
                         InstanceMethod<&BpfObjectWrap::Programs>("programs"),
                         InstanceMethod<&BpfObjectWrap::Program>("program"),
                         InstanceMethod<&BpfObjectWrap::BtfStruct>("btfStruct"),
                         InstanceMethod<&BpfObjectWrap::BtfEnum>("btfEnum"),
                         InstanceMethod<&BpfObjectWrap::MapLayout>("mapLayout"),
                         InstanceMethod<&BpfObjectWrap::Close>("close"),
                     });
}

BpfObjectWrap::BpfObjectWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObjectWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowArg(info.Env(), "object.new", "", "use openObject() to create a BpfObject");
  auto* init = info[0].As<Napi::External<ObjectInit>>().Data();
  obj_ = init->obj;
  init->obj = nullptr;
  path_ = init->path;
}

BpfObjectWrap::~BpfObjectWrap() {
  // A pending load worker holds a reference to our JS object, so we cannot
  // be collected while loading.
  Destroy();
}

void BpfObjectWrap::Destroy() {
  if (obj_) bpf_object__close(obj_);
  obj_ = nullptr;
  loaded_ = false;
}

Napi::Value BpfObjectWrap::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "object.open", ""};
  std::string path = ArgString(c, info[0], "path");
  c.object = "object '" + path + "'";

  std::string pinRoot;
  std::vector<std::pair<std::string, Napi::Buffer<uint8_t>>> rodata;
  std::vector<std::pair<std::string, uint32_t>> maxEntries;
  if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject()) ThrowArg(env, c.op, c.object, "options must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    Napi::Value pr = o.Get("pinRoot");
    if (!pr.IsUndefined()) pinRoot = ArgString(c, pr, "pinRoot");
    Napi::Value rd = o.Get("rodata");
    if (!rd.IsUndefined()) {
      if (!rd.IsObject()) ThrowArg(env, c.op, c.object, "rodata must be an object");
      Napi::Object ro = rd.As<Napi::Object>();
      Napi::Array names = ro.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); i++) {
        std::string n = names.Get(i).ToString().Utf8Value();
        rodata.emplace_back(n, ArgBuffer(c, ro.Get(n), ("rodata '" + n + "'").c_str()));
      }
    }
    Napi::Value me = o.Get("maxEntries");
    if (!me.IsUndefined()) {
      if (!me.IsObject()) ThrowArg(env, c.op, c.object, "maxEntries must be an object");
      Napi::Object mo = me.As<Napi::Object>();
      Napi::Array names = mo.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); i++) {
        std::string n = names.Get(i).ToString().Utf8Value();
        maxEntries.emplace_back(n, ArgU32(c, mo.Get(n), ("maxEntries '" + n + "'").c_str(), 1));
      }
    }
  }

  LIBBPF_OPTS(bpf_object_open_opts, oo);
  if (!pinRoot.empty()) oo.pin_root_path = pinRoot.c_str();
  ObjectInit init;
  init.path = path;
  {
    LogCapture cap;  // keep libbpf's chatter off stderr
    errno = 0;
    init.obj = bpf_object__open_file(path.c_str(), &oo);
    if (!init.obj) ThrowErrno(env, errno ? errno : EINVAL, c.op, c.object);
  }
  struct Guard {
    ObjectInit& i;
    ~Guard() {
      if (i.obj) bpf_object__close(i.obj);
    }
  } guard{init};

  for (auto& [name, buf] : rodata) ApplyRodata(c, init.obj, name, buf);
  for (auto& [name, n] : maxEntries) {
    struct bpf_map* m = bpf_object__find_map_by_name(init.obj, name.c_str());
    if (!m || bpf_map__is_internal(m)) ThrowErrno(env, ENOENT, c.op, c.object, "no map '" + name + "'");
    int r = bpf_map__set_max_entries(m, n);
    if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, c.object, "cannot set max_entries of map '" + name + "'");
  }

  return Data(env)->objectCtor.New({Napi::External<ObjectInit>::New(env, &init)});
}

struct bpf_object* BpfObjectWrap::Require(Napi::Env env, const char* op, bool needLoaded) {
  if (closed_ || !obj_) ThrowErrno(env, EBADF, op, Label(), "object is closed");
  if (loading_) {
    if (needLoaded) ThrowErrno(env, EINVAL, op, Label(), "object is still loading");
    ThrowErrno(env, EBUSY, op, Label(), "object is loading");
  }
  if (needLoaded && !loaded_) ThrowErrno(env, EINVAL, op, Label(), "object is not loaded");
  return obj_;
}

Napi::Value BpfObjectWrap::GetPath(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }

Napi::Value BpfObjectWrap::Load(const Napi::CallbackInfo& info) {
  return AsPromise(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Require(env, "object.load", false);
    if (loaded_) ThrowErrno(env, EINVAL, "object.load", Label(), "object is already loaded");
    auto* w = new LoadWorker(info.This().As<Napi::Object>(), this, Label());
    Napi::Promise p = w->Promise();
    loading_ = true;
    w->Queue();
    return p;
  });
}

void BpfObjectWrap::LoadFinished(bool ok) {
  loading_ = false;
  loaded_ = ok;
  if (closed_) Destroy();
}

Napi::Value BpfObjectWrap::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Require(env, "object.maps", true);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  struct bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    if (bpf_map__is_internal(m)) continue;
    out.Set(i++, MapFromObject(env, m, "object.maps"));
  }
  return out;
}

Napi::Value BpfObjectWrap::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "object.map", Label()};
  std::string name = ArgString(c, info[0], "name");
  struct bpf_object* obj = Require(env, "object.map", true);
  struct bpf_map* m = bpf_object__find_map_by_name(obj, name.c_str());
  if (!m || bpf_map__is_internal(m)) ThrowErrno(env, ENOENT, c.op, Label(), "no map '" + name + "'");
  return MapFromObject(env, m, c.op);
}

Napi::Value BpfObjectWrap::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_object* obj = Require(env, "object.programs", true);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  struct bpf_program* p;
  bpf_object__for_each_program(p, obj) {
    if (bpf_program__fd(p) < 0) continue;  // autoload disabled
    out.Set(i++, ProgramFromObject(env, p, "object.programs"));
  }
  return out;
}

Napi::Value BpfObjectWrap::Program(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "object.program", Label()};
  std::string name = ArgString(c, info[0], "name");
  struct bpf_object* obj = Require(env, "object.program", true);
  struct bpf_program* p = bpf_object__find_program_by_name(obj, name.c_str());
  if (!p) ThrowErrno(env, ENOENT, c.op, Label(), "no program '" + name + "'");
  return ProgramFromObject(env, p, c.op);
}

Napi::Value BpfObjectWrap::BtfStruct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "object.btfStruct", Label()};
  std::string name = ArgString(c, info[0], "name");
  struct bpf_object* obj = Require(env, c.op.c_str(), false);
  const struct btf* btf = bpf_object__btf(obj);
  if (!btf) ThrowErrno(env, ENOENT, c.op, Label(), "object has no BTF");
  int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_STRUCT);
  if (id < 0) id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_UNION);
  if (id < 0) ThrowErrno(env, ENOENT, c.op, Label(), "no struct '" + name + "' in BTF");
  const struct btf_type* t = btf__type_by_id(btf, id);
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", name);
  out.Set("size", Napi::Number::New(env, t->size));
  Napi::Array members = Napi::Array::New(env);
  const struct btf_member* m = btf_members(t);
  for (unsigned i = 0; i < btf_vlen(t); i++, m++) {
    Napi::Object mo = Napi::Object::New(env);
    const char* mn = btf__name_by_offset(btf, m->name_off);
    mo.Set("name", mn ? mn : "");
    mo.Set("offset", Napi::Number::New(env, btf_member_bit_offset(t, i) / 8));
    long sz = btf__resolve_size(btf, m->type);
    mo.Set("size", Napi::Number::New(env, sz < 0 ? 0 : static_cast<double>(sz)));
    members.Set(i, mo);
  }
  out.Set("members", members);
  return out;
}

Napi::Value BpfObjectWrap::BtfEnum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "object.btfEnum", Label()};
  std::string name = ArgString(c, info[0], "name");
  struct bpf_object* obj = Require(env, c.op.c_str(), false);
  const struct btf* btf = bpf_object__btf(obj);
  if (!btf) ThrowErrno(env, ENOENT, c.op, Label(), "object has no BTF");
  Napi::Object values = Napi::Object::New(env);
  int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_ENUM);
  if (id >= 0) {
    const struct btf_type* t = btf__type_by_id(btf, id);
    bool isSigned = btf_kflag(t);
    const struct btf_enum* e = btf_enum(t);
    for (unsigned i = 0; i < btf_vlen(t); i++, e++) {
      double v = isSigned ? static_cast<double>(static_cast<int32_t>(e->val))
                          : static_cast<double>(static_cast<uint32_t>(e->val));
      values.Set(btf__name_by_offset(btf, e->name_off), Napi::Number::New(env, v));
    }
  } else {
    id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_ENUM64);
    if (id < 0) ThrowErrno(env, ENOENT, c.op, Label(), "no enum '" + name + "' in BTF");
    const struct btf_type* t = btf__type_by_id(btf, id);
    bool isSigned = btf_kflag(t);
    const struct btf_enum64* e = btf_enum64(t);
    for (unsigned i = 0; i < btf_vlen(t); i++) {
      // btf_enum64 layout: name_off, val_lo32, val_hi32 (three __u32)
      const __u32* raw = reinterpret_cast<const __u32*>(e) + 3 * i;
      uint64_t u = (static_cast<uint64_t>(raw[2]) << 32) | raw[1];
      double v = isSigned ? static_cast<double>(static_cast<int64_t>(u)) : static_cast<double>(u);
      values.Set(btf__name_by_offset(btf, raw[0]), Napi::Number::New(env, v));
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", name);
  out.Set("values", values);
  return out;
}

Napi::Value BpfObjectWrap::Close(const Napi::CallbackInfo& info) {
  if (closed_) return info.Env().Undefined();
  closed_ = true;
  if (!loading_) Destroy();  // else LoadFinished() destroys
  return info.Env().Undefined();
}

}  // namespace berth
