// SPDX-License-Identifier: Apache-2.0
// One datagram to a unix socket (AF_UNIX, SOCK_DGRAM), which node cannot send:
// the mechanism under sd_notify (src/platform/notify.ts says what is sent).
// A path starting with '@' is an abstract name (the '@' becomes the leading NUL).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "berth_native.h"

namespace berth {

Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "unixDatagram.send", ""};
  std::string path = ArgString(c, info[0], "path");
  c.object = "'" + path + "'";
  Napi::Buffer<uint8_t> data = ArgBuffer(c, info[1], "data");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() > sizeof(sa.sun_path) - (path[0] == '@' ? 0 : 1))
    ThrowArg(env, c.op, c.object, "a socket path of 1 to " + std::to_string(sizeof(sa.sun_path) - 1) + " bytes");
  memcpy(sa.sun_path, path.data(), path.size());
  if (path[0] == '@') sa.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size());
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) ThrowErrno(env, errno, c.op, c.object, "socket(AF_UNIX, SOCK_DGRAM)");
  UniqueFd guard(s);
  ssize_t n = sendto(s, data.Data(), data.Length(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&sa), len);
  if (n < 0) ThrowErrno(env, errno, c.op, c.object);
  return Napi::Number::New(env, static_cast<double>(n));
}

}  // namespace berth
