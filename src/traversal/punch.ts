// UDP hole punching between agents behind NATs that answer no mapping protocol (seed 000 section 5.2; RFC 5128
// section 3.3; docs/punch.md). Each such agent learns its reflexive endpoint and NAT mapping behaviour by STUN
// (stun.ts) and publishes them in TXT (stun=ADDR:PORT mapping=eim|symmetric, next to nat=unmapped). A peer of
// it then sends to that endpoint, and both send a burst of RFC 3948 NAT keepalives (the one octet 0xFF) to each
// other whenever either side's endpoint changes, so both NATs hold a binding toward the other while IKE_SA_INIT
// and its retransmissions cross; the tunnel's 20 s keepalives keep the bindings afterwards.
//
//   peer path decision (choosePath):
//     peer mapped/public              -> its DNS endpoint; punch too when we are unmapped (so it can answer us)
//     peer unmapped, no stun=         -> its DNS endpoint (its LAN address: same-LAN peers only, as before)
//     peer unmapped, same NAT as us   -> its DNS endpoint (LAN; no hairpinning needed)
//     peer unmapped, symmetric        -> needs a relay, unless we are public/mapped (then it connects to us)
//     peer unmapped, we are symmetric -> needs a relay (our binding toward it is not the one we published)
//     peer unmapped (eim or unknown)  -> its stun= endpoint, punch
//
//   punch schedule per peer:  idle --(punch(ep))--> bursting: 0xFF now and every PUNCH_INTERVAL_MS
//                               ^                      | until PUNCH_DURATION_MS after the last punch(ep)
//                               +----------------------+
import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { AddrPort, MappingKind } from './stun.js'

export const PUNCH_INTERVAL_MS = 200
export const PUNCH_DURATION_MS = 5000

/** What is known of one side's NAT situation: its TXT nat= and, when unmapped, stun= and mapping=. */
export interface NatView {
  readonly nat: string | undefined
  readonly stun?: AddrPort | undefined
  readonly mapping?: MappingKind | undefined
  /** TXT relay=: a TURN relayed address (docs/relay.md) held by this side. */
  readonly relay?: AddrPort | undefined
}

export interface PathDecision {
  /** Where to send (undefined: nowhere known). */
  readonly endpoint: AddrPort | undefined
  /** The endpoint is the peer's STUN-learned one (it replaces the DNS A/SRV endpoint). */
  readonly viaStun: boolean
  /** Send a keepalive burst to `endpoint` when this decision is new. */
  readonly punch: boolean
  /** Neither side can open the path and no relay is at hand: the reason, for status and the log. */
  readonly relay: string | undefined
  /** The path goes through a TURN relay (ours, the peer's, or both): status `path relay`. */
  readonly relayed?: boolean
  /** We send to `endpoint` through OUR allocation (ChannelData to the TURN server): a permission and channel. */
  readonly viaRelay?: boolean
}

const sameEp = (a: AddrPort | undefined, b: AddrPort | undefined): boolean =>
  !!a && !!b && a.address === b.address && a.port === b.port

export function choosePath(self: NatView | undefined, peer: NatView & { readonly endpoint?: AddrPort }): PathDecision {
  const selfUnmapped = self?.nat === 'unmapped'
  if (peer.nat !== 'unmapped')
    return { endpoint: peer.endpoint, viaStun: false, punch: selfUnmapped && !!peer.endpoint, relay: undefined }
  const stun = peer.stun
  if (!stun) return { endpoint: peer.endpoint, viaStun: false, punch: false, relay: undefined }
  if (selfUnmapped && self?.stun && self.stun.address === stun.address)
    return { endpoint: peer.endpoint, viaStun: false, punch: false, relay: undefined }
  if (peer.mapping === 'symmetric') {
    if (!selfUnmapped) return { endpoint: stun, viaStun: true, punch: false, relay: undefined }
    return needsRelay(self, peer, stun, 'peer behind a symmetric NAT, we are behind a NAT')
  }
  if (selfUnmapped && self?.mapping === 'symmetric')
    return needsRelay(self, peer, stun, 'we are behind a symmetric NAT, the peer behind a NAT')
  return { endpoint: stun, viaStun: true, punch: true, relay: undefined }
}

