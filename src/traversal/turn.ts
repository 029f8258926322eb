// TURN client (RFC 8656) on the agent's shared UDP port, for peers that cannot punch (docs/relay.md): a host
// behind a symmetric NAT allocates a relayed address on a TURN server (coturn) FROM THE SOCKET THAT CARRIES IKE
// AND ESP, publishes it as TXT relay=ADDR:PORT, and exchanges its tunnel's datagrams with its peers through it.
// The codec is stun.ts's (attribute table, encodeStun, checkIntegrity); the long-term credential mechanism and the
// transactions are turn-request.ts's; this file holds the TURN methods and the allocation's state.
//
//   RFC 8656 7.1   Allocate (REQUESTED-TRANSPORT UDP) -> XOR-RELAYED-ADDRESS, LIFETIME
//   RFC 8489 9.2   long-term credentials: 401 with REALM + NONCE, then USERNAME/REALM/NONCE/MESSAGE-INTEGRITY,
//                  key = MD5(username ":" realm ":" password); 438 (stale nonce): the new NONCE, once more
//   RFC 8656 7.2   Refresh before the lifetime ends (LIFETIME 0 on close deletes the allocation)
//   RFC 8656 9     CreatePermission per peer IP (a permission lives 300 s: refreshed every PERMISSION_REFRESH_MS)
//   RFC 8656 11    ChannelBind 0x4000-0x4FFF per peer address (a binding lives 600 s: CHANNEL_REFRESH_MS)
//   RFC 8656 12    ChannelData: channel (2) length (2) data, no padding over UDP
//   RFC 8656 10    Send and Data indications (XOR-PEER-ADDRESS + DATA) before a channel exists / from the server
//
//   allocation:  idle --allocate()--> allocating --success--> allocated --refresh fails--> failed
//                                          |                      |
//                                          +--error/timeout--> failed        close(): Refresh(0), closed
//
// Demultiplexing on the shared port: only datagrams whose source is the TURN server's address and port are
// looked at (one property read and a compare when no relay is active, in the tunnel's receiver).
import type { Clock, TimerHandle } from '../io/clock.js'
import type { RemoteInfo } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import {
  type AddrPort,
  decodeAddress,
  decodeStun,
  encodeStun,
  encodeXorAddress,
  looksLikeStun,
  STUN_TXID_LEN,
  StunAttr,
  type StunMessage,
} from './stun.js'
import { TurnRequests } from './turn-request.js'
import {
  CHANNEL_MAX,
  CHANNEL_MIN,
  CHANNEL_REFRESH_MS,
  decodeChannelData,
  encodeChannelData,
  epKey,
  PERMISSION_REFRESH_MS,
  StunClass,
  TRANSPORT_UDP,
  TURN_GIVE_UP_MS,
  TURN_LIFETIME_SEC,
  TURN_RTO_MS,
  TurnError,
  TurnMethod,
  type TurnServer,
  u32,
} from './turn-wire.js'

export interface TurnClientDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  /** Sends on the agent's shared socket (unwrapped: straight to the TURN server). */
  readonly send: (buf: Buffer, port: number, address: string) => void
  /** The allocation was lost (a Refresh failed); the owner stops publishing it. */
  readonly onLost?: (err: Error) => void
  /** A channel for `peer` is bound (or re-bound): the tunnel's endpoint for it may carry the relay route now. */
  readonly onChannel?: (peer: AddrPort, channel: number) => void
}

export interface TurnClientOptions {
  readonly rtoMs?: number
  readonly giveUpMs?: number
  readonly lifetimeSec?: number
  readonly permissionRefreshMs?: number
  readonly channelRefreshMs?: number
}

export type TurnState = 'idle' | 'allocating' | 'allocated' | 'failed' | 'closed'

interface Channel {
  readonly peer: AddrPort
  readonly channel: number
  bound: boolean
}

export interface TurnCounters {
  requests: number
  retransmits: number
  errors: number
  channelDataTx: number
  channelDataRx: number
  sendIndications: number
  dataIndications: number
  malformed: number
  unknownChannel: number
}

