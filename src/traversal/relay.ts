// The relay fallback of the data path (docs/relay.md): a host whose own probe says nat=unmapped + mapping=symmetric
// allocates a TURN relayed address (turn.ts) from its shared UDP port, the agent publishes it as TXT relay=, and
// the peers it cannot punch to are reached through it:
//
//   selfNat symmetric --want(true)--> allocate on the first server that accepts --> tunnel.setRelayDemux
//                                     --> onRelay(relayed): the agent republishes TXT relay=ADDR:PORT
//   peer path viaRelay (punch.ts)  --peer(host, ep)--> CreatePermission + ChannelBind for ep
//                                     --> channel bound: tunnel.setRelayRoute(ep, {server, channel})
//   ESP to ep (Sender): ChannelData straight to the server (GSO batches too, and the send thread)
//   IKE, keepalives, punches to ep (socket()): ChannelData, or a Send indication until the channel is bound
//   datagrams from the server (Receiver): unwrapped, handed on as ep's own
//   selfNat no longer symmetric --want(false)--> Refresh lifetime 0, TXT relay= withdrawn; allocation lost: same,
//                                     then a new attempt after RELAY_RETRY_MS
//
// Inert unless a relay is configured (--relay, or SRV _turn._udp.ZONE with --relay-user): no wrapper socket, no
// demux, nothing published.
import type { Clock, TimerHandle } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import type { AddrPort } from './stun.js'
import { TurnClient, type TurnClientOptions } from './turn.js'

/** After a failed or lost allocation, the next attempt (while still wanted). */
export const RELAY_RETRY_MS = 60_000
/** With no TURN server configured or found: the next look (SRV) while still wanted. */
export const RELAY_NO_SERVER_RETRY_MS = 5 * 60_000

export interface RelayConfig {
  /** The TURN servers in order: --relay, else SRV _turn._udp.ZONE (looked up on each attempt). */
  readonly servers: () => Promise<AddrPort[]>
  /**
   * Long-term credentials, fetched on each allocation attempt: --relay-user and its password file, or the
   * ephemeral ones the autotunnel server hands out (TXT _turn-credentials.USER.ZONE, coturn's REST scheme).
   */
  readonly credentials: () => Promise<{ username: string; password: string } | undefined>
  readonly turn?: TurnClientOptions
}

export interface RelayDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  /** The agent's shared socket, unwrapped. */
  readonly udp: DatagramSocket
  readonly tunnel: () => Tunnel | undefined
  /** Our relayed address changed (undefined: none): the agent publishes or withdraws TXT relay=. */
  readonly onRelay: (relayed: AddrPort | undefined) => void
}

const same = (a: AddrPort | undefined, b: AddrPort | undefined): boolean =>
  a === b || (!!a && !!b && a.address === b.address && a.port === b.port)

export class RelayManager {
  readonly #d: RelayDeps
  readonly #cfg: RelayConfig
  /** The client being allocated or allocated. */
  #turn: TurnClient | undefined
  #wanted = false
  #attempt: Promise<void> | undefined
  #retry: TimerHandle | undefined
  #lastError: string | undefined
  #closed = false
  /**
   * The servers and credentials of the last allocation that succeeded: tried first after a network change (when
   * DNS through the new network may take seconds); dropped when they fail or the allocation is lost.
   */
  #cached: { servers: AddrPort[]; creds: { username: string; password: string } } | undefined
  /** Peers (by host) we reach through our allocation, and the address each is relayed to. */
  readonly #peers = new Map<string, AddrPort>()

  constructor(deps: RelayDeps, cfg: RelayConfig) {
    this.#d = deps
    this.#cfg = cfg
  }

  /** Our relayed address while allocated. */
  get relayed(): AddrPort | undefined {
    return this.#turn?.relayed
  }

  /**
   * The shared socket as the tunnel and IKE use it: a datagram to a relayed peer goes to the TURN server wrapped
   * (ChannelData or Send indication); everything else unchanged (one property read when no allocation exists).
   */
  socket(): DatagramSocket & { raw?: unknown } {
    const udp = this.#d.udp
    return {
      bind: (port, address) => udp.bind(port, address),
      send: (buf, off, len, port, address, done) => {
        const t = this.#turn
        if (t !== undefined) {
          const w = t.wrap(buf, off, len, port, address)
          if (w !== undefined) return udp.send(w, 0, w.length, t.server.port, t.server.address, done)
        }
        return udp.send(buf, off, len, port, address, done)
      },
      onMessage: (h) => udp.onMessage(h),
      address: () => udp.address(),
      close: () => udp.close(),
      raw: (udp as { raw?: unknown }).raw,
    }
  }

