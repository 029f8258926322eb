// In-place AEAD for ESP (RFC 4106 AES-GCM, RFC 7634 ChaCha20-Poly1305) with one reusable OpenSSL cipher
// context per direction: per packet only the nonce is set (EVP_CipherInit_ex with NULL cipher and key), so no
// cipher object, key schedule or output buffer is created. OpenSSL is the one linked into node (its symbols
// are exported by the node binary); headers come with node's include directory.
// Built by src/tunnel/native/build.sh into dist/native/aead.node; esp.ts falls back to node:crypto without it.
#include <node_api.h>
#include <openssl/evp.h>
#include <cstring>

namespace {

constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;

struct Aead {
  EVP_CIPHER_CTX* enc = nullptr;
  EVP_CIPHER_CTX* dec = nullptr;
};

void Finalize(napi_env, void* data, void*) {
  Aead* a = static_cast<Aead*>(data);
  if (a->enc) EVP_CIPHER_CTX_free(a->enc);
  if (a->dec) EVP_CIPHER_CTX_free(a->dec);
  delete a;
}

napi_value Throw(napi_env env, const char* msg) {
  napi_throw_error(env, nullptr, msg);
  return nullptr;
}

bool GetBuf(napi_env env, napi_value v, unsigned char** data, size_t* len) {
  void* p = nullptr;
  if (napi_get_buffer_info(env, v, &p, len) != napi_ok) return false;
  *data = static_cast<unsigned char*>(p);
  return true;
}

bool GetU32(napi_env env, napi_value v, uint32_t* out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

// new Aead(name: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305', key: Buffer)
napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  char name[32];
  size_t nlen = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &nlen) != napi_ok)
    return Throw(env, "Aead(name, key)");
  unsigned char* key;
  size_t klen;
  if (!GetBuf(env, argv[1], &key, &klen)) return Throw(env, "key must be a Buffer");
  const EVP_CIPHER* c = nullptr;
  if (!strcmp(name, "aes-128-gcm") && klen == 16) c = EVP_aes_128_gcm();
  else if (!strcmp(name, "aes-256-gcm") && klen == 32) c = EVP_aes_256_gcm();
  else if (!strcmp(name, "chacha20-poly1305") && klen == 32) c = EVP_chacha20_poly1305();
  if (!c) return Throw(env, "unsupported cipher or key length");
  Aead* a = new Aead();
  a->enc = EVP_CIPHER_CTX_new();
  a->dec = EVP_CIPHER_CTX_new();
  bool ok = a->enc && a->dec &&
            EVP_EncryptInit_ex(a->enc, c, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_SET_IVLEN, kNonceLen, nullptr) == 1 &&
            EVP_EncryptInit_ex(a->enc, nullptr, nullptr, key, nullptr) == 1 &&
            EVP_DecryptInit_ex(a->dec, c, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_IVLEN, kNonceLen, nullptr) == 1 &&
            EVP_DecryptInit_ex(a->dec, nullptr, nullptr, key, nullptr) == 1;
  if (!ok) {
    Finalize(env, a, nullptr);
    return Throw(env, "OpenSSL cipher init failed");
  }
  napi_wrap(env, self, a, Finalize, nullptr, nullptr);
  return self;
}

Aead* Unwrap(napi_env env, napi_value self) {
  void* p = nullptr;
  napi_unwrap(env, self, &p);
  return static_cast<Aead*>(p);
}

// The arguments seal() and open() share: (nonce: Buffer(12), aad: Buffer, buf: Buffer, off, len), with room for
// the 16-octet tag after buf[off+len]. Returns the instance, or nullptr when any argument is off.
struct AeadArgs {
  unsigned char *nonce, *aad, *buf;
  size_t alen;
  uint32_t off, len;
};

Aead* ParseArgs(napi_env env, napi_callback_info info, AeadArgs* x) {
  size_t argc = 5;
  napi_value argv[5], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  Aead* a = Unwrap(env, self);
  size_t nlen, blen;
  if (!a || argc < 5 || !GetBuf(env, argv[0], &x->nonce, &nlen) || nlen != kNonceLen ||
      !GetBuf(env, argv[1], &x->aad, &x->alen) || !GetBuf(env, argv[2], &x->buf, &blen) ||
      !GetU32(env, argv[3], &x->off) || !GetU32(env, argv[4], &x->len) ||
      static_cast<size_t>(x->off) + x->len + kTagLen > blen)
    return nullptr;
  return a;
}

// seal(nonce: Buffer(12), aad: Buffer, buf: Buffer, off, len): encrypts buf[off, off+len) in place and
// writes the 16-octet tag at buf[off+len]. Returns true.
napi_value Seal(napi_env env, napi_callback_info info) {
  napi_value result;
  AeadArgs x;
  Aead* a = ParseArgs(env, info, &x);
  unsigned char* buf = x.buf;
  const uint32_t off = x.off, len = x.len;
  if (!a)
    return Throw(env, "seal(nonce, aad, buf, off, len): bad arguments");
  int outl = 0;
  bool ok = EVP_EncryptInit_ex(a->enc, nullptr, nullptr, nullptr, x.nonce) == 1 &&
            EVP_EncryptUpdate(a->enc, nullptr, &outl, x.aad, static_cast<int>(x.alen)) == 1 &&
            (len == 0 || EVP_EncryptUpdate(a->enc, buf + off, &outl, buf + off, static_cast<int>(len)) == 1) &&
            EVP_EncryptFinal_ex(a->enc, buf + off + len, &outl) == 1 &&
            EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_GET_TAG, kTagLen, buf + off + len) == 1;
  if (!ok) return Throw(env, "seal failed");
  napi_get_boolean(env, true, &result);
  return result;
}

// open(nonce, aad, buf, off, len): verifies the tag at buf[off+len] and decrypts buf[off, off+len) in place.
// Returns false when authentication fails (then the buffer content is undefined).
napi_value Open(napi_env env, napi_callback_info info) {
  napi_value result;
  AeadArgs x;
  Aead* a = ParseArgs(env, info, &x);
  unsigned char* buf = x.buf;
  const uint32_t off = x.off, len = x.len;
  if (!a)
    return Throw(env, "open(nonce, aad, buf, off, len): bad arguments");
  int outl = 0;
  bool ok = EVP_DecryptInit_ex(a->dec, nullptr, nullptr, nullptr, x.nonce) == 1 &&
            EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_TAG, kTagLen, buf + off + len) == 1 &&
            EVP_DecryptUpdate(a->dec, nullptr, &outl, x.aad, static_cast<int>(x.alen)) == 1 &&
            (len == 0 || EVP_DecryptUpdate(a->dec, buf + off, &outl, buf + off, static_cast<int>(len)) == 1) &&
            EVP_DecryptFinal_ex(a->dec, buf + off + len, &outl) == 1;
  napi_get_boolean(env, ok, &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"seal", nullptr, Seal, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  napi_define_class(env, "Aead", NAPI_AUTO_LENGTH, New, nullptr, 2, methods, &cls);
  napi_set_named_property(env, exports, "Aead", cls);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