export class TurnClient {
  readonly #d: TurnClientDeps
  readonly server: TurnServer
  readonly #lifetimeSec: number
  readonly #permMs: number
  readonly #chanMs: number
  #state: TurnState = 'idle'
  #relayed: AddrPort | undefined
  #expiresAt = 0
  #refreshTimer: TimerHandle | undefined
  #permTimer: TimerHandle | undefined
  #chanTimer: TimerHandle | undefined
  readonly #req: TurnRequests
  /** Permitted peer IPs (RFC 8656 9: permissions are per IP address, not port). */
  readonly #perms = new Set<string>()
  readonly #byPeer = new Map<string, Channel>()
  readonly #byChannel = new Map<number, Channel>()
  #nextChannel = CHANNEL_MIN
  readonly #counts: Omit<TurnCounters, 'requests' | 'retransmits'> = {
    errors: 0,
    channelDataTx: 0,
    channelDataRx: 0,
    sendIndications: 0,
    dataIndications: 0,
    malformed: 0,
    unknownChannel: 0,
  }

  constructor(deps: TurnClientDeps, server: TurnServer, opts: TurnClientOptions = {}) {
    this.#d = deps
    this.server = server
    this.#req = new TurnRequests(
      {
        clock: deps.clock,
        random: deps.random,
        log: deps.log,
        send: (buf, port, address) => deps.send(buf, port, address),
        closed: () => this.#state === 'closed',
        counts: this.#counts,
      },
      server,
      { rtoMs: opts.rtoMs ?? TURN_RTO_MS, giveUpMs: opts.giveUpMs ?? TURN_GIVE_UP_MS },
    )
    this.#lifetimeSec = opts.lifetimeSec ?? TURN_LIFETIME_SEC
    this.#permMs = opts.permissionRefreshMs ?? PERMISSION_REFRESH_MS
    this.#chanMs = opts.channelRefreshMs ?? CHANNEL_REFRESH_MS
  }

  get counters(): TurnCounters {
    return { requests: this.#req.requests, retransmits: this.#req.retransmits, ...this.#counts }
  }

  get state(): TurnState {
    return this.#state
  }
  /** Our XOR-RELAYED-ADDRESS while allocated. */
  get relayed(): AddrPort | undefined {
    return this.#state === 'allocated' ? this.#relayed : undefined
  }

  /** Allocate (with the 401 / 438 dance); resolves with the relayed address, rejects with a TurnError. */
  async allocate(): Promise<AddrPort> {
    if (this.#state === 'closed') throw new TurnError('client closed', 0)
    this.#state = 'allocating'
    try {
      const { msg, raw } = await this.#req.request(TurnMethod.ALLOCATE, [
        { type: StunAttr.REQUESTED_TRANSPORT, value: Buffer.from([TRANSPORT_UDP, 0, 0, 0]) },
        { type: StunAttr.LIFETIME, value: u32(this.#lifetimeSec) },
      ])
      const ra = msg.attrs.find((a) => a.type === StunAttr.XOR_RELAYED_ADDRESS)
      if (!ra) throw new TurnError('Allocate success without XOR-RELAYED-ADDRESS', 0)
      this.#relayed = decodeAddress(ra.value, ra.offset, 'turn.xor-relayed-address', raw)
      this.#setLifetime(msg)
      this.#state = 'allocated'
      this.#d.log.info('turn.allocated', {
        server: epKey(this.server.address, this.server.port),
        relayed: epKey(this.#relayed.address, this.#relayed.port),
        lifetime: this.#lifetimeSecLeft(),
        mapped: msg.mapped ? epKey(msg.mapped.address, msg.mapped.port) : null,
      })
      return this.#relayed
    } catch (e) {
      if (this.#state === 'allocating') this.#state = 'failed'
      throw e
    }
  }

  #lifetimeSecLeft(): number {
    return Math.max(0, Math.round((this.#expiresAt - this.#d.clock.monotonic()) / 1000))
  }

  #setLifetime(msg: StunMessage): void {
    const lt = msg.attrs.find((a) => a.type === StunAttr.LIFETIME)
    const sec = lt && lt.value.length === 4 ? lt.value.readUInt32BE(0) : this.#lifetimeSec
    const { clock } = this.#d
    this.#expiresAt = clock.monotonic() + sec * 1000
    clock.clearTimeout(this.#refreshTimer)
    // A minute early, or halfway for short lifetimes.
    const after = sec > 120 ? (sec - 60) * 1000 : (sec * 1000) / 2
    this.#refreshTimer = clock.setTimeout(() => void this.#refresh(), after)
  }

  async #refresh(): Promise<void> {
    if (this.#state !== 'allocated') return
    try {
      const { msg } = await this.#req.request(TurnMethod.REFRESH, [
        { type: StunAttr.LIFETIME, value: u32(this.#lifetimeSec) },
      ])
      this.#setLifetime(msg)
      this.#d.log.debug('turn.refreshed', { lifetime: this.#lifetimeSecLeft() })
    } catch (e) {
      if (this.#state !== 'allocated') return
      this.#state = 'failed'
      this.#stopTimers()
      this.#d.log.warn('turn.lost', { err: (e as Error).message })
      this.#d.onLost?.(e as Error)
    }
  }

  /**
   * Relays to `peer` from now on: a permission for its IP and a channel for its address (both kept refreshed).
   * Idempotent; resolves with the channel once bound (rejects when the server refuses).
   */
  async addPeer(peer: AddrPort): Promise<number> {
    if (this.#state !== 'allocated') throw new TurnError(`no allocation (${this.#state})`, 0)
    const k = epKey(peer.address, peer.port)
    let ch = this.#byPeer.get(k)
    if (ch?.bound) return ch.channel
    if (!ch) {
      const n = this.#allocChannel()
      if (n === undefined) throw new TurnError('no free channel number', 0)
      ch = { peer: { address: peer.address, port: peer.port }, channel: n, bound: false }
      this.#byPeer.set(k, ch)
      this.#byChannel.set(n, ch)
    }
    if (!this.#perms.has(peer.address)) {
      this.#perms.add(peer.address)
      await this.#createPermissions([peer.address])
      this.#schedulePermRefresh()
    }
    await this.#bind(ch)
    this.#scheduleChanRefresh()
    return ch.channel
  }

  /** Stops relaying to `peer` (its channel lapses at the server; its permission is no longer refreshed). */
  removePeer(peer: AddrPort): void {
    const k = epKey(peer.address, peer.port)
    const ch = this.#byPeer.get(k)
    if (!ch) return
    this.#byPeer.delete(k)
    this.#byChannel.delete(ch.channel)
    if (![...this.#byPeer.values()].some((c) => c.peer.address === peer.address)) this.#perms.delete(peer.address)
  }

  #allocChannel(): number | undefined {
    for (let i = 0; i <= CHANNEL_MAX - CHANNEL_MIN; i++) {
      const n = this.#nextChannel
      this.#nextChannel = n >= CHANNEL_MAX ? CHANNEL_MIN : n + 1
      if (!this.#byChannel.has(n)) return n
    }
    return undefined
  }

  async #createPermissions(ips: readonly string[]): Promise<void> {
    if (ips.length === 0) return
    await this.#req.request(
      TurnMethod.CREATE_PERMISSION,
      ips.map((ip) => ({ type: StunAttr.XOR_PEER_ADDRESS, value: encodeXorAddress({ address: ip, port: 0 }) })),
    )
    this.#d.log.debug('turn.permission', { peers: ips })
  }

  async #bind(ch: Channel): Promise<void> {
    const cn = Buffer.alloc(4)
    cn.writeUInt16BE(ch.channel, 0)
    await this.#req.request(TurnMethod.CHANNEL_BIND, [
      { type: StunAttr.CHANNEL_NUMBER, value: cn },
      { type: StunAttr.XOR_PEER_ADDRESS, value: encodeXorAddress(ch.peer) },
    ])
    const first = !ch.bound
    ch.bound = true
    if (first) {
      this.#d.log.info('turn.channel', { peer: epKey(ch.peer.address, ch.peer.port), channel: ch.channel })
      this.#d.onChannel?.(ch.peer, ch.channel)
    }
  }

  #schedulePermRefresh(): void {
    if (this.#permTimer !== undefined) return
    this.#permTimer = this.#d.clock.setTimeout(() => {
      this.#permTimer = undefined
      if (this.#state !== 'allocated' || this.#perms.size === 0) return
      this.#createPermissions([...this.#perms]).catch((e: Error) =>
        this.#d.log.warn('turn.permission_failed', { err: e.message }),
      )
      this.#schedulePermRefresh()
    }, this.#permMs)
  }

  #scheduleChanRefresh(): void {
    if (this.#chanTimer !== undefined) return
    this.#chanTimer = this.#d.clock.setTimeout(() => {
      this.#chanTimer = undefined
      if (this.#state !== 'allocated' || this.#byPeer.size === 0) return
      for (const ch of this.#byPeer.values())
        this.#bind(ch).catch((e: Error) => this.#d.log.warn('turn.channel_failed', { err: e.message }))
      this.#scheduleChanRefresh()
    }, this.#chanMs)
  }

  /** The channel bound to `address:port`, if any (the tunnel's relay route for that endpoint). */
  channelOf(address: string, port: number): number | undefined {
    const ch = this.#byPeer.get(epKey(address, port))
    return ch?.bound ? ch.channel : undefined
  }

  /**
   * `buf[off, off+len)` for `address:port` as the datagram to send to the TURN server instead: ChannelData when a
   * channel is bound, a Send indication while it is being bound; undefined when that peer is not relayed.
   */
  wrap(buf: Buffer, off: number, len: number, port: number, address: string): Buffer | undefined {
    const ch = this.#byPeer.get(epKey(address, port))
    if (!ch || this.#state !== 'allocated') return undefined
    if (ch.bound) {
      this.#counts.channelDataTx++
      return encodeChannelData(ch.channel, buf, off, len)
    }
    this.#counts.sendIndications++
    return encodeStun(TurnMethod.SEND | StunClass.INDICATION, this.#d.random.bytes(STUN_TXID_LEN), [
      { type: StunAttr.XOR_PEER_ADDRESS, value: encodeXorAddress(ch.peer) },
      { type: StunAttr.DATA, value: Buffer.from(buf.subarray(off, off + len)) },
    ])
  }

  /**
   * A datagram from the TURN server (the caller checked the source): a response to one of our requests, or data
   * from a peer (ChannelData, Data indication) handed to `deliver` as if it came from that peer. Always consumed.
   */
  offer(msg: Buffer, deliver: (data: Buffer, from: RemoteInfo) => void): void {
    const first = msg[0]
    if (first !== undefined && first >= CHANNEL_MIN >> 8 && first <= CHANNEL_MAX >> 8) {
      const cd = decodeChannelData(msg)
      const ch = cd ? this.#byChannel.get(cd.channel) : undefined
      if (!cd || !ch) {
        if (cd) this.#counts.unknownChannel++
        else this.#counts.malformed++
        return
      }
      this.#counts.channelDataRx++
      deliver(cd.data, { address: ch.peer.address, port: ch.peer.port, family: 'IPv4' })
      return
    }
    if (!looksLikeStun(msg)) {
      this.#counts.malformed++
      return
    }
    // Control messages are kept past this call (a transaction resolves in a later microtask) while `msg` may be a
    // view of a reused receive buffer (the tunnel's recvmmsg batches): a copy.
    const b = Buffer.from(msg)
    let m: StunMessage
    try {
      m = decodeStun(b)
    } catch {
      this.#counts.malformed++
      return
    }
    if (m.type === (TurnMethod.DATA | StunClass.INDICATION)) {
      const pa = m.attrs.find((a) => a.type === StunAttr.XOR_PEER_ADDRESS)
      const data = m.attrs.find((a) => a.type === StunAttr.DATA)
      if (!pa || !data) {
        this.#counts.malformed++
        return
      }
      let peer: AddrPort
      try {
        peer = decodeAddress(pa.value, pa.offset, 'turn.xor-peer-address', b)
      } catch {
        this.#counts.malformed++
        return
      }
      this.#counts.dataIndications++
      deliver(data.value, { address: peer.address, port: peer.port, family: 'IPv4' })
      return
    }
    this.#req.answer(b, m)
  }

  #stopTimers(): void {
    const { clock } = this.#d
    clock.clearTimeout(this.#refreshTimer)
    clock.clearTimeout(this.#permTimer)
    clock.clearTimeout(this.#chanTimer)
    this.#refreshTimer = this.#permTimer = this.#chanTimer = undefined
  }

  status(): unknown {
    return {
      server: epKey(this.server.address, this.server.port),
      state: this.#state,
      relayed: this.relayed ? epKey(this.relayed.address, this.relayed.port) : null,
      lifetimeLeftSec: this.#state === 'allocated' ? this.#lifetimeSecLeft() : null,
      permissions: [...this.#perms],
      channels: [...this.#byPeer.values()].map((c) => ({
        peer: epKey(c.peer.address, c.peer.port),
        channel: `0x${c.channel.toString(16)}`,
        bound: c.bound,
      })),
      counters: this.counters,
    }
  }

  /** Deletes the allocation (Refresh with LIFETIME 0, best effort, bounded) and ends every transaction. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return
    const was = this.#state
    this.#stopTimers()
    if (was === 'allocated') {
      this.#state = 'failed'
      await this.#req.request(TurnMethod.REFRESH, [{ type: StunAttr.LIFETIME, value: u32(0) }]).catch(() => {})
    }
    this.#state = 'closed'
    this.#req.close()
    this.#byPeer.clear()
    this.#byChannel.clear()
    this.#perms.clear()
  }
}
