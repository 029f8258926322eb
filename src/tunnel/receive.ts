// Receive path, UDP -> TUN (RFC 4303 section 3.4 inbound processing, RFC 3948 decapsulation), in stage order:
//   1. classify  one-octet 0xFF keepalive; four zero octets = non-ESP marker -> IKE handler; a STUN answer to an
//                outstanding transaction (only while one is) -> the STUN client; otherwise ESP
//   2. lookup    SPI -> inbound SA
//   3. replay    infer the 64-bit sequence number (ESN, RFC 4303 Appendix A2) and pre-check the window
//   4. open      verify the ICV, decrypt, check padding and trailer
//   5. accept    mark the number in the replay window -- only now, after authentication (section 3.4.3)
//   6. inner     next header 41, a sane IPv6 header, source = the SA's peer ULA, destination = local ULA
//   7. roam      an authenticated packet with a new highest number from another outer address moves the
//                peer's endpoint there (RFC 6281 section 7.3.2: SAs belong to ULAs, not outer addresses)
//   8. deliver   write the inner packet to the TUN device
// Anything wrong is dropped and counted; nothing in here throws on packet content.

import type { Clock } from '../io/clock.js'
import type { RemoteInfo } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { TunDevice } from '../io/tun.js'
import type { DropReason, TunnelCounters } from './counters.js'
import { ESP_MIN_LEN, EspOpened, espSeqLo, espSpi, IpProto } from './esp.js'
import {
  type Endpoint,
  type InboundSa,
  IPV6_DST_OFFSET,
  IPV6_HDR_LEN,
  IPV6_PAYLOAD_LEN_OFFSET,
  IPV6_SRC_OFFSET,
  IPV6_VERSION,
  type Peer,
  sameAddr16,
} from './sa-table.js'
import { classifyUdp, NON_ESP_MARKER_LEN, UdpKind } from './udp-encap.js'

export interface ReceiverDeps {
  readonly tun: TunDevice
  readonly clock: Clock
  readonly log: Logger
  readonly counters: TunnelCounters
  readonly inboundBySpi: Map<number, InboundSa>
  readonly localUla: Buffer
}

/** A STUN client waiting for answers on this port (src/traversal/stun.ts StunDemux). */
export interface StunDemux {
  readonly outstanding: number
  offer(msg: Buffer, from: RemoteInfo): boolean
}

/**
 * Our TURN client (src/traversal/turn.ts) while we hold an allocation: datagrams from the TURN server's address go to
 * it; what it unwraps (ChannelData, Data indications) comes back through `deliver` as the peer's datagram.
 */
export interface RelayDemux {
  readonly address: string
  readonly port: number
  offer(msg: Buffer, deliver: (data: Buffer, from: RemoteInfo) => void): void
}

export type IkeHandler = (msg: Buffer, from: RemoteInfo) => void
export type EndpointChangeHook = (peerUla: string, endpoint: Endpoint, previous: Endpoint | undefined) => void

export class Receiver {
  readonly #d: ReceiverDeps
  readonly #opened = new EspOpened()
  onIke: IkeHandler | undefined
  /** STUN answers on the shared port: looked at only while a transaction is outstanding (docs/punch.md). */
  stun: StunDemux | undefined
  /** The TURN server's datagrams (docs/relay.md): looked at only while an allocation exists. */
  relay: RelayDemux | undefined
  /** True while a datagram unwrapped from the relay is being handled (no roaming: the relay is the path). */
  #viaRelay = false
  onEndpointChange: EndpointChangeHook = () => {}
  /** Stage 8's output; the tunnel replaces it with a ring to the TUN thread when it runs threads. False: full. */
  write: (buf: Buffer, off: number, len: number) => boolean | undefined

  constructor(deps: ReceiverDeps) {
    this.#d = deps
    this.write = (b, off, len) => {
      deps.tun.write(b, off, len)
      return true
    }
  }

