// Test tooling: proves negotiated Child SA keys by sending an ICMPv6 echo request inside ESP-in-UDP
// (RFC 4303, RFC 3948) and opening the echo reply, using the tunnel's ESP codec.

import { bytesToIp, ipToBytes } from '../../src/ike/payloads.js'
import type { ChildSaKeys } from '../../src/ike/types.js'
import { ESP_MAX_OVERHEAD, ESP_PAYLOAD_OFFSET, EspCrypto, EspOpened, IpProto } from '../../src/tunnel/esp.js'

const IPV6_HDR_LEN = 40
const ICMPV6_HDR_LEN = 8
const ICMPV6 = 58
const ECHO_REQUEST = 128
const ECHO_REPLY = 129
const HOP_LIMIT = 64
const IPV6_VERSION_WORD = 0x60000000

function icmpv6Checksum(src: Buffer, dst: Buffer, body: Buffer): number {
  const pseudo = Buffer.alloc(40)
  src.copy(pseudo, 0)
  dst.copy(pseudo, 16)
  pseudo.writeUInt32BE(body.length, 32)
  pseudo.writeUInt32BE(ICMPV6, 36)
  const all = Buffer.concat([pseudo, body, Buffer.alloc(body.length % 2)])
  let sum = 0
  for (let i = 0; i < all.length; i += 2) sum += all.readUInt16BE(i)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

export function echoRequest(src: string, dst: string, id: number, seq: number, data: Buffer): Buffer {
  return icmpEcho(ECHO_REQUEST, src, dst, id, seq, data)
}
export function echoReply(src: string, dst: string, id: number, seq: number, data: Buffer): Buffer {
  return icmpEcho(ECHO_REPLY, src, dst, id, seq, data)
}

/** An ICMPv6 echo request to `to`: its source, id, seq and data. */
export function parseEchoRequest(
  inner: Buffer,
  to: string,
): { src: string; id: number; seq: number; data: Buffer } | undefined {
  if (inner.length < IPV6_HDR_LEN + ICMPV6_HDR_LEN || inner.readUInt8(6) !== ICMPV6) return undefined
  if (!inner.subarray(24, 40).equals(ipToBytes(to))) return undefined
  const icmp = inner.subarray(IPV6_HDR_LEN)
  if (icmp.readUInt8(0) !== ECHO_REQUEST) return undefined
  return {
    src: bytesToIp(inner.subarray(8, 24)),
    id: icmp.readUInt16BE(4),
    seq: icmp.readUInt16BE(6),
    data: Buffer.from(icmp.subarray(ICMPV6_HDR_LEN)),
  }
}

function icmpEcho(type: number, src: string, dst: string, id: number, seq: number, data: Buffer): Buffer {
  const s = ipToBytes(src)
  const d = ipToBytes(dst)
  const icmp = Buffer.alloc(ICMPV6_HDR_LEN + data.length)
  icmp.writeUInt8(type, 0)
  icmp.writeUInt16BE(id, 4)
  icmp.writeUInt16BE(seq, 6)
  data.copy(icmp, ICMPV6_HDR_LEN)
  icmp.writeUInt16BE(icmpv6Checksum(s, d, icmp), 2)
  const ip = Buffer.alloc(IPV6_HDR_LEN)
  ip.writeUInt32BE(IPV6_VERSION_WORD, 0)
  ip.writeUInt16BE(icmp.length, 4)
  ip.writeUInt8(ICMPV6, 6)
  ip.writeUInt8(HOP_LIMIT, 7)
  s.copy(ip, 8)
  d.copy(ip, 24)
  return Buffer.concat([ip, icmp])
}

/** Seals an inner IPv6 packet with the SA's outbound key. */
export function sealEsp(k: ChildSaKeys, seq: number, inner: Buffer): Buffer {
  const c = new EspCrypto(k.alg, k.spiOut, k.keyOut, k.esn)
  const slab = Buffer.alloc(inner.length + ESP_MAX_OVERHEAD)
  inner.copy(slab, ESP_PAYLOAD_OFFSET)
  const n = c.sealInPlace(slab, inner.length, seq, IpProto.IPV6)
  return slab.subarray(0, n)
}

/** Opens an ESP packet with the SA's inbound key; the inner packet or undefined. */
export function openEsp(k: ChildSaKeys, pkt: Buffer): Buffer | undefined {
  if (pkt.length < 8 || pkt.readUInt32BE(0) !== k.spiIn) return undefined
  const c = new EspCrypto(k.alg, k.spiIn, k.keyIn, k.esn)
  const out = new EspOpened()
  const seq = pkt.readUInt32BE(4)
  if (c.open(pkt, 0, pkt.length, seq, out) !== 0) return undefined
  return out.plain.subarray(0, out.payloadLen)
}

/** True when `inner` is an ICMPv6 echo reply to (id, seq) from `from`. */
export function isEchoReply(inner: Buffer, from: string, id: number, seq: number): boolean {
  if (inner.length < IPV6_HDR_LEN + ICMPV6_HDR_LEN || inner.readUInt8(6) !== ICMPV6) return false
  if (!inner.subarray(8, 24).equals(ipToBytes(from))) return false
  const icmp = inner.subarray(IPV6_HDR_LEN)
  return icmp.readUInt8(0) === ECHO_REPLY && icmp.readUInt16BE(4) === id && icmp.readUInt16BE(6) === seq
}
