// IKEv2 cryptography (RFC 7296 2.13-2.18): key exchange for groups 19/20 (RFC 5903, public value
// x || y, shared secret x) and 31 (RFC 8031, raw 32-octet u-coordinates); PRF HMAC-SHA2 (RFC 4868);
// prf+; SKEYSEED and SK_* derivation, IKE SA rekey (2.18) and Child SA KEYMAT (2.17); AEAD for the
// SK payload and for ESP: AES-GCM with a 16-octet ICV (RFC 5282, RFC 4106) and ChaCha20-Poly1305 (RFC 7634).

import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto'
import { AEAD_ICV_LEN, AEAD_SALT_LEN, DhGroup, EncrId, NotifyType, PrfId } from './constants.js'
import { IkeError } from './errors.js'

export type AeadAlg = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305'

export interface AeadSpec {
  readonly encrId: number
  /** Key Length attribute in bits for AES-GCM; undefined for ChaCha20-Poly1305 (RFC 7634 says none). */
  readonly keyBits: number | undefined
  readonly alg: AeadAlg
  /** Cipher key length in octets, without the salt. */
  readonly keyLen: number
}

const AES128_BITS = 128
const AES256_BITS = 256
const CHACHA_KEY_LEN = 32
const BITS = 8

/** The AEAD for an ENCR transform, or undefined when we do not implement it. */
export function aeadFor(encrId: number, keyBits: number | undefined): AeadSpec | undefined {
  if (encrId === EncrId.AES_GCM_16 && keyBits === AES128_BITS)
    return { encrId, keyBits, alg: 'aes-128-gcm', keyLen: AES128_BITS / BITS }
  if (encrId === EncrId.AES_GCM_16 && keyBits === AES256_BITS)
    return { encrId, keyBits, alg: 'aes-256-gcm', keyLen: AES256_BITS / BITS }
  if (encrId === EncrId.CHACHA20_POLY1305 && keyBits === undefined)
    return { encrId, keyBits: undefined, alg: 'chacha20-poly1305', keyLen: CHACHA_KEY_LEN }
  return undefined
}

/** Keying material per direction: the cipher key followed by the 4-octet salt (RFC 5282 7.1, RFC 7634 2). */
export function aeadKeymatLen(spec: AeadSpec): number {
  return spec.keyLen + AEAD_SALT_LEN
}

function nonce(keymat: Buffer, iv: Buffer): Buffer {
  return Buffer.concat([keymat.subarray(keymat.length - AEAD_SALT_LEN), iv])
}

/** Encrypts `plaintext`; returns ciphertext || ICV. `keymat` is key || salt, `iv` the 8-octet explicit IV. */
export function aeadSeal(alg: AeadAlg, keymat: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const key = keymat.subarray(0, keymat.length - AEAD_SALT_LEN)
  const c = createCipheriv(alg as 'aes-128-gcm', key, nonce(keymat, iv), { authTagLength: AEAD_ICV_LEN })
  c.setAAD(aad, { plaintextLength: plaintext.length })
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()])
}

/** Decrypts ciphertext || ICV; undefined when the ICV does not verify. */
export function aeadOpen(alg: AeadAlg, keymat: Buffer, iv: Buffer, aad: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < AEAD_ICV_LEN) return undefined
  const key = keymat.subarray(0, keymat.length - AEAD_SALT_LEN)
  const ctLen = sealed.length - AEAD_ICV_LEN
  try {
    const d = createDecipheriv(alg as 'aes-128-gcm', key, nonce(keymat, iv), { authTagLength: AEAD_ICV_LEN })
    d.setAAD(aad, { plaintextLength: ctLen })
    d.setAuthTag(sealed.subarray(ctLen))
    return Buffer.concat([d.update(sealed.subarray(0, ctLen)), d.final()])
  } catch {
    return undefined
  }
}

// ---- PRF (RFC 4868) and prf+ (RFC 7296 2.13) ----

export interface PrfSpec {
  readonly prfId: number
  readonly hash: 'sha256' | 'sha384' | 'sha512'
  /** Output length in octets: also the length of SK_d, SK_pi and SK_pr. */
  readonly len: number
}

const PRFS: Record<number, PrfSpec> = {
  [PrfId.HMAC_SHA2_256]: { prfId: PrfId.HMAC_SHA2_256, hash: 'sha256', len: 32 },
  [PrfId.HMAC_SHA2_384]: { prfId: PrfId.HMAC_SHA2_384, hash: 'sha384', len: 48 },
  [PrfId.HMAC_SHA2_512]: { prfId: PrfId.HMAC_SHA2_512, hash: 'sha512', len: 64 },
}
export function prfFor(prfId: number): PrfSpec | undefined {
  return PRFS[prfId]
}

export function prf(spec: PrfSpec, key: Buffer, data: Buffer): Buffer {
  return createHmac(spec.hash, key).update(data).digest()
}

/** RFC 7296 2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n); at most 255 blocks. */
const PRF_PLUS_MAX_BLOCKS = 255
export function prfPlus(spec: PrfSpec, key: Buffer, seed: Buffer, len: number): Buffer {
  const blocks = Math.ceil(len / spec.len)
  if (blocks > PRF_PLUS_MAX_BLOCKS) throw new RangeError('prf+ output too long')
  const out: Buffer[] = []
  let t: Buffer = Buffer.alloc(0)
  for (let i = 1; i <= blocks; i++) {
    t = prf(spec, key, Buffer.concat([t, seed, Buffer.of(i)]))
    out.push(t)
  }
  return Buffer.concat(out).subarray(0, len)
}

// ---- Key exchange (RFC 5903, RFC 8031) ----

