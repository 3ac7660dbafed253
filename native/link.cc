// SPDX-License-Identifier: Apache-2.0
// BpfLink (bpf_link fds) and the attach entry points: tcx and XDP links,
// clsact (tc filter) fallback, tcx probe.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "berth_native.h"

namespace berth {

namespace {

// Not in libbpf 1.1's uapi headers; stable kernel ABI values.
constexpr int kAttachTcxIngress = 46;  // BPF_TCX_INGRESS
constexpr int kAttachTcxEgress = 47;   // BPF_TCX_EGRESS
constexpr uint32_t kLinkTypeXdp = 6;   // BPF_LINK_TYPE_XDP
constexpr uint32_t kLinkTypeTcx = 11;  // BPF_LINK_TYPE_TCX
constexpr uint32_t kLinkTypeNetkit = 13;
constexpr uint32_t kLinkTypeNetns = 5;
constexpr uint32_t kLinkTypeTracing = 2;

std::string IfLabel(uint32_t ifindex) { return "ifindex " + std::to_string(ifindex); }

bool ParseDirection(const ArgCtx& c, const Napi::Value& v) {  // true = ingress
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s == "ingress") return true;
    if (s == "egress") return false;
  }
  ThrowArg(c.env, c.op, c.object, "direction must be 'ingress' or 'egress'");
}

struct RawLinkInfo {
  uint32_t type = 0, id = 0, progId = 0, ifindex = 0, attachType = 0;
};

// struct bpf_link_info is read as raw bytes: the union starts at offset 16
// (after type, id, prog_id and 8-byte alignment); newer members (tcx,
// netkit) are missing from libbpf 1.1's headers.
int ReadLinkInfo(int fd, RawLinkInfo& out) {
  alignas(8) uint8_t buf[256];
  memset(buf, 0, sizeof(buf));
  __u32 len = sizeof(buf);
  int r = bpf_obj_get_info_by_fd(fd, buf, &len);
  if (r < 0) return ErrFromRet(r);
  auto u32 = [&](size_t off) {
    uint32_t v;
    memcpy(&v, buf + off, sizeof(v));
    return v;
  };
  out.type = u32(0);
  out.id = u32(4);
  out.progId = u32(8);
  switch (out.type) {
    case kLinkTypeXdp:  // { __u32 ifindex; }
      out.ifindex = u32(16);
      out.attachType = BPF_XDP;
      break;
    case kLinkTypeTcx:     // { __u32 ifindex; __u32 attach_type; }
    case kLinkTypeNetkit:  // same layout
      out.ifindex = u32(16);
      out.attachType = u32(20);
      break;
    case kLinkTypeNetns:  // { __u32 netns_ino; __u32 attach_type; }
      out.attachType = u32(20);
      break;
    case kLinkTypeTracing:  // { __u32 attach_type; ... }
      out.attachType = u32(16);
      break;
    default:
      break;
  }
  return 0;
}

std::string LinkLabelFromFd(int fd, const std::string& fallback) {
  RawLinkInfo li;
  if (ReadLinkInfo(fd, li) == 0 && li.id) return "link " + std::to_string(li.id);
  return fallback;
}

}  // namespace

Napi::Object NewLink(Napi::Env env, LinkInit& init) {
  UniqueFd guard(init.fd);  // closes it unless the constructor took it
  Napi::Object o = Data(env)->linkCtor.New({Napi::External<LinkInit>::New(env, &init)});
  guard.release();
  return o;
}

Napi::Function BpfLinkWrap::Init(Napi::Env env) {
  return DefineClass(env, "BpfLink",
                     {
                         InstanceAccessor<&BpfLinkWrap::GetFd>("fd"),
                         InstanceMethod<&BpfLinkWrap::Info>("info"),
                         InstanceMethod<&BpfLinkWrap::Pin>("pin"),
                         InstanceMethod<&BpfLinkWrap::Detach>("detach"),
                         InstanceMethod<&BpfLinkWrap::Update>("update"),
                         InstanceMethod<&BpfLinkWrap::Close>("close"),
                     });
}

BpfLinkWrap::BpfLinkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfLinkWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowArg(info.Env(), "link.new", "", "use attachTcx(), attachXdp() or openPinnedLink() to get a BpfLink");
  auto* init = info[0].As<Napi::External<LinkInit>>().Data();
  fd_ = init->fd;
  init->fd = -1;
  label_ = init->label;
}

