// The PortMapper: one UDP (or TCP) port mapped on the default gateway, kept alive, re-made when the gateway
// forgets it, and reported. Tries PCP (RFC 6887), then NAT-PMP (RFC 6886), then UPnP IGD, only when the
// primary IPv4 address is private. Modelled on tailscale's net/portmapper, one protocol per file. Probing
// asks all three at once and keeps that order as a preference (probe.ts).
// The state machine and its diagram are in mapper-state.ts.

import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { AnnouncementListener } from './announcements.js'
import { PortmapAbortedError } from './errors.js'
import { isPrivateIPv4 } from './ip.js'
import { type PortMapEvent, type PortMapInput, type PortMapState, stepPortMap } from './mapper-state.js'
import { NATPMP_ANNOUNCE_GROUP, NATPMP_ANNOUNCE_PORT, NATPMP_PORT, NatPmpClient } from './natpmp.js'
import { LinuxNetworkInfo, type NetworkInfo, type PrimaryNetwork } from './netinfo.js'
import { PcpClient } from './pcp.js'
import { probeInParallel } from './probe.js'
import { SSDP_GROUP, SSDP_PORT } from './ssdp.js'
import {
  type GatewayAnnouncement,
  type MappingClient,
  type MapRequest,
  type MapResult,
  type PortmapProtocol,
  type PortmapSockets,
  type RetrySchedule,
  RFC6886_RETRY,
  SystemPortmapSockets,
  type TransportProtocol,
} from './types.js'
import { type HttpFn, UpnpClient } from './upnp.js'

export type { PortMapChangeReason, PortMapEvent, PortMapState } from './mapper-state.js'

export interface PortMapperDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  /** @default new SystemPortmapSockets() (node:dgram) */
  readonly sockets?: PortmapSockets
  /** @default LinuxNetworkInfo (/proc/net/route + os.networkInterfaces()) */
  readonly network?: NetworkInfo
  /** @default node:http */
  readonly http?: HttpFn
}

export interface PortMapperOptions {
  /** The local port to map (the agent's shared UDP port). */
  readonly internalPort: number
  /** @default 'udp' */
  readonly transport?: TransportProtocol
  /** Requested lifetime. @default 3600 */
  readonly lifetimeSec?: number
  /** Protocols to try, in order. @default ['pcp', 'natpmp', 'upnp'] */
  readonly protocols?: readonly PortmapProtocol[]
  /** Renewals and deletes: RFC 6886 3.1. @default { initialMs: 250, maxTries: 9 } */
  readonly retry?: RetrySchedule
  /**
   * Sends per protocol while probing (and for the first MAP), on the same schedule: a gateway that does not
   * speak a protocol must not hold us up for RFC 6886's full 127 s. @default 4 (gives up after 3.75 s)
   */
  readonly probeMaxTries?: number
  /** Protocols are probed at once; an answer waits this long for the ones preferred to it. @default 500 */
  readonly probeGraceMs?: number
  /** Sends of the delete on stop(). @default 3 */
  readonly stopMaxTries?: number
  /** NAT-PMP and PCP server port. @default 5351 */
  readonly gatewayPort?: number
  /** SSDP port of the gateway, and of the NOTIFY listener. @default 1900 */
  readonly ssdpPort?: number
  /** null: M-SEARCH unicast only (tests on loopback). @default 239.255.255.250 */
  readonly ssdpMulticastGroup?: string | null
  /** Listen for the gateway's SSDP NOTIFY (239.255.255.250, ssdpPort) while UPnP may be used. @default true */
  readonly listenSsdpNotify?: boolean
  /** Where NAT-PMP and PCP announcements arrive. @default 5350 */
  readonly announcePort?: number
  /** null: no announcement listener. @default 224.0.0.1 */
  readonly announceGroup?: string | null
  /**
   * Random delay before acting on an announcement (RFC 6887 14.1.3 asks up to 5 s so a LAN's hosts do not
   * answer at once; we keep it short so a restart is repaired within the 5 s). @default 500
   */
  readonly announceJitterMaxMs?: number
  /** Probe again this long after finding no mapping service. @default 60000 */
  readonly reprobeMs?: number
  readonly onChange?: (ev: PortMapEvent) => void
}

const DEFAULT_PROTOCOLS: readonly PortmapProtocol[] = ['pcp', 'natpmp', 'upnp']
const DEFAULT_LIFETIME_SEC = 3600
const DEFAULT_PROBE_TRIES = 4
const DEFAULT_PROBE_GRACE_MS = 500
const DEFAULT_STOP_TRIES = 3
const DEFAULT_ANNOUNCE_JITTER_MS = 500
const DEFAULT_REPROBE_MS = 60_000
const MIN_RENEW_MS = 1000
const MS_PER_SEC = 1000
const HALF = 2

