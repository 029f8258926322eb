// IKE_AUTH authentication data: the signed octets (RFC 7296 2.15), pre-shared key MIC (2.15, method 2)
// and Digital Signature (RFC 7427, method 14) with Ed25519 (RFC 8420) or ECDSA P-256/SHA-256.
// The PSK is derived from the user's account secret with HKDF (RFC 5869), never from a host name.

import { hkdfSync, type KeyObject, sign, timingSafeEqual, verify } from 'node:crypto'
import { HashAlgorithm } from './constants.js'
import { type PrfSpec, prf } from './crypto.js'

/** RFC 7296 2.15. */
const KEY_PAD = Buffer.from('Key Pad for IKEv2', 'ascii')
const PSK_LEN = 32
const PSK_SALT = Buffer.from('autotunnel ike psk v1', 'ascii')

/**
 * The IKE pre-shared key of one user's hosts: HKDF-SHA256(accountSecret, salt "autotunnel ike psk v1",
 * info "user:" + user). Every host of the user derives the same key; nobody without the secret can.
 */
export function derivePsk(accountSecret: string | Uint8Array, user: string): Buffer {
  const ikm = typeof accountSecret === 'string' ? Buffer.from(accountSecret, 'utf8') : Buffer.from(accountSecret)
  if (ikm.length === 0) throw new RangeError('derivePsk: empty account secret')
  return Buffer.from(hkdfSync('sha256', ikm, PSK_SALT, Buffer.from(`user:${user.toLowerCase()}`, 'utf8'), PSK_LEN))
}

/**
 * <SignedOctets> = RealMessage | NonceData of the peer | prf(SK_p, RestOfIDPayload) (2.15), where
 * `idBody` is the ID payload body (ID Type | RESERVED | data).
 */
export function signedOctets(spec: PrfSpec, message: Buffer, peerNonce: Buffer, skP: Buffer, idBody: Buffer): Buffer {
  return Buffer.concat([message, peerNonce, prf(spec, skP, idBody)])
}

/** AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>). */
export function pskAuthData(spec: PrfSpec, psk: Buffer, octets: Buffer): Buffer {
  return prf(spec, prf(spec, psk, KEY_PAD), octets)
}

export function pskAuthVerify(spec: PrfSpec, psk: Buffer, octets: Buffer, data: Buffer): boolean {
  const want = pskAuthData(spec, psk, octets)
  return want.length === data.length && timingSafeEqual(want, data)
}

// RFC 7427 section 3: AUTH data = length of AlgorithmIdentifier (1 octet) | AlgorithmIdentifier | signature.
// DER AlgorithmIdentifiers from RFC 8420 section 2 (Ed25519) and RFC 7427 appendix A.3 (ECDSA).
const ALG_ID = {
  ed25519: Buffer.from('300506032b6570', 'hex'),
  ecdsaSha256: Buffer.from('300a06082a8648ce3d040302', 'hex'),
  ecdsaSha384: Buffer.from('300a06082a8648ce3d040303', 'hex'),
  ecdsaSha512: Buffer.from('300a06082a8648ce3d040304', 'hex'),
} as const
const ALG_ID_LEN_LEN = 1

/** The hash algorithms we announce in SIGNATURE_HASH_ALGORITHMS (RFC 7427 section 4, RFC 8420 section 3). */
export const SIGNATURE_HASHES: readonly number[] = [
  HashAlgorithm.SHA2_256,
  HashAlgorithm.SHA2_384,
  HashAlgorithm.SHA2_512,
  HashAlgorithm.IDENTITY,
]
export function encodeSignatureHashes(hashes: readonly number[] = SIGNATURE_HASHES): Buffer {
  const b = Buffer.alloc(hashes.length * 2)
  hashes.forEach((h, i) => {
    b.writeUInt16BE(h, i * 2)
  })
  return b
}

export type HostKeyAlg = 'ed25519' | 'ecdsa-p256'

/** RFC 7427 AUTH data for method 14, signed with `privateKey` (Ed25519 or P-256). */
export function signatureAuthData(privateKey: KeyObject, octets: Buffer): Buffer {
  const t = privateKey.asymmetricKeyType
  if (t === 'ed25519') {
    return Buffer.concat([Buffer.of(ALG_ID.ed25519.length), ALG_ID.ed25519, sign(null, octets, privateKey)])
  }
  if (t === 'ec') {
    const sig = sign('sha256', octets, { key: privateKey, dsaEncoding: 'der' })
    return Buffer.concat([Buffer.of(ALG_ID.ecdsaSha256.length), ALG_ID.ecdsaSha256, sig])
  }
  throw new TypeError(`unsupported host key type ${String(t)}`)
}

/** Verifies RFC 7427 AUTH data against any of `keys`; false for unknown algorithms and malformed data. */
export function signatureAuthVerify(keys: readonly KeyObject[], octets: Buffer, data: Buffer): boolean {
  if (data.length < ALG_ID_LEN_LEN) return false
  const idLen = data.readUInt8(0)
  if (data.length < ALG_ID_LEN_LEN + idLen) return false
  const algId = data.subarray(ALG_ID_LEN_LEN, ALG_ID_LEN_LEN + idLen)
  const sig = data.subarray(ALG_ID_LEN_LEN + idLen)
  for (const key of keys) {
    try {
      if (algId.equals(ALG_ID.ed25519) && key.asymmetricKeyType === 'ed25519') {
        if (verify(null, octets, key, sig)) return true
      } else if (key.asymmetricKeyType === 'ec') {
        const hash = algId.equals(ALG_ID.ecdsaSha256)
          ? 'sha256'
          : algId.equals(ALG_ID.ecdsaSha384)
            ? 'sha384'
            : algId.equals(ALG_ID.ecdsaSha512)
              ? 'sha512'
              : undefined
        if (hash && verify(hash, octets, { key, dsaEncoding: 'der' }, sig)) return true
      }
    } catch {
      // a malformed signature is a failed verification
    }
  }
  return false
}
