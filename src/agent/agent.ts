// The host agent (RFC 6281 sections 3 to 6): makes this start's ULA identity, keeps a port mapping on the NAT
// gateway, publishes AAAA/A/TXT/SRV (+ DNS-SD services) with leases, reacts to network changes, and serves the
// control socket. The tunnel (issue 7) attaches to `udp` and listens to `onNetworkChange`.
//
// Change path (RFC 6281 section 5.1): netlink event -> NetMonitor snapshot (50 ms debounce) -> PortMapper.refresh()
// -> new mapping -> reachability() -> Publisher.set() -> one UPDATE replacing the changed RRsets.
import { hostname as osHostname } from 'node:os'
import type { UpdateSink } from '../dns/client/update.js'
import type { Clock, TimerHandle } from '../io/clock.js'
import type { DatagramHandler, DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import { processStats } from '../io/process-stats.js'
import type { Random } from '../io/random.js'
import type { PortMapState } from '../portmap/index.js'
import type { NatProbe, StunDemux } from '../traversal/index.js'
import { type ControlContext, ControlError, type ControlRequest, ControlServer, controlSocketPath } from './control.js'
import { createIdentity, type Identity, saveIdentity } from './identity.js'
import type { NetMonitor, NetState } from './netmon.js'
import { Publisher } from './publisher.js'
import { type Reachability, reachability } from './reachability.js'
import { fq, hostRecords, type ServiceSpec } from './records.js'

export const AGENT_VERSION = '0.1.0'
/**
 * Upper bound on how long a private host waits for the port mapper to settle (mapped, or no protocol answered)
 * before publishing "NAT without mapping". The mapper normally settles first: it probes the three protocols at
 * once and gives up after 3.75 s (docs/portmap.md); this only bounds a mapper that hangs.
 */
export const FIRST_MAPPING_GRACE_MS = 12_000
/** How often an unmapped host asks STUN again (its NAT binding may change without any event here). */
export const STUN_REFRESH_MS = 5 * 60_000

/**
 * The STUN side of an unmapped host (docs/punch.md): `probe()` asks the STUN servers from our shared socket
 * (undefined: none configured or found, or none answered); `demux` picks the answers out of that socket's traffic.
 */
export interface AgentStun {
  readonly demux: StunDemux
  probe(): Promise<NatProbe | undefined>
  close(): void
}

/**
 * What the agent uses of src/portmap/mapper.ts's PortMapper (a structural subset, so tests can fake it).
 * The mapper's `onChange` option must call `Agent.mappingChanged()`.
 */
export interface AgentPortMapper {
  readonly state: PortMapState
  readonly announcements?: ReadonlyMap<string, number>
  start(): Promise<void>
  refresh(): Promise<void>
  /** Deletes the mapping on the gateway and closes sockets and timers. */
  stop(): Promise<void>
}

export interface BrowseResult {
  readonly type: string
  readonly instances: {
    readonly name: string
    readonly host: string
    readonly port: number
    readonly txt: string[]
    readonly addresses: string[]
  }[]
}

export interface AgentConfig {
  readonly stateDir: string
  readonly hostname: string
  /** USER.ZONE */
  readonly domain: string
  /** The zone the UPDATEs name (the provider zone): the domain minus its first label. */
  readonly zone: string
  readonly port: number
  readonly leaseSec: number
  readonly ttlSec: number
  readonly services: readonly ServiceSpec[]
  readonly portmap: boolean
  /** Free-form description of how the update server was reached, for status. */
  readonly serverInfo?: () => unknown
}

export interface AgentDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  readonly net: NetMonitor
  readonly sink: UpdateSink
  readonly udp: DatagramSocket
  readonly mapper?: AgentPortMapper
  readonly browse?: (type: string | undefined) => Promise<BrowseResult[]>
  readonly watchers?: () => unknown
  /** Issue 7's peer table and data path (src/agent/datapath.ts), for status. */
  readonly peers?: () => unknown
  readonly datapath?: () => unknown
  /** STUN for hole punching when no gateway maps a port; absent: nat=unmapped without stun= (issue 6). */
  readonly stun?: AgentStun
}

