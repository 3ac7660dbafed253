// SPDX-License-Identifier: Apache-2.0
// The layout of a map's key and value as BTF says it, as one canonical JSON
// text: the same text from an object's BTF before load (BpfObject.mapLayout)
// and from the kernel's BTF of a pinned map (BpfMap.layout), so user space can
// tell whether a pinned map still has the layout a new build expects, and
// which members moved (src/platform/lifecycle.ts). Typedefs, const and
// volatile are looked through (names of integer types do not matter, sizes
// and signedness do); members keep their names and byte offsets.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <string>

#include "berth_native.h"

namespace berth {

namespace {

std::string Quote(const char* s) {
  std::string out = "\"";
  for (const char* p = s ? s : ""; *p; p++) {
    if (*p == '"' || *p == '\\') out += '\\';
    if (static_cast<unsigned char>(*p) >= 0x20) out += *p;
  }
  return out + "\"";
}

std::string TypeJson(const struct btf* btf, __u32 id, int depth) {
  if (depth > 16) return "{\"k\":\"deep\"}";
  const struct btf_type* t = btf__type_by_id(btf, id);
  if (!t) return "{\"k\":\"missing\"}";
  switch (btf_kind(t)) {
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_CONST:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_TYPE_TAG:
      return TypeJson(btf, t->type, depth + 1);
    case BTF_KIND_INT: {
      __u32 enc = btf_int_encoding(t);
      return "{\"k\":\"int\",\"s\":" + std::to_string(t->size) + ",\"signed\":" + ((enc & BTF_INT_SIGNED) ? "true" : "false") +
             ",\"bits\":" + std::to_string(btf_int_bits(t)) + "}";
    }
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64:
      return "{\"k\":\"enum\",\"s\":" + std::to_string(t->size) + "}";
    case BTF_KIND_PTR:
      return "{\"k\":\"ptr\"}";
    case BTF_KIND_ARRAY: {
      const struct btf_array* a = btf_array(t);
      return "{\"k\":\"array\",\"n\":" + std::to_string(a->nelems) + ",\"t\":" + TypeJson(btf, a->type, depth + 1) + "}";
    }
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION: {
      std::string out = std::string("{\"k\":\"") + (btf_kind(t) == BTF_KIND_STRUCT ? "struct" : "union") +
                        "\",\"name\":" + Quote(btf__name_by_offset(btf, t->name_off)) + ",\"s\":" + std::to_string(t->size) + ",\"m\":[";
      const struct btf_member* m = btf_members(t);
      for (unsigned i = 0; i < btf_vlen(t); i++, m++) {
        __u32 bitOff = btf_member_bit_offset(t, i), bitSize = btf_member_bitfield_size(t, i);
        if (i) out += ",";
        out += "{\"n\":" + Quote(btf__name_by_offset(btf, m->name_off)) + ",\"o\":" + std::to_string(bitOff / 8);
        if (bitOff % 8 || bitSize) out += ",\"bit\":" + std::to_string(bitOff) + ",\"bits\":" + std::to_string(bitSize);
        out += ",\"t\":" + TypeJson(btf, m->type, depth + 1) + "}";
      }
      return out + "]}";
    }
    default:
      return "{\"k\":\"kind" + std::to_string(btf_kind(t)) + "\"}";
  }
}

// keyId/valueId 0: the map has no BTF for it, only its size.
std::string SideJson(const struct btf* btf, __u32 id, __u32 size) {
  if (!btf || !id) return "{\"k\":\"bytes\",\"s\":" + std::to_string(size) + "}";
  return TypeJson(btf, id, 0);
}

std::string LayoutJson(const struct btf* btf, __u32 type, __u32 flags, __u32 keyId, __u32 keySize, __u32 valueId, __u32 valueSize) {
  return "{\"type\":" + std::to_string(type) + ",\"flags\":" + std::to_string(flags) + ",\"keySize\":" + std::to_string(keySize) +
         ",\"valueSize\":" + std::to_string(valueSize) + ",\"key\":" + SideJson(btf, keyId, keySize) +
         ",\"value\":" + SideJson(btf, valueId, valueSize) + "}";
}

}  // namespace

Napi::Value BpfObjectWrap::MapLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgCtx c{env, "object.mapLayout", Label()};
  std::string name = ArgString(c, info[0], "name");
  struct bpf_object* obj = Require(env, c.op.c_str(), false);
  struct bpf_map* m = bpf_object__find_map_by_name(obj, name.c_str());
  if (!m || bpf_map__is_internal(m)) ThrowErrno(env, ENOENT, c.op, Label(), "no map '" + name + "'");
  return Napi::String::New(env, LayoutJson(bpf_object__btf(obj), bpf_map__type(m), bpf_map__map_flags(m), bpf_map__btf_key_type_id(m),
                                           bpf_map__key_size(m), bpf_map__btf_value_type_id(m), bpf_map__value_size(m)));
}

Napi::Value BpfMapWrap::Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env, "map.layout");
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  __u32 len = sizeof(mi);
  int r = bpf_obj_get_info_by_fd(fd, &mi, &len);
  if (r < 0) ThrowErrno(env, ErrFromRet(r), "map.layout", Label());
  struct btf* btf = nullptr;
  if (mi.btf_id) {
    btf = btf__load_from_kernel_by_id(mi.btf_id);
    if (!btf) ThrowErrno(env, errno, "map.layout", Label(), "cannot read the map's BTF " + std::to_string(mi.btf_id));
  }
  std::string out = LayoutJson(btf, mi.type, mi.map_flags, mi.btf_key_type_id, mi.key_size, mi.btf_value_type_id, mi.value_size);
  btf__free(btf);
  return Napi::String::New(env, out);
}

}  // namespace berth
