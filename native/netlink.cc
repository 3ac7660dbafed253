// SPDX-License-Identifier: Apache-2.0
// Netlink (rtnetlink over libnl-route-3): links, addresses, routes and
// neighbours of one network namespace, so berth never spawns `ip`.
//
// One Netlink wrapper owns one NETLINK_ROUTE socket. A socket's network
// namespace is fixed when it is created: openNetlink(path) creates it on a
// short-lived std::thread that setns()es into the namespace at `path`
// (/run/netns/X, /proc/PID/ns/net, Docker's SandboxKey) and exits, so neither
// the main thread nor a libuv pool thread ever changes namespace. Every
// request then runs on the thread pool (PromiseWorker) under the socket's
// mutex; close() frees the socket (waiting for a request in flight).
//
// Kernel errors keep their errno: the socket's error callback records the
// nlmsgerr's errno before libnl folds it into an NLE_* code.
//
// NetlinkEvents: a socket joined to the link, IPv4/IPv6 address and route
// groups, read on a thread of its own; decoded events reach JS through a
// ThreadSafeFunction, one call per event; close() wakes (eventfd) and joins
// the thread. A receive overrun (ENOBUFS) goes to onError and reading goes on.
//
// Netns helpers: netnsAdd (exactly `ip netns add`: /run/netns made a shared
// mount, a file bind-mounted over a new namespace, created on a throw-away
// thread), netnsDelete, and writeSysctl inside a namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>

#include "berth_native.h"

