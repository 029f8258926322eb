// GRO in user space: consecutive in-order TCP segments of one flow, opened from ESP one by one, are merged into one
// super-packet with a virtio_net_hdr (GSO_TCPV4/GSO_TCPV6, NEEDS_CSUM) for one write into a TUN device opened with
// IFF_VNET_HDR and TSO offloads (virtio.ts); the kernel takes it as one skb, as if its own GRO had built it. One
// write and one pass through the TCP receive path per up to 64 KiB instead of per packet.
//
// The merge rules are the kernel's (net/ipv4/tcp_offload.c tcp_gro_receive) and wireguard-go's
// (tun/offload_linux.go): same addresses and ports; same ACK number, window, TCP options and IP header fields
// (traffic class, flow label, hop limit / TOS, TTL, flags, identification counting up); urgent pointer; flags exactly ACK or ACK|PSH; the next segment starts
// where the merged payload ends; every segment carries gso_size octets except the last, which may be shorter and
// closes the run, as a PSH does; at most 64 KiB. Each segment's checksum is verified first: the kernel trusts a
// NEEDS_CSUM packet, so a corrupt segment merged in would never be caught. Everything else (other protocols, SYN,
// FIN, RST, pure ACKs, bad checksums, IPv6 extension headers, IPv4 options) is written as it came, after the
// pending run of its own flow so that a flow's order is kept.
// With `udp` (the device has USO, TUN_F_USO4/6, Linux >= 6.2) consecutive UDP datagrams of one flow are merged the
// same way into GSO_UDP_L4 super-packets (wireguard-go's udpGRO): equal sizes but a shorter last one, at most
// COALESCE_MAX_UDP_SEGMENTS, checksums verified (a datagram without one, IPv4 checksum 0, is not merged: the
// kernel's segmentation would give it one).

import { fold, IpProto, l4ChecksumOk, pseudoSum, sum16, writeIpv4HeaderChecksum } from './checksum.js'
import {
  TCP_CSUM_OFFSET,
  UDP_CSUM_OFFSET,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VNET_HDR_LEN,
  writeVnetHdr,
} from './virtio.js'

const IPV4_HDR_LEN = 20
const IPV6_HDR_LEN = 40
const IPV4_TOTAL_LEN = 2
const IPV4_ID = 4
const IPV4_FRAG = 6
const IPV4_TTL = 8
const IPV4_PROTO = 9
const IPV4_SRC = 12
const IPV6_PAYLOAD_LEN = 4
const IPV6_NEXT_HEADER = 6
const IPV6_HOP_LIMIT = 7
const IPV6_SRC = 8
const TCP_SEQ = 4
const TCP_ACK = 8
const TCP_DATA_OFFSET = 12
const TCP_FLAGS = 13
const TCP_WINDOW = 14
const TCP_URGENT = 18
const TCP_HDR_MIN = 20
const TCP_ACK_FLAG = 0x10
const TCP_PSH_FLAG = 0x08
/** The largest IP packet: where a run stops growing. */
const MAX_PACKET = 65_535
/** Runs of different flows open at once; a further flow writes out the oldest. */
export const COALESCE_MAX_FLOWS = 8
/** Segments per UDP super-packet (the kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.7). */
export const COALESCE_MAX_UDP_SEGMENTS = 64
const UDP_HDR_LEN = 8
const UDP_LEN = 4

/** `buf[off ..+ len]` is a virtio header then a packet. */
export type VnetWriter = (buf: Buffer, off: number, len: number) => void
/** `buf[off ..+ len]` is a plain packet (the device writer puts an all-zero virtio header in front). */
export type PlainWriter = (buf: Buffer, off: number, len: number) => void

interface Run {
  /** virtio header room, then the merged packet */
  readonly buf: Buffer
  len: number
  v6: boolean
  udp: boolean
  iphl: number
  /** transport header length (8 for UDP) */
  thl: number
  gsoSize: number
  nextSeq: number
  count: number
  /** a short segment or a PSH ended it: nothing more may follow */
  closed: boolean
  /** creation order, for writing runs out in the order they started */
  order: number
}

/** Parsed TCP candidate (reused). */
interface Seg {
  v6: boolean
  udp: boolean
  iphl: number
  thl: number
  payload: number
  seq: number
  flags: number
}

