// The AEAD behind ESP's seal and open (STYLE.md section 3): `seal(nonce, aad, buf, off, len)` encrypts
// buf[off ..+ len] in place and writes the 16-octet tag after it; `open` verifies that tag and decrypts in place.
// Two backends with identical results:
//   native  dist/native/aead.node (src/tunnel/native/aead.cc): one OpenSSL context per direction, reused for
//           every packet -- only the nonce changes; no per-packet objects. About 4x cheaper per packet.
//   node    node:crypto: one Cipheriv/Decipheriv per packet (node:crypto cannot re-nonce a context), its
//           output copied back into place.
// The native one is used when it was built (`make build`); AUTOTUNNEL_AEAD=node forces node:crypto.

import { type CipherGCMTypes, createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'

export type AeadCipher = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305'
export type AeadBackend = 'native' | 'node'
export const AEAD_TAG_LEN = 16

export interface Aead {
  readonly backend: AeadBackend
  seal(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): void
  /** False when the tag does not verify; buf[off ..+ len] is then garbage. */
  open(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): boolean
}

interface NativeAead {
  seal(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): boolean
  open(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): boolean
}
type NativeCtor = new (cipher: string, key: Buffer) => NativeAead

function loadNative(): NativeCtor | undefined {
  if (process.env.AUTOTUNNEL_AEAD === 'node') return undefined
  try {
    // dist/src/tunnel/aead.js -> dist/native/aead.node
    const m = createRequire(import.meta.url)('../../native/aead.node') as { Aead: NativeCtor }
    return m.Aead
  } catch {
    return undefined
  }
}

const NativeAeadCtor = loadNative()

/** Whether the native backend is present in this build. */
export const nativeAeadAvailable = NativeAeadCtor !== undefined

class NativeBackend implements Aead {
  readonly backend = 'native' as const
  readonly #n: NativeAead
  constructor(cipher: AeadCipher, key: Buffer) {
    this.#n = new NativeAeadCtor!(cipher, key)
  }
  seal(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): void {
    this.#n.seal(nonce, aad, buf, off, len)
  }
  open(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): boolean {
    return this.#n.open(nonce, aad, buf, off, len)
  }
}

class NodeBackend implements Aead {
  readonly backend = 'node' as const
  // The GCM and ChaCha20-Poly1305 overloads differ only in their return type's name; both have
  // setAAD/setAuthTag/getAuthTag, so the cipher name is typed as a GCM one at the call sites.
  readonly #cipher: CipherGCMTypes
  readonly #key: KeyObject
  constructor(cipher: AeadCipher, key: Buffer) {
    this.#cipher = cipher as CipherGCMTypes
    this.#key = createSecretKey(key)
  }
  seal(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): void {
    const c = createCipheriv(this.#cipher, this.#key, nonce, { authTagLength: AEAD_TAG_LEN })
    c.setAAD(aad)
    c.update(buf.subarray(off, off + len)).copy(buf, off)
    c.final()
    c.getAuthTag().copy(buf, off + len)
  }
  open(nonce: Buffer, aad: Buffer, buf: Buffer, off: number, len: number): boolean {
    try {
      const d = createDecipheriv(this.#cipher, this.#key, nonce, { authTagLength: AEAD_TAG_LEN })
      d.setAAD(aad)
      d.setAuthTag(buf.subarray(off + len, off + len + AEAD_TAG_LEN))
      const pt = d.update(buf.subarray(off, off + len))
      d.final()
      pt.copy(buf, off)
      return true
    } catch {
      return false
    }
  }
}

export function createAead(cipher: AeadCipher, key: Buffer, backend?: AeadBackend): Aead {
  const want = backend ?? (NativeAeadCtor ? 'native' : 'node')
  if (want === 'native') {
    if (!NativeAeadCtor) throw new Error('native AEAD not built (run make build)')
    return new NativeBackend(cipher, key)
  }
  return new NodeBackend(cipher, key)
}