namespace berth {

namespace {

// ------------------------------------------------------------- plain data ---

struct XdpInfo {
  uint8_t attached = 0;  // XDP_ATTACHED_*: 0 none, 1 drv, 2 skb, 3 hw, 4 multi
  uint32_t progId = 0, drvProgId = 0, skbProgId = 0, hwProgId = 0;
};

struct LinkData {
  uint32_t ifindex = 0, mtu = 0, master = 0, flags = 0, arptype = 0;
  int32_t link = 0;  // IFLA_LINK: a veth's peer ifindex (in its own netns)
  bool hasNetnsid = false;
  int32_t netnsid = -1;
  uint8_t operstate = 0;
  std::string name, kind, slaveKind, alias, mac;
  bool hasXdp = false;
  XdpInfo xdp;
};

struct AddrData {
  uint32_t ifindex = 0, prefixLen = 0, scope = 0, flags = 0;
  int family = 0;
  std::string address, broadcast, label;
};

struct RouteData {
  int family = 0;
  uint32_t table = 0, protocol = 0, scope = 0, type = 0, priority = 0, dstLen = 0, ifindex = 0;
  std::string dst, gateway;
};

struct NeighData {
  int family = 0;
  uint32_t ifindex = 0, state = 0;
  std::string address, lladdr;
};

std::string AddrText(struct nl_addr* a) {
  if (!a || nl_addr_get_len(a) == 0) return "";
  char buf[INET6_ADDRSTRLEN + 1];
  int fam = nl_addr_get_family(a);
  if ((fam == AF_INET && nl_addr_get_len(a) == 4) || (fam == AF_INET6 && nl_addr_get_len(a) == 16)) {
    if (inet_ntop(fam, nl_addr_get_binary_addr(a), buf, sizeof(buf))) return buf;
    return "";
  }
  // link-layer: aa:bb:...
  std::string s;
  auto* p = static_cast<const uint8_t*>(nl_addr_get_binary_addr(a));
  for (unsigned i = 0; i < nl_addr_get_len(a); i++) {
    char h[4];
    snprintf(h, sizeof(h), i ? ":%02x" : "%02x", p[i]);
    s += h;
  }
  return s;
}

void ParseXdp(struct nlattr* xdp, XdpInfo& out) {
  struct nlattr* tb[IFLA_XDP_MAX + 1];
  if (nla_parse_nested(tb, IFLA_XDP_MAX, xdp, nullptr) < 0) return;
  if (tb[IFLA_XDP_ATTACHED]) out.attached = nla_get_u8(tb[IFLA_XDP_ATTACHED]);
  if (tb[IFLA_XDP_PROG_ID]) out.progId = nla_get_u32(tb[IFLA_XDP_PROG_ID]);
  if (tb[IFLA_XDP_DRV_PROG_ID]) out.drvProgId = nla_get_u32(tb[IFLA_XDP_DRV_PROG_ID]);
  if (tb[IFLA_XDP_SKB_PROG_ID]) out.skbProgId = nla_get_u32(tb[IFLA_XDP_SKB_PROG_ID]);
  if (tb[IFLA_XDP_HW_PROG_ID]) out.hwProgId = nla_get_u32(tb[IFLA_XDP_HW_PROG_ID]);
}

void FromLink(struct rtnl_link* l, LinkData& d) {
  d.ifindex = static_cast<uint32_t>(rtnl_link_get_ifindex(l));
  const char* n = rtnl_link_get_name(l);
  d.name = n ? n : "";
  const char* k = rtnl_link_get_type(l);
  d.kind = k ? k : "";
  const char* sk = rtnl_link_get_slave_type(l);
  d.slaveKind = sk ? sk : "";
  const char* al = rtnl_link_get_ifalias(l);
  d.alias = al ? al : "";
  d.mtu = rtnl_link_get_mtu(l);
  d.master = static_cast<uint32_t>(rtnl_link_get_master(l));
  d.flags = rtnl_link_get_flags(l);
  d.arptype = rtnl_link_get_arptype(l);
  d.operstate = rtnl_link_get_operstate(l);
  d.link = rtnl_link_get_link(l);
  int32_t id = -1;
  d.hasNetnsid = rtnl_link_get_link_netnsid(l, &id) == 0;
  d.netnsid = id;
  d.mac = AddrText(rtnl_link_get_addr(l));
}

void FromAddr(struct rtnl_addr* a, AddrData& d) {
  d.ifindex = static_cast<uint32_t>(rtnl_addr_get_ifindex(a));
  d.family = rtnl_addr_get_family(a);
  d.prefixLen = static_cast<uint32_t>(rtnl_addr_get_prefixlen(a));
  d.scope = static_cast<uint32_t>(rtnl_addr_get_scope(a));
  d.flags = rtnl_addr_get_flags(a);
  d.address = AddrText(rtnl_addr_get_local(a));
  d.broadcast = AddrText(rtnl_addr_get_broadcast(a));
  const char* lb = rtnl_addr_get_label(a);
  d.label = lb ? lb : "";
}

void FromRoute(struct rtnl_route* r, RouteData& d) {
  d.family = rtnl_route_get_family(r);
  d.table = rtnl_route_get_table(r);
  d.protocol = rtnl_route_get_protocol(r);
  d.scope = rtnl_route_get_scope(r);
  d.type = rtnl_route_get_type(r);
  d.priority = rtnl_route_get_priority(r);
  struct nl_addr* dst = rtnl_route_get_dst(r);
  d.dstLen = dst ? nl_addr_get_prefixlen(dst) : 0;
  d.dst = AddrText(dst);
  if (rtnl_route_get_nnexthops(r) > 0) {
    struct rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    d.ifindex = static_cast<uint32_t>(rtnl_route_nh_get_ifindex(nh));
    d.gateway = AddrText(rtnl_route_nh_get_gateway(nh));
  }
}

void FromNeigh(struct rtnl_neigh* n, NeighData& d) {
  d.family = rtnl_neigh_get_family(n);
  d.ifindex = static_cast<uint32_t>(rtnl_neigh_get_ifindex(n));
  d.state = static_cast<uint32_t>(rtnl_neigh_get_state(n));
  d.address = AddrText(rtnl_neigh_get_dst(n));
  d.lladdr = AddrText(rtnl_neigh_get_lladdr(n));
}

// ------------------------------------------------------------ to JS ---

const char* LinkTypeName(uint32_t t) {
  switch (t) {
    case ARPHRD_ETHER: return "ether";
    case ARPHRD_LOOPBACK: return "loopback";
    case ARPHRD_NONE: return "none";
    case ARPHRD_TUNNEL: return "ipip";
    case ARPHRD_TUNNEL6: return "tunnel6";
    case ARPHRD_IPGRE: return "gre";
    case ARPHRD_IP6GRE: return "gre6";
    case ARPHRD_SIT: return "sit";
    case ARPHRD_VOID: return "void";
    case ARPHRD_INFINIBAND: return "infiniband";
    case ARPHRD_PPP: return "ppp";
    default: return nullptr;
  }
}

const char* OperName(uint8_t s) {
  switch (s) {
    case IF_OPER_NOTPRESENT: return "NOTPRESENT";
    case IF_OPER_DOWN: return "DOWN";
    case IF_OPER_LOWERLAYERDOWN: return "LOWERLAYERDOWN";
    case IF_OPER_TESTING: return "TESTING";
    case IF_OPER_DORMANT: return "DORMANT";
    case IF_OPER_UP: return "UP";
    default: return "UNKNOWN";
  }
}

Napi::Object LinkJs(Napi::Env env, const LinkData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", d.ifindex);
  o.Set("name", d.name);
  o.Set("kind", d.kind);
  o.Set("slaveKind", d.slaveKind);
  o.Set("master", d.master);
  o.Set("alias", d.alias);
  o.Set("up", (d.flags & IFF_UP) != 0);
  o.Set("lowerUp", (d.flags & IFF_LOWER_UP) != 0);
  o.Set("operstate", OperName(d.operstate));
  o.Set("flags", d.flags);
  o.Set("mtu", d.mtu);
  o.Set("mac", d.mac);
  const char* lt = LinkTypeName(d.arptype);
  o.Set("linkType", lt ? std::string(lt) : "[" + std::to_string(d.arptype) + "]");
  o.Set("linkNetnsid", d.hasNetnsid ? Napi::Value(Napi::Number::New(env, d.netnsid)) : env.Null());
  o.Set("peerIfindex", d.link);
  if (d.hasXdp) {
    Napi::Object x = Napi::Object::New(env);
    x.Set("attached", d.xdp.attached);
    x.Set("progId", d.xdp.progId);
    x.Set("drvProgId", d.xdp.drvProgId);
    x.Set("skbProgId", d.xdp.skbProgId);
    x.Set("hwProgId", d.xdp.hwProgId);
    o.Set("xdp", x);
  } else {
    o.Set("xdp", env.Null());
  }
  return o;
}

int FamilyNum(int af) { return af == AF_INET ? 4 : af == AF_INET6 ? 6 : 0; }

Napi::Object AddrJs(Napi::Env env, const AddrData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", d.ifindex);
  o.Set("family", FamilyNum(d.family));
  o.Set("address", d.address);
  o.Set("prefixLen", d.prefixLen);
  o.Set("broadcast", d.broadcast);
  o.Set("scope", d.scope == RT_SCOPE_UNIVERSE ? "global" : d.scope == RT_SCOPE_LINK ? "link"
                 : d.scope == RT_SCOPE_HOST ? "host" : d.scope == RT_SCOPE_SITE ? "site"
                                             : std::to_string(d.scope));
  o.Set("flags", d.flags);
  o.Set("label", d.label);
  return o;
}

Napi::Object RouteJs(Napi::Env env, const RouteData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", FamilyNum(d.family));
  o.Set("dst", d.dstLen == 0 ? std::string("default") : d.dst + "/" + std::to_string(d.dstLen));
  o.Set("gateway", d.gateway);
  o.Set("ifindex", d.ifindex);
  o.Set("table", d.table);
  o.Set("protocol", d.protocol);
  o.Set("scope", d.scope);
  o.Set("routeType", d.type);
  o.Set("priority", d.priority);
  return o;
}

Napi::Object NeighJs(Napi::Env env, const NeighData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", FamilyNum(d.family));
  o.Set("ifindex", d.ifindex);
  o.Set("address", d.address);
  o.Set("lladdr", d.lladdr);
  o.Set("state", d.state);
  return o;
}

// ------------------------------------------------------------- errors ---

// libnl error → errno, for failures that did not come from the kernel.
int NleToErrno(int nle) {
  switch (nle < 0 ? -nle : nle) {
    case NLE_NOMEM: return ENOMEM;
    case NLE_EXIST: return EEXIST;
    case NLE_NODEV: return ENODEV;
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_INVAL: return EINVAL;
    case NLE_PERM: return EPERM;
    case NLE_NOACCESS: return EACCES;
    case NLE_BUSY: return EBUSY;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_AGAIN: return EAGAIN;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_RANGE: return ERANGE;
    case NLE_BAD_SOCK: return EBADF;
    case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
    case NLE_INTR: return EINTR;
    default: return EIO;
  }
}

int RecordErr(struct sockaddr_nl*, struct nlmsgerr* e, void* arg) {
  *static_cast<int*>(arg) = e->error < 0 ? -e->error : e->error;
  return NL_STOP;
}

// Creates a NETLINK_ROUTE socket, inside the namespace at nsPath when set.
// Returns 0 or a positive errno (detail says which step failed).
int OpenSocket(const std::string& nsPath, struct nl_sock** out, std::string* detail) {
  struct nl_sock* sk = nl_socket_alloc();
  if (!sk) return ENOMEM;
  int err = 0;
  auto connect = [&]() {
    int r = nl_connect(sk, NETLINK_ROUTE);
    if (r < 0) {
      err = NleToErrno(r);
      *detail = std::string("connect: ") + nl_geterror(r);
    }
  };
  if (nsPath.empty()) {
    connect();
  } else {
    int nsfd = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      err = errno;
      *detail = "open: " + std::string(strerror(err));
    } else {
      // setns on a thread of its own: it dies with the namespace it entered.
      std::thread t([&]() {
        if (setns(nsfd, CLONE_NEWNET) < 0) {
          err = errno;
          *detail = "setns: " + std::string(strerror(err));
          return;
        }
        connect();
      });
      t.join();
      close(nsfd);
    }
  }
  if (err) {
    nl_socket_free(sk);
    return err;
  }
  *out = sk;
  return 0;
}

// --------------------------------------------------------------- state ---

struct NlState {
  std::mutex mu;
  struct nl_sock* sk = nullptr;
  int kernelErr = 0;  // set by RecordErr
  std::string label;
  ~NlState() {
    if (sk) nl_socket_free(sk);
  }
};

// What a request does on the pool thread: returns 0 or the libnl/kernel
// result (negative NLE), or sets ctx.err directly.
struct Ctx {
  struct nl_sock* sk;
  int err = 0;          // positive errno, when set by the body
  std::string detail;
};

using Body = std::function<int(Ctx&)>;
using Build = std::function<Napi::Value(Napi::Env)>;

class NlWorker : public PromiseWorker {
 public:
  NlWorker(const Napi::Object& recv, std::shared_ptr<NlState> st, std::string op, std::string object, Body body,
           Build build)
      : PromiseWorker(recv, "berth.netlink"), st_(std::move(st)), body_(std::move(body)), build_(std::move(build)) {
    err_.op = std::move(op);
    err_.object = std::move(object);
  }

 protected:
  void Execute() override {
    std::lock_guard<std::mutex> g(st_->mu);
    if (!st_->sk) {
      err_.detail = "netlink socket is closed";
      Fail(EBADF);
      return;
    }
    st_->kernelErr = 0;
    Ctx c{st_->sk};
    int r = body_(c);
    if (c.err) {
      err_.detail = c.detail;
      Fail(c.err);
    } else if (r < 0) {
      if (st_->kernelErr) {
        Fail(st_->kernelErr);
      } else {
        err_.detail = nl_geterror(r);
        Fail(NleToErrno(r));
      }
    }
  }
  Napi::Value Result() override { return build_ ? build_(Env()) : Env().Undefined(); }

