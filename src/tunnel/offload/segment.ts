// TSO/USO in user space: one packet read from a TUN device with IFF_VNET_HDR (virtio.ts) becomes the MTU-sized
// packets the wire carries, as the kernel's GSO would cut them (net/ipv4/tcp_offload.c tcp_gso_segment,
// net/ipv6/ip6_offload.c, net/ipv4/udp_offload.c __udp_gso_segment):
//   * every segment gets the headers of the super-packet, then its share of the payload (gso_size octets, the
//     last one the rest);
//   * IPv4: total length, identification (+1 per segment), header checksum; IPv6: payload length;
//   * TCP: sequence number (+gso_size per segment); FIN and PSH only on the last segment, CWR only on the first;
//     UDP: length;
//   * TCP/UDP checksum computed in full (the kernel left only the pseudo-header sum in the field).
// A packet without GSO but with NEEDS_CSUM gets its checksum completed (sum from csum_start to the end, stored at
// csum_start + csum_offset), as skb_checksum_help does. The kernel's hdr_len is not trusted (it can be the whole
// linear part of the skb); the header length is parsed from the packet, as wireguard-go does.
// Anything malformed is refused as a whole (the caller counts it): nothing half-cut is ever sent.

import { fold, IpProto, sum16, writeIpv4HeaderChecksum, writeL4Checksum } from './checksum.js'
import {
  readVnetHdr,
  TCP_CSUM_OFFSET,
  UDP_CSUM_OFFSET,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VNET_HDR_LEN,
  type VnetHdr,
} from './virtio.js'

const IPV4_HDR_MIN = 20
const IPV4_TOTAL_LEN = 2
const IPV4_ID = 4
const IPV4_PROTO = 9
const IPV6_HDR_LEN = 40
const IPV6_PAYLOAD_LEN = 4
const IPV6_NEXT_HEADER = 6
const TCP_SEQ = 4
const TCP_DATA_OFFSET = 12
const TCP_FLAGS = 13
const TCP_HDR_MIN = 20
const UDP_HDR_LEN = 8
const UDP_LEN = 4
const TCP_FIN = 0x01
const TCP_PSH = 0x08
const TCP_CWR = 0x80
/** Largest packet a segmenter handles: an IP packet cannot be longer. */
export const SEGMENT_MAX_PACKET = 65_535

/** Why a packet from the device was refused (counted by the caller as 'bad_vnet_hdr'). */
export type SegmentError =
  | 'short' // shorter than the virtio header, or headers cut off
  | 'bad_csum_fields' // csum_start / csum_offset outside the packet or not the transport's checksum field
  | 'bad_gso' // GSO type unknown or not matching the packet (IP version, protocol), gso_size 0
  | 'bad_ip' // IP header malformed (version, lengths), IPv6 extension headers under GSO

export type SegmentHandler = (buf: Buffer, off: number, len: number) => void

/**
 * Cuts packets read from a vnet-header TUN device into wire-sized packets. One instance per reading thread: the
 * segments are built in its scratch buffer and lent to the handler during the call.
 */
export class Segmenter {
  readonly #scratch = Buffer.allocUnsafe(SEGMENT_MAX_PACKET)
  readonly #h: VnetHdr = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }
  /** Super-packets cut (GSO), and the segments they gave. */
  superPackets = 0
  segments = 0