export class Coalescer {
  readonly #writeVnet: VnetWriter
  readonly #writePlain: PlainWriter
  readonly #runs: Run[] = []
  #open = 0
  #order = 0
  readonly #seg: Seg = { v6: false, udp: false, iphl: 0, thl: 0, payload: 0, seq: 0, flags: 0 }
  readonly #udp: boolean
  /** Packets merged into a run (not first of it), super-packets written, packets written as they came. */
  merged = 0
  superPackets = 0
  passed = 0
  /** TCP segments whose checksum was wrong: written as they came, for the kernel to drop and count. */
  badChecksum = 0

  /** `udp`: merge UDP too (only for a device that accepted TUN_F_USO4|TUN_F_USO6). */
  constructor(writeVnet: VnetWriter, writePlain: PlainWriter, opts: { udp?: boolean } = {}) {
    this.#writeVnet = writeVnet
    this.#writePlain = writePlain
    this.#udp = opts.udp ?? false
    for (let i = 0; i < COALESCE_MAX_FLOWS; i++)
      this.#runs.push({
        buf: Buffer.allocUnsafe(VNET_HDR_LEN + MAX_PACKET),
        len: 0,
        v6: false,
        udp: false,
        iphl: 0,
        thl: 0,
        gsoSize: 0,
        nextSeq: 0,
        count: 0,
        closed: false,
        order: 0,
      })
  }

  /** One opened packet (`buf[off ..+ len]`, only valid during the call): merged, kept, or written. */
  push(buf: Buffer, off: number, len: number): void {
    const s = this.#seg
    const kind = this.#parse(buf, off, len)
    if (kind === NO_FLOW) {
      this.passed++
      this.#writePlain(buf, off, len)
      return
    }
    const r = this.#find(buf, off, s)
    if (kind === FLOW_OTHER) {
      // Not mergeable, but the flow's pending run goes first.
      if (r) this.#emit(r)
      this.passed++
      this.#writePlain(buf, off, len)
      return
    }
    if (r) {
      if (this.#canAppend(r, buf, off, s)) {
        this.#append(r, buf, off, s)
        return
      }
      this.#emit(r)
    }
    this.#start(buf, off, len, s)
  }

  /** Writes every pending run (end of a batch). */
  flush(): void {
    if (this.#open === 0) return
    // Oldest first: runs of different flows leave in the order they started.
    for (;;) {
      let first: Run | undefined
      for (let i = 0; i < this.#open; i++) {
        const r = this.#runs[i]!
        if (!first || r.order < first.order) first = r
      }
      if (!first) return
      this.#emit(first)
    }
  }

  /**
   * MERGEABLE, FLOW_OTHER (TCP, or UDP when merging UDP, with room for the ports: its flow is known, but it is not
   * to be merged), or NO_FLOW. Fills #seg.
   */
  #parse(b: Buffer, off: number, len: number): number {
    const s = this.#seg
    if (len < IPV4_HDR_LEN) return NO_FLOW
    const version = b[off]! >> 4
    let proto: number
    if (version === 6) {
      proto = b[off + IPV6_NEXT_HEADER]!
      if (len < IPV6_HDR_LEN + 4 || !this.#flowProto(proto)) return NO_FLOW
      s.v6 = true
      s.udp = proto === IpProto.UDP
      s.iphl = IPV6_HDR_LEN
      if (b.readUInt16BE(off + IPV6_PAYLOAD_LEN) + IPV6_HDR_LEN !== len) return FLOW_OTHER
    } else if (version === 4) {
      const ihl = (b[off]! & 0x0f) * 4
      proto = b[off + IPV4_PROTO]!
      if (ihl < IPV4_HDR_LEN || len < ihl + 4 || !this.#flowProto(proto)) return NO_FLOW
      s.v6 = false
      s.udp = proto === IpProto.UDP
      s.iphl = ihl
      // Options, fragments and length mismatches are not merged.
      if (ihl !== IPV4_HDR_LEN || b.readUInt16BE(off + IPV4_TOTAL_LEN) !== len) return FLOW_OTHER
      if ((b.readUInt16BE(off + IPV4_FRAG) & 0x3fff) !== 0) return FLOW_OTHER
      // A header the kernel would drop is not merged into one it would accept.
      if (fold(sum16(b, off, off + IPV4_HDR_LEN, 0)) !== 0xffff) return FLOW_OTHER
    } else return NO_FLOW
    const l4 = off + s.iphl
    if (s.udp) {
      s.thl = UDP_HDR_LEN
      if (len < s.iphl + UDP_HDR_LEN || b.readUInt16BE(l4 + UDP_LEN) !== len - s.iphl) return FLOW_OTHER
      s.payload = len - s.iphl - UDP_HDR_LEN
      if (s.payload === 0 || b.readUInt16BE(l4 + UDP_CSUM_OFFSET) === 0) return FLOW_OTHER
      if (!l4ChecksumOk(b, off, l4, off + len, IpProto.UDP)) {
        this.badChecksum++
        return FLOW_OTHER
      }
      return MERGEABLE
    }
    if (len < s.iphl + TCP_HDR_MIN) return FLOW_OTHER
    s.thl = (b[l4 + TCP_DATA_OFFSET]! >> 4) * 4
    if (s.thl < TCP_HDR_MIN || s.iphl + s.thl > len) return FLOW_OTHER
    s.payload = len - s.iphl - s.thl
    s.seq = b.readUInt32BE(l4 + TCP_SEQ)
    s.flags = b[l4 + TCP_FLAGS]!
    if (s.payload === 0 || (s.flags !== TCP_ACK_FLAG && s.flags !== (TCP_ACK_FLAG | TCP_PSH_FLAG))) return FLOW_OTHER
    if (!l4ChecksumOk(b, off, l4, off + len, IpProto.TCP)) {
      this.badChecksum++
      return FLOW_OTHER
    }
    return MERGEABLE
  }

  #flowProto(p: number): boolean {
    return p === IpProto.TCP || (p === IpProto.UDP && this.#udp)
  }

  /** The open run of this packet's flow (addresses and ports), if any. */
  #find(b: Buffer, off: number, s: Seg): Run | undefined {
    const src = s.v6 ? IPV6_SRC : IPV4_SRC
    const alen = s.v6 ? 32 : 8
    for (let i = 0; i < this.#open; i++) {
      const r = this.#runs[i]!
      if (r.v6 !== s.v6 || r.udp !== s.udp) continue
      const rb = r.buf
      const ro = VNET_HDR_LEN
      if (rb.compare(b, off + src, off + src + alen, ro + src, ro + src + alen) !== 0) continue
      if (rb.compare(b, off + s.iphl, off + s.iphl + 4, ro + r.iphl, ro + r.iphl + 4) !== 0) continue
      return r
    }
    return undefined
  }

  #canAppend(r: Run, b: Buffer, off: number, s: Seg): boolean {
    if (r.closed || s.payload > r.gsoSize || r.len + s.payload > MAX_PACKET) return false
    if (s.udp ? r.count >= COALESCE_MAX_UDP_SEGMENTS : s.seq !== r.nextSeq || s.thl !== r.thl) return false
    const rb = r.buf
    const ro = VNET_HDR_LEN
    if (s.v6) {
      // Version, traffic class, flow label; hop limit.
      if (rb.compare(b, off, off + 4, ro, ro + 4) !== 0) return false
      if (b[off + IPV6_HOP_LIMIT] !== rb[ro + IPV6_HOP_LIMIT]) return false
    } else {
      // TOS; flags (DF; no fragment, #parse checked); TTL; identification counting up from the run's first, as
      // the segments of one TSO send carry them.
      if (b[off + 1] !== rb[ro + 1]) return false
      if (b.readUInt16BE(off + IPV4_FRAG) !== rb.readUInt16BE(ro + IPV4_FRAG)) return false
      if (b[off + IPV4_TTL] !== rb[ro + IPV4_TTL]) return false
      if (b.readUInt16BE(off + IPV4_ID) !== ((rb.readUInt16BE(ro + IPV4_ID) + r.count) & 0xffff)) return false
    }
    if (s.udp) return true
    const l4 = off + s.iphl
    const rl4 = ro + r.iphl
    // ACK number; window; urgent pointer; options (timestamps included): all as in the run's first segment.
    if (rb.compare(b, l4 + TCP_ACK, l4 + TCP_ACK + 4, rl4 + TCP_ACK, rl4 + TCP_ACK + 4) !== 0) return false
    if (rb.compare(b, l4 + TCP_WINDOW, l4 + TCP_WINDOW + 2, rl4 + TCP_WINDOW, rl4 + TCP_WINDOW + 2) !== 0) return false
    if (rb.compare(b, l4 + TCP_URGENT, l4 + TCP_URGENT + 2, rl4 + TCP_URGENT, rl4 + TCP_URGENT + 2) !== 0) return false
    if (rb.compare(b, l4 + TCP_HDR_MIN, l4 + s.thl, rl4 + TCP_HDR_MIN, rl4 + s.thl) !== 0) return false
    return true
  }

  #append(r: Run, b: Buffer, off: number, s: Seg): void {
    const from = off + s.iphl + s.thl
    b.copy(r.buf, VNET_HDR_LEN + r.len, from, from + s.payload)
    r.len += s.payload
    r.nextSeq = (r.nextSeq + s.payload) >>> 0
    r.count++
    this.merged++
    if (s.payload < r.gsoSize) r.closed = true
    if (!s.udp && (s.flags & TCP_PSH_FLAG) !== 0) {
      r.buf[VNET_HDR_LEN + r.iphl + TCP_FLAGS]! |= TCP_PSH_FLAG
      r.closed = true
    }
  }

  #start(b: Buffer, off: number, len: number, s: Seg): void {
    if (this.#open === COALESCE_MAX_FLOWS) this.#emit(this.#oldest())
    const r = this.#runs[this.#open++]!
    b.copy(r.buf, VNET_HDR_LEN, off, off + len)
    r.len = len
    r.v6 = s.v6
    r.udp = s.udp
    r.iphl = s.iphl
    r.thl = s.thl
    r.gsoSize = s.payload
    r.nextSeq = (s.seq + s.payload) >>> 0
    r.count = 1
    r.closed = !s.udp && (s.flags & TCP_PSH_FLAG) !== 0
    r.order = this.#order++
  }

  #oldest(): Run {
    let o = this.#runs[0]!
    for (let i = 1; i < this.#open; i++) if (this.#runs[i]!.order < o.order) o = this.#runs[i]!
    return o
  }

  /** Writes a run and closes its slot (the last open slot moves into it). */
  #emit(r: Run): void {
    const b = r.buf
    const ip = VNET_HDR_LEN
    if (r.count === 1) {
      writeVnetHdr(b, 0, NONE)
      this.passed++
    } else {
      const l4 = ip + r.iphl
      if (r.v6) b.writeUInt16BE(r.len - IPV6_HDR_LEN, ip + IPV6_PAYLOAD_LEN)
      else {
        b.writeUInt16BE(r.len, ip + IPV4_TOTAL_LEN)
        writeIpv4HeaderChecksum(b, ip, r.iphl)
      }
      // NEEDS_CSUM: the field holds the pseudo-header sum, as the kernel's own TSO/USO leaves it.
      const proto = r.udp ? IpProto.UDP : IpProto.TCP
      if (r.udp) b.writeUInt16BE(r.len - r.iphl, l4 + UDP_LEN)
      const csumOffset = r.udp ? UDP_CSUM_OFFSET : TCP_CSUM_OFFSET
      b.writeUInt16BE(fold(pseudoSum(b, ip, proto, r.len - r.iphl)), l4 + csumOffset)
      HDR.gsoType = r.udp ? VIRTIO_NET_HDR_GSO_UDP_L4 : r.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4
      HDR.hdrLen = r.iphl + r.thl
      HDR.gsoSize = r.gsoSize
      HDR.csumStart = r.iphl
      HDR.csumOffset = csumOffset
      writeVnetHdr(b, 0, HDR)
      this.superPackets++
    }
    const i = this.#runs.indexOf(r)
    const last = --this.#open
    this.#runs[i] = this.#runs[last]!
    this.#runs[last] = r
    this.#writeVnet(b, 0, VNET_HDR_LEN + r.len)
  }
}

const MERGEABLE = 0
const FLOW_OTHER = 1
const NO_FLOW = 2

const NONE = { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }
const HDR = {
  flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
  gsoType: VIRTIO_NET_HDR_GSO_TCPV6,
  hdrLen: 0,
  gsoSize: 0,
  csumStart: 0,
  csumOffset: TCP_CSUM_OFFSET,
}