 private:
  std::shared_ptr<NlState> st_;
  Body body_;
  Build build_;
};

// A dump whose every message is parsed by libnl and, for links, also read
// raw (IFLA_XDP, which libnl does not keep).
struct DumpCtx {
  std::function<void(struct nl_object*, struct nl_msg*)> onObject;
  // forgets what onObject gathered, before a dump the kernel interrupted is asked again
  std::function<void()> restart;
  struct nl_msg* cur = nullptr;
};

void ParsedCb(struct nl_object* obj, void* arg) {
  auto* d = static_cast<DumpCtx*>(arg);
  d->onObject(obj, d->cur);
}

int DumpValid(struct nl_msg* msg, void* arg) {
  auto* d = static_cast<DumpCtx*>(arg);
  d->cur = msg;
  nl_msg_parse(msg, ParsedCb, d);
  return NL_OK;
}

int DumpOnce(struct nl_sock* sk, int type, int family, DumpCtx& d) {
  struct rtgenmsg hdr;
  memset(&hdr, 0, sizeof(hdr));
  hdr.rtgen_family = static_cast<unsigned char>(family);
  // ifinfomsg/ifaddrmsg/rtmsg/ndmsg all start with the family byte; the
  // kernel accepts the short rtgenmsg header for dumps.
  int r = nl_send_simple(sk, type, NLM_F_DUMP, &hdr, sizeof(hdr));
  if (r < 0) return r;
  struct nl_cb* cb = nl_cb_clone(nl_socket_get_cb(sk));
  if (!cb) return -NLE_NOMEM;
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, DumpValid, &d);
  r = nl_recvmsgs(sk, cb);
  nl_cb_put(cb);
  return r < 0 ? r : 0;
}

// A dump the kernel marks interrupted (NLM_F_DUMP_INTR: links, addresses or
// routes changed while it ran, as on a machine where other work makes and
// removes links all the time) is incomplete or inconsistent: libnl reads it to
// the end and says -NLE_DUMP_INTR. It is asked again, a bounded number of
// times, from scratch (d.restart forgets what the interrupted one gathered).
int Dump(struct nl_sock* sk, int type, int family, DumpCtx& d) {
  int r = 0;
  for (int i = 0; i < 20; i++) {
    r = DumpOnce(sk, type, family, d);
    if (r != -NLE_DUMP_INTR || !d.restart) return r;
    d.restart();
  }
  return r;
}

void LinkFromMsg(struct nl_object* obj, struct nl_msg* msg, LinkData& d) {
  FromLink(reinterpret_cast<struct rtnl_link*>(obj), d);
  struct nlattr* tb[IFLA_MAX + 1];
  if (msg && nlmsg_parse(nlmsg_hdr(msg), sizeof(struct ifinfomsg), tb, IFLA_MAX, nullptr) == 0 && tb[IFLA_XDP]) {
    d.hasXdp = true;
    ParseXdp(tb[IFLA_XDP], d.xdp);
  }
}

bool IsType(struct nl_object* obj, const char* t) { return strcmp(nl_object_get_type(obj), t) == 0; }

// Look up a link by name in the socket's namespace.
int GetLink(Ctx& c, const std::string& name, struct rtnl_link** out) {
  int r = rtnl_link_get_kernel(c.sk, 0, name.c_str(), out);
  return r;
}

// -------------------------------------------------------------- args ---

int ParseFamily(const ArgCtx& c, const Napi::Value& v, bool allowAny) {
  if (v.IsUndefined() || v.IsNull()) {
    if (allowAny) return AF_UNSPEC;
    ThrowArg(c.env, c.op, c.object, "family must be 4 or 6");
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d == 4) return AF_INET;
    if (d == 6) return AF_INET6;
    if (d == 0 && allowAny) return AF_UNSPEC;
  }
  ThrowArg(c.env, c.op, c.object, allowAny ? "family must be 4, 6 or 0 (both)" : "family must be 4 or 6");
}

std::string IfName(const ArgCtx& c, const Napi::Value& v, const char* what) {
  std::string s = ArgString(c, v, what);
  if (s.size() >= IFNAMSIZ) ThrowArg(c.env, c.op, c.object, std::string(what) + " is longer than 15 bytes");
  if (s.find('/') != std::string::npos || s.find(' ') != std::string::npos || s == "." || s == "..")
    ThrowArg(c.env, c.op, c.object, std::string(what) + " is not a valid interface name");
  return s;
}

// An IP address in text, checked against family (0: either; sets *fam).
std::string IpArg(const ArgCtx& c, const Napi::Value& v, const char* what, int* fam) {
  std::string s = ArgString(c, v, what);
  uint8_t buf[16];
  int f = 0;
  if (inet_pton(AF_INET, s.c_str(), buf) == 1)
    f = AF_INET;
  else if (inet_pton(AF_INET6, s.c_str(), buf) == 1)
    f = AF_INET6;
  else
    ThrowArg(c.env, c.op, c.object, std::string(what) + " '" + s + "' is not an IPv4 or IPv6 address");
  if (*fam && *fam != f) ThrowArg(c.env, c.op, c.object, std::string(what) + " '" + s + "' is of the wrong family");
  *fam = f;
  return s;
}

Napi::Object OptObject(const ArgCtx& c, const Napi::Value& v, const char* what) {
  if (!v.IsObject() || v.IsArray() || v.IsFunction()) ThrowArg(c.env, c.op, c.object, std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

void OnlyKeys(const ArgCtx& c, const Napi::Object& o, std::initializer_list<const char*> keys) {
  Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string k = names.Get(i).ToString().Utf8Value();
    bool ok = false;
    for (const char* x : keys) ok = ok || k == x;
    if (!ok) ThrowArg(c.env, c.op, c.object, "unknown option '" + k + "'");
  }
}

// A network namespace argument: a path (string) or an open fd (number).
// Returns the fd to use; *owned is set when it must be closed.
struct NsArg {
  std::string path;
  int fd = -1;
  bool set = false;
};

NsArg NetnsArg(const ArgCtx& c, const Napi::Value& v, const char* what) {
  NsArg a;
  if (v.IsUndefined()) return a;
  a.set = true;
  if (v.IsNumber())
    a.fd = static_cast<int>(ArgU32(c, v, what, 0, INT32_MAX));
  else if (v.IsString())
    a.path = ArgString(c, v, what);
  else
    ThrowArg(c.env, c.op, c.object, std::string(what) + " must be a path or a file descriptor");
  return a;
}

// Opens a NsArg on the pool thread; returns fd (owned in guard) or sets c.err.
int OpenNs(Ctx& c, const NsArg& a, UniqueFd& guard) {
  if (!a.path.empty()) {
    int fd = open(a.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      c.err = errno;
      c.detail = "netns '" + a.path + "': " + strerror(c.err);
      return -1;
    }
    guard.reset(fd);
    return fd;
  }
  return a.fd;
}

struct NlAddrPtr {
  struct nl_addr* p = nullptr;
  ~NlAddrPtr() {
    if (p) nl_addr_put(p);
  }
};

}  // namespace

// ============================================================ Netlink ===