type Op = (gen: number) => Promise<void>

export class PortMapper {
  readonly #clock: Clock
  readonly #random: Random
  readonly #log: Logger
  readonly #sockets: PortmapSockets
  readonly #network: NetworkInfo
  readonly #http: HttpFn | undefined
  readonly internalPort: number
  readonly transport: TransportProtocol
  readonly lifetimeSec: number
  readonly protocols: readonly PortmapProtocol[]
  readonly retry: RetrySchedule
  readonly probeMaxTries: number
  readonly probeGraceMs: number
  readonly stopMaxTries: number
  readonly gatewayPort: number
  readonly ssdpPort: number
  readonly ssdpMulticastGroup: string | null
  readonly listenSsdpNotify: boolean
  readonly announcePort: number
  readonly announceGroup: string | null
  readonly announceJitterMaxMs: number
  readonly reprobeMs: number
  readonly #onChange: ((ev: PortMapEvent) => void) | undefined

  #state: PortMapState = { kind: 'probing' }
  #gen = 0
  #queue: Promise<void> = Promise.resolve()
  #stopped = false
  /** The last ssdp:alive acted on: its location and BOOTID.UPNP.ORG. */
  #lastAlive: string | undefined
  #net: PrimaryNetwork | undefined
  #client: MappingClient | undefined
  /** Clients being probed (cancelled by stop/refresh). */
  #candidates: MappingClient[] = []
  #timer: TimerHandle | undefined
  readonly #listener: AnnouncementListener

  constructor(deps: PortMapperDeps, opts: PortMapperOptions) {
    this.#clock = deps.clock
    this.#random = deps.random
    this.#log = deps.log
    this.#sockets = deps.sockets ?? new SystemPortmapSockets()
    this.#network = deps.network ?? new LinuxNetworkInfo()
    this.#http = deps.http
    this.internalPort = opts.internalPort
    this.transport = opts.transport ?? 'udp'
    this.lifetimeSec = opts.lifetimeSec ?? DEFAULT_LIFETIME_SEC
    this.protocols = opts.protocols ?? DEFAULT_PROTOCOLS
    this.retry = opts.retry ?? RFC6886_RETRY
    this.probeMaxTries = opts.probeMaxTries ?? DEFAULT_PROBE_TRIES
    this.probeGraceMs = opts.probeGraceMs ?? DEFAULT_PROBE_GRACE_MS
    this.stopMaxTries = opts.stopMaxTries ?? DEFAULT_STOP_TRIES
    this.gatewayPort = opts.gatewayPort ?? NATPMP_PORT
    this.ssdpPort = opts.ssdpPort ?? SSDP_PORT
    this.ssdpMulticastGroup = opts.ssdpMulticastGroup === undefined ? SSDP_GROUP : opts.ssdpMulticastGroup
    this.listenSsdpNotify = opts.listenSsdpNotify ?? true
    this.announcePort = opts.announcePort ?? NATPMP_ANNOUNCE_PORT
    this.announceGroup = opts.announceGroup === undefined ? NATPMP_ANNOUNCE_GROUP : opts.announceGroup
    this.announceJitterMaxMs = opts.announceJitterMaxMs ?? DEFAULT_ANNOUNCE_JITTER_MS
    this.reprobeMs = opts.reprobeMs ?? DEFAULT_REPROBE_MS
    this.#onChange = opts.onChange
    this.#listener = new AnnouncementListener(
      { sockets: this.#sockets, log: this.#log },
      {
        announceGroup: this.announceGroup,
        announcePort: this.announcePort,
        ssdpPort: this.listenSsdpNotify && this.protocols.includes('upnp') ? this.ssdpPort : null,
        accept: (from) => from.address === this.#net?.gateway,
        onAnnouncement: (a) => this.#onAnnouncement(a),
      },
    )
  }

  /** Announcements heard from the gateway and acted on, by kind. */
  get announcements(): ReadonlyMap<GatewayAnnouncement['kind'], number> {
    return this.#listener.counts
  }

  get state(): PortMapState {
    return this.#state
  }

  /** The client in use (tests read its counters). */
  get client(): MappingClient | undefined {
    return this.#client
  }

  /** Probes and resolves once the state is mapped, public or nat-without-mapping. */
  start(): Promise<void> {
    return this.#enqueue((gen) => this.#probe(gen, false))
  }

