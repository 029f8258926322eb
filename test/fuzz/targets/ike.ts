// IKEv2 messages as the engine receives them on UDP 500/4500 (RFC 7296 3, RFC 5282 SK with AEAD). Selector
// octet 0: the rest is a whole datagram; decodeMessage, then proposal selection (SA), traffic-selector checks
// (TSi/TSr) and, on success without SK, re-encode and decode to the same payloads. Selector 1: the rest (a first
// payload type, then a plaintext ending in its Pad Length octet) is sealed under a fixed key as an SK payload,
// so decryptMessage's padding and inner payload chain parsing are reached without guessing an ICV.

import {
  AEAD_ICV_LEN,
  AEAD_IV_LEN,
  IKE_HEADER_LEN,
  PAYLOAD_HEADER_LEN,
  PayloadType,
} from '../../../src/ike/constants.js'
import { aeadSeal } from '../../../src/ike/crypto.js'
import { IkeWireError } from '../../../src/ike/errors.js'
import { decodeMessage, decryptMessage, encodeMessage, type IkeMessage } from '../../../src/ike/message.js'
import { isKnown, type Payload, tsOfferCoversHost } from '../../../src/ike/payloads.js'
import {
  acceptChildResponse,
  acceptIkeResponse,
  DEFAULT_CHILD_POLICY,
  DEFAULT_IKE_POLICY,
  selectChild,
  selectIke,
} from '../../../src/ike/proposals.js'
import { assertRoundTrip, expectOnly, selector } from './harness.js'

const SK = { alg: 'aes-256-gcm' as const, keymat: Buffer.alloc(36, 0x5a) }
const OUR_SPI = Buffer.from([1, 2, 3, 4])
const ULA = 'fd00:a::1'
const EXCHANGE_IKE_AUTH = 35
const IKE_VERSION = 0x20
const DH_GROUP = 31

function inspect(payloads: readonly Payload[]): void {
  for (const p of payloads) {
    if (!isKnown(p)) continue
    if (p.type === PayloadType.SA) {
      selectIke(p.proposals, DEFAULT_IKE_POLICY)
      selectChild(p.proposals, DEFAULT_CHILD_POLICY, DH_GROUP, OUR_SPI)
      selectChild(p.proposals, DEFAULT_CHILD_POLICY, undefined, OUR_SPI)
      acceptIkeResponse(p.proposals[0], DEFAULT_IKE_POLICY)
      acceptChildResponse(p.proposals[0], DEFAULT_CHILD_POLICY, DH_GROUP)
    }
    if (p.type === PayloadType.TSi || p.type === PayloadType.TSr) tsOfferCoversHost(p.selectors, ULA)
  }
}

function plain(data: Buffer): void {
  const m = expectOnly([IkeWireError], () => decodeMessage(data))
  if (m === undefined) return
  inspect(m.payloads)
  if (m.payloads.some((p) => p.type === PayloadType.SK)) {
    expectOnly([IkeWireError], () => decryptMessage(m, SK))
    return
  }
  const again = decodeMessage(encodeMessage(m.header, m.payloads))
  assertRoundTrip('IKE payloads', m.payloads, again.payloads)
}

/** An IKE_AUTH request whose SK payload holds `plaintext` (inner chain starting with `first`), sealed with SK. */
function sealed(first: number, plaintext: Buffer): Buffer {
  const skLen = PAYLOAD_HEADER_LEN + AEAD_IV_LEN + plaintext.length + AEAD_ICV_LEN
  const hdr = Buffer.alloc(IKE_HEADER_LEN + PAYLOAD_HEADER_LEN)
  hdr.fill(0x11, 0, 8)
  hdr.fill(0x22, 8, 16)
  hdr[16] = PayloadType.SK
  hdr[17] = IKE_VERSION
  hdr[18] = EXCHANGE_IKE_AUTH
  hdr.writeUInt32BE(IKE_HEADER_LEN + skLen, 24)
  hdr[IKE_HEADER_LEN] = first
  hdr.writeUInt16BE(skLen, IKE_HEADER_LEN + 2)
  const iv = Buffer.alloc(AEAD_IV_LEN, 3)
  return Buffer.concat([hdr, iv, aeadSeal(SK.alg, SK.keymat, iv, hdr, plaintext)])
}

function encrypted(data: Buffer): void {
  const [first, plaintext] = selector(data)
  // The SK payload's length field is 16 bits; what does not fit is not a datagram anyone can send.
  if (plaintext.length === 0 || plaintext.length > 0xffff - PAYLOAD_HEADER_LEN - AEAD_IV_LEN - AEAD_ICV_LEN) return
  const m: IkeMessage = decodeMessage(sealed(first, plaintext))
  const r = expectOnly([IkeWireError], () => decryptMessage(m, SK))
  if (r === undefined) return
  inspect(r.payloads)
}

export function fuzz(data: Buffer): void {
  const [sel, rest] = selector(data)
  if (sel & 1) encrypted(rest)
  else plain(rest)
}