  /**
   * `buf[off ..+ len]` is one read: virtio header, then the packet (modified in place when it only needs its
   * checksum). Calls `fn` once per packet to send, in order; returns undefined, or why nothing was sent.
   */
  segment(buf: Buffer, off: number, len: number, fn: SegmentHandler): SegmentError | undefined {
    if (len < VNET_HDR_LEN) return 'short'
    const h = this.#h
    readVnetHdr(buf, off, h)
    const p = off + VNET_HDR_LEN
    const plen = len - VNET_HDR_LEN
    if (plen > SEGMENT_MAX_PACKET) return 'bad_ip'
    const gso = h.gsoType & ~VIRTIO_NET_HDR_GSO_ECN
    if (gso === VIRTIO_NET_HDR_GSO_NONE) {
      if ((h.gsoType & VIRTIO_NET_HDR_GSO_ECN) !== 0) return 'bad_gso'
      if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
        // Complete the checksum: the field holds the pseudo-header sum; sum everything from csum_start on.
        const cs = h.csumStart
        const at = cs + h.csumOffset
        if (h.csumOffset !== TCP_CSUM_OFFSET && h.csumOffset !== UDP_CSUM_OFFSET) return 'bad_csum_fields'
        // The sum starts at the transport header, never inside the IP header (else the "checksum" would overwrite it).
        const v = plen > 0 ? buf[p]! >> 4 : 0
        const iphl = v === 6 ? IPV6_HDR_LEN : v === 4 ? (buf[p]! & 0x0f) * 4 : 0
        if (iphl < IPV4_HDR_MIN || cs < iphl || at + 2 > plen) return 'bad_csum_fields'
        let c = ~fold(sum16(buf, p + cs, p + plen, 0)) & 0xffff
        // A UDP checksum that computes to zero goes out as all ones (RFC 768); a TCP one stays 0.
        if (c === 0 && h.csumOffset === UDP_CSUM_OFFSET) c = 0xffff
        buf.writeUInt16BE(c, p + at)
      }
      this.segments++
      fn(buf, p, plen)
      return undefined
    }
    return this.#gso(buf, p, plen, gso, fn)
  }

  #gso(buf: Buffer, p: number, plen: number, gso: number, fn: SegmentHandler): SegmentError | undefined {
    const h = this.#h
    if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0) return 'bad_csum_fields'
    if (plen < IPV4_HDR_MIN) return 'short'
    const version = buf[p]! >> 4
    let iphl: number
    let proto: number
    if (version === 4) {
      iphl = (buf[p]! & 0x0f) * 4
      if (iphl < IPV4_HDR_MIN || iphl > plen) return 'bad_ip'
      if (buf.readUInt16BE(p + IPV4_TOTAL_LEN) !== plen) return 'bad_ip'
      // A fragment cannot be segmented (MF set or an offset).
      if ((buf.readUInt16BE(p + 6) & 0x3fff) !== 0) return 'bad_ip'
      proto = buf[p + IPV4_PROTO]!
    } else if (version === 6) {
      iphl = IPV6_HDR_LEN
      if (plen < IPV6_HDR_LEN) return 'short'
      if (buf.readUInt16BE(p + IPV6_PAYLOAD_LEN) + IPV6_HDR_LEN !== plen) return 'bad_ip'
      proto = buf[p + IPV6_NEXT_HEADER]!
    } else return 'bad_ip'
    if (gso === VIRTIO_NET_HDR_GSO_TCPV4 || gso === VIRTIO_NET_HDR_GSO_TCPV6) {
      if (proto !== IpProto.TCP) return 'bad_gso'
      if ((gso === VIRTIO_NET_HDR_GSO_TCPV4) !== (version === 4)) return 'bad_gso'
      if (h.csumOffset !== TCP_CSUM_OFFSET) return 'bad_csum_fields'
    } else if (gso === VIRTIO_NET_HDR_GSO_UDP_L4) {
      if (proto !== IpProto.UDP) return 'bad_gso'
      if ((h.gsoType & VIRTIO_NET_HDR_GSO_ECN) !== 0) return 'bad_gso'
      if (h.csumOffset !== UDP_CSUM_OFFSET) return 'bad_csum_fields'
    } else return 'bad_gso'
    // The transport header follows the IP header directly (no IPv6 extension headers, no IPv4 options beyond IHL).
    if (h.csumStart !== iphl) return 'bad_csum_fields'
    const l4 = p + iphl
    let l4hl: number
    if (proto === IpProto.TCP) {
      if (iphl + TCP_HDR_MIN > plen) return 'short'
      l4hl = (buf[l4 + TCP_DATA_OFFSET]! >> 4) * 4
      if (l4hl < TCP_HDR_MIN) return 'bad_ip'
    } else l4hl = UDP_HDR_LEN
    const hdrEnd = iphl + l4hl
    if (hdrEnd > plen) return 'short'
    const mss = h.gsoSize
    if (mss === 0) return 'bad_gso'
    const payload = plen - hdrEnd
    if (payload === 0) return 'bad_gso'
    if (proto === IpProto.UDP && buf.readUInt16BE(l4 + UDP_LEN) !== plen - iphl) return 'bad_ip'
    this.superPackets++
    const s = this.#scratch
    const seq0 = proto === IpProto.TCP ? buf.readUInt32BE(l4 + TCP_SEQ) : 0
    const flags0 = proto === IpProto.TCP ? buf[l4 + TCP_FLAGS]! : 0
    const id0 = version === 4 ? buf.readUInt16BE(p + IPV4_ID) : 0
    for (let i = 0, at = 0; at < payload; i++, at += mss) {
      const n = Math.min(mss, payload - at)
      const last = at + n >= payload
      buf.copy(s, 0, p, p + hdrEnd)
      buf.copy(s, hdrEnd, p + hdrEnd + at, p + hdrEnd + at + n)
      const total = hdrEnd + n
      if (version === 4) {
        s.writeUInt16BE(total, IPV4_TOTAL_LEN)
        s.writeUInt16BE((id0 + i) & 0xffff, IPV4_ID)
        writeIpv4HeaderChecksum(s, 0, iphl)
      } else s.writeUInt16BE(total - IPV6_HDR_LEN, IPV6_PAYLOAD_LEN)
      if (proto === IpProto.TCP) {
        s.writeUInt32BE((seq0 + at) >>> 0, iphl + TCP_SEQ)
        let f = flags0
        if (!last) f &= ~(TCP_FIN | TCP_PSH)
        if (i > 0) f &= ~TCP_CWR
        s[iphl + TCP_FLAGS] = f
      } else s.writeUInt16BE(l4hl + n, iphl + UDP_LEN)
      writeL4Checksum(s, 0, iphl, total, proto)
      this.segments++
      fn(s, 0, total)
    }
    return undefined
  }
}