class NetlinkWrap : public Napi::ObjectWrap<NetlinkWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Open(const Napi::CallbackInfo& info);
  explicit NetlinkWrap(const Napi::CallbackInfo& info);
  ~NetlinkWrap() override = default;

 private:
  Napi::Value GetNetns(const Napi::CallbackInfo& info) {
    return path_.empty() ? info.Env().Null() : Napi::Value(Napi::String::New(info.Env(), path_));
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed_); }
  Napi::Value Links(const Napi::CallbackInfo& info);
  Napi::Value Link(const Napi::CallbackInfo& info);
  Napi::Value AddBridge(const Napi::CallbackInfo& info);
  Napi::Value AddVeth(const Napi::CallbackInfo& info);
  Napi::Value DeleteLink(const Napi::CallbackInfo& info);
  Napi::Value SetLink(const Napi::CallbackInfo& info);
  Napi::Value Addresses(const Napi::CallbackInfo& info);
  Napi::Value AddAddress(const Napi::CallbackInfo& info);
  Napi::Value DeleteAddress(const Napi::CallbackInfo& info);
  Napi::Value Routes(const Napi::CallbackInfo& info);
  Napi::Value AddRoute(const Napi::CallbackInfo& info);
  Napi::Value DeleteRoute(const Napi::CallbackInfo& info);
  Napi::Value Neighbours(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void Require(const ArgCtx& c) const {
    if (closed_) ThrowErrno(c.env, EBADF, c.op, c.object, "netlink socket is closed");
  }
  std::string Label() const { return path_.empty() ? "netlink" : "netlink in '" + path_ + "'"; }
  Napi::Value Queue(const Napi::CallbackInfo& info, const ArgCtx& c, Body body, Build build = nullptr) {
    auto* w = new NlWorker(info.This().As<Napi::Object>(), st_, c.op, c.object, std::move(body), std::move(build));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  Napi::Value RouteOp(const Napi::CallbackInfo& info, bool add);

  std::shared_ptr<NlState> st_;
  std::string path_;
  bool closed_ = false;
};

Napi::Function NetlinkWrap::Init(Napi::Env env) {
  return DefineClass(env, "Netlink",
                     {
                         InstanceAccessor<&NetlinkWrap::GetNetns>("netns"),
                         InstanceAccessor<&NetlinkWrap::GetClosed>("closed"),
                         InstanceMethod<&NetlinkWrap::Links>("links"),
                         InstanceMethod<&NetlinkWrap::Link>("link"),
                         InstanceMethod<&NetlinkWrap::AddBridge>("addBridge"),
                         InstanceMethod<&NetlinkWrap::AddVeth>("addVeth"),
                         InstanceMethod<&NetlinkWrap::DeleteLink>("deleteLink"),
                         InstanceMethod<&NetlinkWrap::SetLink>("setLink"),
                         InstanceMethod<&NetlinkWrap::Addresses>("addresses"),
                         InstanceMethod<&NetlinkWrap::AddAddress>("addAddress"),
                         InstanceMethod<&NetlinkWrap::DeleteAddress>("deleteAddress"),
                         InstanceMethod<&NetlinkWrap::Routes>("routes"),
                         InstanceMethod<&NetlinkWrap::AddRoute>("addRoute"),
                         InstanceMethod<&NetlinkWrap::DeleteRoute>("deleteRoute"),
                         InstanceMethod<&NetlinkWrap::Neighbours>("neighbours"),
                         InstanceMethod<&NetlinkWrap::Close>("close"),
                     });
}

struct NetlinkInit {
  struct nl_sock* sk = nullptr;
  std::string path;
};

NetlinkWrap::NetlinkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowArg(info.Env(), "netlink.new", "", "use openNetlink() to get a Netlink");
  auto* init = info[0].As<Napi::External<NetlinkInit>>().Data();
  st_ = std::make_shared<NlState>();
  st_->sk = init->sk;
  init->sk = nullptr;
  path_ = init->path;
  st_->label = Label();
  nl_socket_modify_err_cb(st_->sk, NL_CB_CUSTOM, RecordErr, &st_->kernelErr);
}

// native.openNetlink([netnsPath])
Napi::Value NetlinkWrap::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "netlink.open", ""};
  NetlinkInit init;
  if (!info[0].IsUndefined() && !info[0].IsNull()) {
    init.path = ArgString(c, info[0], "netns path");
    c.object = "'" + init.path + "'";
  }
  std::string detail;
  int e = OpenSocket(init.path, &init.sk, &detail);
  if (e) ThrowErrno(env, e, c.op, c.object, detail.empty() ? "" : detail);
  Napi::Object o;
  try {
    o = Data(env)->netlinkCtor.New({Napi::External<NetlinkInit>::New(env, &init)});
  } catch (...) {
    if (init.sk) nl_socket_free(init.sk);
    throw;
  }
  return o;
}

Napi::Value NetlinkWrap::Close(const Napi::CallbackInfo& info) {
  if (!closed_) {
    closed_ = true;
    std::lock_guard<std::mutex> g(st_->mu);  // waits for a request in flight
    if (st_->sk) nl_socket_free(st_->sk);
    st_->sk = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value NetlinkWrap::Links(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.links", Label()};
    Require(c);
    auto out = std::make_shared<std::vector<LinkData>>();
    return Queue(
        info, c,
        [out](Ctx& x) {
          DumpCtx d;
          d.onObject = [&](struct nl_object* obj, struct nl_msg* msg) {
            if (!IsType(obj, "route/link")) return;
            out->emplace_back();
            LinkFromMsg(obj, msg, out->back());
          };
          d.restart = [&]() { out->clear(); };
          return Dump(x.sk, RTM_GETLINK, AF_UNSPEC, d);
        },
        [out](Napi::Env env) {
          Napi::Array a = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) a.Set(static_cast<uint32_t>(i), LinkJs(env, (*out)[i]));
          return a;
        });
  });
}

// link(name): the link, or null when there is none
Napi::Value NetlinkWrap::Link(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.link", Label()};
    Require(c);
    std::string name = IfName(c, info[0], "name");
    c.object = "link '" + name + "' (" + Label() + ")";
    auto out = std::make_shared<LinkData>();
    auto found = std::make_shared<bool>(false);
    return Queue(
        info, c,
        [out, found, name](Ctx& x) {
          // a dump filtered by name would need IFLA_IFNAME in the request;
          // a dump of all links keeps IFLA_XDP parsing in one place.
          DumpCtx d;
          d.onObject = [&](struct nl_object* obj, struct nl_msg* msg) {
            if (*found || !IsType(obj, "route/link")) return;
            const char* n = rtnl_link_get_name(reinterpret_cast<struct rtnl_link*>(obj));
            if (!n || name != n) return;
            LinkFromMsg(obj, msg, *out);
            *found = true;
          };
          d.restart = [&]() {
            *found = false;
            *out = LinkData();
          };
          return Dump(x.sk, RTM_GETLINK, AF_UNSPEC, d);
        },
        [out, found](Napi::Env env) { return *found ? Napi::Value(LinkJs(env, *out)) : env.Null(); });
  });
}

Napi::Value NetlinkWrap::AddBridge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.addBridge", Label()};
    Require(c);
    std::string name = IfName(c, info[0], "name");
    c.object = "bridge '" + name + "' (" + Label() + ")";
    return Queue(info, c, [name](Ctx& x) {
      struct rtnl_link* l = rtnl_link_alloc();
      if (!l) return -NLE_NOMEM;
      rtnl_link_set_name(l, name.c_str());
      int r = rtnl_link_set_type(l, "bridge");
      if (r == 0) r = rtnl_link_add(x.sk, l, NLM_F_CREATE | NLM_F_EXCL);
      rtnl_link_put(l);
      return r;
    });
  });
}

// addVeth(name, peerName, { peerNetns?: path|fd })
Napi::Value NetlinkWrap::AddVeth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.addVeth", Label()};
    Require(c);
    std::string name = IfName(c, info[0], "name");
    std::string peer = IfName(c, info[1], "peer name");
    c.object = "veth '" + name + "' (" + Label() + ")";
    NsArg ns;
    if (!info[2].IsUndefined()) {
      Napi::Object o = OptObject(c, info[2], "options");
      OnlyKeys(c, o, {"peerNetns"});
      ns = NetnsArg(c, o.Get("peerNetns"), "peerNetns");
    }
    if (!ns.set && name == peer) ThrowArg(env, c.op, c.object, "peer name must differ from name in one namespace");
    return Queue(info, c, [name, peer, ns](Ctx& x) {
      UniqueFd guard;
      int nsfd = ns.set ? OpenNs(x, ns, guard) : -1;
      if (x.err) return 0;
      struct rtnl_link* l = rtnl_link_veth_alloc();
      if (!l) return -NLE_NOMEM;
      rtnl_link_set_name(l, name.c_str());
      struct rtnl_link* p = rtnl_link_veth_get_peer(l);  // a reference we own
      rtnl_link_set_name(p, peer.c_str());
      if (nsfd >= 0) rtnl_link_set_ns_fd(p, nsfd);
      rtnl_link_put(p);
      int r = rtnl_link_add(x.sk, l, NLM_F_CREATE | NLM_F_EXCL);
      rtnl_link_put(l);
      return r;
    });
  });
}

