// ESP packet codec: RFC 4303 sections 2 (format), 2.4-2.6 (padding, pad length, next header), 3.3.3 and
// 3.4 (sequence numbers, ESN); AES-GCM with an 8-octet ICV-16: RFC 4106 sections 3-5 and 8.1 (key = key || salt);
// ChaCha20-Poly1305: RFC 7634 sections 2-3 (nonce = salt || IV, AAD as RFC 4106 section 5).
//
// Layout of one sealed packet (the IV is the 64-bit sequence number, RFC 4106 section 3.1 recommends a counter):
//   0 SPI | 4 seq (low 32) | 8 IV (8) | 16 payload | padding (1, 2, 3 ...) | pad length | next header | ICV (16)
// AAD (RFC 4106 section 5): SPI || seq low (8 octets), or SPI || seq high || seq low (12 octets) with ESN.
//
// The AEAD itself is behind aead.ts: a native backend that reuses one OpenSSL context per direction, or
// node:crypto with one cipher object per packet. Both work in place; see bench/esp.bench.ts and docs/tunnel.md.

import { type Aead, type AeadBackend, createAead } from './aead.js'

/** IKEv2 Transform Type 1 (encryption) IDs, IANA "IKEv2 Parameters". */
export const EncrTransformId = {
  ENCR_AES_GCM_16: 20, // RFC 4106
  ENCR_CHACHA20_POLY1305: 28, // RFC 7634
} as const

/** Algorithm names as strongSwan's proposal keywords spell them. */
export type EspAlg = 'aes128gcm16' | 'aes256gcm16' | 'chacha20poly1305'

interface AlgInfo {
  readonly cipher: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305'
  readonly transformId: number
  /** Key length in octets, without the salt. */
  readonly keyLen: number
}

export const ESP_ALGS: Readonly<Record<EspAlg, AlgInfo>> = {
  aes128gcm16: { cipher: 'aes-128-gcm', transformId: EncrTransformId.ENCR_AES_GCM_16, keyLen: 16 },
  aes256gcm16: { cipher: 'aes-256-gcm', transformId: EncrTransformId.ENCR_AES_GCM_16, keyLen: 32 },
  chacha20poly1305: { cipher: 'chacha20-poly1305', transformId: EncrTransformId.ENCR_CHACHA20_POLY1305, keyLen: 32 },
}

export function isEspAlg(s: unknown): s is EspAlg {
  return typeof s === 'string' && Object.hasOwn(ESP_ALGS, s)
}

export const ESP_SPI_OFFSET = 0
export const ESP_SEQ_OFFSET = 4
export const ESP_IV_OFFSET = 8
export const ESP_HDR_LEN = 8
export const ESP_IV_LEN = 8
/** Where the payload starts: the TUN read lands here (STYLE.md section 3). */
export const ESP_PAYLOAD_OFFSET = ESP_HDR_LEN + ESP_IV_LEN
export const ESP_ICV_LEN = 16
export const ESP_SALT_LEN = 4
export const ESP_NONCE_LEN = ESP_SALT_LEN + ESP_IV_LEN
/** Pad length and next header octets (RFC 4303 sections 2.5, 2.6). */
export const ESP_TRAILER_LEN = 2
/** RFC 4303 section 2.4: the trailer ends on a 4-octet boundary (GCM and ChaCha20 have block size 1). */
export const ESP_PAD_ALIGN = 4
export const ESP_MAX_PAD = ESP_PAD_ALIGN - 1
/** Most octets ESP adds to a payload: header, IV, padding, trailer, ICV. */
export const ESP_MAX_OVERHEAD = ESP_PAYLOAD_OFFSET + ESP_MAX_PAD + ESP_TRAILER_LEN + ESP_ICV_LEN
/** Smallest well-formed packet: header, IV, an empty payload's trailer padded to 4, ICV. */
export const ESP_MIN_LEN = ESP_PAYLOAD_OFFSET + ESP_PAD_ALIGN + ESP_ICV_LEN
const AAD_LEN = 8
const AAD_LEN_ESN = 12

/** Next Header values used in the trailer (IANA protocol numbers). */
export const IpProto = { IPV4: 4, IPV6: 41, NO_NEXT_HEADER: 59 } as const

/** Highest sequence number a sender may use: 2^32 - 1 without ESN; with ESN 2^53 - 1 (JS number precision). */
export const ESP_SEQ_MAX_32 = 0xffff_ffff
export const ESP_SEQ_MAX_ESN = Number.MAX_SAFE_INTEGER
const TWO_POW_32 = 0x1_0000_0000

/**
 * One direction of one SA's crypto state: the imported key, the salt inside a reusable nonce buffer and a
 * reusable AAD buffer. `keymat` is what IKEv2 derives for the SA (RFC 7296 section 2.17): key || 4-octet salt.
 */
export class EspCrypto {
  readonly alg: EspAlg
  readonly spi: number
  readonly esn: boolean
  readonly #aead: Aead
  readonly #nonce = Buffer.alloc(ESP_NONCE_LEN)
  readonly #aad: Buffer
  readonly #aadOpen: Buffer