  // Stage 1.
  readonly fromUdp = (msg: Buffer, from: RemoteInfo): void => {
    const c = this.#d.counters
    switch (classifyUdp(msg)) {
      case UdpKind.KEEPALIVE:
        c.keepaliveRx++
        return
      case UdpKind.SHORT: {
        this.#drop('udp_short')
        return
      }
      case UdpKind.IKE: {
        const h = this.onIke
        if (!h) {
          this.#drop('ike_no_handler')
          return
        }
        c.ikeRx++
        try {
          h(msg.subarray(NON_ESP_MARKER_LEN), from)
        } catch (e) {
          this.#d.log.warn('tunnel.ike_handler_failed', { err: String(e) })
        }
        return
      }
      default: {
        const r = this.relay
        if (r !== undefined && from.port === r.port && from.address === r.address) {
          r.offer(msg, this.#fromRelay)
          return
        }
        const s = this.stun
        if (s !== undefined && s.outstanding > 0 && s.offer(msg, from)) return
        this.#esp(msg, from)
        return
      }
    }
  }

  readonly #fromRelay = (data: Buffer, from: RemoteInfo): void => {
    // The batch path hands ESP over as a view of its buffer; IKE inside ChannelData may be kept: a copy.
    const keep = data.length >= NON_ESP_MARKER_LEN && data.readUInt32BE(0) === 0 ? Buffer.from(data) : data
    this.#viaRelay = true
    try {
      this.fromUdp(keep, from)
    } finally {
      this.#viaRelay = false
    }
  }

  #esp(msg: Buffer, from: RemoteInfo): void {
    if (msg.length < ESP_MIN_LEN) {
      this.#drop('truncated')
      return
    }
    // Stage 2.
    const sa = this.#d.inboundBySpi.get(espSpi(msg, 0))
    if (!sa) {
      this.#drop('unknown_spi')
      return
    }
    // Stage 3.
    const replay = sa.replay
    const seq = sa.crypto.esn ? replay.inferEsn(espSeqLo(msg, 0)) : espSeqLo(msg, 0)
    if (!replay.check(seq)) {
      this.#drop('replay')
      return
    }
    const highestBefore = replay.highest
    // Stage 4.
    const out = this.#opened
    const bad = sa.crypto.open(msg, 0, msg.length, seq, out)
    if (bad !== 0) {
      this.#drop(bad)
      return
    }
    // Stage 5.
    if (!replay.accept(seq)) {
      this.#drop('replay')
      return
    }
    // Stage 6.
    if (out.nextHeader !== IpProto.IPV6) {
      this.#drop('bad_next_header')
      return
    }
    const pt = out.plain
    const len = out.payloadLen
    if (len < IPV6_HDR_LEN || pt[0]! >> 4 !== IPV6_VERSION) {
      this.#drop('bad_inner')
      return
    }
    if (pt.readUInt16BE(IPV6_PAYLOAD_LEN_OFFSET) + IPV6_HDR_LEN !== len) {
      this.#drop('bad_inner')
      return
    }
    const peer = sa.peer
    if (!sameAddr16(pt, IPV6_SRC_OFFSET, peer.ulaBytes, 0)) {
      this.#drop('ts_mismatch')
      return
    }
    if (!sameAddr16(pt, IPV6_DST_OFFSET, this.#d.localUla, 0)) {
      this.#drop('ts_mismatch')
      return
    }
    // Stage 7.
    if (seq > highestBefore && !this.#viaRelay) this.#roam(peer, from)
    // Stage 8.
    try {
      if (this.write(pt, 0, len) === false) {
        this.#drop('tun_queue_full')
        return
      }
    } catch {
      this.#drop('tun_write_error')
      return
    }
    const c = this.#d.counters
    c.rxPackets++
    c.rxBytes += len
    peer.rxPackets++
    peer.rxBytes += len
    peer.lastRxMs = this.#d.clock.now()
  }

  #roam(peer: Peer, from: RemoteInfo): void {
    const ep = peer.endpoint
    if (ep && ep.address === from.address && ep.port === from.port) return
    const next = { address: from.address, port: from.port }
    peer.endpoint = next
    this.#d.counters.roams++
    this.#d.log.info('tunnel.roam', { peer: peer.ula, from: ep, to: next })
    try {
      this.onEndpointChange(peer.ula, next, ep)
    } catch (e) {
      this.#d.log.warn('tunnel.endpoint_hook_failed', { err: String(e) })
    }
  }

  #drop(reason: DropReason): void {
    this.#d.counters.drops[reason]++
  }
}