Napi::Value NetlinkWrap::DeleteLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.deleteLink", Label()};
    Require(c);
    std::string name = IfName(c, info[0], "name");
    c.object = "link '" + name + "' (" + Label() + ")";
    return Queue(info, c, [name](Ctx& x) {
      struct rtnl_link* l = rtnl_link_alloc();
      if (!l) return -NLE_NOMEM;
      rtnl_link_set_name(l, name.c_str());
      int r = rtnl_link_delete(x.sk, l);
      rtnl_link_put(l);
      return r;
    });
  });
}

// setLink(name, { up?, master? (name, or null: none), alias?, mtu?, netns? })
Napi::Value NetlinkWrap::SetLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.setLink", Label()};
    Require(c);
    std::string name = IfName(c, info[0], "name");
    c.object = "link '" + name + "' (" + Label() + ")";
    Napi::Object o = OptObject(c, info[1], "changes");
    OnlyKeys(c, o, {"up", "master", "alias", "mtu", "netns"});
    struct Change {
      int up = -1;  // -1 unchanged
      bool setMaster = false;
      std::string master;  // "" = none
      bool setAlias = false;
      std::string alias;
      uint32_t mtu = 0;
      NsArg ns;
    } ch;
    Napi::Value v = o.Get("up");
    if (!v.IsUndefined()) {
      if (!v.IsBoolean()) ThrowArg(env, c.op, c.object, "up must be a boolean");
      ch.up = v.As<Napi::Boolean>().Value() ? 1 : 0;
    }
    v = o.Get("master");
    if (!v.IsUndefined()) {
      ch.setMaster = true;
      if (!v.IsNull()) ch.master = IfName(c, v, "master");
    }
    v = o.Get("alias");
    if (!v.IsUndefined()) {
      if (!v.IsString()) ThrowArg(env, c.op, c.object, "alias must be a string");
      ch.alias = v.As<Napi::String>().Utf8Value();
      if (ch.alias.size() >= 256 || ch.alias.find('\0') != std::string::npos)
        ThrowArg(env, c.op, c.object, "alias must be under 256 bytes without NUL");
      ch.setAlias = true;
    }
    v = o.Get("mtu");
    if (!v.IsUndefined()) ch.mtu = ArgU32(c, v, "mtu", 68, 65535);
    ch.ns = NetnsArg(c, o.Get("netns"), "netns");
    return Queue(info, c, [name, ch](Ctx& x) {
      struct rtnl_link* orig = nullptr;
      int r = GetLink(x, name, &orig);
      if (r < 0) return r;
      struct rtnl_link* change = rtnl_link_alloc();
      if (!change) {
        rtnl_link_put(orig);
        return -NLE_NOMEM;
      }
      UniqueFd guard;
      if (ch.setMaster) {
        int m = 0;
        if (!ch.master.empty()) {
          struct rtnl_link* ml = nullptr;
          int mr = GetLink(x, ch.master, &ml);
          if (mr < 0) {
            x.err = ENODEV;
            x.detail = "no master '" + ch.master + "'";
          } else {
            m = rtnl_link_get_ifindex(ml);
            rtnl_link_put(ml);
          }
        }
        rtnl_link_set_master(change, m);
      }
      if (ch.up == 1) rtnl_link_set_flags(change, IFF_UP);
      if (ch.up == 0) rtnl_link_unset_flags(change, IFF_UP);
      if (ch.setAlias) rtnl_link_set_ifalias(change, ch.alias.c_str());
      if (ch.mtu) rtnl_link_set_mtu(change, ch.mtu);
      if (ch.ns.set && !x.err) {
        int fd = OpenNs(x, ch.ns, guard);
        if (fd >= 0) rtnl_link_set_ns_fd(change, fd);
      }
      if (!x.err) r = rtnl_link_change(x.sk, orig, change, 0);
      rtnl_link_put(change);
      rtnl_link_put(orig);
      return r;
    });
  });
}

// addresses([family]) → every address of the namespace
Napi::Value NetlinkWrap::Addresses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.addresses", Label()};
    Require(c);
    int fam = ParseFamily(c, info[0], true);
    auto out = std::make_shared<std::vector<AddrData>>();
    return Queue(
        info, c,
        [out, fam](Ctx& x) {
          DumpCtx d;
          d.onObject = [&](struct nl_object* obj, struct nl_msg*) {
            if (!IsType(obj, "route/addr")) return;
            out->emplace_back();
            FromAddr(reinterpret_cast<struct rtnl_addr*>(obj), out->back());
            if (fam != AF_UNSPEC && out->back().family != fam) out->pop_back();
          };
          d.restart = [&]() { out->clear(); };
          return Dump(x.sk, RTM_GETADDR, fam, d);
        },
        [out](Napi::Env env) {
          Napi::Array a = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) a.Set(static_cast<uint32_t>(i), AddrJs(env, (*out)[i]));
          return a;
        });
  });
}

struct AddrSpec {
  std::string dev, address, broadcast;
  int family = 0;
  uint32_t prefixLen = 0;
  bool autoBroadcast = false, nodad = false;
};

static AddrSpec ParseAddrSpec(ArgCtx& c, const Napi::CallbackInfo& info, bool add) {
  AddrSpec s;
  s.dev = IfName(c, info[0], "device");
  Napi::Object o = OptObject(c, info[1], "address");
  if (add)
    OnlyKeys(c, o, {"address", "prefixLen", "broadcast", "nodad"});
  else
    OnlyKeys(c, o, {"address", "prefixLen"});
  s.address = IpArg(c, o.Get("address"), "address", &s.family);
  c.object = "address " + s.address + " on '" + s.dev + "'";
  s.prefixLen = ArgU32(c, o.Get("prefixLen"), "prefixLen", 0, s.family == AF_INET ? 32 : 128);
  if (add) {
    Napi::Value b = o.Get("broadcast");
    if (b.IsBoolean()) {
      s.autoBroadcast = b.As<Napi::Boolean>().Value();
    } else if (!b.IsUndefined()) {
      int f = s.family;
      s.broadcast = IpArg(c, b, "broadcast", &f);
    }
    if ((s.autoBroadcast || !s.broadcast.empty()) && s.family != AF_INET)
      ThrowArg(c.env, c.op, c.object, "broadcast is IPv4 only");
    Napi::Value n = o.Get("nodad");
    if (!n.IsUndefined()) {
      if (!n.IsBoolean()) ThrowArg(c.env, c.op, c.object, "nodad must be a boolean");
      s.nodad = n.As<Napi::Boolean>().Value();
      if (s.nodad && s.family != AF_INET6) ThrowArg(c.env, c.op, c.object, "nodad is IPv6 only");
    }
  }
  return s;
}

static int BuildAddr(Ctx& x, const AddrSpec& s, struct rtnl_addr** out) {
  struct rtnl_link* l = nullptr;
  int r = GetLink(x, s.dev, &l);
  if (r < 0) return r;
  int ifindex = rtnl_link_get_ifindex(l);
  rtnl_link_put(l);
  struct rtnl_addr* a = rtnl_addr_alloc();
  if (!a) return -NLE_NOMEM;
  rtnl_addr_set_ifindex(a, ifindex);
  rtnl_addr_set_family(a, s.family);
  NlAddrPtr local;
  r = nl_addr_parse(s.address.c_str(), s.family, &local.p);
  if (r == 0) r = rtnl_addr_set_local(a, local.p);
  if (r == 0) rtnl_addr_set_prefixlen(a, static_cast<int>(s.prefixLen));
  if (r == 0 && (s.autoBroadcast || !s.broadcast.empty())) {
    uint8_t b[4];
    if (s.autoBroadcast) {  // `brd +`: the host bits all ones
      inet_pton(AF_INET, s.address.c_str(), b);
      uint32_t v = ntohl(*reinterpret_cast<uint32_t*>(b));
      uint32_t mask = s.prefixLen == 0 ? 0 : 0xffffffffu << (32 - s.prefixLen);
      v = s.prefixLen >= 31 ? v : (v | ~mask);
      if (s.prefixLen >= 31) v = 0;  // no broadcast on /31 and /32, as ip does
      *reinterpret_cast<uint32_t*>(b) = htonl(v);
    } else {
      inet_pton(AF_INET, s.broadcast.c_str(), b);
    }
    if (s.broadcast.empty() && s.prefixLen >= 31) {
      // leave it unset
    } else {
      NlAddrPtr brd;
      brd.p = nl_addr_build(AF_INET, b, 4);
      if (!brd.p) r = -NLE_NOMEM;
      else r = rtnl_addr_set_broadcast(a, brd.p);
    }
  }
  if (r == 0 && s.nodad) rtnl_addr_set_flags(a, IFA_F_NODAD);
  if (r < 0) {
    rtnl_addr_put(a);
    return r;
  }
  *out = a;
  return 0;
}

