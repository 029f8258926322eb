// The tunnel data plane: IPv6 from a TUN device in ESP (RFC 4303, tunnel mode, inner next header 41) in UDP
// (RFC 3948) on one shared socket, with SAs bound to pairs of ULAs (RFC 6281 section 7.3.2). Keys come from
// outside: IKEv2 (src/ike/) through installChildSa/removeSa, or the manual-keying test command.
// The packet path lives in send.ts and receive.ts, and how start() connects it to the TUN device and the socket
// (receive batching, the send thread) in packet-io.ts; this file is the SA table's public face.

import type { Clock } from '../io/clock.js'
import type { RemoteInfo } from '../io/datagram.js'
import { copyCounters, DROP_REASONS, newCounters, type TunnelCounters } from './counters.js'
import { type EspAlg, type EspCrypto, isEspAlg } from './esp.js'
import type { Coalescer } from './offload/coalesce.js'
import { offloadStatsOf, type StartTun, startPacketPath } from './packet-io.js'
import { SlabPool } from './pool.js'
import { type EndpointChangeHook, type IkeHandler, Receiver, type RelayDemux, type StunDemux } from './receive.js'
import { REPLAY_DEFAULT_BLOCKS, ReplayWindow } from './replay.js'
import {
  type Endpoint,
  type InboundSa,
  MAX_INBOUND_PER_PEER,
  newPeer,
  type OutboundSa,
  type Peer,
  parseIpv6,
  type RelayRoute,
} from './sa-table.js'
import { type NoSaHook, type SaExpiringHook, Sender, type SenderOptions } from './send.js'
import {
  type ChildSaParams,
  checkEndpoint,
  espCrypto,
  hex,
  type OffloadStats,
  type PeerStatus,
  type TunnelDeps,
  TunnelError,
  type TunnelOptions,
} from './tunnel-types.js'
import type { TxThread } from './tx-thread.js'
import { NAT_KEEPALIVE_INTERVAL_MS, sendNatKeepalives, withNonEspMarker } from './udp-encap.js'
import type { UdpRecvBatch } from './udp-recv.js'

export type { TunnelCounters } from './counters.js'
export type { EspAlg } from './esp.js'
export { TX_STATS_INTERVAL_MS } from './packet-io.js'
export type { Endpoint, RelayRoute } from './sa-table.js'
export * from './tunnel-types.js'

export class Tunnel {
  readonly localUla: string
  readonly mtu: number
  readonly #deps: TunnelDeps
  readonly #localBytes: Buffer
  readonly #keepaliveMs: number
  readonly #replayBlocks: number
  readonly #counters = newCounters()
  readonly #peersByKey = new Map<string, Peer>()
  readonly #inboundBySpi = new Map<number, InboundSa>()
  readonly #pool: SlabPool
  readonly #sender: Sender
  readonly #receiver: Receiver
  #keepaliveTimer: ReturnType<Clock['setTimeout']> | undefined
  #started = false
  #closed = false
  readonly #udpGso: boolean
  readonly #recvBatchWanted: boolean
  #recvBatch: UdpRecvBatch | undefined
  readonly #udpGroWanted: boolean
  #stopRecv: () => void = () => {}
  readonly #txThreadWanted: boolean
  readonly #tunReadIn: 'send' | 'io'
  readonly #maxSlabs: number
  readonly #senderOpts: SenderOptions
  #tx: TxThread | undefined
  /** Merges received TCP segments without the threads (a device with offloads). */
  #coalescer: Coalescer | undefined
  /** Outbound key material per peer, kept only to hand it to the send thread. */
  readonly #outboundKeys = new Map<string, Buffer>()
  #endpointHook: EndpointChangeHook = () => {}
  /** "address:port" of peers reached through our TURN allocation -> route (docs/relay.md). */
  readonly #relayRoutes = new Map<string, RelayRoute>()
  #noSaHook: NoSaHook = () => {}
  #saExpiringHook: SaExpiringHook = () => {}

