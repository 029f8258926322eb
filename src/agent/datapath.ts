// The agent's data path (issue 7): the peers learned from DNS (peers.ts) drive the tunnel (src/tunnel/) and the
// local resolver (resolver.ts); IKEv2 (src/ike/) keys the tunnel on the first packet to a peer.
//
//   DNS watch event -> PeerManager (SRV -> A/AAAA) -> peer ULA + endpoint
//        -> tun route for the ULA (/128), tunnel.addPeer / setPeerEndpoint, resolver table
//   first packet into the TUN for a peer -> tunnel onNoSa -> IKE connect -> Child SA keys -> tunnel.installChildSa
//   IKE authentication (issue 8): RFC 7427 signatures with the host key (loadOrCreateHostKey in the state dir),
//        whose public half we publish as TXT at H.D (hostKeyRecord, own Publisher: leased, refreshed, withdrawn);
//        peers' keys come from their H.D TXT (PeerManager); --ike-auth psk: the PSK derived from the account secret
//   a peer's key record changes (revocation) -> IkeEngine.revalidate() at once (and every 30 s anyway)
//   stopping -> IKE Deletes to every peer while the socket works, key record withdrawn (Agent.onStopping)
//   our network changed -> IKE MOBIKE UPDATE_SA_ADDRESSES to every peer (the DNS path is the fallback)
//   authenticated ESP from a new address -> the tunnel moves the endpoint (NAT rebinding), IKE follows
//
// Endpoint rule: a peer publishing nat=unmapped (private host, no mapping protocol: its A/SRV are its LAN address
// and local port) cannot be reached unsolicited from elsewhere; its DNS endpoint never replaces an endpoint the
// tunnel already has (learned from its authenticated packets). When it also publishes stun=ADDR:PORT (hole
// punching, punch.ts and docs/punch.md), that endpoint is its tunnel endpoint, and both sides send a burst of NAT
// keepalives to each other whenever the peer's endpoint or our own NAT view changes.
import type { TsigKey, UpdateSink } from '../dns/client/update.js'
import type { IkeEngine } from '../ike/engine.js'
import type { HostKey } from '../ike/hostkey.js'
import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import {
  choosePath,
  type NatView,
  type PathDecision,
  type Puncher,
  pathLabel,
  type RelayConfig,
  type RelayManager,
} from '../traversal/index.js'
import type { StunDemux } from '../tunnel/receive.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import { normUla, type Peer, PeerManager, type SignedQuery, type WatchFactory } from './peers.js'
import { Publisher } from './publisher.js'
import { fq, hostKeyRecord } from './records.js'
import { startTunnel, type TunnelParts, type TunnelThreads } from './tunnel-start.js'

export interface DatapathOptions {
  readonly domain: string
  readonly hostname: string
  readonly localUla: string
  /** TUN device name; undefined: no tunnel (peers and resolver only). */
  readonly tun: string | undefined
  /** The account's TSIG key: the IKE PSK is derived from its secret (src/ike/auth.ts derivePsk). */
  readonly key: TsigKey
  /** Our local IPv4 address and UDP port (IKE NAT detection). */
  readonly local: () => { address: string; port: number }
  /** How we authenticate in IKE. @default 'signature' */
  readonly ikeAuth?: IkeAuth
  /** The host key (signature auth); its public half is published at H.D. */
  readonly hostKey?: HostKey
  /** The provider zone (UPDATE zone section) and lease/TTL for the key record. */
  readonly zone?: string
  readonly leaseSec?: number
  readonly ttlSec?: number
  /** MOBIKE (RFC 4555). @default true */
  readonly mobike?: boolean
  /** The tunnel's threads (docs/tunnel.md); undefined: AUTOTUNNEL_TUNNEL_THREADS, else the default 'off'. */
  readonly tunnelThreads?: TunnelThreads
  /** Our own NAT view (nat=, and the STUN result when unmapped): the agent's selfNat. */
  readonly selfNat?: () => NatView | undefined
  /** The agent's STUN client: answers that reach the tunnel's receive path go to it. */
  readonly stunDemux?: StunDemux
  /** TURN relay fallback (docs/relay.md); undefined: none (nothing relay-related runs). */
  readonly relay?: RelayConfig
  /** Our relayed address changed: the agent publishes it (TXT relay=) or withdraws it. */
  readonly onRelay?: (relayed: { address: string; port: number } | undefined) => void
}

