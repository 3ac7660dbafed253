// SPDX-License-Identifier: Apache-2.0
// Module entry point: exports the NativeAddon interface of src/platform/native.ts.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <sys/socket.h>

#include "berth_native.h"

namespace berth {

namespace {

// bpf_obj_get + a check that the pinned object is of the expected kind.
int GetPinned(const ArgCtx& c, const std::string& path, const char* kind) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(c.env, ErrFromRet(fd), c.op, c.object);
  UniqueFd guard(fd);
  std::string k = BpfFdKind(fd);
  if (k != kind && !(std::string(kind) == "bpf-link" && k == "bpf_link"))
    ThrowErrno(c.env, EINVAL, c.op, c.object, "pinned object is a " + (k.empty() ? "?" : k) + ", not a " + kind);
  return guard.release();
}

}  // namespace

Napi::Value OpenPinnedMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "map.openPinned", ""};
  std::string path = ArgString(c, info[0], "path");
  c.object = "'" + path + "'";
  MapInit init;
  init.fd = GetPinned(c, path, "bpf-map");
  int e = MapInitFromFd(init.fd, init);
  if (e) {
    close(init.fd);
    ThrowErrno(env, e, c.op, c.object);
  }
  return NewMap(env, init);
}

Napi::Value OpenPinnedProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "program.openPinned", ""};
  std::string path = ArgString(c, info[0], "path");
  c.object = "'" + path + "'";
  ProgramInit init;
  init.fd = GetPinned(c, path, "bpf-prog");
  int e = ProgramInitFromFd(init.fd, init);
  if (e) {
    close(init.fd);
    ThrowErrno(env, e, c.op, c.object);
  }
  return NewProgram(env, init);
}

Napi::Value OpenPinnedLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "link.openPinned", ""};
  std::string path = ArgString(c, info[0], "path");
  c.object = "'" + path + "'";
  LinkInit init;
  init.fd = GetPinned(c, path, "bpf-link");  // older kernels: "bpf_link"
  struct bpf_link_info li;
  memset(&li, 0, sizeof(li));
  __u32 len = sizeof(li);
  if (bpf_obj_get_info_by_fd(init.fd, &li, &len) == 0 && li.id)
    init.label = "link " + std::to_string(li.id);
  else
    init.label = "link at '" + path + "'";
  return NewLink(env, init);
}

namespace {

Napi::Value PossibleCpusImpl(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), PossibleCpus(info.Env()));
}

Napi::Value Unpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "unpin", ""};
  std::string path = ArgString(c, info[0], "path");
  if (unlink(path.c_str()) == 0) return Napi::Boolean::New(env, true);
  int e = errno;
  if (e == ENOENT) return Napi::Boolean::New(env, false);
  ThrowErrno(env, e, c.op, "'" + path + "'");
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(),
                           std::to_string(libbpf_major_version()) + "." + std::to_string(libbpf_minor_version()));
}

}  // namespace

// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE), so
// cgroup programs can tell the host's sockets from those of containers.
static Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) ThrowErrno(env, errno, "netnsCookie", "socket");
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  int rc = getsockopt(s, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len);
  int err = errno;
  close(s);
  if (rc < 0) ThrowErrno(env, err, "netnsCookie", "getsockopt(SO_NETNS_COOKIE)");
  return Napi::BigInt::New(env, cookie);
}

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  data->objectCtor = Napi::Persistent(BpfObjectWrap::Init(env));
  data->mapCtor = Napi::Persistent(BpfMapWrap::Init(env));
  data->programCtor = Napi::Persistent(BpfProgramWrap::Init(env));
  data->linkCtor = Napi::Persistent(BpfLinkWrap::Init(env));
  data->ringbufCtor = Napi::Persistent(RingBufferWrap::Init(env));

  exports.Set("openObject", Napi::Function::New(env, BpfObjectWrap::Open, "openObject"));
  exports.Set("openPinnedMap", Napi::Function::New(env, OpenPinnedMap, "openPinnedMap"));
  exports.Set("openPinnedProgram", Napi::Function::New(env, OpenPinnedProgram, "openPinnedProgram"));
  exports.Set("openPinnedLink", Napi::Function::New(env, OpenPinnedLink, "openPinnedLink"));
  exports.Set("openRingBuffer", Napi::Function::New(env, RingBufferWrap::Open, "openRingBuffer"));
  exports.Set("attachTcx", Napi::Function::New(env, AttachTcx, "attachTcx"));
  exports.Set("attachXdp", Napi::Function::New(env, AttachXdp, "attachXdp"));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie, "netnsCookie"));
  exports.Set("attachCgroup", Napi::Function::New(env, AttachCgroup, "attachCgroup"));
  exports.Set("tcAttach", Napi::Function::New(env, TcAttach, "tcAttach"));
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach, "tcDetach"));
  exports.Set("probeTcx", Napi::Function::New(env, ProbeTcx, "probeTcx"));
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpusImpl, "possibleCpus"));
  exports.Set("unpin", Napi::Function::New(env, Unpin, "unpin"));
  exports.Set("sendUnixDatagram", Napi::Function::New(env, SendUnixDatagram, "sendUnixDatagram"));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion, "libbpfVersion"));
  InitNetlink(env, exports);
  return exports;
}

}  // namespace berth

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return berth::InitModule(env, exports); }

NODE_API_MODULE(berth_native, Init)