/**
 * No punch can work (docs/relay.md): the peer's relay= is its endpoint (we punch toward it so our NAT lets the
 * relay's packets in, unless we send through our own relay too); else our own relay carries our packets to its
 * stun= endpoint; with neither, the path needs a relay.
 */
function needsRelay(self: NatView | undefined, peer: NatView, stun: AddrPort, reason: string): PathDecision {
  const own = !!self?.relay
  if (peer.relay)
    return { endpoint: peer.relay, viaStun: true, punch: !own, relay: undefined, relayed: true, viaRelay: own }
  if (own) return { endpoint: stun, viaStun: true, punch: false, relay: undefined, relayed: true, viaRelay: true }
  return { endpoint: stun, viaStun: true, punch: false, relay: reason }
}

/** The peer row's `path` in status: direct, punched (an IKE SA exists after punching), punching, relay, or needs relay. */
export function pathLabel(d: PathDecision, hasSa: boolean): string {
  if (d.relayed) return 'relay'
  if (hasSa) return d.punch ? 'punched' : 'direct'
  if (d.relay) return `unreachable: needs relay (${d.relay})`
  if (d.punch) return 'punching'
  return d.endpoint ? 'direct' : 'no endpoint'
}

export interface PuncherDeps {
  readonly clock: Clock
  readonly log: Logger
  /** Sends one NAT keepalive (0xFF) to `ep` on the agent's shared socket. */
  readonly send: (ep: AddrPort) => void
}

export interface PuncherOptions {
  /** @default PUNCH_INTERVAL_MS */
  readonly intervalMs?: number
  /** @default PUNCH_DURATION_MS */
  readonly durationMs?: number
}

interface Burst {
  ep: AddrPort
  until: number
  timer: TimerHandle | undefined
}

/** Keepalive bursts toward peers, one per peer key; bounded in time, so a peer that never answers costs nothing. */
export class Puncher {
  readonly #d: PuncherDeps
  readonly #intervalMs: number
  readonly #durationMs: number
  readonly #bursts = new Map<string, Burst>()
  readonly counters = { bursts: 0, sent: 0 }

  constructor(deps: PuncherDeps, opts: PuncherOptions = {}) {
    this.#d = deps
    this.#intervalMs = opts.intervalMs ?? PUNCH_INTERVAL_MS
    this.#durationMs = opts.durationMs ?? PUNCH_DURATION_MS
  }

  /** Peers being punched now. */
  get active(): number {
    return this.#bursts.size
  }

  /** Starts (or extends, and retargets) the burst toward `key`'s endpoint `ep`. */
  punch(key: string, ep: AddrPort): void {
    const until = this.#d.clock.monotonic() + this.#durationMs
    const b = this.#bursts.get(key)
    if (b) {
      b.until = until
      if (!sameEp(b.ep, ep)) {
        b.ep = ep
        this.#send(b)
      }
      return
    }
    const nb: Burst = { ep, until, timer: undefined }
    this.#bursts.set(key, nb)
    this.counters.bursts++
    this.#d.log.info('punch.start', { peer: key, endpoint: `${ep.address}:${ep.port}` })
    this.#tick(key, nb)
  }

  #send(b: Burst): void {
    this.counters.sent++
    try {
      this.#d.send(b.ep)
    } catch (e) {
      this.#d.log.debug('punch.send_failed', { err: String(e) })
    }
  }

  #tick(key: string, b: Burst): void {
    this.#send(b)
    if (this.#d.clock.monotonic() + this.#intervalMs > b.until) {
      this.#bursts.delete(key)
      return
    }
    b.timer = this.#d.clock.setTimeout(() => this.#tick(key, b), this.#intervalMs)
  }

  stop(key: string): void {
    const b = this.#bursts.get(key)
    if (!b) return
    this.#d.clock.clearTimeout(b.timer)
    this.#bursts.delete(key)
  }

  close(): void {
    for (const k of [...this.#bursts.keys()]) this.stop(k)
  }
}