  /**
   * Call on a network change: if the primary address and gateway are the same, renew at once (which also
   * verifies the mapping); otherwise drop the old client and probe again.
   */
  refresh(): Promise<void> {
    this.#gen++
    this.#cancelInFlight()
    return this.#enqueue(async (gen) => {
      const net = await this.#network.primary()
      if (gen !== this.#gen) return
      const same = net && this.#net && net.address === this.#net.address && net.gateway === this.#net.gateway
      if (same && this.#client && this.#state.kind === 'mapped') return this.#renew(gen)
      await this.#dropClient()
      this.#apply({ type: 'network-changed' })
      await this.#probe(gen, false, net)
    })
  }

  /** Deletes the mapping (a few tries), closes every socket and timer. The mapper is unusable afterwards. */
  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#gen++
    this.#clock.clearTimeout(this.#timer)
    this.#cancelInFlight()
    await this.#queue
    const client = this.#client
    if (client && this.#state.kind === 'mapped') {
      try {
        await client.unmap(this.#request(), { maxTries: this.stopMaxTries })
        this.#log.info('portmap.deleted', { protocol: client.protocol })
      } catch (e) {
        this.#log.warn('portmap.delete-failed', { protocol: client.protocol, error: String(e) })
      }
    }
    await this.#dropClient()
    await this.#listener.close()
  }

  #cancelInFlight(): void {
    this.#client?.cancel()
    for (const c of this.#candidates) c.cancel()
  }

  #enqueue(op: Op): Promise<void> {
    const gen = this.#gen
    const run = async (): Promise<void> => {
      if (this.#stopped || gen !== this.#gen) return
      try {
        await op(gen)
      } catch (e) {
        if (!(e instanceof PortmapAbortedError)) this.#log.error('portmap.op-failed', { error: String(e) })
      }
    }
    const p = this.#queue.then(run)
    this.#queue = p
    return p
  }