export type NetworkChangeListener = (net: NetState, reach: Reachability | undefined) => void

/** What this host published about its NAT: nat=, and when unmapped, its STUN result (punch.ts NatView). */
export interface SelfNat {
  readonly nat: string | undefined
  readonly stun: { readonly address: string; readonly port: number } | undefined
  readonly mapping: 'eim' | 'symmetric' | undefined
  /** Our TURN relayed address while we hold an allocation (docs/relay.md). */
  readonly relay?: { readonly address: string; readonly port: number } | undefined
}

export class Agent {
  readonly #d: AgentDeps
  readonly config: AgentConfig
  readonly publisher: Publisher
  #identity: Identity | undefined
  #relay: { readonly address: string; readonly port: number } | undefined
  #control: ControlServer | undefined
  #reach: Reachability | undefined
  #grace: TimerHandle | undefined
  #graceOver = false
  #started = 0
  #stopping: Promise<ShutdownResult> | undefined
  #closing: Promise<void> | undefined
  #downRequested: (() => void) | undefined
  #fatal: string | undefined
  readonly #netListeners: NetworkChangeListener[] = []
  readonly #natListeners: ((s: SelfNat) => void)[] = []
  /** The last STUN result and the local address it was taken from (stale once the address changes). */
  #probe: { result: NatProbe | undefined; local: string; at: number; fresh: boolean } | undefined
  #probing: string | undefined
  #probeTimer: TimerHandle | undefined
  #selfKey = ''
  readonly #stopHooks: ((clean: boolean) => Promise<void>)[] = []
  readonly #commands = new Map<string, (req: ControlRequest) => Promise<unknown>>()
  #datagramHandler: DatagramHandler = () => {}
  readonly udpStats = { rxDatagrams: 0, rxBytes: 0, lastFrom: '' as string, lastAt: 0 }
  /** Resolves when the agent stopped (after `down`, or `shutdown()`). */
  readonly done: Promise<void>

