// IKEv2 messages (RFC 7296 3.1 header, 3.2 generic payload header and chaining, 3.14 the Encrypted
// and Authenticated payload with an AEAD per RFC 5282 section 5 / RFC 7634 section 3).
// decodeMessage throws only IkeWireError; an unknown critical payload is reported, not thrown, so the
// caller can answer UNSUPPORTED_CRITICAL_PAYLOAD (3.2).

import {
  AEAD_ICV_LEN,
  AEAD_IV_LEN,
  CRITICAL_FLAG,
  HeaderFlag,
  IKE_HEADER_LEN,
  IKE_SPI_LEN,
  IKE_VERSION,
  PAD_LENGTH_LEN,
  PAYLOAD_HEADER_LEN,
  PayloadType,
} from './constants.js'
import { type AeadAlg, aeadOpen, aeadSeal } from './crypto.js'
import { IkeWireError } from './errors.js'
import {
  decodeAuth,
  decodeDelete,
  decodeId,
  decodeKe,
  decodeNotify,
  decodeSa,
  decodeTs,
  encodeAuth,
  encodeDelete,
  encodeId,
  encodeKe,
  encodeNotify,
  encodeSa,
  encodeTs,
  isKnown,
  type Payload,
} from './payloads.js'

export interface IkeHeader {
  readonly spiI: Buffer
  readonly spiR: Buffer
  readonly nextPayload: number
  readonly version: number
  readonly exchangeType: number
  readonly flags: number
  readonly messageId: number
  readonly length: number
}

export interface IkeMessage {
  readonly header: IkeHeader
  readonly payloads: readonly Payload[]
  /** Type of the first payload we do not know that has the critical bit set (3.2). */
  readonly unsupportedCritical: number | undefined
  readonly raw: Buffer
}

const OFF_SPI_R = 8
const OFF_NEXT = 16
const OFF_VERSION = 17
const OFF_EXCHANGE = 18
const OFF_FLAGS = 19
const OFF_MSGID = 20
const OFF_LENGTH = 24
const MAJOR_VERSION_SHIFT = 4
/** RFC 7296 3.2 generic payload header offsets. */
const GEN = { NEXT: 0, FLAGS: 1, LENGTH: 2 } as const

/** Reads the fixed header; throws IkeWireError when shorter than 28 octets. */
export function decodeHeader(buf: Buffer): IkeHeader {
  if (buf.length < IKE_HEADER_LEN) throw new IkeWireError('IKE.header', 0, 'truncated')
  return {
    spiI: Buffer.from(buf.subarray(0, IKE_SPI_LEN)),
    spiR: Buffer.from(buf.subarray(OFF_SPI_R, OFF_SPI_R + IKE_SPI_LEN)),
    nextPayload: buf.readUInt8(OFF_NEXT),
    version: buf.readUInt8(OFF_VERSION),
    exchangeType: buf.readUInt8(OFF_EXCHANGE),
    flags: buf.readUInt8(OFF_FLAGS),
    messageId: buf.readUInt32BE(OFF_MSGID),
    length: buf.readUInt32BE(OFF_LENGTH),
  }
}

export function majorVersion(h: IkeHeader): number {
  return h.version >> MAJOR_VERSION_SHIFT
}

export function isResponse(h: IkeHeader): boolean {
  return (h.flags & HeaderFlag.RESPONSE) !== 0
}

function decodeBody(type: number, buf: Buffer, off: number, end: number, critical: boolean): Payload {
  switch (type) {
    case PayloadType.SA:
      return decodeSa(buf, off, end)
    case PayloadType.KE:
      return decodeKe(buf, off, end)
    case PayloadType.IDi:
    case PayloadType.IDr:
      return decodeId(type, buf, off, end)
    case PayloadType.AUTH:
      return decodeAuth(buf, off, end)
    case PayloadType.NONCE:
      return { type: PayloadType.NONCE, data: Buffer.from(buf.subarray(off, end)) }
    case PayloadType.NOTIFY:
      return decodeNotify(buf, off, end)
    case PayloadType.DELETE:
      return decodeDelete(buf, off, end)
    case PayloadType.TSi:
    case PayloadType.TSr:
      return decodeTs(type, buf, off, end)
    default:
      return { type, opaque: true, critical, body: Buffer.from(buf.subarray(off, end)) }
  }
}