export interface DhKeyPair {
  readonly group: number
  /** The KE payload's Key Exchange Data. */
  readonly publicKey: Buffer
  /** g^ir; throws IkeError(INVALID_SYNTAX) for a malformed or invalid peer value. */
  computeSecret(peer: Buffer): Buffer
}

const ECP: Record<number, { curve: string; coordLen: number }> = {
  [DhGroup.ECP_256]: { curve: 'prime256v1', coordLen: 32 },
  [DhGroup.ECP_384]: { curve: 'secp384r1', coordLen: 48 },
}
const X25519_LEN = 32
const UNCOMPRESSED_POINT = 0x04
// RFC 8410: SubjectPublicKeyInfo prefix for an X25519 key; the raw key follows.
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

export const SUPPORTED_DH_GROUPS: readonly number[] = [DhGroup.CURVE25519, DhGroup.ECP_256, DhGroup.ECP_384]

function badKe(why: string, cause?: unknown): IkeError {
  return new IkeError(NotifyType.INVALID_SYNTAX, `KE: ${why}`, undefined, { cause })
}

/** A fresh ephemeral key pair; `privateKey` (raw scalar) only for published test vectors. */
export function dhGenerate(group: number, privateKey?: Buffer): DhKeyPair {
  const ecp = ECP[group]
  if (ecp) {
    const ecdh = createECDH(ecp.curve)
    if (privateKey) ecdh.setPrivateKey(privateKey)
    else ecdh.generateKeys()
    return {
      group,
      publicKey: ecdh.getPublicKey().subarray(1),
      computeSecret(peer: Buffer): Buffer {
        if (peer.length !== ecp.coordLen * 2) throw badKe('length')
        try {
          return ecdh.computeSecret(Buffer.concat([Buffer.of(UNCOMPRESSED_POINT), peer]))
        } catch (e) {
          throw badKe('point not on curve', e)
        }
      },
    }
  }
  if (group === DhGroup.CURVE25519) {
    let priv: KeyObject
    let pub: KeyObject
    if (privateKey) {
      priv = createPrivateKey({
        key: Buffer.concat([X25519_PKCS8_PREFIX, privateKey]),
        format: 'der',
        type: 'pkcs8',
      })
      pub = createPublicKey(priv)
    } else {
      const kp = generateKeyPairSync('x25519')
      priv = kp.privateKey
      pub = kp.publicKey
    }
    const raw = pub.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length)
    return {
      group,
      publicKey: Buffer.from(raw),
      computeSecret(peer: Buffer): Buffer {
        if (peer.length !== X25519_LEN) throw badKe('length')
        try {
          const peerKey = createPublicKey({
            key: Buffer.concat([X25519_SPKI_PREFIX, peer]),
            format: 'der',
            type: 'spki',
          })
          const s = diffieHellman({ privateKey: priv, publicKey: peerKey })
          // RFC 8031 2.3: an all-zero result (small-order peer value) MUST be rejected.
          if (s.every((x) => x === 0)) throw badKe('all-zero shared secret')
          return s
        } catch (e) {
          if (e instanceof IkeError) throw e
          throw badKe('invalid public value', e)
        }
      },
    }
  }
  throw new IkeError(NotifyType.INVALID_KE_PAYLOAD, `unsupported group ${group}`)
}

// ---- Key derivation (RFC 7296 2.14, 2.17, 2.18) ----

export interface IkeSaKeys {
  readonly skD: Buffer
  readonly skEi: Buffer
  readonly skEr: Buffer
  readonly skPi: Buffer
  readonly skPr: Buffer
}

/** SKEYSEED = prf(Ni | Nr, g^ir) (2.14). */
export function skeyseedInitial(spec: PrfSpec, ni: Buffer, nr: Buffer, gir: Buffer): Buffer {
  return prf(spec, Buffer.concat([ni, nr]), gir)
}

/** SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) for the rekeyed IKE SA (2.18). */
export function skeyseedRekey(spec: PrfSpec, skDOld: Buffer, gir: Buffer, ni: Buffer, nr: Buffer): Buffer {
  return prf(spec, skDOld, Buffer.concat([gir, ni, nr]))
}

/**
 * {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (2.14).
 * With an AEAD there is no integrity transform, so SK_ai and SK_ar are empty (RFC 5282 7.1).
 */
export function deriveIkeSaKeys(
  spec: PrfSpec,
  aead: AeadSpec,
  skeyseed: Buffer,
  ni: Buffer,
  nr: Buffer,
  spiI: Buffer,
  spiR: Buffer,
): IkeSaKeys {
  const eLen = aeadKeymatLen(aead)
  const km = prfPlus(spec, skeyseed, Buffer.concat([ni, nr, spiI, spiR]), 3 * spec.len + 2 * eLen)
  let o = 0
  const take = (n: number): Buffer => {
    const b = Buffer.from(km.subarray(o, o + n))
    o += n
    return b
  }
  return { skD: take(spec.len), skEi: take(eLen), skEr: take(eLen), skPi: take(spec.len), skPr: take(spec.len) }
}

/**
 * KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr) (2.17): first the initiator-to-responder key, then the
 * responder-to-initiator key, each cipher key || salt for the AEAD ESP transforms.
 */
export function deriveChildKeys(
  spec: PrfSpec,
  skD: Buffer,
  aead: AeadSpec,
  ni: Buffer,
  nr: Buffer,
  gir?: Buffer,
): { keyItoR: Buffer; keyRtoI: Buffer } {
  const len = aeadKeymatLen(aead)
  const seed = gir ? Buffer.concat([gir, ni, nr]) : Buffer.concat([ni, nr])
  const km = prfPlus(spec, skD, seed, 2 * len)
  return { keyItoR: Buffer.from(km.subarray(0, len)), keyRtoI: Buffer.from(km.subarray(len)) }
}