// addAddress(dev, { address, prefixLen, broadcast?: true|'a.b.c.d', nodad? })
Napi::Value NetlinkWrap::AddAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.addAddress", Label()};
    Require(c);
    AddrSpec s = ParseAddrSpec(c, info, true);
    return Queue(info, c, [s](Ctx& x) {
      struct rtnl_addr* a = nullptr;
      int r = BuildAddr(x, s, &a);
      if (r < 0) return r;
      r = rtnl_addr_add(x.sk, a, NLM_F_EXCL);
      rtnl_addr_put(a);
      return r;
    });
  });
}

Napi::Value NetlinkWrap::DeleteAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.deleteAddress", Label()};
    Require(c);
    AddrSpec s = ParseAddrSpec(c, info, false);
    return Queue(info, c, [s](Ctx& x) {
      struct rtnl_addr* a = nullptr;
      int r = BuildAddr(x, s, &a);
      if (r < 0) return r;
      r = rtnl_addr_delete(x.sk, a, 0);
      rtnl_addr_put(a);
      return r;
    });
  });
}

// routes([family]) → every route of every table
Napi::Value NetlinkWrap::Routes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.routes", Label()};
    Require(c);
    int fam = ParseFamily(c, info[0], true);
    auto out = std::make_shared<std::vector<RouteData>>();
    return Queue(
        info, c,
        [out, fam](Ctx& x) {
          DumpCtx d;
          d.onObject = [&](struct nl_object* obj, struct nl_msg*) {
            if (!IsType(obj, "route/route")) return;
            out->emplace_back();
            FromRoute(reinterpret_cast<struct rtnl_route*>(obj), out->back());
            if (fam != AF_UNSPEC && out->back().family != fam) out->pop_back();
          };
          d.restart = [&]() { out->clear(); };
          return Dump(x.sk, RTM_GETROUTE, fam, d);
        },
        [out](Napi::Env env) {
          Napi::Array a = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) a.Set(static_cast<uint32_t>(i), RouteJs(env, (*out)[i]));
          return a;
        });
  });
}

// addRoute/deleteRoute({ dst: 'default' | 'a.b.c.d/n', gateway?, dev?, family? })
Napi::Value NetlinkWrap::RouteOp(const Napi::CallbackInfo& info, bool add) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, add ? "netlink.addRoute" : "netlink.deleteRoute", Label()};
    Require(c);
    Napi::Object o = OptObject(c, info[0], "route");
    OnlyKeys(c, o, {"dst", "gateway", "dev", "family"});
    struct Spec {
      int family = 0;
      std::string dst, gateway, dev;
      uint32_t dstLen = 0;
    } s;
    if (!o.Get("family").IsUndefined()) s.family = ParseFamily(c, o.Get("family"), false);
    std::string dst = ArgString(c, o.Get("dst"), "dst");
    c.object = "route " + dst + " (" + Label() + ")";
    if (dst != "default") {
      size_t slash = dst.find('/');
      std::string a = dst.substr(0, slash);
      s.dst = IpArg(c, Napi::String::New(env, a), "dst", &s.family);
      uint32_t max = s.family == AF_INET ? 32 : 128;
      s.dstLen = max;
      if (slash != std::string::npos) {
        std::string p = dst.substr(slash + 1);
        char* end = nullptr;
        unsigned long n = strtoul(p.c_str(), &end, 10);
        if (p.empty() || *end || n > max) ThrowArg(env, c.op, c.object, "dst prefix length must be 0.." + std::to_string(max));
        s.dstLen = static_cast<uint32_t>(n);
      }
    }
    if (!o.Get("gateway").IsUndefined()) s.gateway = IpArg(c, o.Get("gateway"), "gateway", &s.family);
    if (!o.Get("dev").IsUndefined()) s.dev = IfName(c, o.Get("dev"), "dev");
    if (!s.family) ThrowArg(env, c.op, c.object, "family must be given for a default route without gateway");
    if (add && s.gateway.empty() && s.dev.empty()) ThrowArg(env, c.op, c.object, "a route needs a gateway or a dev");
    return Queue(info, c, [s, add](Ctx& x) {
      int ifindex = 0;
      if (!s.dev.empty()) {
        struct rtnl_link* l = nullptr;
        int r = GetLink(x, s.dev, &l);
        if (r < 0) return r;
        ifindex = rtnl_link_get_ifindex(l);
        rtnl_link_put(l);
      }
      struct rtnl_route* rt = rtnl_route_alloc();
      if (!rt) return -NLE_NOMEM;
      rtnl_route_set_family(rt, static_cast<uint8_t>(s.family));
      rtnl_route_set_table(rt, RT_TABLE_MAIN);
      rtnl_route_set_type(rt, RTN_UNICAST);
      // add: RTPROT_BOOT, as `ip route add`; delete: RTPROT_UNSPEC matches any
      // (libnl's default, RTPROT_STATIC, would match only static routes)
      rtnl_route_set_protocol(rt, add ? RTPROT_BOOT : RTPROT_UNSPEC);
      NlAddrPtr dst;
      int r;
      if (s.dst.empty()) {
        uint8_t zero[16] = {0};
        dst.p = nl_addr_build(s.family, zero, s.family == AF_INET ? 4 : 16);
        r = dst.p ? 0 : -NLE_NOMEM;
        if (r == 0) nl_addr_set_prefixlen(dst.p, 0);
      } else {
        r = nl_addr_parse(s.dst.c_str(), s.family, &dst.p);
        if (r == 0) nl_addr_set_prefixlen(dst.p, static_cast<int>(s.dstLen));
      }
      if (r == 0) r = rtnl_route_set_dst(rt, dst.p);
      if (r == 0 && (ifindex || !s.gateway.empty())) {
        struct rtnl_nexthop* nh = rtnl_route_nh_alloc();
        if (!nh) {
          r = -NLE_NOMEM;
        } else {
          if (ifindex) rtnl_route_nh_set_ifindex(nh, ifindex);
          if (!s.gateway.empty()) {
            NlAddrPtr gw;
            r = nl_addr_parse(s.gateway.c_str(), s.family, &gw.p);
            if (r == 0) rtnl_route_nh_set_gateway(nh, gw.p);
          }
          rtnl_route_add_nexthop(rt, nh);  // the route owns nh now
        }
      }
      if (r == 0) {
        if (!add) rtnl_route_set_scope(rt, RT_SCOPE_NOWHERE);  // any scope, as `ip route del`
        r = add ? rtnl_route_add(x.sk, rt, NLM_F_EXCL) : rtnl_route_delete(x.sk, rt, 0);
      }
      rtnl_route_put(rt);
      return r;
    });
  });
}

Napi::Value NetlinkWrap::AddRoute(const Napi::CallbackInfo& info) { return RouteOp(info, true); }
Napi::Value NetlinkWrap::DeleteRoute(const Napi::CallbackInfo& info) { return RouteOp(info, false); }

