// One message to many stream sockets in one call, for the DNS Push fan-out (src/server/fan-write.ts): every
// session subscribed to a changed RRset gets the same framed PUSH, and writing it through node's stream machinery
// costs a WriteWrap, a libuv request and its bookkeeping per socket, about a third of the pass (bench/notify,
// docs/notify.md). Here it is one send(2) per socket and nothing else; the kernel's TCP send is what remains.
//   sendAll(fds: Int32Array, n, frame: Uint8Array, out: Int32Array) -> how many sockets took the whole frame
//   out[i] = octets send(2) took for fds[i] (0..frame.length), or -errno (EAGAIN when its socket buffer is full;
//   EBADF, without a call, for an fd below 0)
// Non-blocking (MSG_DONTWAIT) and without SIGPIPE (MSG_NOSIGNAL). The caller hands over only sockets whose libuv
// write queue is empty, and gives whatever a socket did not take (a partial send, EAGAIN, an error) to node's
// socket.write, so the octets of each connection stay in order and node sees the connection's errors itself.
// Built by src/tunnel/native/build.sh into dist/native/fanwrite.node; without it every session is written by node.
#include <node_api.h>
#include <sys/socket.h>
#include <cerrno>
#include <cstdint>

namespace {

bool Int32Array(napi_env env, napi_value v, int32_t** data, size_t* len) {
  bool is = false;
  napi_typedarray_type t;
  void* p = nullptr;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  if (napi_get_typedarray_info(env, v, &t, len, &p, nullptr, nullptr) != napi_ok || t != napi_int32_array)
    return false;
  *data = static_cast<int32_t*>(p);
  return true;
}

napi_value SendAll(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  int32_t* fds = nullptr;
  int32_t* out = nullptr;
  size_t fdsLen = 0, outLen = 0, frameLen = 0;
  uint32_t n = 0;
  void* frame = nullptr;
  bool isTyped = false;
  napi_typedarray_type ft;
  if (argc < 4 || !Int32Array(env, args[0], &fds, &fdsLen) || napi_get_value_uint32(env, args[1], &n) != napi_ok ||
      napi_is_typedarray(env, args[2], &isTyped) != napi_ok || !isTyped ||
      napi_get_typedarray_info(env, args[2], &ft, &frameLen, &frame, nullptr, nullptr) != napi_ok ||
      ft != napi_uint8_array || !Int32Array(env, args[3], &out, &outLen) || n > fdsLen || n > outLen ||
      frameLen == 0) {
    napi_throw_range_error(env, nullptr, "sendAll(fds, n, frame, out): bad arguments");
    return nullptr;
  }
  uint32_t whole = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (fds[i] < 0) {
      out[i] = -EBADF;
      continue;
    }
    ssize_t r;
    do r = send(fds[i], frame, frameLen, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    out[i] = r < 0 ? -errno : static_cast<int32_t>(r);
    if (r >= 0 && static_cast<size_t>(r) == frameLen) whole++;
  }
  napi_value res;
  napi_create_uint32(env, whole, &res);
  return res;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sendAll", NAPI_AUTO_LENGTH, SendAll, nullptr, &fn);
  napi_set_named_property(env, exports, "sendAll", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
