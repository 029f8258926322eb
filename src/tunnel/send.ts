// Send path, TUN -> UDP (RFC 4303 section 3.1 outbound processing, RFC 3948 encapsulation), in stage order:
//   1. intoSlab  the TUN packet is copied into a pool slab at ESP_PAYLOAD_OFFSET (header and IV go in front)
//   2. route     IPv6 version, source = local ULA, destination ULA -> peer; no SA yet -> no-SA queue + onNoSa
//   3. enqueue   bounded send queue; when full the oldest packet is dropped and counted
//   4. flush     once per event-loop turn, per packet: current outbound SA, next sequence number, seal in
//                place, send -- one synchronous run, no await, so sequence order is send order
//   5. send      Linux: runs of equal-size datagrams to one endpoint go out in one sendmsg with UDP GSO
//                (udp-gso.ts, synchronous: the slab is free again at once); elsewhere socket.send per packet
//   6. release   the socket.send callback returns the slab to the pool (Node's buffer-reuse point)

import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { DropReason, TunnelCounters } from './counters.js'
import { ESP_PAYLOAD_OFFSET, IpProto } from './esp.js'
import type { SlabPool } from './pool.js'
import {
  CHANNEL_DATA_HEADER_LEN,
  type Endpoint,
  IPV6_DST_OFFSET,
  IPV6_HDR_LEN,
  IPV6_SRC_OFFSET,
  IPV6_VERSION,
  type Peer,
  sameAddr16,
  ulaKeyOf,
  writeChannelDataHeader,
} from './sa-table.js'
import { GSO_MAX_BYTES, GSO_MAX_SEGMENTS, type UdpGso } from './udp-gso.js'

export interface SenderDeps {
  readonly socket: DatagramSocket
  readonly clock: Clock
  readonly log: Logger
  readonly pool: SlabPool
  readonly counters: TunnelCounters
  readonly peersByKey: Map<string, Peer>
  readonly localUla: Buffer
}

export interface SenderOptions {
  readonly mtu: number
  readonly txQueueLen: number
  readonly noSaQueueLen: number
  readonly noSaQueueMs: number
  readonly noSaRetryMs: number
  /** Fraction of an SA's sequence space after which onSaExpiring fires once. */
  readonly seqSoftLimit: number
}

export type NoSaHook = (peerUla: string, packet: Buffer) => void
export type SaExpiringHook = (peerUla: string, spiOut: number) => void

export class Sender {
  readonly #d: SenderDeps
  readonly #o: SenderOptions
  // Send queue: a ring of (slab, length, peer).
  readonly #qSlab: (Buffer | undefined)[]
  readonly #qLen: Int32Array
  readonly #qPeer: (Peer | undefined)[]
  #qHead = 0
  #qCount = 0
  #flushScheduled = false
  #closed = false
  // The GSO batch being built in gso.batch: its length, segment size, count, endpoint, and whether a short
  // last segment closed it.
  #bLen = 0
  #bSeg = 0
  #bCount = 0
  #bEp: Endpoint | undefined
  #bTail = false
  /** Batched sends (Linux); undefined: one socket.send per packet. */
  gso: UdpGso | undefined
  onNoSa: NoSaHook = () => {}
  onSaExpiring: SaExpiringHook = () => {}

  constructor(deps: SenderDeps, opts: SenderOptions) {
    this.#d = deps
    this.#o = opts
    this.#qSlab = new Array(opts.txQueueLen).fill(undefined)
    this.#qLen = new Int32Array(opts.txQueueLen)
    this.#qPeer = new Array(opts.txQueueLen).fill(undefined)
  }