Napi::Value NetlinkWrap::Neighbours(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netlink.neighbours", Label()};
    Require(c);
    int fam = ParseFamily(c, info[0], true);
    auto out = std::make_shared<std::vector<NeighData>>();
    return Queue(
        info, c,
        [out, fam](Ctx& x) {
          DumpCtx d;
          d.onObject = [&](struct nl_object* obj, struct nl_msg*) {
            if (!IsType(obj, "route/neigh")) return;
            out->emplace_back();
            FromNeigh(reinterpret_cast<struct rtnl_neigh*>(obj), out->back());
            if (fam != AF_UNSPEC && out->back().family != fam) out->pop_back();
          };
          struct ndmsg nd;
          memset(&nd, 0, sizeof(nd));
          nd.ndm_family = static_cast<uint8_t>(fam);
          int r = nl_send_simple(x.sk, RTM_GETNEIGH, NLM_F_DUMP, &nd, sizeof(nd));
          if (r < 0) return r;
          struct nl_cb* cb = nl_cb_clone(nl_socket_get_cb(x.sk));
          if (!cb) return -NLE_NOMEM;
          nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, DumpValid, &d);
          r = nl_recvmsgs(x.sk, cb);
          nl_cb_put(cb);
          return r < 0 ? r : 0;
        },
        [out](Napi::Env env) {
          Napi::Array a = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) a.Set(static_cast<uint32_t>(i), NeighJs(env, (*out)[i]));
          return a;
        });
  });
}

// ======================================================= NetlinkEvents ===

namespace {

struct Event {
  enum Type { kLink, kAddr, kRoute } type = kLink;
  bool add = true;
  LinkData link;
  AddrData addr;
  RouteData route;
  ErrInfo err;  // err.err != 0: an error to report instead
};

struct EvCollect {
  std::vector<Event>* out;
  struct nl_msg* cur = nullptr;
};

void EvParsed(struct nl_object* obj, void* arg) {
  auto* c = static_cast<EvCollect*>(arg);
  int t = nlmsg_hdr(c->cur)->nlmsg_type;
  Event e;
  e.add = t == RTM_NEWLINK || t == RTM_NEWADDR || t == RTM_NEWROUTE;
  if (IsType(obj, "route/link")) {
    e.type = Event::kLink;
    LinkFromMsg(obj, c->cur, e.link);
  } else if (IsType(obj, "route/addr")) {
    e.type = Event::kAddr;
    FromAddr(reinterpret_cast<struct rtnl_addr*>(obj), e.addr);
  } else if (IsType(obj, "route/route")) {
    e.type = Event::kRoute;
    FromRoute(reinterpret_cast<struct rtnl_route*>(obj), e.route);
  } else {
    return;
  }
  c->out->push_back(std::move(e));
}

int EvValid(struct nl_msg* msg, void* arg) {
  auto* c = static_cast<EvCollect*>(arg);
  c->cur = msg;
  nl_msg_parse(msg, EvParsed, c);
  return NL_OK;
}

Napi::Object EventJs(Napi::Env env, const Event& e) {
  Napi::Object o;
  switch (e.type) {
    case Event::kLink: o = LinkJs(env, e.link); break;
    case Event::kAddr: o = AddrJs(env, e.addr); break;
    case Event::kRoute: o = RouteJs(env, e.route); break;
  }
  o.Set("type", e.type == Event::kLink ? "link" : e.type == Event::kAddr ? "addr" : "route");
  o.Set("action", e.add ? "new" : "del");
  return o;
}

}  // namespace

class NetlinkEventsWrap : public Napi::ObjectWrap<NetlinkEventsWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NetlinkEvents",
                       {
                           InstanceAccessor<&NetlinkEventsWrap::GetRunning>("running"),
                           InstanceMethod<&NetlinkEventsWrap::Close>("close"),
                       });
  }
  static Napi::Value Subscribe(const Napi::CallbackInfo& info);
  explicit NetlinkEventsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetlinkEventsWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      ThrowArg(info.Env(), "netlinkEvents.new", "", "use subscribeNetlink() to get a NetlinkEvents");
  }
  ~NetlinkEventsWrap() override { Stop(); }

  void Start(struct nl_sock* sk, Napi::Function onEvent, Napi::Function onError, std::string label);

 private:
  Napi::Value GetRunning(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), thread_.joinable()); }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }
  void Stop() {
    if (!thread_.joinable()) return;
    *live_ = false;
    uint64_t one = 1;
    ssize_t w = write(wakeFd_, &one, sizeof(one));
    (void)w;
    thread_.join();
    close(wakeFd_);
    wakeFd_ = -1;
    tsfn_.Release();
    live_.reset();
  }

  std::thread thread_;
  int wakeFd_ = -1;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<std::atomic<bool>> live_;
};

void NetlinkEventsWrap::Start(struct nl_sock* sk, Napi::Function onEvent, Napi::Function onError, std::string label) {
  Napi::Env env = onEvent.Env();
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    int e = errno;
    nl_socket_free(sk);
    ThrowErrno(env, e, "netlink.subscribe", label, "eventfd: " + std::string(strerror(e)));
  }
  auto live = std::make_shared<std::atomic<bool>>(true);
  auto* onErrorRef = new Napi::FunctionReference();
  if (!onError.IsEmpty()) *onErrorRef = Napi::Persistent(onError);
  tsfn_ = Napi::ThreadSafeFunction::New(env, onEvent, "berth.netlink.events", 0, 1, onErrorRef,
                                        [](Napi::Env, Napi::FunctionReference* ref) { delete ref; });
  wakeFd_ = wake;
  live_ = live;
  Napi::ThreadSafeFunction tsfn = tsfn_;
  thread_ = std::thread([sk, wake, live, tsfn, onErrorRef, label]() mutable {
    using Batch = std::vector<Event>;
    auto deliver = [&](Batch* b) {
      auto call = [live, onErrorRef](Napi::Env env, Napi::Function onEvent, Batch* b) {
        std::unique_ptr<Batch> own(b);
        for (const Event& e : *b) {
          if (!*live) return;
          if (e.err.err) {
            Napi::Value v = MakeError(env, e.err).Value();
            if (!onErrorRef->IsEmpty())
              onErrorRef->Call({v});
            else
              throw Napi::Error(env, v);
            continue;
          }
          onEvent.Call({EventJs(env, e)});
        }
      };
      if (tsfn.BlockingCall(b, call) != napi_ok) delete b;
    };
    Batch pending;
    EvCollect col{&pending};
    nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, EvValid, &col);
    struct pollfd pfd[2];
    pfd[0].fd = nl_socket_get_fd(sk);
    pfd[0].events = POLLIN;
    pfd[1].fd = wake;
    pfd[1].events = POLLIN;
    for (;;) {
      pfd[0].revents = pfd[1].revents = 0;
      int n = poll(pfd, 2, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        auto* b = new Batch(1);
        (*b)[0].err.err = errno;
        (*b)[0].err.op = "netlink.events";
        (*b)[0].err.object = label;
        deliver(b);
        break;
      }
      if (pfd[1].revents || !*live) break;
      if (!(pfd[0].revents & (POLLIN | POLLERR))) continue;
      int r = nl_recvmsgs_default(sk);
      bool fatal = false;
      if (r < 0 && r != -NLE_AGAIN && r != -NLE_INTR) {
        Event e;
        // an overrun (ENOBUFS) loses events: report it and read on
        e.err.err = r == -NLE_NOMEM ? ENOBUFS : NleToErrno(r);
        e.err.op = "netlink.events";
        e.err.object = label;
        if (r == -NLE_NOMEM) e.err.detail = "events lost (receive buffer overrun); resynchronise";
        else fatal = true;
        pending.push_back(std::move(e));
      }
      if (!pending.empty()) {
        auto* b = new Batch();
        b->swap(pending);
        deliver(b);
      }
      if (fatal) break;
    }
    nl_socket_free(sk);
  });
}

