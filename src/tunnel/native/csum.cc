// The Internet checksum's sum (RFC 1071) over a Buffer range, for the TUN offload code (src/tunnel/offload/
// checksum.ts): every segment cut from a TSO super-packet gets its checksum computed, and every segment is verified
// before it is merged, so the sum runs over every octet the tunnel carries. In JS it costs about 1 us per
// 1400-octet packet; here a few tens of nanoseconds plus the call.
//   sum16(buf, start, end, init) -> the sum of the big-endian 16-bit words of buf[start, end) (an odd last octet
//   padded with zero) plus init, folded to 16 bits (end-around carry); the same value checksum.ts's JS computes.
// Built by src/tunnel/native/build.sh into dist/native/csum.node; without it checksum.ts uses its JS loop.
#include <node_api.h>
#include <cstdint>
#include <cstring>

namespace {

uint32_t Fold(uint64_t s) {
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

napi_value Sum16(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  void* data = nullptr;
  size_t len = 0;
  uint32_t start = 0, end = 0;
  double init = 0;
  if (argc < 4 || napi_get_buffer_info(env, args[0], &data, &len) != napi_ok ||
      napi_get_value_uint32(env, args[1], &start) != napi_ok || napi_get_value_uint32(env, args[2], &end) != napi_ok ||
      napi_get_value_double(env, args[3], &init) != napi_ok || start > end || end > len || init < 0) {
    napi_throw_range_error(env, nullptr, "sum16(buf, start, end, init): bad arguments");
    return nullptr;
  }
  const unsigned char* p = static_cast<const unsigned char*>(data) + start;
  size_t n = end - start;
  uint64_t s = static_cast<uint64_t>(init);
  // 32 bits at a time into a 64-bit accumulator (no carry lost), byte-swapped to big-endian words at the end:
  // the ones' complement sum is byte-order independent up to one swap (RFC 1071 section 2(B)).
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint32_t w;
    std::memcpy(&w, p + i, 4);
    acc += w;
  }
  uint32_t le = Fold(acc);  // sum of little-endian-read 16-bit halves, folded
  uint32_t be = ((le & 0xff) << 8) | (le >> 8);
  s += be;
  for (; i + 1 < n; i += 2) s += (static_cast<uint32_t>(p[i]) << 8) | p[i + 1];
  if (i < n) s += static_cast<uint32_t>(p[i]) << 8;
  napi_value out;
  napi_create_uint32(env, Fold(s), &out);
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sum16", NAPI_AUTO_LENGTH, Sum16, nullptr, &fn);
  napi_set_named_property(env, exports, "sum16", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