/** --ike-auth: signatures with the per-host key (default), or the PSK from the account secret (interop/fallback). */
export type IkeAuth = 'signature' | 'psk'

export interface DatapathDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  /** The agent's bound UDP socket (the port-mapped one): ESP-in-UDP and IKE share it. */
  readonly udp: DatagramSocket
  readonly query: SignedQuery
  readonly watch: WatchFactory
  /** Where the key record is published (the agent's update client); none: not published. */
  readonly sink?: UpdateSink
}

type Ep = { readonly address: string; readonly port: number }
export type Primary = { readonly ipv4?: string | undefined; readonly gateway?: string | undefined }

/** "ipv4/gateway" once both exist (MOBIKE before the default route exists would be lost), else undefined. */
function primaryKey(p: Primary | undefined): string | undefined {
  return p?.ipv4 && p.gateway ? `${p.ipv4}/${p.gateway}` : undefined
}

/**
 * Whether a peer's endpoint from DNS replaces the one the tunnel has: 'set' when it differs, 'same', 'none' when
 * DNS has none, and 'keep' when the peer publishes nat=unmapped (its LAN address, unreachable from elsewhere)
 * while the tunnel already has an endpoint (learned from the peer's authenticated packets or MOBIKE).
 */
export function dnsEndpointDecision(
  current: Ep | undefined,
  dns: Ep | undefined,
  nat: string | undefined,
): 'set' | 'same' | 'none' | 'keep' {
  if (!dns) return 'none'
  if (current && current.address === dns.address && current.port === dns.port) return 'same'
  if (nat === 'unmapped' && current) return 'keep'
  return 'set'
}

export class Datapath {
  readonly peers: PeerManager
  readonly #d: DatapathDeps
  readonly #o: DatapathOptions
  /** The agent's name service (local-dns.ts, started beside the data path): shown in status as `resolver`. */
  resolverStatus: () => unknown = () => null
  #t: TunnelParts | undefined
  /** ULAs routed into the TUN, by host. */
  readonly #routed = new Map<string, string>()
  /** "ipv4/gateway" of the primary interface when the data path last saw it. */
  #lastPrimary: string | undefined
  /** Publishes our IKE key record (signature auth). */
  #keyPublisher: Publisher | undefined
  /** NAT keepalive bursts toward peers we punch to (created with the tunnel). */
  #puncher: Puncher | undefined
  /** "host|reason" of peers logged as needing a relay (logged once, again only after the reason changes). */
  readonly #relayLogged = new Map<string, string>()
  #stopped = false
  readonly ikeAuth: IkeAuth
  /** TURN relay fallback (created with the tunnel when configured). */
  #relay: RelayManager | undefined

  constructor(deps: DatapathDeps, opts: DatapathOptions) {
    this.#d = deps
    this.#o = opts
    this.ikeAuth = opts.ikeAuth ?? 'signature'
    if (this.ikeAuth === 'signature' && opts.tun && !opts.hostKey) throw new TypeError('signature auth needs hostKey')
    this.peers = new PeerManager(
      { query: deps.query, watch: deps.watch, clock: deps.clock, log: deps.log.child({ c: 'peers' }) },
      { domain: opts.domain, hostname: opts.hostname },
    )
  }

  get tunnel(): Tunnel | undefined {
    return this.#t?.tunnel
  }

