// Native helpers of the change fan-out (src/server/fanout-native.ts loads them; JS fallbacks when not built).
//
// sendAll: one message to many stream sockets in one call, for the DNS Push fan-out (fan-write.ts): every
// session subscribed to a changed RRset gets the same framed PUSH, and writing it through node's stream machinery
// costs a WriteWrap, a libuv request and its bookkeeping per socket, about a third of the pass (bench/notify,
// docs/notify.md). Here it is one send(2) per socket and nothing else; the kernel's TCP send is what remains.
//   sendAll(fds: Int32Array, n, frame: Uint8Array, out: Int32Array) -> how many sockets took the whole frame
//   out[i] = octets send(2) took for fds[i] (0..frame.length), or -errno (EAGAIN when its socket buffer is full;
//   EBADF, without a call, for an fd below 0)
// Non-blocking (MSG_DONTWAIT) and without SIGPIPE (MSG_NOSIGNAL). The caller hands over only sockets whose libuv
// write queue is empty, and gives whatever a socket did not take (a partial send, EAGAIN, an error) to node's
// socket.write, so the octets of each connection stay in order and node sees the connection's errors itself.
//
// hmac: the MAC of an LLQ event (llq-event-wire.ts), one TSIG-signed copy per watcher: node's createHmac builds a
// JS object, a KeyObject handle and an OpenSSL context per call, several times the HMAC itself; here it is
// OpenSSL's one-shot HMAC (symbols exported by the node binary, as aead.cc uses them).
//   hmac(digest: string, key: Uint8Array, data: Uint8Array, end, out: Uint8Array) -> MAC length, MAC of
//   data[0, end) written to out[0, length)
// Built by src/tunnel/native/build.sh into dist/native/fanout.node.
#include <node_api.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sched.h>
#include <sys/socket.h>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace {

// A second thread takes sockets of the same batch when a core is free: each send(2) on loopback also runs the
// receiver's TCP input and wake-up, ~9 us of kernel time per socket that one thread cannot go below. The sockets
// are claimed one at a time from a shared counter, so a helper that is not scheduled costs nothing but its
// wake-up: the calling thread sends whatever is left, then takes the job back (a helper that never started
// finds it withdrawn), or waits for the one send the helper has under way. Nothing of node's or libuv's is
// touched from the helper, only the caller's fds (kept open by the caller, which is blocked meanwhile).
// AUTOTUNNEL_FANOUT_HELPER=0 (read once) sends everything from the calling thread.
struct Job {
  const int32_t* fds = nullptr;
  int32_t* out = nullptr;
  uint32_t n = 0;
  const void* frame = nullptr;
  size_t len = 0;
  std::atomic<uint32_t> next{0};
  std::atomic<uint32_t> whole{0};
};

enum State : int { kIdle, kPosted, kRunning, kDone };

struct Helper {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> state{kIdle};
  Job* job = nullptr;
};

/** Batches at least this large are shared with the helper. */
constexpr uint32_t kShareFrom = 64;