  // Stage 1 + 2: one packet from the TUN device (`buf[off ..+ len]` is only valid during the call).
  fromTun(buf: Buffer, off: number, len: number): void {
    if (len > this.#o.mtu) {
      this.#drop('too_big')
      return
    }
    if (len < IPV6_HDR_LEN || buf[off]! >> 4 !== IPV6_VERSION) {
      this.#drop('not_ipv6')
      return
    }
    if (!sameAddr16(buf, off + IPV6_SRC_OFFSET, this.#d.localUla, 0)) {
      this.#drop('bad_source')
      return
    }
    const peer = this.#d.peersByKey.get(ulaKeyOf(buf, off + IPV6_DST_OFFSET))
    if (!peer) {
      this.#drop('no_peer')
      return
    }
    if (!peer.outbound) {
      this.#queueNoSa(peer, Buffer.from(buf.subarray(off, off + len)))
      return
    }
    if (!peer.endpoint) {
      this.#drop('no_endpoint')
      return
    }
    let slab = this.#d.pool.get()
    if (!slab) {
      // Every slab is queued or in flight: reuse the oldest queued one (drop-oldest), else drop this packet.
      slab = this.#stealOldest()
      if (!slab) {
        this.#drop('pool_exhausted')
        return
      }
    }
    buf.copy(slab, ESP_PAYLOAD_OFFSET, off, off + len)
    this.#enqueue(slab, len, peer)
  }

  // Stage 2, no SA: keep a copy briefly and ask for keys (IKE starts a handshake on onNoSa).
  #queueNoSa(peer: Peer, packet: Buffer): void {
    const q = peer.noSaQueue
    const now = this.#d.clock.monotonic()
    if (q.length >= this.#o.noSaQueueLen) {
      q.shift()
      this.#drop('no_sa_queue_full')
    }
    q.push({ packet, atMs: now })
    if (now - peer.lastNoSaCallMs >= this.#o.noSaRetryMs || q.length === 1) {
      peer.lastNoSaCallMs = now
      try {
        this.onNoSa(peer.ula, packet)
      } catch (e) {
        this.#d.log.warn('tunnel.no_sa_hook_failed', { peer: peer.ula, err: String(e) })
      }
    }
  }