  constructor(deps: TunnelDeps, opts: TunnelOptions) {
    for (const k of ['tun', 'socket', 'clock', 'log', 'random'] as const)
      if (!deps[k]) throw new TypeError(`Tunnel: missing dependency ${k}`)
    const local = parseIpv6(opts.localUla)
    this.localUla = local.canonical
    this.#localBytes = local.bytes
    this.#deps = deps
    this.mtu = deps.tun.mtu
    this.#keepaliveMs = opts.keepaliveIntervalMs ?? NAT_KEEPALIVE_INTERVAL_MS
    this.#replayBlocks = opts.replayBlocks ?? REPLAY_DEFAULT_BLOCKS
    this.#udpGso = opts.udpGso ?? true
    this.#recvBatchWanted = (opts.recvBatch ?? true) && process.env.AUTOTUNNEL_RECVMMSG !== '0'
    this.#udpGroWanted = (opts.udpGro ?? true) && process.env.AUTOTUNNEL_UDP_GRO !== '0'
    this.#txThreadWanted = opts.txThread ?? false
    const envRead = process.env.AUTOTUNNEL_TUN_READ
    this.#tunReadIn = envRead === 'send' || envRead === 'io' ? envRead : (opts.tunReadIn ?? 'io')
    this.#maxSlabs = opts.maxSlabs ?? 1024
    const poolOpts: { mtu: number; maxSlabs?: number; poison?: boolean } = { mtu: this.mtu }
    if (opts.maxSlabs !== undefined) poolOpts.maxSlabs = opts.maxSlabs
    if (opts.poisonSlabs !== undefined) poolOpts.poison = opts.poisonSlabs
    this.#pool = new SlabPool(poolOpts)
    this.#senderOpts = {
      mtu: this.mtu,
      txQueueLen: opts.txQueueLen ?? 512,
      noSaQueueLen: opts.noSaQueueLen ?? 32,
      noSaQueueMs: opts.noSaQueueMs ?? 5000,
      noSaRetryMs: opts.noSaRetryMs ?? 1000,
      seqSoftLimit: opts.seqSoftLimit ?? 0.9,
    }
    this.#sender = new Sender(
      {
        socket: deps.socket,
        clock: deps.clock,
        log: deps.log,
        pool: this.#pool,
        counters: this.#counters,
        peersByKey: this.#peersByKey,
        localUla: this.#localBytes,
      },
      this.#senderOpts,
    )
    this.#sender.onNoSa = (ula, pkt) => this.#noSaHook(ula, pkt)
    this.#sender.onSaExpiring = (ula, spi) => this.#saExpiringHook(ula, spi)
    this.#receiver = new Receiver({
      tun: deps.tun,
      clock: deps.clock,
      log: deps.log,
      counters: this.#counters,
      inboundBySpi: this.#inboundBySpi,
      localUla: this.#localBytes,
    })
    this.#receiver.onEndpointChange = (ula, ep, prev) => {
      const peer = this.#peer(ula, false)
      if (peer) this.#tx?.peer(peer)
      this.#endpointHook(ula, ep, prev)
    }
  }

  /** STUN answers arriving on the tunnel's socket (also through recvmmsg batches) go to this client. */
  setStunDemux(s: StunDemux | undefined): void {
    this.#receiver.stun = s
  }

  /** Our TURN client while it holds an allocation (docs/relay.md); undefined: no relay (nothing is looked at). */
  setRelayDemux(r: RelayDemux | undefined): void {
    this.#receiver.relay = r
  }

  /**
   * Peers at `peer` (address:port) are reached through our TURN allocation on `route` from now on (undefined: no
   * longer). Applies to every endpoint with that address, whoever sets it (DNS, IKE, MOBIKE).
   */
  setRelayRoute(peer: Endpoint, route: RelayRoute | undefined): void {
    const k = `${peer.address}:${peer.port}`
    if (route) this.#relayRoutes.set(k, { address: route.address, port: route.port, channel: route.channel })
    else this.#relayRoutes.delete(k)
    for (const p of this.#peersByKey.values()) {
      const ep = p.endpoint
      if (!ep || ep.address !== peer.address || ep.port !== peer.port) continue
      p.endpoint = this.#route(ep)
      this.#tx?.peer(p)
    }
  }

  /** `e` checked, with the relay route of its address attached (or removed). */
  #route(e: Endpoint): Endpoint {
    const c = checkEndpoint(e)
    if (this.#relayRoutes.size === 0) return c
    const r = this.#relayRoutes.get(`${c.address}:${c.port}`)
    return r ? { ...c, relay: r } : c
  }

  /** Starts reading the TUN device and the socket (packet-io.ts), and the keepalive timer. */
  start(): void {
    if (this.#started) return
    this.#started = true
    const tun = this.#deps.tun as StartTun
    const path = startPacketPath({
      tun,
      socket: this.#deps.socket,
      log: this.#deps.log,
      receiver: this.#receiver,
      sender: this.#sender,
      drops: this.#counters.drops,
      threads: this.#txThreadWanted,
      tunReadIn: this.#tunReadIn,
      recvBatch: this.#recvBatchWanted,
      udpGro: this.#udpGroWanted,
      udpGso: this.#udpGso,
      mtu: this.mtu,
      maxSlabs: this.#maxSlabs,
      localUla: this.#localBytes,
      senderOpts: this.#senderOpts,
      hooks: {
        onNoSa: (ula, pkt) => this.#noSaHook(ula, pkt),
        onSaExpiring: (ula, spi) => this.#saExpiringHook(ula, spi),
        onStats: (st) => {
          const now = this.#deps.clock.monotonic()
          for (const ps of st.peers) {
            const p = this.#peersByKey.get(ps.key)
            if (p && ps.txAgoMs >= 0) p.lastTxMonoMs = now - ps.txAgoMs
          }
        },
      },
    })
    this.#coalescer = path.coalescer
    this.#recvBatch = path.recvBatch
    this.#stopRecv = path.stopRecv
    this.#tx = path.tx
    if (this.#tx) {
      for (const p of this.#peersByKey.values()) this.#syncTx(p)
      this.#tx.go()
    }
    const rb = path.recvBatch
    this.#deps.log.info('tunnel.started', {
      localUla: this.localUla,
      mtu: this.mtu,
      txThread: this.#tx !== undefined,
      tunReadIn: this.#tx ? this.#tunReadIn : 'main',
      udpGso: this.#tx ? 'worker' : !!this.#sender.gso,
      recvBatch: !!rb,
      udpGro: rb?.gro === true,
      tunOffload: tun.vnetHdr === true,
    })
    this.#scheduleKeepalive()
  }

  /** Resolves when the packet path runs (with threads: once both have started; else at once). */
  ready(): Promise<void> {
    return this.#tx ? this.#tx.ready : Promise.resolve()
  }

  /** Mirrors a peer's endpoint and outbound SA into the send thread. */
  #syncTx(p: Peer): void {
    const tx = this.#tx
    if (!tx) return
    tx.peer(p)
    const k = this.#outboundKeys.get(p.key)
    tx.outbound(
      p,
      p.outbound && k ? { spi: p.outbound.spi, alg: p.outbound.alg, key: k, esn: p.outbound.crypto.esn } : undefined,
    )
  }

  // --- peers ---------------------------------------------------------------------------------------------

  addPeer(p: { ula: string; endpoint?: Endpoint; keepalive?: boolean }): void {
    const { canonical, bytes } = parseIpv6(p.ula)
    const key = bytes.toString('latin1')
    if (key === this.#localBytes.toString('latin1'))
      throw new TunnelError('a peer cannot have the local ULA', 'bad_param')
    const existing = this.#peersByKey.get(key)
    if (existing) {
      if (p.endpoint) existing.endpoint = this.#route(p.endpoint)
      if (p.keepalive !== undefined) existing.keepalive = p.keepalive
      this.#tx?.peer(existing)
      return
    }
    const peer = newPeer(canonical, bytes, p.endpoint ? this.#route(p.endpoint) : undefined, p.keepalive ?? false)
    this.#peersByKey.set(key, peer)
    this.#tx?.peer(peer)
  }

  /** Removes the peer and all its SAs. */
  removePeer(ula: string): boolean {
    const peer = this.#peer(ula, false)
    if (!peer) return false
    for (const sa of peer.inbound) this.#inboundBySpi.delete(sa.spi)
    this.#peersByKey.delete(peer.key)
    this.#outboundKeys.delete(peer.key)
    this.#tx?.removePeer(peer)
    return true
  }

  /** New outer address for a peer (from DNS, IKE/MOBIKE or config). Its SAs stay as they are. */
  setPeerEndpoint(ula: string, endpoint: Endpoint): void {
    const peer = this.#peer(ula, true)
    peer.endpoint = this.#route(endpoint)
    this.#tx?.peer(peer)
  }

  /** Send RFC 3948 NAT keepalives to this peer (when a NAT is between us; IKE's NAT detection knows). */
  setKeepalive(ula: string, on: boolean): void {
    this.#peer(ula, true).keepalive = on
  }

  peers(): PeerStatus[] {
    const tx = new Map((this.#tx?.last?.peers ?? []).map((x) => [x.key, x]))
    return [...this.#peersByKey.values()].map((p) => ({
      ula: p.ula,
      endpoint: p.endpoint,
      keepalive: p.keepalive,
      spiOut: p.outbound?.spi,
      spisIn: p.inbound.map((s) => s.spi),
      alg: p.outbound?.alg,
      txPackets: p.txPackets + (tx.get(p.key)?.txPackets ?? 0),
      txBytes: p.txBytes + (tx.get(p.key)?.txBytes ?? 0),
      rxPackets: p.rxPackets,
      rxBytes: p.rxBytes,
      lastRxMs: p.lastRxMs,
      queued: p.noSaQueue.length + (tx.get(p.key)?.queued ?? 0),
    }))
  }

  // --- SAs ----------------------------------------------------------------------------------------------

  /**
   * Installs a Child SA pair for a peer (adding the peer if needed). Make-before-break: the new inbound SA is
   * added next to the current one (at most two; the oldest goes), and unless `outbound: false` the outbound
   * SA is replaced in one step, so the next packet uses the new SPI with sequence number 1.
   */
  installChildSa(p: ChildSaParams): void {
    if (!isEspAlg(p.alg)) throw new TunnelError(`unknown ESP algorithm ${String(p.alg)}`, 'bad_param')
    if (this.#inboundBySpi.has(p.spiIn)) throw new TunnelError(`inbound SPI ${hex(p.spiIn)} in use`, 'spi_in_use')
    this.addPeer({ ula: p.peerUla })
    const peer = this.#peer(p.peerUla, true)
    const inCrypto = espCrypto(p.alg, p.spiIn, p.keyIn, p.esn)
    const outCrypto = p.outbound !== false ? espCrypto(p.alg, p.spiOut, p.keyOut, p.esn) : undefined
    const replay = new ReplayWindow({ blocks: this.#replayBlocks, limit: inCrypto.maxSeq + 1 })
    const inbound: InboundSa = {
      spi: p.spiIn,
      alg: p.alg,
      crypto: inCrypto,
      replay,
      peer,
      installedAt: this.#deps.clock.monotonic(),
    }
    peer.inbound.push(inbound)
    this.#inboundBySpi.set(p.spiIn, inbound)
    while (peer.inbound.length > MAX_INBOUND_PER_PEER) {
      const old = peer.inbound.shift()!
      this.#inboundBySpi.delete(old.spi)
    }
    if (outCrypto) this.#setOutbound(peer, outCrypto, p.keyOut)
    this.#deps.log.info('tunnel.sa_installed', {
      peer: peer.ula,
      spiIn: hex(p.spiIn),
      spiOut: outCrypto ? hex(p.spiOut) : undefined,
      alg: p.alg,
      esn: p.esn,
    })
  }

  /** Switches a peer's outbound traffic to an SA installed earlier with `outbound: false`. */
  installOutboundSa(p: { peerUla: string; spiOut: number; alg: EspAlg; keyOut: Buffer; esn: boolean }): void {
    const peer = this.#peer(p.peerUla, true)
    this.#setOutbound(peer, espCrypto(p.alg, p.spiOut, p.keyOut, p.esn), p.keyOut)
  }

  /** The peer's outbound SA in one step (the next packet gets sequence number 1); what waited for it goes. */
  #setOutbound(peer: Peer, crypto: EspCrypto, key: Buffer): void {
    const out: OutboundSa = { spi: crypto.spi, alg: crypto.alg, crypto, seq: 0, expiringSignalled: false }
    peer.outbound = out
    this.#outboundKeys.set(peer.key, Buffer.from(key))
    this.#syncTx(peer)
    this.#sender.flushNoSaQueue(peer)
  }

  /** A random inbound SPI not in use (above 255, RFC 4303 section 2.1), for IKE to offer. */
  allocateSpi(): number {
    for (;;) {
      const spi = this.#deps.random.bytes(4).readUInt32BE(0)
      if (spi > 0xff && !this.#inboundBySpi.has(spi)) return spi
    }
  }

  /** Removes the inbound SA with this SPI, or the outbound SA with this SPI. Returns whether one was found. */
  removeSa(spi: number): boolean {
    const inbound = this.#inboundBySpi.get(spi)
    if (inbound) {
      this.#inboundBySpi.delete(spi)
      inbound.peer.inbound = inbound.peer.inbound.filter((s) => s !== inbound)
      return true
    }
    for (const peer of this.#peersByKey.values()) {
      if (peer.outbound?.spi === spi) {
        peer.outbound = undefined
        this.#outboundKeys.delete(peer.key)
        this.#syncTx(peer)
        return true
      }
    }
    return false
  }

  // --- hooks and IKE ------------------------------------------------------------------------------------

  /** IKE messages arriving on the shared port (non-ESP marker stripped). */
  onIke(handler: IkeHandler): void {
    this.#receiver.onIke = handler
  }

  /** Sends an IKE message on the shared port, with the non-ESP marker (RFC 3948 section 2.2). */
  sendIke(msg: Buffer, to: Endpoint): void {
    this.#counters.ikeTx++
    try {
      this.#deps.socket.send(withNonEspMarker(msg), 0, msg.length + 4, to.port, to.address, (err) => {
        if (err) this.#counters.drops.send_error++
      })
    } catch {
      this.#counters.drops.send_error++
    }
  }

  /** A packet for a peer without an outbound SA: the hook starts keying; the packet waits (bounded, briefly). */
  onNoSa(hook: NoSaHook): void {
    this.#noSaHook = hook
  }

  /** An authenticated packet came from a new outer address: the endpoint has already moved there. */
  onEndpointChange(hook: EndpointChangeHook): void {
    this.#endpointHook = hook
  }

  /** Fires once per outbound SA when `seqSoftLimit` of its sequence space is used: time to rekey. */
  onSaExpiring(hook: SaExpiringHook): void {
    this.#saExpiringHook = hook
  }

  /**
   * Traffic and drop counters. With the send thread, its share (tx, send-side drops) is the snapshot it
   * posts every 200 ms (TX_STATS_INTERVAL_MS) when a figure changed.
   */
  counters(): TunnelCounters {
    const c = copyCounters(this.#counters)
    const t = this.#tx?.last?.counters
    if (t) {
      c.txPackets += t.txPackets
      c.txBytes += t.txBytes
      for (const r of DROP_REASONS) c.drops[r] += t.drops[r]
    }
    const io = this.#tx?.lastIo
    if (io) {
      c.drops.tx_queue_full += io.toTxDropped
      c.drops.tun_write_error += io.writeErrors
      c.drops.bad_vnet_hdr += io.vnetDrops
    }
    c.drops.bad_vnet_hdr += (this.#deps.tun as StartTun).vnetDrops ?? 0
    return c
  }

  /** What the TUN offloads did: reads cut, writes merged (zeros without offloads). */
  offloadStats(): OffloadStats {
    return offloadStatsOf(this.#deps.tun as StartTun, this.#tx?.lastIo, this.#coalescer)
  }

  /** recvmmsg calls, the datagrams they took, and GRO runs among them (0/0/0 without receive batching). */
  recvBatchStats(): { calls: number; datagrams: number; groRuns: number; gro: boolean } {
    const rb = this.#recvBatch
    return { calls: rb?.calls ?? 0, datagrams: rb?.datagrams ?? 0, groRuns: rb?.groRuns ?? 0, gro: rb?.gro === true }
  }

  /** Pool figures, for tests and the benchmark. */
  poolStats(): { allocated: number; outstanding: number; slabSize: number } {
    return { allocated: this.#pool.allocated, outstanding: this.#pool.outstanding, slabSize: this.#pool.slabSize }
  }

  // --- keepalives and shutdown --------------------------------------------------------------------------

  #scheduleKeepalive(): void {
    if (this.#closed) return
    this.#keepaliveTimer = this.#deps.clock.setTimeout(() => {
      const now = this.#deps.clock.monotonic()
      sendNatKeepalives(this.#peersByKey.values(), now, this.#keepaliveMs, this.#deps.socket, this.#counters)
      this.#scheduleKeepalive()
    }, this.#keepaliveMs)
  }

  /** Stops the timer and the packet path, then closes the TUN device and the socket. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#deps.clock.clearTimeout(this.#keepaliveTimer)
    this.#sender.close()
    this.#stopRecv()
    if (this.#tx) await this.#tx.close()
    await Promise.allSettled([this.#deps.tun.close(), this.#deps.socket.close()])
  }

  #peer(ula: string, required: true): Peer
  #peer(ula: string, required: boolean): Peer | undefined
  #peer(ula: string, required: boolean): Peer | undefined {
    const key = parseIpv6(ula).bytes.toString('latin1')
    const p = this.#peersByKey.get(key)
    if (!p && required) throw new TunnelError(`unknown peer ${ula}`, 'unknown_peer')
    return p
  }
}

export type { RemoteInfo }
