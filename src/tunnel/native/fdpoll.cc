// Readiness of a file descriptor on the calling thread's libuv loop (uv_poll_t), for the tunnel's UDP receive with
// UDP_GRO (udp-recv.ts): with GRO one datagram read can be a run of datagrams whose segment size comes only in a
// control message, which node:dgram's own recvmsg neither asks for nor passes on. So the tunnel stops node's reading
// of the socket and reads it itself, with recvmmsg and control messages (through koffi), whenever this poll says
// the socket is readable. Nothing here reads or writes the fd: JS does.
//   const p = new FdPoll(fd, (status) => ...)   // level-triggered: called while the fd stays readable
//   p.stop()                                    // idempotent; the fd is not closed
// Built by src/tunnel/native/build.sh into dist/native/fdpoll.node; without it the tunnel receives without GRO.
#include <node_api.h>
#include <uv.h>

namespace {

struct Poll {
  uv_poll_t handle;
  napi_env env = nullptr;
  napi_ref callback = nullptr;
  napi_async_context async = nullptr;
  bool stopped = false;
};

void OnClosed(uv_handle_t* h) { delete static_cast<Poll*>(h->data); }

void Stop(Poll* p) {
  if (p->stopped) return;
  p->stopped = true;
  uv_poll_stop(&p->handle);
  if (p->callback) napi_delete_reference(p->env, p->callback);
  if (p->async) napi_async_destroy(p->env, p->async);
  p->callback = nullptr;
  p->async = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), OnClosed);
}

void OnReadable(uv_poll_t* h, int status, int) {
  Poll* p = static_cast<Poll*>(h->data);
  if (p->stopped) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg, result;
  if (napi_get_reference_value(env, p->callback, &cb) == napi_ok && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, status, &arg) == napi_ok) {
    // make_callback: runs process.nextTick and microtasks afterwards, as any I/O callback of node's own.
    if (napi_make_callback(env, p->async, recv, cb, 1, &arg, &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

napi_value Throw(napi_env env, const char* msg) {
  napi_throw_error(env, nullptr, msg);
  return nullptr;
}

void Finalize(napi_env, void* data, void*) {
  // Garbage-collected without stop(): stop now (on the loop's thread, where finalizers run).
  Stop(static_cast<Poll*>(data));
}

napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], self;
  napi_get_cb_info(env, info, &argc, args, &self, nullptr);
  int32_t fd;
  napi_valuetype t;
  if (argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, args[1], &t) != napi_ok || t != napi_function)
    return Throw(env, "FdPoll(fd, callback)");
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return Throw(env, "no event loop");
  Poll* p = new Poll();
  p->env = env;
  p->handle.data = p;
  if (uv_poll_init(loop, &p->handle, fd) != 0) {
    delete p;
    return Throw(env, "uv_poll_init failed");
  }
  napi_value name;
  napi_create_string_utf8(env, "autotunnel.FdPoll", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, args[1], 1, &p->callback);
  napi_async_init(env, nullptr, name, &p->async);
  if (uv_poll_start(&p->handle, UV_READABLE, OnReadable) != 0) {
    Stop(p);
    return Throw(env, "uv_poll_start failed");
  }
  // The JS object holds the Poll; stop() or the finalizer closes it. A closed Poll is freed by OnClosed only, so
  // the wrap must not point at it afterwards: stop() detaches it first.
  napi_wrap(env, self, p, Finalize, nullptr, nullptr);
  return self;
}

napi_value StopJs(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  void* data = nullptr;
  if (napi_remove_wrap(env, self, &data) == napi_ok && data) Stop(static_cast<Poll*>(data));
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {{"stop", nullptr, StopJs, nullptr, nullptr, nullptr, napi_default, nullptr}};
  napi_value cls;
  napi_define_class(env, "FdPoll", NAPI_AUTO_LENGTH, New, nullptr, 1, props, &cls);
  napi_set_named_property(env, exports, "FdPoll", cls);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