void SendRange(Job* j) {
  for (;;) {
    uint32_t i = j->next.fetch_add(1, std::memory_order_relaxed);
    if (i >= j->n) return;
    int fd = j->fds[i];
    if (fd < 0) {
      j->out[i] = -EBADF;
      continue;
    }
    ssize_t r;
    do r = send(fd, j->frame, j->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    j->out[i] = r < 0 ? -errno : static_cast<int32_t>(r);
    if (r >= 0 && static_cast<size_t>(r) == j->len) j->whole.fetch_add(1, std::memory_order_relaxed);
  }
}

void HelperLoop(Helper* h) {
  for (;;) {
    Job* j;
    {
      // Job and state are read under the lock a post holds, so the job claimed is the one posted; the caller
      // withdraws without the lock, and then this claim fails.
      std::unique_lock<std::mutex> lock(h->mu);
      h->cv.wait(lock, [h] { return h->state.load(std::memory_order_acquire) == kPosted; });
      j = h->job;
      int posted = kPosted;
      if (!h->state.compare_exchange_strong(posted, kRunning, std::memory_order_acq_rel)) continue;
    }
    SendRange(j);
    h->state.store(kDone, std::memory_order_release);
  }
}

Helper* TheHelper() {
  // One per process, started on first use and never stopped (it sleeps on the condition variable when idle).
  static Helper* h = [] {
    const char* env = getenv("AUTOTUNNEL_FANOUT_HELPER");
    if (std::thread::hardware_concurrency() < 2 || (env && env[0] == '0')) return static_cast<Helper*>(nullptr);
    Helper* x = new Helper();
    try {
      std::thread(HelperLoop, x).detach();
    } catch (...) {
      return static_cast<Helper*>(nullptr);
    }
    return x;
  }();
  return h;
}

// A typed array of `type` (its data and its element count), or false.
bool Typed(napi_env env, napi_value v, napi_typedarray_type type, void** data, size_t* len) {
  bool is = false;
  napi_typedarray_type t;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  return napi_get_typedarray_info(env, v, &t, len, data, nullptr, nullptr) == napi_ok && t == type;
}

bool Int32Array(napi_env env, napi_value v, int32_t** data, size_t* len) {
  void* p = nullptr;
  if (!Typed(env, v, napi_int32_array, &p, len)) return false;
  *data = static_cast<int32_t*>(p);
  return true;
}

bool Bytes(napi_env env, napi_value v, unsigned char** data, size_t* len) {
  void* p = nullptr;
  if (!Typed(env, v, napi_uint8_array, &p, len)) return false;
  *data = static_cast<unsigned char*>(p);
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
  unsigned char* frame = nullptr;
  if (argc < 4 || !Int32Array(env, args[0], &fds, &fdsLen) || napi_get_value_uint32(env, args[1], &n) != napi_ok ||
      !Bytes(env, args[2], &frame, &frameLen) || !Int32Array(env, args[3], &out, &outLen) || n > fdsLen ||
      n > outLen || frameLen == 0) {
    napi_throw_range_error(env, nullptr, "sendAll(fds, n, frame, out): bad arguments");
    return nullptr;
  }
  Job job;
  job.fds = fds;
  job.out = out;
  job.n = n;
  job.frame = frame;
  job.len = frameLen;
  Helper* h = n >= kShareFrom ? TheHelper() : nullptr;
  if (h) {
    bool posted = false;
    {
      // Only an idle helper takes a job (another thread of the process may be using it: then send alone).
      std::lock_guard<std::mutex> lock(h->mu);
      int idle = kIdle;
      if (h->state.compare_exchange_strong(idle, kPosted, std::memory_order_acq_rel)) {
        h->job = &job;
        posted = true;
      }
    }
    if (posted) h->cv.notify_one();
    else h = nullptr;
  }
  SendRange(&job);
  if (h) {
    int posted = kPosted;
    // Withdrawn before the helper started, or wait for its last send (one socket's worth).
    if (!h->state.compare_exchange_strong(posted, kIdle, std::memory_order_acq_rel)) {
      while (h->state.load(std::memory_order_acquire) != kDone) sched_yield();
      h->state.store(kIdle, std::memory_order_release);
    }
  }
  napi_value res;
  napi_create_uint32(env, job.whole.load(), &res);
  return res;
}

napi_value Hmac(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  napi_get_cb_info(env, info, &argc, args, nullptr, nullptr);
  char name[32];
  size_t nameLen = 0;
  unsigned char *key = nullptr, *data = nullptr, *out = nullptr;
  size_t keyLen = 0, dataLen = 0, outLen = 0;
  uint32_t end = 0;
  if (argc < 5 || napi_get_value_string_utf8(env, args[0], name, sizeof name, &nameLen) != napi_ok ||
      !Bytes(env, args[1], &key, &keyLen) || !Bytes(env, args[2], &data, &dataLen) ||
      napi_get_value_uint32(env, args[3], &end) != napi_ok || end > dataLen || !Bytes(env, args[4], &out, &outLen)) {
    napi_throw_range_error(env, nullptr, "hmac(digest, key, data, end, out): bad arguments");
    return nullptr;
  }
  // The last digest looked up is kept: a fan-out signs every copy with the same algorithm.
  static char lastName[32] = "";
  static const EVP_MD* lastMd = nullptr;
  if (!lastMd || std::strcmp(name, lastName) != 0) {
    const EVP_MD* md = EVP_get_digestbyname(name);
    if (!md) {
      napi_throw_range_error(env, nullptr, "hmac: unknown digest");
      return nullptr;
    }
    lastMd = md;
    std::strcpy(lastName, name);
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int macLen = 0;
  if (!HMAC(lastMd, key, static_cast<int>(keyLen), data, end, mac, &macLen)) {
    napi_throw_error(env, nullptr, "hmac: OpenSSL HMAC failed");
    return nullptr;
  }
  if (outLen < macLen) {
    napi_throw_range_error(env, nullptr, "hmac: out too short");
    return nullptr;
  }
  std::memcpy(out, mac, macLen);
  napi_value res;
  napi_create_uint32(env, macLen, &res);
  return res;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sendAll", NAPI_AUTO_LENGTH, SendAll, nullptr, &fn);
  napi_set_named_property(env, exports, "sendAll", fn);
  napi_create_function(env, "hmac", NAPI_AUTO_LENGTH, Hmac, nullptr, &fn);
  napi_set_named_property(env, exports, "hmac", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