  /** The IKE engine (with the tunnel): `autotunnel ping` runs its liveness checks on it (ping.ts). */
  get ike(): IkeEngine | undefined {
    return this.#t?.engine
  }

  async start(): Promise<void> {
    if (this.#o.tun) this.#t = await this.#startTunnel(this.#o.tun)
    if (this.#relay) {
      const self = this.#o.selfNat?.()
      this.#relay.want(self?.nat === 'unmapped' && self.mapping === 'symmetric')
    }
    this.peers.onChange((p, prev) => this.#peerChanged(p, prev))
    this.peers.onGone((p) => this.#peerGone(p))
    this.peers.onKeys((p) => this.#keysChanged(p))
    this.#publishKey()
    void this.peers.watchHostList()
  }

  async #startTunnel(name: string): Promise<TunnelParts> {
    const parts = await startTunnel(name, this.#d, this.#o, {
      peers: this.peers,
      tunnel: () => this.#t?.tunnel,
      endpointOf: (p) => this.#path(p).endpoint,
      ikeAuth: this.ikeAuth,
    })
    this.#relay = parts.relay
    this.#puncher = parts.puncher
    return parts
  }

  #peerChanged(p: Peer, prev: Peer | undefined): void {
    const t = this.#t
    if (!t || !p.ula) return
    const { log } = this.#d
    const oldUla = this.#routed.get(p.host)
    if (oldUla && normUla(oldUla) !== normUla(p.ula)) {
      // The peer restarted with a new identity: its old SAs and route go.
      t.tunnel.removePeer(oldUla)
      t.tun.removeRoute(oldUla)
      void t.engine.disconnect(p.fqdn, 'new identity').catch(() => {})
    }
    if (this.#routed.get(p.host) !== p.ula) {
      t.tun.addRoute(p.ula)
      this.#routed.set(p.host, p.ula)
    }
    const path = this.#path(p)
    const dial = path.endpoint
    this.#punchOrReport(p, path)
    this.#relay?.peer(p.host, path.viaRelay ? dial : undefined)
    // IKE may have added the peer already (a responder learns the initiator before its watch event).
    const existing = t.tunnel.peers().find((x) => normUla(x.ula) === normUla(p.ula ?? ''))
    if (!existing) {
      t.tunnel.addPeer({ ula: p.ula, ...(dial ? { endpoint: dial } : {}) })
      log.info('datapath.peer_added', { host: p.host, ula: p.ula, endpoint: dial ?? null, viaStun: path.viaStun })
      return
    }
    const decision = dnsEndpointDecision(existing.endpoint, dial, path.viaStun ? 'stun' : p.nat)
    if (decision === 'keep') log.info('datapath.endpoint_kept', { host: p.host, dns: dial, kept: existing.endpoint })
    if (decision !== 'set' || !dial) return
    t.tunnel.setPeerEndpoint(p.ula, dial)
    t.engine.setPeerEndpoint(p.fqdn, dial)
    log.info('datapath.endpoint_from_dns', {
      host: p.host,
      endpoint: dial,
      viaStun: path.viaStun,
      previous: prev?.endpoint ?? null,
    })
  }

  /** How we reach `p` (punch.ts choosePath) given our own NAT view now. */
  #path(p: Peer): PathDecision {
    return choosePath(this.#o.selfNat?.(), p)
  }

  /** A keepalive burst when the path needs one; a path that needs a relay is logged once (not per packet). */
  #punchOrReport(p: Peer, path: PathDecision): void {
    if (path.punch && path.endpoint) this.#puncher?.punch(p.host, path.endpoint)
    else this.#puncher?.stop(p.host)
    if (!path.relay) {
      this.#relayLogged.delete(p.host)
      return
    }
    if (this.#relayLogged.get(p.host) === path.relay) return
    this.#relayLogged.set(p.host, path.relay)
    this.#d.log.warn('punch.needs_relay', { host: p.host, reason: path.relay, peerStun: p.stun ?? null })
  }

  /** Our nat=/stun=/mapping= changed (agent.onSelfNatChange): every peer's path again, punching where needed. */
  selfNatChanged(): void {
    const self = this.#o.selfNat?.()
    this.#relay?.want(self?.nat === 'unmapped' && self.mapping === 'symmetric')
    for (const p of this.peers.peers()) if (p.ula) this.#peerChanged(p, p)
  }

  /** Our key record (signature auth): TXT at H.D with a lease, refreshed like the agent's other records. */
  #publishKey(): void {
    const { hostKey, zone } = this.#o
    const sink = this.#d.sink
    if (this.ikeAuth !== 'signature' || !hostKey || !zone || !sink) return
    void import('../ike/hostkey.js').then(({ encodePublicKeyRecord }) => {
      if (this.#stopped) return
      const p = new Publisher(
        { clock: this.#d.clock, log: this.#d.log.child({ c: 'publish-key' }), sink },
        this.#o.leaseSec ? { leaseSec: this.#o.leaseSec } : {},
      )
      this.#keyPublisher = p
      const record = encodePublicKeyRecord(hostKey.publicKey)
      p.set(fq(zone), [
        hostKeyRecord({ hostname: this.#o.hostname, domain: this.#o.domain, record, ttlSec: this.#o.ttlSec ?? 60 }),
      ])
      this.#d.log.info('datapath.key_published', { name: `${this.#o.hostname}.${this.#o.domain}`, alg: hostKey.alg })
    })
  }

  /** Refreshes the key record's lease now (the agent's server went away: see Publisher.refreshNow). */
  refreshPublications(): void {
    this.#keyPublisher?.refreshNow()
  }

  /** A peer's key records changed: revocation takes effect now rather than at the next 30 s revalidation. */
  #keysChanged(p: Peer): void {
    this.#d.log.info('datapath.peer_keys', { host: p.host, keys: p.publicKeys.length })
    void this.#t?.engine.revalidate().catch(() => {})
  }

  /**
   * The agent is stopping (before it withdraws its records and closes its socket): IKE Deletes to every peer
   * (clean) so they drop our SAs at once, and our key record withdrawn.
   */
  async stopping(clean: boolean): Promise<void> {
    this.#stopped = true
    const kp = this.#keyPublisher
    await Promise.allSettled([this.#t?.engine.close({ deletePeers: clean }), clean ? kp?.withdraw() : kp?.stop()])
    // The allocation goes last (IKE Deletes to relayed peers travel through it), while the socket still works.
    await this.#relay?.close()
  }

  #peerGone(p: Peer): void {
    const t = this.#t
    const ula = this.#routed.get(p.host)
    this.#routed.delete(p.host)
    if (!t || !ula) return
    this.#relay?.peer(p.host, undefined)
    void t.engine.disconnect(p.fqdn, 'gone').catch(() => {})
    t.tunnel.removePeer(ula)
    t.tun.removeRoute(ula)
    this.#d.log.info('datapath.peer_removed', { host: p.host, ula })
  }

  /**
   * Our network changed (agent.onNetworkChange): MOBIKE to every peer, once we have an address and a default
   * route again (a message sent before the route exists is lost and waits a whole IKE retransmission, 1 s).
   */
  networkChanged(primary: Primary | undefined): void {
    const key = primaryKey(primary)
    this.#d.log.info('datapath.network_change', { ipv4: primary?.ipv4, gateway: primary?.gateway, ready: !!key })
    if (!key || key === this.#lastPrimary) return
    this.#lastPrimary = key
    // DNS Push/LLQ sessions on the old address are dead: open them again (peers.rewatch).
    void this.peers.rewatch()
    this.#relay?.networkChanged()
    this.#t?.engine.updateAddresses().catch((e: Error) => this.#d.log.info('ike.mobike_failed', { err: e.message }))
  }

  /**
   * The gateway restarted (a PCP/NAT-PMP epoch reset: the mapping was made again) or its public address changed:
   * its connection tracking is gone, so the watchers' TCP/TLS sessions to the server, which cross it, are dead
   * without knowing it: no FIN or RST gets through a NAT that forgot them, and the next DSO keepalive may be a
   * minute away, during which a peer's new address or ULA would go unseen. Opens them again (peers.rewatch).
   */
  gatewayStateLost(reason: string): void {
    this.#d.log.info('datapath.gateway_state_lost', { reason })
    void this.peers.rewatch()
  }

  /** The primary interface at start, so the first change event is compared with it. */
  notePrimary(primary: Primary | undefined): void {
    this.#lastPrimary = primaryKey(primary)
  }

  /** The peer table of `autotunnel status`. */
  status(): unknown[] {
    const tunnelPeers = this.#t?.tunnel.peers() ?? []
    const sas = this.#t?.engine.list() ?? []
    return this.peers.peers().map((p) => {
      const tp = p.ula ? tunnelPeers.find((x) => normUla(x.ula) === normUla(p.ula ?? '')) : undefined
      const sa = sas.find((s) => s.peerId.toLowerCase() === p.fqdn)
      const ep = tp?.endpoint ?? p.endpoint
      return {
        name: p.host,
        fqdn: p.fqdn,
        ula: p.ula ?? null,
        endpoint: ep ? `${ep.address}:${ep.port}` : null,
        dnsEndpoint: p.endpoint ? `${p.endpoint.address}:${p.endpoint.port}` : null,
        nat: p.nat ?? null,
        lastHandshake: sa ? new Date(sa.establishedAt).toISOString() : null,
        auth: sa ? sa.peerAuth : null,
        mobike: sa ? sa.mobike : null,
        keys: p.publicKeys.length,
        lastRx: tp?.lastRxMs ? new Date(tp.lastRxMs).toISOString() : null,
        bytesIn: tp?.rxBytes ?? 0,
        bytesOut: tp?.txBytes ?? 0,
        packetsIn: tp?.rxPackets ?? 0,
        packetsOut: tp?.txPackets ?? 0,
        alg: tp?.alg ?? null,
        path: this.#t ? pathLabel(this.#path(p), !!sa) : 'none (no tunnel)',
        stun: p.stun ? `${p.stun.address}:${p.stun.port}` : null,
        mapping: p.mapping ?? null,
        relay: p.relay ? `${p.relay.address}:${p.relay.port}` : null,
        resolvedAt: p.resolvedAt ? new Date(p.resolvedAt).toISOString() : null,
        watch: this.peers.watchMechanisms(p.host),
        lastError: p.lastError ?? null,
      }
    })
  }

  extraStatus(): unknown {
    return {
      ikeAuth: this.ikeAuth,
      hostKey: this.#o.hostKey ? { alg: this.#o.hostKey.alg, published: this.#keyPublisher?.status() ?? null } : null,
      tun: this.#t ? { name: this.#t.tun.name, mtu: this.#t.tun.mtu, counters: this.#t.tunnel.counters() } : null,
      ike: this.#t ? this.#t.engine.stats : null,
      resolver: this.resolverStatus(),
      peerCounters: this.peers.counters,
      punch: this.#puncher ? { ...this.#puncher.counters, active: this.#puncher.active } : null,
      relay: this.#relay ? this.#relay.status() : null,
    }
  }

  async close(): Promise<void> {
    this.#stopped = true
    this.#keyPublisher?.stop()
    this.#puncher?.close()
    await this.#relay?.close()
    await this.peers.close()
    const t = this.#t
    this.#t = undefined
    if (t) {
      await t.engine.close()
      await t.tunnel.close()
    }
  }
}

/** What `autotunnel up` (run.ts) hands over to start the data path next to a started Agent. */