const KNOWN = new Set<number>(Object.values(PayloadType))

/**
 * Walks a payload chain from `off` to `end`. The SK payload must come last; its body is returned opaque.
 */
export function decodePayloads(
  buf: Buffer,
  off: number,
  end: number,
  first: number,
): { payloads: Payload[]; unsupportedCritical: number | undefined } {
  const payloads: Payload[] = []
  let unsupportedCritical: number | undefined
  let next = first
  while (next !== PayloadType.NONE) {
    if (off + PAYLOAD_HEADER_LEN > end) throw new IkeWireError('payload.header', off, 'truncated')
    const type = next
    next = buf.readUInt8(off + GEN.NEXT)
    const critical = (buf.readUInt8(off + GEN.FLAGS) & CRITICAL_FLAG) !== 0
    const len = buf.readUInt16BE(off + GEN.LENGTH)
    if (len < PAYLOAD_HEADER_LEN || off + len > end) throw new IkeWireError(`payload[${type}].length`, off + GEN.LENGTH)
    const bodyOff = off + PAYLOAD_HEADER_LEN
    if (type === PayloadType.SK) {
      if (off + len !== end) throw new IkeWireError('SK.length', off + GEN.LENGTH, 'SK is not the last payload')
      if (len < PAYLOAD_HEADER_LEN + AEAD_IV_LEN + AEAD_ICV_LEN + PAD_LENGTH_LEN)
        throw new IkeWireError('SK.length', off + GEN.LENGTH, 'too short')
      payloads.push({ type: PayloadType.SK, innerNext: next, body: Buffer.from(buf.subarray(bodyOff, off + len)) })
      return { payloads, unsupportedCritical }
    }
    if (!KNOWN.has(type) && critical && unsupportedCritical === undefined) unsupportedCritical = type
    payloads.push(decodeBody(type, buf, bodyOff, off + len, critical))
    off += len
  }
  if (off !== end) throw new IkeWireError('message.length', off, 'trailing bytes after last payload')
  return { payloads, unsupportedCritical }
}

/** Decodes a whole datagram (without any non-ESP marker). */
export function decodeMessage(buf: Buffer): IkeMessage {
  const header = decodeHeader(buf)
  if (header.length !== buf.length) throw new IkeWireError('IKE.length', OFF_LENGTH, 'does not match datagram')
  const { payloads, unsupportedCritical } = decodePayloads(buf, IKE_HEADER_LEN, buf.length, header.nextPayload)
  return { header, payloads, unsupportedCritical, raw: buf }
}

function encodeBody(p: Payload): Buffer {
  if (!isKnown(p)) return p.body
  switch (p.type) {
    case PayloadType.SA:
      return encodeSa(p)
    case PayloadType.KE:
      return encodeKe(p)
    case PayloadType.IDi:
    case PayloadType.IDr:
      return encodeId(p)
    case PayloadType.AUTH:
      return encodeAuth(p)
    case PayloadType.NONCE:
      return p.data
    case PayloadType.NOTIFY:
      return encodeNotify(p)
    case PayloadType.DELETE:
      return encodeDelete(p)
    case PayloadType.TSi:
    case PayloadType.TSr:
      return encodeTs(p)
    case PayloadType.SK:
      return p.body
  }
}

/** Encodes a chain of payloads (not containing SK); returns the bytes and the first payload's type. */
export function encodePayloads(payloads: readonly Payload[]): { bytes: Buffer; first: number } {
  const parts: Buffer[] = []
  payloads.forEach((p, i) => {
    const body = encodeBody(p)
    const h = Buffer.alloc(PAYLOAD_HEADER_LEN)
    h.writeUInt8(payloads[i + 1]?.type ?? PayloadType.NONE, GEN.NEXT)
    h.writeUInt8(!isKnown(p) && p.critical ? CRITICAL_FLAG : 0, GEN.FLAGS)
    h.writeUInt16BE(PAYLOAD_HEADER_LEN + body.length, GEN.LENGTH)
    parts.push(h, body)
  })
  return { bytes: Buffer.concat(parts), first: payloads[0]?.type ?? PayloadType.NONE }
}