  #request(): MapRequest {
    return {
      protocol: this.transport,
      internalAddress: this.#net?.address ?? '0.0.0.0',
      internalPort: this.internalPort,
      suggestedExternalPort: this.internalPort,
      lifetimeSec: this.lifetimeSec,
    }
  }

  #makeClient(protocol: PortmapProtocol, gateway: string, address: string): MappingClient {
    const base = { clock: this.#clock, log: this.#log.child({ portmap: protocol }), sockets: this.#sockets }
    const retry = this.retry
    switch (protocol) {
      case 'pcp':
        return new PcpClient(
          { ...base, random: this.#random },
          { gateway, internalAddress: address, port: this.gatewayPort, retry },
        )
      case 'natpmp':
        return new NatPmpClient(base, { gateway, port: this.gatewayPort, retry })
      case 'upnp':
        return new UpnpClient(
          { ...base, random: this.#random, ...(this.#http ? { http: this.#http } : {}) },
          {
            gateway,
            interfaceAddress: address,
            ssdpPort: this.ssdpPort,
            ssdpMulticastGroup: this.ssdpMulticastGroup,
            retry,
          },
        )
    }
  }

  async #probe(gen: number, afterLoss: boolean, known?: PrimaryNetwork): Promise<void> {
    const net = known ?? (await this.#network.primary())
    if (gen !== this.#gen) return
    this.#net = net
    if (!net) {
      this.#apply({ type: 'no-mapping', afterLoss })
      return
    }
    if (!isPrivateIPv4(net.address)) {
      await this.#listener.close()
      this.#apply({ type: 'public', address: net.address })
      return
    }
    const gateway = net.gateway
    if (!gateway) {
      this.#apply({ type: 'no-mapping', address: net.address, afterLoss })
      return
    }
    await this.#listener.listen(net.address)
    if (gen !== this.#gen) return
    const req = this.#request()
    const candidates = this.protocols.map((p) => this.#makeClient(p, gateway, net.address))
    this.#candidates = candidates
    const answered = await probeInParallel({ clock: this.#clock, log: this.#log }, candidates, {
      maxTries: this.probeMaxTries,
      graceMs: this.probeGraceMs,
    })
    this.#candidates = []
    let mapped: { client: MappingClient; r: MapResult } | undefined
    for (const client of answered) {
      if (gen !== this.#gen || mapped) break
      this.#client = client
      try {
        mapped = { client, r: await client.map(req, { maxTries: this.probeMaxTries }) }
      } catch (e) {
        this.#client = undefined
        if (!(e instanceof PortmapAbortedError))
          this.#log.info('portmap.map-failed', { protocol: client.protocol, gateway, error: String(e) })
      }
    }
    await Promise.all(candidates.filter((c) => c !== mapped?.client).map((c) => c.close()))
    if (gen !== this.#gen) return
    if (mapped) {
      const { client, r } = mapped
      this.#log.info('portmap.mapped', {
        protocol: client.protocol,
        gateway,
        external: `${r.external.address}:${r.external.port}`,
      })
      this.#mapped('mapped', client, gateway, r, afterLoss)
      return
    }
    this.#apply({ type: 'no-mapping', address: net.address, gateway, afterLoss })
    this.#schedule(this.reprobeMs, (g) => this.#probe(g, false))
  }

  #mapped(type: 'mapped' | 'renewed', client: MappingClient, gateway: string, r: MapResult, afterLoss = false): void {
    const { protocol } = client
    const input = {
      type,
      protocol,
      gateway,
      internalPort: this.internalPort,
      result: r,
      nowMs: this.#clock.now(),
      afterLoss,
    }
    this.#apply(input)
    const lifetimeMs = (r.lifetimeSec || this.lifetimeSec) * MS_PER_SEC
    this.#schedule(Math.max(MIN_RENEW_MS, lifetimeMs / HALF), (g) => this.#renew(g))
  }

  /** RFC 6886 3.3 / RFC 6887 11.2.1: the same request again; the answer tells whether the gateway forgot us. */
  async #renew(gen: number): Promise<void> {
    const client = this.#client
    const prev = this.#state
    const gateway = this.#net?.gateway
    if (!client || prev.kind !== 'mapped' || !gateway) return this.#probe(gen, false)
    this.#clock.clearTimeout(this.#timer)
    try {
      const r = await client.map(this.#request())
      if (gen !== this.#gen) return
      this.#log.debug('portmap.renewed', { protocol: client.protocol, lifetimeSec: r.lifetimeSec })
      this.#mapped('renewed', client, gateway, r)
    } catch (e) {
      if (gen !== this.#gen || e instanceof PortmapAbortedError) return
      this.#log.warn('portmap.renew-failed', { protocol: client.protocol, error: String(e) })
      await this.#dropClient()
      await this.#probe(gen, true)
    }
  }

  #schedule(delayMs: number, op: Op): void {
    this.#clock.clearTimeout(this.#timer)
    if (this.#stopped) return
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      void this.#enqueue(op)
    }, delayMs)
  }

  async #dropClient(): Promise<void> {
    this.#clock.clearTimeout(this.#timer)
    const c = this.#client
    this.#client = undefined
    if (c) await c.close()
  }

  /** Runs the state machine (mapper-state.ts) and reports the change, if any. */
  #apply(input: PortMapInput): void {
    const previous = this.#state
    const { state, reason } = stepPortMap(previous, input)
    this.#state = state
    if (!reason) return
    const ev: PortMapEvent = { reason, state, previous }
    this.#log.info('portmap.state', {
      reason,
      kind: state.kind,
      ...(state.kind === 'mapped'
        ? { protocol: state.protocol, external: `${state.external.address}:${state.external.port}` }
        : {}),
    })
    try {
      this.#onChange?.(ev)
    } catch (e) {
      this.#log.error('portmap.on-change-threw', { error: String(e) })
    }
  }

  #onAnnouncement(a: GatewayAnnouncement): void {
    if (this.#stopped || a.kind === 'ssdp-byebye') return
    if (a.kind === 'ssdp-alive') {
      // An IGD repeats ssdp:alive every notify interval (miniupnpd: 30 s, several datagrams each time) while it
      // runs; acting on each one renewed the mapping (and, for UPnP, fetched the description again) every 30 s
      // on an idle host. UDA 1.1 BOOTID.UPNP.ORG changes only when the device restarts: act on a new one (and on
      // the first one heard, and on every alive without one, as before).
      const key = `${a.location} ${a.bootId ?? ''}`
      if (a.bootId !== undefined && key === this.#lastAlive) return
      this.#lastAlive = key
    }
    if (a.kind === 'ssdp-alive' && this.#client instanceof UpnpClient) this.#client.forget(a.location)
    const ours =
      (a.kind === 'pcp-announce' && this.#client?.protocol === 'pcp') ||
      (a.kind === 'natpmp-address' && this.#client?.protocol === 'natpmp')
    if (ours && 'epochSec' in a) this.#client?.announced?.(a.epochSec)
    const jitter = this.announceJitterMaxMs > 0 ? this.#random.int(this.announceJitterMaxMs + 1) : 0
    if (this.#state.kind === 'mapped') this.#schedule(jitter, (g) => this.#renew(g))
    else if (this.#state.kind === 'nat-without-mapping') this.#schedule(jitter, (g) => this.#probe(g, false))
  }
}