BpfLinkWrap::~BpfLinkWrap() {
  if (fd_ >= 0) close(fd_);
}

int BpfLinkWrap::Fd(Napi::Env env, const char* op) const {
  if (fd_ < 0) ThrowErrno(env, EBADF, op, label_, "link is closed");
  return fd_;
}

Napi::Value BpfLinkWrap::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value BpfLinkWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "link.info");
  RawLinkInfo li;
  int e = ReadLinkInfo(fd, li);
  if (e) ThrowErrno(env, e, "link.info", label_);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, li.id));
  o.Set("progId", Napi::Number::New(env, li.progId));
  o.Set("type", Napi::Number::New(env, li.type));
  o.Set("ifindex", Napi::Number::New(env, li.ifindex));
  o.Set("attachType", Napi::Number::New(env, li.attachType));
  return o;
}

Napi::Value BpfLinkWrap::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "link.pin", label_};
  int fd = Fd(env, "link.pin");
  std::string path = ArgString(c, info[0], "path");
  int r = bpf_obj_pin(fd, path.c_str());
  if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, c.object + " at '" + path + "'");
  return env.Undefined();
}

Napi::Value BpfLinkWrap::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int r = bpf_link_detach(Fd(env, "link.detach"));
  if (r < 0) ThrowErrno(env, ErrFromRet(r), "link.detach", label_);
  return env.Undefined();
}

Napi::Value BpfLinkWrap::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "link.update", label_};
  int linkFd = Fd(env, c.op.c_str());
  int progFd = ProgramFdArg(c, info[0], nullptr);
  // the hook runs the old program until the kernel swaps in the new one: no packet meets a detached hook
  int r = bpf_link_update(linkFd, progFd, nullptr);
  if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, label_);
  return env.Undefined();
}

Napi::Value BpfLinkWrap::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

// ------------------------------------------------------------ attach APIs ---

Napi::Value AttachTcx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "link.attachTcx", ""};
  int progFd = ProgramFdArg(c, info[0], nullptr);
  uint32_t ifindex = ArgU32(c, info[1], "ifindex", 1, INT32_MAX);
  c.object = IfLabel(ifindex);
  bool ingress = ParseDirection(c, info[2]);
  int fd = bpf_link_create(progFd, static_cast<int>(ifindex),
                           static_cast<enum bpf_attach_type>(ingress ? kAttachTcxIngress : kAttachTcxEgress), nullptr);
  if (fd < 0) ThrowErrno(env, ErrFromRet(fd), c.op, c.object + (ingress ? " ingress" : " egress"));
  LinkInit init;
  init.fd = fd;
  init.label = LinkLabelFromFd(fd, "tcx link on " + c.object);
  return NewLink(env, init);
}

Napi::Value AttachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "link.attachXdp", ""};
  int progFd = ProgramFdArg(c, info[0], nullptr);
  uint32_t ifindex = ArgU32(c, info[1], "ifindex", 1, INT32_MAX);
  c.object = IfLabel(ifindex);
  __u32 flags = 0;
  Napi::Value mv = info[2];
  if (!mv.IsUndefined() && !mv.IsNull()) {
    std::string m = mv.IsString() ? mv.As<Napi::String>().Utf8Value() : "";
    if (m == "skb")
      flags = XDP_FLAGS_SKB_MODE;
    else if (m == "drv")
      flags = XDP_FLAGS_DRV_MODE;
    else if (m != "auto")
      ThrowArg(env, c.op, c.object, "mode must be 'skb', 'drv' or 'auto'");
  }
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
  int fd = bpf_link_create(progFd, static_cast<int>(ifindex), BPF_XDP, &opts);
  if (fd < 0) ThrowErrno(env, ErrFromRet(fd), c.op, c.object);
  LinkInit init;
  init.fd = fd;
  init.label = LinkLabelFromFd(fd, "xdp link on " + c.object);
  return NewLink(env, init);
}

// cgroup socket hooks: attach types by name, so JS never passes raw numbers.
static int CgroupAttachType(const ArgCtx& c, const std::string& name) {
  if (name == "connect4") return BPF_CGROUP_INET4_CONNECT;
  if (name == "sendmsg4") return BPF_CGROUP_UDP4_SENDMSG;
  if (name == "recvmsg4") return BPF_CGROUP_UDP4_RECVMSG;
  if (name == "getpeername4") return BPF_CGROUP_INET4_GETPEERNAME;
  if (name == "connect6") return BPF_CGROUP_INET6_CONNECT;
  if (name == "sendmsg6") return BPF_CGROUP_UDP6_SENDMSG;
  if (name == "recvmsg6") return BPF_CGROUP_UDP6_RECVMSG;
  ThrowArg(c.env, c.op, c.object, "attach type must be 'connect4', 'sendmsg4', 'recvmsg4', 'getpeername4', 'connect6', 'sendmsg6' or 'recvmsg6'");
  return -1;
}