export interface HeaderFields {
  readonly spiI: Buffer
  readonly spiR: Buffer
  readonly exchangeType: number
  readonly flags: number
  readonly messageId: number
}

function writeHeader(h: HeaderFields, next: number, length: number): Buffer {
  const b = Buffer.alloc(IKE_HEADER_LEN)
  h.spiI.copy(b, 0)
  h.spiR.copy(b, OFF_SPI_R)
  b.writeUInt8(next, OFF_NEXT)
  b.writeUInt8(IKE_VERSION, OFF_VERSION)
  b.writeUInt8(h.exchangeType, OFF_EXCHANGE)
  b.writeUInt8(h.flags, OFF_FLAGS)
  b.writeUInt32BE(h.messageId >>> 0, OFF_MSGID)
  b.writeUInt32BE(length, OFF_LENGTH)
  return b
}

/** An unencrypted message (IKE_SA_INIT, or an unprotected error notify). */
export function encodeMessage(h: HeaderFields, payloads: readonly Payload[]): Buffer {
  const { bytes, first } = encodePayloads(payloads)
  return Buffer.concat([writeHeader(h, first, IKE_HEADER_LEN + bytes.length), bytes])
}

export interface SkCipher {
  readonly alg: AeadAlg
  /** SK_e for this direction: key || salt. */
  readonly keymat: Buffer
}

/**
 * A message whose payloads all travel inside SK (3.14). The AAD is the IKE header and the SK generic
 * header (RFC 5282 5.1); the plaintext is the inner payloads, no padding and a zero Pad Length.
 */
export function encodeEncryptedMessage(h: HeaderFields, inner: readonly Payload[], c: SkCipher, iv: Buffer): Buffer {
  const { bytes, first } = encodePayloads(inner)
  const plaintext = Buffer.concat([bytes, Buffer.alloc(PAD_LENGTH_LEN)])
  const skLen = PAYLOAD_HEADER_LEN + AEAD_IV_LEN + plaintext.length + AEAD_ICV_LEN
  const hdr = writeHeader(h, PayloadType.SK, IKE_HEADER_LEN + skLen)
  const skHdr = Buffer.alloc(PAYLOAD_HEADER_LEN)
  skHdr.writeUInt8(first, GEN.NEXT)
  skHdr.writeUInt16BE(skLen, GEN.LENGTH)
  const aad = Buffer.concat([hdr, skHdr])
  return Buffer.concat([aad, iv, aeadSeal(c.alg, c.keymat, iv, aad, plaintext)])
}

/**
 * Opens the SK payload of `msg` (which must be its last payload). Returns undefined when the ICV fails;
 * throws IkeWireError when the decrypted payload chain is malformed.
 */
export function decryptMessage(
  msg: IkeMessage,
  c: SkCipher,
): { payloads: Payload[]; unsupportedCritical: number | undefined } | undefined {
  const sk = msg.payloads[msg.payloads.length - 1]
  if (!sk || !isKnown(sk) || sk.type !== PayloadType.SK) throw new IkeWireError('SK', IKE_HEADER_LEN, 'missing')
  const bodyOff = msg.raw.length - sk.body.length
  const aad = msg.raw.subarray(0, bodyOff)
  const iv = sk.body.subarray(0, AEAD_IV_LEN)
  const pt = aeadOpen(c.alg, c.keymat, iv, aad, sk.body.subarray(AEAD_IV_LEN))
  if (!pt) return undefined
  const padLen = pt.readUInt8(pt.length - PAD_LENGTH_LEN)
  const end = pt.length - PAD_LENGTH_LEN - padLen
  if (end < 0) throw new IkeWireError('SK.padLength', bodyOff, 'longer than plaintext')
  const before = msg.payloads.slice(0, -1)
  const inner = decodePayloads(pt, 0, end, sk.innerNext)
  return {
    payloads: [...before, ...inner.payloads],
    unsupportedCritical: msg.unsupportedCritical ?? inner.unsupportedCritical,
  }
}