  /** Whether we should hold an allocation (our NAT is symmetric and unmapped). Idempotent. */
  want(on: boolean): void {
    if (this.#closed || on === this.#wanted) return
    this.#wanted = on
    if (on) this.#start()
    else {
      this.#d.clock.clearTimeout(this.#retry)
      this.#retry = undefined
      void this.#release('no longer needed')
    }
  }

  #start(): void {
    if (this.#attempt || this.#turn || !this.#wanted || this.#closed) return
    this.#d.clock.clearTimeout(this.#retry)
    this.#retry = undefined
    this.#attempt = this.#allocate().finally(() => {
      this.#attempt = undefined
    })
  }

  async #allocate(): Promise<void> {
    const cached = this.#cached
    this.#cached = undefined
    if (cached && (await this.#tryServers(cached.servers, cached.creds))) return
    const { log } = this.#d
    let servers: AddrPort[] = []
    try {
      servers = await this.#cfg.servers()
    } catch (e) {
      this.#lastError = `discovery: ${(e as Error).message}`
    }
    if (servers.length === 0) {
      const first = this.#lastError === undefined
      this.#lastError ??= 'no TURN server configured or found'
      // Once: a symmetric host without any relay is the normal case where none is offered.
      if (first) log.info('relay.no_server', {})
      this.#scheduleRetry(RELAY_NO_SERVER_RETRY_MS)
      return
    }
    let credErr: string | undefined
    const creds = await this.#cfg.credentials().catch((e: Error) => {
      credErr = `credentials: ${e.message}`
      return undefined
    })
    if (!creds) {
      const err = credErr ?? 'no TURN credentials (no --relay-user, and the server hands out none)'
      if (err !== this.#lastError) log.warn('relay.no_credentials', { err })
      this.#lastError = err
      this.#scheduleRetry(RELAY_NO_SERVER_RETRY_MS)
      return
    }
    if (!(await this.#tryServers(servers, creds))) this.#scheduleRetry()
  }

  /** Allocates on the first of `servers` that accepts; true when done (or no longer wanted). */
  async #tryServers(servers: AddrPort[], creds: { username: string; password: string }): Promise<boolean> {
    const { log } = this.#d
    for (const s of servers) {
      if (!this.#wanted || this.#closed) return true
      const t: TurnClient = new TurnClient(
        {
          clock: this.#d.clock,
          random: this.#d.random,
          log: log.child({ c: 'turn' }),
          send: (b, port, address) => this.#d.udp.send(b, 0, b.length, port, address),
          onChannel: (peer, channel) =>
            this.#d.tunnel()?.setRelayRoute(peer, { address: s.address, port: s.port, channel }),
          onLost: (e) => {
            if (this.#turn !== t) return
            this.#cached = undefined
            void this.#release(`lost: ${e.message}`, true)
          },
        },
        { ...s, username: creds.username, password: creds.password },
        this.#cfg.turn,
      )
      const tunnel = this.#d.tunnel()
      tunnel?.setRelayDemux({ address: s.address, port: s.port, offer: (m, deliver) => t.offer(m, deliver) })
      try {
        const relayed = await t.allocate()
        if (!this.#wanted || this.#closed) {
          tunnel?.setRelayDemux(undefined)
          await t.close()
          return true
        }
        this.#turn = t
        this.#cached = { servers, creds }
        this.#lastError = undefined
        log.info('relay.allocated', {
          server: `${s.address}:${s.port}`,
          relayed: `${relayed.address}:${relayed.port}`,
        })
        for (const [host, ep] of this.#peers) this.#bind(host, ep)
        this.#d.onRelay(relayed)
        return true
      } catch (e) {
        tunnel?.setRelayDemux(undefined)
        await t.close()
        this.#lastError = (e as Error).message
        log.warn('relay.allocate_failed', { server: `${s.address}:${s.port}`, err: (e as Error).message })
      }
    }
    return false
  }

  #scheduleRetry(ms = RELAY_RETRY_MS): void {
    if (!this.#wanted || this.#closed || this.#retry !== undefined) return
    this.#retry = this.#d.clock.setTimeout(() => {
      this.#retry = undefined
      this.#start()
    }, ms)
  }

  async #release(why: string, retry = false): Promise<void> {
    const t = this.#turn
    this.#turn = undefined
    if (!t) return
    const tunnel = this.#d.tunnel()
    tunnel?.setRelayDemux(undefined)
    for (const ep of this.#peers.values()) tunnel?.setRelayRoute(ep, undefined)
    this.#d.log.info('relay.released', { why })
    this.#d.onRelay(undefined)
    await t.close()
    if (retry) this.#scheduleRetry()
  }

  /**
   * Our network changed: the allocation belongs to the old 5-tuple (the server would answer 437), so it is
   * dropped without waiting (a best-effort delete in the background) and, if still wanted, made again at once.
   */
  networkChanged(): void {
    const t = this.#turn
    if (!t || this.#closed) return
    this.#turn = undefined
    const tunnel = this.#d.tunnel()
    tunnel?.setRelayDemux(undefined)
    for (const ep of this.#peers.values()) tunnel?.setRelayRoute(ep, undefined)
    this.#d.log.info('relay.released', { why: 'network change' })
    this.#d.onRelay(undefined)
    void t.close()
    this.#start()
  }

  /** `host` is reached through our allocation at `ep` (undefined: not, or no longer). */
  peer(host: string, ep: AddrPort | undefined): void {
    const old = this.#peers.get(host)
    if (same(old, ep)) return
    if (old) {
      this.#peers.delete(host)
      if (![...this.#peers.values()].some((x) => same(x, old))) {
        this.#turn?.removePeer(old)
        this.#d.tunnel()?.setRelayRoute(old, undefined)
      }
    }
    if (!ep) return
    this.#peers.set(host, { address: ep.address, port: ep.port })
    if (this.#turn) this.#bind(host, ep)
  }

  #bind(host: string, ep: AddrPort): void {
    this.#turn?.addPeer(ep).catch((e: Error) => {
      this.#d.log.warn('relay.peer_failed', { host, peer: `${ep.address}:${ep.port}`, err: e.message })
    })
  }

  status(): unknown {
    return {
      wanted: this.#wanted,
      allocation: this.#turn ? this.#turn.status() : null,
      peers: Object.fromEntries([...this.#peers].map(([h, ep]) => [h, `${ep.address}:${ep.port}`])),
      lastError: this.#lastError ?? null,
    }
  }

  /** Deletes the allocation (while the socket still works) and stops retrying. */
  async close(): Promise<void> {
    this.#closed = true
    this.#d.clock.clearTimeout(this.#retry)
    await this.#attempt?.catch(() => {})
    const t = this.#turn
    this.#turn = undefined
    if (t) {
      this.#d.tunnel()?.setRelayDemux(undefined)
      await t.close()
    }
  }
}