  constructor(alg: EspAlg, spi: number, keymat: Buffer, esn: boolean, backend?: AeadBackend) {
    const info = ESP_ALGS[alg]
    if (!info) throw new TypeError(`unknown ESP algorithm ${String(alg)}`)
    if (keymat.length !== info.keyLen + ESP_SALT_LEN)
      throw new RangeError(`${alg} needs ${info.keyLen + ESP_SALT_LEN} octets of key material (key || salt)`)
    if (!Number.isInteger(spi) || spi < 0x100 || spi > 0xffff_ffff)
      throw new RangeError('SPI must be a 32-bit value above 255 (RFC 4303 section 2.1)')
    this.alg = alg
    this.spi = spi
    this.esn = esn
    this.#aead = createAead(info.cipher, keymat.subarray(0, info.keyLen), backend)
    keymat.copy(this.#nonce, 0, info.keyLen)
    this.#aad = Buffer.alloc(esn ? AAD_LEN_ESN : AAD_LEN)
    this.#aad.writeUInt32BE(spi, 0)
    this.#aadOpen = Buffer.alloc(esn ? AAD_LEN_ESN : AAD_LEN)
    this.#aadOpen.writeUInt32BE(spi, 0)
  }

  get backend(): AeadBackend {
    return this.#aead.backend
  }

  get maxSeq(): number {
    return this.esn ? ESP_SEQ_MAX_ESN : ESP_SEQ_MAX_32
  }

  /**
   * Seals the payload already at `slab[ESP_PAYLOAD_OFFSET ..+ payloadLen]`: writes header, IV, padding,
   * trailer, encrypts in place and appends the ICV. Returns the packet length. The slab must have room for
   * `ESP_MAX_OVERHEAD` octets around the payload.
   */
  sealInPlace(slab: Buffer, payloadLen: number, seq: number, nextHeader: number): number {
    const seqHi = Math.floor(seq / TWO_POW_32)
    const seqLo = seq >>> 0
    slab.writeUInt32BE(this.spi, ESP_SPI_OFFSET)
    slab.writeUInt32BE(seqLo, ESP_SEQ_OFFSET)
    slab.writeUInt32BE(seqHi, ESP_IV_OFFSET)
    slab.writeUInt32BE(seqLo, ESP_IV_OFFSET + 4)
    let end = ESP_PAYLOAD_OFFSET + payloadLen
    const padLen = (ESP_PAD_ALIGN - ((payloadLen + ESP_TRAILER_LEN) % ESP_PAD_ALIGN)) % ESP_PAD_ALIGN
    for (let i = 1; i <= padLen; i++) slab[end++] = i
    slab[end++] = padLen
    slab[end++] = nextHeader
    slab.copy(this.#nonce, ESP_SALT_LEN, ESP_IV_OFFSET, ESP_PAYLOAD_OFFSET)
    const aad = this.#aad
    if (this.esn) {
      aad.writeUInt32BE(seqHi, 4)
      aad.writeUInt32BE(seqLo, 8)
    } else {
      aad.writeUInt32BE(seqLo, 4)
    }
    this.#aead.seal(this.#nonce, aad, slab, ESP_PAYLOAD_OFFSET, end - ESP_PAYLOAD_OFFSET)
    return end + ESP_ICV_LEN
  }

  /**
   * Verifies and decrypts `msg[off ..+ len]` IN PLACE (the packet buffer is consumed, also on failure), whose
   * sequence number the caller has already inferred (`seq`, 64-bit with ESN). Fills `out` (`out.plain` is a
   * view of msg starting at the payload) and returns 0, or returns the drop reason. Never throws on packet content.
   */
  open(msg: Buffer, off: number, len: number, seq: number, out: EspOpened): EspDrop | 0 {
    if (len < ESP_MIN_LEN) return 'truncated'
    const ctLen = len - ESP_PAYLOAD_OFFSET - ESP_ICV_LEN
    msg.copy(this.#nonce, ESP_SALT_LEN, off + ESP_IV_OFFSET, off + ESP_PAYLOAD_OFFSET)
    const aad = this.#aadOpen
    if (this.esn) {
      aad.writeUInt32BE(Math.floor(seq / TWO_POW_32), 4)
      aad.writeUInt32BE(seq >>> 0, 8)
    } else {
      aad.writeUInt32BE(seq >>> 0, 4)
    }
    const ctAt = off + ESP_PAYLOAD_OFFSET
    if (!this.#aead.open(this.#nonce, aad, msg, ctAt, ctLen)) return 'icv'
    const pt = msg.subarray(ctAt, ctAt + ctLen)
    const padLen = pt[ctLen - 2]!
    if (padLen + ESP_TRAILER_LEN > ctLen) return 'bad_trailer'
    const payloadLen = ctLen - ESP_TRAILER_LEN - padLen
    // RFC 4303 section 2.4: padding is 1, 2, 3, ...; a mismatch means a broken or hostile sender.
    for (let i = 0; i < padLen; i++) if (pt[payloadLen + i] !== i + 1) return 'bad_trailer'
    out.plain = pt
    out.payloadLen = payloadLen
    out.nextHeader = pt[ctLen - 1]!
    return 0
  }
}

/** Reused result holder for `EspCrypto.open`. */
export class EspOpened {
  plain: Buffer = Buffer.alloc(0)
  payloadLen = 0
  nextHeader = 0
}

/** Why `open` refused a packet (the receive path counts each reason). */
export type EspDrop = 'truncated' | 'icv' | 'bad_trailer'

/** SPI and low 32 bits of the sequence number of a packet at `msg[off]` (caller checked the length). */
export function espSpi(msg: Buffer, off: number): number {
  return msg.readUInt32BE(off + ESP_SPI_OFFSET)
}
export function espSeqLo(msg: Buffer, off: number): number {
  return msg.readUInt32BE(off + ESP_SEQ_OFFSET)
}