Napi::Value AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "link.attachCgroup", ""};
  int progFd = ProgramFdArg(c, info[0], nullptr);
  std::string path = ArgString(c, info[1], "cgroup path");
  c.object = "cgroup " + path;
  int type = CgroupAttachType(c, ArgString(c, info[2], "attach type"));
  int cg = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) ThrowErrno(env, errno, c.op, c.object);
  int fd = bpf_link_create(progFd, cg, static_cast<enum bpf_attach_type>(type), nullptr);
  int err = fd < 0 ? ErrFromRet(fd) : 0;
  close(cg);
  if (fd < 0) ThrowErrno(env, err, c.op, c.object);
  LinkInit init;
  init.fd = fd;
  init.label = LinkLabelFromFd(fd, "cgroup link on " + path);
  return NewLink(env, init);
}

Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "tc.attach", ""};
  int progFd = ProgramFdArg(c, info[0], nullptr);
  uint32_t ifindex = ArgU32(c, info[1], "ifindex", 1, INT32_MAX);
  c.object = IfLabel(ifindex);
  bool ingress = ParseDirection(c, info[2]);
  uint32_t prio = ArgU32(c, info[3], "priority", 1, 0xffff);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS);
  int r = bpf_tc_hook_create(&hook);
  if (r < 0 && r != -EEXIST) ThrowErrno(env, ErrFromRet(r), c.op, c.object, "cannot create clsact qdisc");
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = progFd, .flags = BPF_TC_F_REPLACE, .handle = 1, .priority = prio);
  r = bpf_tc_attach(&hook, &opts);
  if (r < 0) ThrowErrno(env, ErrFromRet(r), c.op, c.object + (ingress ? " ingress" : " egress"));
  return env.Undefined();
}

Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "tc.detach", ""};
  uint32_t ifindex = ArgU32(c, info[0], "ifindex", 1, INT32_MAX);
  c.object = IfLabel(ifindex);
  bool ingress = ParseDirection(c, info[1]);
  uint32_t prio = ArgU32(c, info[2], "priority", 1, 0xffff);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = prio);
  int r = bpf_tc_detach(&hook, &opts);
  if (r < 0) {
    int e = ErrFromRet(r);
    if (e == ENOENT) return Napi::Boolean::New(env, false);
    // No clsact qdisc at all: the kernel answers EINVAL; nothing to remove.
    if (e == EINVAL) {
      LIBBPF_OPTS(bpf_tc_opts, q, .handle = 1, .priority = prio);
      int qr = bpf_tc_query(&hook, &q);
      if (qr < 0) return Napi::Boolean::New(env, false);
    }
    ThrowErrno(env, e, c.op, c.object + (ingress ? " ingress" : " egress"));
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value ProbeTcx(const Napi::CallbackInfo& info) {
  static int cached = -1;
  Napi::Env env = info.Env();
  if (cached >= 0) return Napi::Boolean::New(env, cached == 1);
  // r0 = -1 (TC_ACT_UNSPEC: "continue"), exit
  struct bpf_insn insns[2];
  memset(insns, 0, sizeof(insns));
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = -1;
  insns[1].code = BPF_JMP | BPF_EXIT;
  bool ok = false;
  {
    LogCapture quiet;
    int pfd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "berth_probe", "GPL", insns, 2, nullptr);
    if (pfd < 0) ThrowErrno(env, ErrFromRet(pfd), "probeTcx", "", "cannot load the probe program");
    UniqueFd prog(pfd);
    // ifindex 1 is the loopback device; closing the link detaches it.
    UniqueFd link(bpf_link_create(prog.get(), 1, static_cast<enum bpf_attach_type>(kAttachTcxIngress), nullptr));
    ok = link.get() >= 0;
    if (!ok) link.release();  // holds -errno, nothing to close
  }
  cached = ok ? 1 : 0;
  return Napi::Boolean::New(env, ok);
}

}  // namespace berth