// native.subscribeNetlink(onEvent[, onError][, netnsPath])
Napi::Value NetlinkEventsWrap::Subscribe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "netlink.subscribe", "netlink events"};
  if (!info[0].IsFunction()) ThrowArg(env, c.op, c.object, "onEvent must be a function");
  if (!info[1].IsUndefined() && !info[1].IsNull() && !info[1].IsFunction())
    ThrowArg(env, c.op, c.object, "onError must be a function");
  std::string path;
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    path = ArgString(c, info[2], "netns path");
    c.object = "netlink events in '" + path + "'";
  }
  struct nl_sock* sk = nullptr;
  std::string detail;
  int e = OpenSocket(path, &sk, &detail);
  if (e) ThrowErrno(env, e, c.op, c.object, detail);
  nl_socket_disable_seq_check(sk);
  int r = nl_socket_add_memberships(sk, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE,
                                    RTNLGRP_IPV6_ROUTE, 0);
  if (r == 0) r = nl_socket_set_nonblocking(sk);
  if (r == 0) r = nl_socket_set_buffer_size(sk, 1 << 20, 0);
  if (r < 0) {
    nl_socket_free(sk);
    ThrowErrno(env, NleToErrno(r), c.op, c.object, nl_geterror(r));
  }
  Napi::Object o;
  int dummy = 0;
  try {
    o = Data(env)->netlinkEventsCtor.New({Napi::External<int>::New(env, &dummy)});
  } catch (...) {
    nl_socket_free(sk);
    throw;
  }
  NetlinkEventsWrap* w = NetlinkEventsWrap::Unwrap(o);
  w->Start(sk, info[0].As<Napi::Function>(),
           info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function(), c.object);
  return o;
}

// ========================================================== netns tools ===

namespace {

constexpr const char* kNetnsDir = "/run/netns";

void NetnsName(const ArgCtx& c, const std::string& name) {
  if (name == "." || name == ".." || name.find('/') != std::string::npos || name.size() > 255)
    ThrowArg(c.env, c.op, c.object, "netns name must be a file name (no '/', not '.' or '..')");
}

// `ip netns add NAME` (iproute2 ip/ipnetns.c netns_add), on a thread that
// dies in the new namespace.
int NetnsAddImpl(const std::string& name, std::string* detail) {
  std::string path = std::string(kNetnsDir) + "/" + name;
  mkdir(kNetnsDir, S_IRWXU | S_IRGRP | S_IXGRP | S_IROTH | S_IXOTH);
  bool madeMount = false;
  while (mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    if (errno != EINVAL || madeMount) {
      int e = errno;
      *detail = std::string("mount --make-rshared ") + kNetnsDir + ": " + strerror(e);
      return e;
    }
    if (mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
      int e = errno;
      *detail = std::string("mount --bind ") + kNetnsDir + ": " + strerror(e);
      return e;
    }
    madeMount = true;
  }
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    if (e != EEXIST) *detail = "create " + path + ": " + strerror(e);
    return e;
  }
  close(fd);
  int err = 0;
  std::thread t([&]() {
    if (unshare(CLONE_NEWNET) < 0) {
      err = errno;
      *detail = std::string("unshare: ") + strerror(err);
      return;
    }
    std::string self = "/proc/self/task/" + std::to_string(syscall(SYS_gettid)) + "/ns/net";
    if (mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) < 0) {
      err = errno;
      *detail = "bind " + self + " on " + path + ": " + strerror(err);
    }
  });
  t.join();
  if (err) unlink(path.c_str());
  return err;
}

int NetnsDeleteImpl(const std::string& name, std::string* detail) {
  std::string path = std::string(kNetnsDir) + "/" + name;
  umount2(path.c_str(), MNT_DETACH);
  if (unlink(path.c_str()) < 0) return errno;
  return 0;
}

int SysctlImpl(const std::string& nsPath, const std::string& key, const std::string& value, std::string* detail) {
  int err = 0;
  auto write1 = [&]() {
    std::string p = "/proc/sys/" + key;
    int fd = open(p.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      err = errno;
      *detail = "open " + p + ": " + strerror(err);
      return;
    }
    ssize_t n = write(fd, value.data(), value.size());
    if (n < 0) {
      err = errno;
      *detail = "write " + p + ": " + strerror(err);
    } else if (static_cast<size_t>(n) != value.size()) {
      err = EIO;
      *detail = "short write to " + p;
    }
    close(fd);
  };
  if (nsPath.empty()) {
    write1();
    return err;
  }
  int nsfd = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    err = errno;
    *detail = "open " + nsPath + ": " + strerror(err);
    return err;
  }
  std::thread t([&]() {
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      err = errno;
      *detail = std::string("setns: ") + strerror(err);
      return;
    }
    write1();  // /proc/sys/net/* is looked up in the opener's namespace
  });
  t.join();
  close(nsfd);
  return err;
}

class FnWorker : public PromiseWorker {
 public:
  FnWorker(Napi::Env env, std::string op, std::string object, std::function<int(std::string*)> fn)
      : PromiseWorker(Napi::Object::New(env), "berth.netns"), fn_(std::move(fn)) {
    err_.op = std::move(op);
    err_.object = std::move(object);
  }

 protected:
  void Execute() override {
    std::string detail;
    int e = fn_(&detail);
    if (e) {
      err_.detail = detail;
      Fail(e);
    }
  }
  Napi::Value Result() override { return Env().Undefined(); }

 private:
  std::function<int(std::string*)> fn_;
};

Napi::Value QueueFn(Napi::Env env, const ArgCtx& c, std::function<int(std::string*)> fn) {
  auto* w = new FnWorker(env, c.op, c.object, std::move(fn));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value NetnsAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netns.add", ""};
    std::string name = ArgString(c, info[0], "name");
    c.object = "netns '" + name + "'";
    NetnsName(c, name);
    return QueueFn(env, c, [name](std::string* d) { return NetnsAddImpl(name, d); });
  });
}

Napi::Value NetnsDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "netns.delete", ""};
    std::string name = ArgString(c, info[0], "name");
    c.object = "netns '" + name + "'";
    NetnsName(c, name);
    return QueueFn(env, c, [name](std::string* d) { return NetnsDeleteImpl(name, d); });
  });
}

// writeSysctl(netnsPath | null, 'net/ipv6/conf/all/forwarding', '0')
Napi::Value WriteSysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() {
    ArgCtx c{env, "sysctl.write", ""};
    std::string ns;
    if (!info[0].IsNull() && !info[0].IsUndefined()) ns = ArgString(c, info[0], "netns path");
    std::string key = ArgString(c, info[1], "key");
    c.object = "sysctl " + key + (ns.empty() ? "" : " in '" + ns + "'");
    if (key[0] == '/' || key.find("..") != std::string::npos || key.find("//") != std::string::npos)
      ThrowArg(env, c.op, c.object, "key must be a path under /proc/sys, like net/ipv4/ip_forward");
    if (!info[2].IsString()) ThrowArg(env, c.op, c.object, "value must be a string");
    std::string value = info[2].As<Napi::String>().Utf8Value();
    return QueueFn(env, c, [ns, key, value](std::string* d) { return SysctlImpl(ns, key, value, d); });
  });
}

}  // namespace

void InitNetlink(Napi::Env env, Napi::Object exports) {
  Data(env)->netlinkCtor = Napi::Persistent(NetlinkWrap::Init(env));
  Data(env)->netlinkEventsCtor = Napi::Persistent(NetlinkEventsWrap::Init(env));
  exports.Set("openNetlink", Napi::Function::New(env, NetlinkWrap::Open, "openNetlink"));
  exports.Set("subscribeNetlink", Napi::Function::New(env, NetlinkEventsWrap::Subscribe, "subscribeNetlink"));
  exports.Set("netnsAdd", Napi::Function::New(env, NetnsAdd, "netnsAdd"));
  exports.Set("netnsDelete", Napi::Function::New(env, NetnsDelete, "netnsDelete"));
  exports.Set("writeSysctl", Napi::Function::New(env, WriteSysctl, "writeSysctl"));
}

}  // namespace berth