  /** Called when an outbound SA appears for `peer`: sends what waited, drops what waited too long. */
  flushNoSaQueue(peer: Peer): void {
    const q = peer.noSaQueue
    if (q.length === 0) return
    peer.noSaQueue = []
    const now = this.#d.clock.monotonic()
    for (const { packet, atMs } of q) {
      if (now - atMs > this.#o.noSaQueueMs) this.#drop('no_sa_queue_expired')
      else this.fromTun(packet, 0, packet.length)
    }
  }

  // Stage 3.
  #enqueue(slab: Buffer, len: number, peer: Peer): void {
    const cap = this.#qSlab.length
    if (this.#qCount === cap) {
      const old = this.#qSlab[this.#qHead]!
      this.#d.pool.put(old)
      this.#qHead = (this.#qHead + 1) % cap
      this.#qCount--
      this.#drop('tx_queue_full')
    }
    const at = (this.#qHead + this.#qCount) % cap
    this.#qSlab[at] = slab
    this.#qLen[at] = len
    this.#qPeer[at] = peer
    this.#qCount++
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flush)
    }
  }

  #stealOldest(): Buffer | undefined {
    if (this.#qCount === 0) return undefined
    const cap = this.#qSlab.length
    const slab = this.#qSlab[this.#qHead]
    this.#qSlab[this.#qHead] = undefined
    this.#qPeer[this.#qHead] = undefined
    this.#qHead = (this.#qHead + 1) % cap
    this.#qCount--
    this.#drop('tx_queue_full')
    return slab
  }

  // Stage 4: sequence numbers are assigned here, in queue order, and each packet is handed to the socket
  // before the next one is numbered.
  readonly #flush = (): void => {
    this.#flushScheduled = false
    const cap = this.#qSlab.length
    const { socket, pool, counters } = this.#d
    while (this.#qCount > 0) {
      const at = this.#qHead
      const slab = this.#qSlab[at]!
      const len = this.#qLen[at]!
      const peer = this.#qPeer[at]!
      this.#qSlab[at] = undefined
      this.#qPeer[at] = undefined
      this.#qHead = (at + 1) % cap
      this.#qCount--
      const sa = peer.outbound
      const ep = peer.endpoint
      if (this.#closed || !sa || !ep) {
        pool.put(slab)
        this.#drop(this.#closed ? 'send_error' : !sa ? 'no_sa_queue_expired' : 'no_endpoint')
        continue
      }
      const maxSeq = sa.crypto.maxSeq
      if (sa.seq >= maxSeq) {
        pool.put(slab)
        this.#drop('seq_exhausted')
        continue
      }
      const seq = ++sa.seq
      if (!sa.expiringSignalled && seq >= maxSeq * this.#o.seqSoftLimit) {
        sa.expiringSignalled = true
        this.onSaExpiring(peer.ula, sa.spi)
      }
      const n = sa.crypto.sealInPlace(slab, len, seq, IpProto.IPV6)
      peer.txPackets++
      peer.txBytes += len
      peer.lastTxMonoMs = this.#d.clock.monotonic()
      counters.txPackets++
      counters.txBytes += len
      // A peer reached through our TURN relay: each datagram gets the 4-octet ChannelData header (docs/relay.md).
      const relay = ep.relay
      const wire = relay === undefined ? n : n + CHANNEL_DATA_HEADER_LEN
      const gso = this.gso
      if (gso) {
        // Stage 5, batched.
        if (
          this.#bCount > 0 &&
          (ep !== this.#bEp ||
            wire > this.#bSeg ||
            this.#bTail ||
            this.#bCount >= GSO_MAX_SEGMENTS ||
            this.#bLen + wire > GSO_MAX_BYTES)
        )
          this.#sendBatch(gso)
        if (this.#bCount === 0) {
          this.#bSeg = wire
          this.#bEp = ep
        } else if (wire < this.#bSeg) this.#bTail = true
        if (relay !== undefined) {
          writeChannelDataHeader(gso.batch, this.#bLen, relay.channel, n)
          slab.copy(gso.batch, this.#bLen + CHANNEL_DATA_HEADER_LEN, 0, n)
        } else slab.copy(gso.batch, this.#bLen, 0, n)
        this.#bLen += wire
        this.#bCount++
        pool.put(slab)
        continue
      }
      if (relay !== undefined) {
        const out = Buffer.allocUnsafe(wire)
        writeChannelDataHeader(out, 0, relay.channel, n)
        slab.copy(out, CHANNEL_DATA_HEADER_LEN, 0, n)
        pool.put(slab)
        try {
          socket.send(out, 0, wire, relay.port, relay.address, (err) => {
            if (err) this.#drop('send_error')
          })
        } catch {
          this.#drop('send_error')
        }
        continue
      }
      // Stage 5 + 6, one send per packet.
      try {
        socket.send(slab, 0, n, ep.port, ep.address, (err) => {
          if (err) this.#drop('send_error')
          pool.put(slab)
        })
      } catch {
        this.#drop('send_error')
        pool.put(slab)
      }
    }
    if (this.gso) this.#sendBatch(this.gso)
  }

  #sendBatch(gso: UdpGso): void {
    const ep = this.#bEp?.relay ?? this.#bEp
    if (this.#bCount === 0 || !ep) return
    if (!gso.send(this.#bLen, this.#bSeg, ep.address, ep.port)) {
      // Socket buffer full (or an error): hand each datagram to the socket queue as a copy.
      for (let at = 0; at < this.#bLen; at += this.#bSeg) {
        const copy = Buffer.from(gso.batch.subarray(at, Math.min(at + this.#bSeg, this.#bLen)))
        try {
          this.#d.socket.send(copy, 0, copy.length, ep.port, ep.address, (err) => {
            if (err) this.#drop('send_error')
          })
        } catch {
          this.#drop('send_error')
        }
      }
    }
    this.#bLen = 0
    this.#bCount = 0
    this.#bTail = false
    this.#bEp = undefined
  }

  close(): void {
    this.#closed = true
  }

  #drop(reason: DropReason): void {
    this.#d.counters.drops[reason]++
  }
}