  constructor(deps: AgentDeps, config: AgentConfig) {
    this.#d = deps
    this.config = config
    this.publisher = new Publisher(
      { clock: deps.clock, log: deps.log.child({ c: 'publish' }), sink: deps.sink },
      {
        leaseSec: config.leaseSec,
      },
    )
    this.done = new Promise((resolve) => (this.#downRequested = resolve))
    this.publisher.onFatal((message) => {
      this.#fatal ??= message
      deps.log.error('agent.fatal', { error: message })
      void this.shutdown({ clean: true })
    })
  }

  /** The configuration error that stopped the agent (wrong key, domain not in the account), if one did. */
  get fatalError(): string | undefined {
    return this.#fatal
  }

  get identity(): Identity {
    if (!this.#identity) throw new Error('agent not started')
    return this.#identity
  }
  get reach(): Reachability | undefined {
    return this.#reach
  }
  /** The agent's UDP socket (bound to `--port` by start()): the tunnel sends ESP-in-UDP and IKE on it. */
  get udp(): DatagramSocket {
    return this.#d.udp
  }
  /** Receives every datagram on the agent's port after it is counted (the tunnel's receive path). */
  onDatagram(fn: DatagramHandler): void {
    this.#datagramHandler = fn
  }
  onNetworkChange(fn: NetworkChangeListener): void {
    this.#netListeners.push(fn)
  }
  /** Our published NAT view changed (nat=, stun=, mapping=): the data path punches again. */
  onSelfNatChange(fn: (s: SelfNat) => void): void {
    this.#natListeners.push(fn)
  }
  /** The STUN demultiplexer of the shared port (the tunnel's receiver consults it too), if STUN is configured. */
  get stunDemux(): StunDemux | undefined {
    return this.#d.stun?.demux
  }
  get selfNat(): SelfNat {
    const reach = this.#reach
    const p = this.#currentProbe()
    const relay = reach?.nat === 'unmapped' ? this.#relay : undefined
    return { nat: reach?.nat, stun: p?.reflexive, mapping: p?.mapping, ...(relay ? { relay } : {}) }
  }
  /** Our TURN relayed address (the data path's allocation), published as TXT relay= while nat=unmapped. */
  setRelay(relay: { readonly address: string; readonly port: number } | undefined): void {
    if (this.#relay?.address === relay?.address && this.#relay?.port === relay?.port) return
    this.#relay = relay
    this.#republish('relay')
  }
  /** Runs first when the agent stops, while its socket and mapping still work (IKE sends its Deletes here). */
  onStopping(fn: (clean: boolean) => Promise<void>): void {
    this.#stopHooks.push(fn)
  }
  /** Another control-socket command (e.g. the data path's `revoke`). */
  addCommand(cmd: string, fn: (req: ControlRequest) => Promise<unknown>): void {
    this.#commands.set(cmd, fn)
  }

  async start(): Promise<void> {
    const { clock, log, net, udp } = this.#d
    this.#started = clock.now()
    const state = await net.start()
    this.#identity = createIdentity(
      this.#d,
      state.primary ? { name: state.primary.ifname, mac: state.primary.mac } : undefined,
    )
    await saveIdentity(this.config.stateDir, this.#identity)
    log.info('agent.identity', { ...this.#identity })

    const stun = this.#d.stun?.demux
    udp.onMessage((msg, from) => {
      if (stun !== undefined && stun.outstanding > 0 && stun.offer(msg, from)) return
      this.udpStats.rxDatagrams++
      this.udpStats.rxBytes += msg.length
      this.udpStats.lastFrom = `${from.address}:${from.port}`
      this.udpStats.lastAt = clock.now()
      if (log.enabled('debug')) log.debug('udp.rx', { from: this.udpStats.lastFrom, bytes: msg.length })
      this.#datagramHandler(msg, from)
    })
    const bound = await udp.bind(this.config.port)
    log.info('agent.udp', { port: bound.port })

    this.#control = new ControlServer(
      { log: log.child({ c: 'control' }) },
      controlSocketPath(this.config.stateDir),
      (r, ctx) => this.#handle(r, ctx),
    )
    await this.#control.listen()

    net.onChange((now, before) => this.#networkChanged(now, before))
    void this.#d.mapper?.start()
    this.#armGrace()
    this.#republish('start')
    log.info('agent.up', {
      hostname: this.config.hostname,
      domain: this.config.domain,
      ula: this.#identity.ula,
      socket: this.#control.path,
    })
  }

  #armGrace(): void {
    this.#graceOver = false
    this.#d.clock.clearTimeout(this.#grace)
    this.#grace = this.#d.clock.setTimeout(() => {
      this.#graceOver = true
      this.#republish('mapping-grace')
    }, FIRST_MAPPING_GRACE_MS)
  }

  /** The port mapper's `onChange` hook: a new, changed, re-created or lost mapping. */
  mappingChanged(): void {
    this.#republish('mapping')
  }

  #networkChanged(now: NetState, before: NetState): void {
    const p = now.primary
    const q = before.primary
    const moved = p?.ifname !== q?.ifname || p?.ipv4 !== q?.ipv4 || p?.gateway !== q?.gateway
    this.#d.log.info('agent.network_change', { moved, ipv4: p?.ipv4, gateway: p?.gateway })
    if (moved && this.#d.mapper) {
      this.#armGrace()
      void this.#d.mapper.refresh()
    }
    if (moved) this.#probe = undefined
    this.#republish('network')
    for (const fn of this.#netListeners) fn(now, this.#reach)
  }

  #republish(why: string): void {
    if (this.#stopping) return
    const ms = this.#d.mapper?.state
    const settled = ms?.kind !== 'probing' || this.#graceOver
    const mapping = ms?.kind === 'mapped' ? ms : undefined
    const reach = reachability(this.#d.net.state, mapping, this.config.port, settled)
    this.#reach = reach
    if (!reach) {
      this.#d.log.debug('agent.no_endpoint', { why })
      return
    }
    const probe = reach.nat === 'unmapped' ? this.#currentProbe() : undefined
    if (reach.nat === 'unmapped') this.#maybeProbe(reach.local)
    const id = this.identity
    this.publisher.set(
      fq(this.config.zone),
      hostRecords({
        hostname: this.config.hostname,
        domain: this.config.domain,
        ula: id.ula,
        label: id.label,
        endpoint: reach.endpoint,
        nat: reach.nat,
        stun: probe?.reflexive,
        mapping: probe?.mapping,
        relay: reach.nat === 'unmapped' ? this.#relay : undefined,
        services: this.config.services,
        ttlSec: this.config.ttlSec,
        agentVersion: AGENT_VERSION,
      }),
    )
    const self = this.selfNat
    const key = JSON.stringify(self)
    if (key === this.#selfKey) return
    this.#selfKey = key
    for (const fn of this.#natListeners) fn(self)
  }

  /** The STUN result if it was taken from the address we hold now. */
  #currentProbe(): NatProbe | undefined {
    const p = this.#probe
    return p && p.local === this.#reach?.local ? p.result : undefined
  }

  /** Runs STUN for `local` unless a result for it exists or a run is under way; republishes on a changed answer. */
  #maybeProbe(local: string): void {
    const stun = this.#d.stun
    if (!stun || this.#stopping || this.#probing === local || (this.#probe?.local === local && this.#probe.fresh))
      return
    this.#probing = local
    void stun.probe().then(
      (result) => {
        if (this.#probing === local) this.#probing = undefined
        if (this.#stopping) return
        const { clock, log } = this.#d
        const before = this.#probe?.local === local ? this.#probe.result : undefined
        this.#probe = { result, local, at: clock.now(), fresh: true }
        if (JSON.stringify(before) !== JSON.stringify(result))
          log.info('agent.stun', {
            local,
            reflexive: result ? `${result.reflexive.address}:${result.reflexive.port}` : null,
            mapping: result?.mapping ?? null,
            servers: result?.servers.map((s) => `${s.address}:${s.port}`) ?? [],
          })
        clock.clearTimeout(this.#probeTimer)
        this.#probeTimer = clock.setTimeout(() => {
          this.#probeTimer = undefined
          if (this.#probe) this.#probe.fresh = false
          if (this.#reach?.nat === 'unmapped') this.#maybeProbe(this.#reach.local)
        }, STUN_REFRESH_MS)
        this.#republish('stun')
      },
      () => {
        if (this.#probing === local) this.#probing = undefined
      },
    )
  }

  async #handle(req: ControlRequest, ctx: ControlContext): Promise<unknown> {
    switch (req.cmd) {
      case 'status':
        return this.status()
      case 'down': {
        // Clean up, answer with the outcome, then close the socket (after the answer is written).
        const result = await this.#cleanup(true)
        ctx.afterReply(() => void this.shutdown({ clean: true }))
        return result
      }
      case 'browse': {
        if (!this.#d.browse) throw new ControlError('browse is not available', 'ENOTSUP')
        const type = typeof req.type === 'string' && req.type !== '' ? req.type : undefined
        return this.#d.browse(type)
      }
      default: {
        const extra = this.#commands.get(req.cmd)
        if (extra) return extra(req)
        throw new ControlError(`unknown command ${JSON.stringify(req.cmd)}`, 'EUNKNOWN')
      }
    }
  }

  status(): unknown {
    const { clock, net } = this.#d
    const ms = this.#d.mapper?.state
    const m = ms?.kind === 'mapped' ? ms : undefined
    return {
      version: AGENT_VERSION,
      pid: process.pid,
      host: osHostname(),
      hostname: this.config.hostname,
      domain: this.config.domain,
      uptimeSec: Math.round((clock.now() - this.#started) / 1000),
      identity: this.#identity,
      network: {
        primary: net.state.primary,
        addresses: net.state.addrs,
        changes: net.changes,
      },
      reachability: this.#reach ?? null,
      stun: this.#d.stun
        ? {
            reflexive: this.#currentProbe()?.reflexive ?? null,
            mapping: this.#currentProbe()?.mapping ?? null,
            servers: this.#currentProbe()?.servers ?? [],
            probedAt: this.#probe ? new Date(this.#probe.at).toISOString() : null,
            probing: this.#probing !== undefined,
          }
        : null,
      portMapping: m
        ? {
            protocol: m.protocol,
            external: m.external,
            lifetimeSec: m.lifetimeSec,
            gateway: m.gateway,
            lifetimeLeftSec: Number.isFinite(m.expiresAt)
              ? Math.max(0, Math.round((m.expiresAt - clock.now()) / 1000))
              : null,
          }
        : null,
      portMapper: this.#d.mapper
        ? { state: ms?.kind, announcements: Object.fromEntries(this.#d.mapper.announcements ?? []) }
        : 'disabled',
      udp: { port: this.config.port, ...this.udpStats },
      server: this.config.serverInfo?.() ?? null,
      published: this.publisher.status(),
      watchers: this.#d.watchers?.() ?? [],
      peers: this.#d.peers?.() ?? [],
      datapath: this.#d.datapath?.() ?? null,
      process: processStats(),
    }
  }

  /**
   * Stops the agent. `clean` (down, SIGTERM, SIGINT) deletes the records and the mapping first; without it
   * (tests of a crash) everything is left to expire. Resolves with what the clean-up achieved.
   */
  async shutdown(opts: { clean: boolean }): Promise<ShutdownResult> {
    const result = await this.#cleanup(opts.clean)
    this.#closing ??= this.#close(opts.clean)
    await this.#closing
    return result
  }

  #cleanup(clean: boolean): Promise<ShutdownResult> {
    this.#stopping ??= (async () => {
      const { log, clock } = this.#d
      clock.clearTimeout(this.#grace)
      clock.clearTimeout(this.#probeTimer)
      this.#d.stun?.close()
      log.info('agent.stopping', { clean })
      await Promise.allSettled(this.#stopHooks.map((fn) => fn(clean)))
      if (!clean) {
        this.publisher.stop()
        return { clean, recordsDeleted: false, hadMapping: false, mappingDeleted: false, errors: [] }
      }
      const mapper = this.#d.mapper
      const hadMapping = mapper?.state.kind === 'mapped'
      const [rec, map] = await Promise.allSettled([this.publisher.withdraw(), mapper?.stop()])
      const errors = [rec, map].flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []))
      for (const e of errors) log.warn('agent.cleanup_failed', { error: e })
      return {
        clean,
        recordsDeleted: rec.status === 'fulfilled',
        hadMapping,
        mappingDeleted: hadMapping && map.status === 'fulfilled',
        errors,
      }
    })()
    return this.#stopping
  }

  async #close(clean: boolean): Promise<void> {
    this.#d.net.stop()
    await this.#control?.close()
    await this.#d.udp.close()
    this.#d.log.info('agent.stopped', { clean })
    this.#downRequested?.()
  }
}

export interface ShutdownResult {
  readonly clean: boolean
  readonly recordsDeleted: boolean
  /** A port mapping was in place when the clean-up began (clean shutdowns only). */
  readonly hadMapping: boolean
  readonly mappingDeleted: boolean
  readonly errors: string[]
}
