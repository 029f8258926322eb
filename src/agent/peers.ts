// The user's other hosts, learned from DNS (RFC 6281 sections 3 and 5.3, Figure 3): which hosts exist, their
// ULA (the tunnel's inner address) and their outer endpoint (external IPv4 address and port).
//
// What is watched (all TSIG-signed, DNS Push, else LLQ, else polling, as src/dns/client/watcher.ts picks):
//   _autotunnel._udp.D        PTR   the user's host list (one PTR per host, written by each host's publisher)
//   _autotunnel._udp.H.D      SRV   per peer H: the external port and the target L.D
//   L.D                       ANY   per peer: AAAA (ULA), A (external IPv4), TXT (nat=...)
//   H.D                       TXT   per peer: its IKE public key ("v=at-ike1; k=ed25519; p=...", src/ike/hostkey.ts)
// A change to any of them (one UPDATE by the peer's publisher changes several at once; events are coalesced for
// COALESCE_MS) runs the Figure 3 chain with fresh signed queries: SRV `_autotunnel._udp.H.D` -> its target ->
// AAAA and A (and TXT) of the target. The result updates the peer table; listeners (the tunnel wiring) then move
// the peer's outer endpoint. The key record is read on every resolution too, even when the rest of the chain fails
// (a revoked host has no SRV any more): a change of the key set is told to `onKeys` listeners (IKE revalidation).
// Only names under the user's own domain D are ever peers: a PTR naming anything else
// is ignored and counted, so another user's host can never become a peer.
// Only the host list creates watchers. `lookup()` of a name that is not in it (an IKE initiator whose PTR we have
// not seen yet, or any name an unauthenticated IKE_AUTH carries) runs the chain once with signed queries and keeps
// the answer, positive or negative, in a small cache (LOOKUP_CACHE_SIZE entries, LRU, LOOKUP_CACHE_TTL_MS): it
// never adds a peer, a watcher or a server subscription, so a remote sender cannot make the agent hold state.
//
// peer lifecycle:  (PTR added) --> resolving --ok--> known --(watch event)--> resolving --> known ...
//                                        \--no SRV/AAAA--> incomplete (retried on the next event)
//                  (PTR removed) --> gone (watchers closed, listeners told)
//
// This file is the peer table, its watchers and the order of the chain; the queries themselves and the parsing of
// their answers are in peer-records.ts, the status row in status-format.ts.
import type { WatchMechanism } from '../dns/client/watcher.js'
import { type RR, RRType } from '../dns/wire/rr-table.js'
import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import { byCodeUnits } from '../io/order.js'
import { LookupCache } from './lookup-cache.js'
import { type PeerRecords, queryIkeKeys, recordsMoved, resolveTarget, type SignedQuery } from './peer-records.js'
import { AUTOTUNNEL_SERVICE, fq, HOST_LABEL } from './records.js'

export type { SignedQuery } from './peer-records.js'

/** Events from one UPDATE arrive as several notifications; one resolution follows them all. */
export const COALESCE_MS = 30
/** QTYPE ANY (RFC 1035 3.2.3): one DNS Push subscription for every RRset at the target name. */
export const QTYPE_ANY = 255
export { LOOKUP_BURST, LOOKUP_CACHE_SIZE, LOOKUP_CACHE_TTL_MS, LOOKUP_RATE_PER_SEC } from './lookup-cache.js'

/** What peers.ts uses of src/dns/client/watcher.ts's Watcher. */
export interface WatchLike {
  readonly rrset: readonly RR[]
  readonly mechanism: WatchMechanism | undefined
  /** Why the last attempt failed, explained (status shows it while connecting). */
  readonly lastError?: string | undefined
  onEvent(h: (e: { readonly kind: 'add' | 'remove'; readonly rrset: readonly RR[] }) => void): () => void
  start(): Promise<WatchMechanism | undefined>
  close(): Promise<void>
}

/**
 * Makes a watcher. `renew`, when given, makes the watchers made from now on use new connections (the shared DNS Push
 * sessions, push-session.ts): rewatch() calls it first, so the new watchers do not join a session on the old address.
 */
export type WatchFactory = ((name: string, type: number) => WatchLike) & { renew?: () => void }

/** A peer: its names, what its records say (target, ULA, endpoint, nat, stun, relay: peer-records.ts), its keys. */
export interface Peer extends PeerRecords {
  /** Host label, e.g. "desktop". */
  readonly host: string
  /** FQDN without the final dot, e.g. "desktop.alice.members.example" (the IKE identity). */
  readonly fqdn: string
  /** The TXT strings at H.D that look like IKE key records (v=at-ike1); [] when none or the host is gone. */
  readonly publicKeys: readonly string[]
  /** Wall-clock ms of the last completed resolution. */
  readonly resolvedAt: number | undefined
  readonly resolutions: number
  readonly lastError: string | undefined
}

export type PeerChange = (peer: Peer, previous: Peer | undefined) => void
export type PeerGone = (peer: Peer) => void

export interface PeerManagerOptions {
  /** The user's domain D (USER.ZONE). */
  readonly domain: string
  /** This host's label: never a peer of itself. */
  readonly hostname: string
  /** One-off resolutions allowed at once (default LOOKUP_BURST). */
  readonly lookupBurst?: number
}

interface Entry {
  peer: Peer
  srvWatch: WatchLike | undefined
  keyWatch: WatchLike | undefined
  targetWatch: WatchLike | undefined
  watchedTarget: string | undefined
  offs: (() => void)[]
  timer: TimerHandle | undefined
  pending: Promise<void> | undefined
  again: boolean
}

export interface PeerCounters {
  resolutions: number
  failures: number
  foreignNames: number
  events: number
  /** lookup() of names not in the host list: answered from the cache / by a one-off resolution. */
  lookupCacheHits: number
  lookupOneOff: number
  /** ... refused without a query because the ration (LOOKUP_BURST, LOOKUP_RATE_PER_SEC) was spent. */
  lookupThrottled: number
}

export class PeerManager {
  readonly #d: { query: SignedQuery; watch: WatchFactory; clock: Clock; log: Logger }
  readonly #domain: string
  readonly #self: string
  readonly #entries = new Map<string, Entry>()
  /** One-off lookups (names not in the host list), in LRU order (oldest first). */
  readonly #lookups: LookupCache<Promise<Peer | undefined>>
  readonly #changed: PeerChange[] = []
  readonly #gone: PeerGone[] = []
  readonly #keys: PeerGone[] = []
  #offHostList: (() => void) | undefined
  #ownList: WatchLike | undefined
  #closed = false
  readonly counters: PeerCounters = {
    resolutions: 0,
    failures: 0,
    foreignNames: 0,
    events: 0,
    lookupCacheHits: 0,
    lookupOneOff: 0,
    lookupThrottled: 0,
  }

  constructor(deps: { query: SignedQuery; watch: WatchFactory; clock: Clock; log: Logger }, opts: PeerManagerOptions) {
    this.#d = deps
    this.#domain = fq(opts.domain).toLowerCase()
    this.#self = opts.hostname.toLowerCase()
    this.#lookups = new LookupCache(opts.lookupBurst)
  }

  /** The user's domain with the final dot, lower case. */
  get domain(): string {
    return this.#domain
  }

  onChange(fn: PeerChange): void {
    this.#changed.push(fn)
  }
  onGone(fn: PeerGone): void {
    this.#gone.push(fn)
  }
  /** The peer's published IKE key records changed (added, replaced, removed: revocation). */
  onKeys(fn: PeerGone): void {
    this.#keys.push(fn)
  }

  /** The watcher of the host list opened by watchHostList() (for status), if any. */
  get hostListWatcher(): WatchLike | undefined {
    return this.#ownList
  }

  /**
   * Follows the host list (a watcher of PTR `_autotunnel._udp.D`, e.g. the one the agent already runs): every
   * host in it other than this one becomes a peer.
   */
  follow(hostList: WatchLike, opts: { initial?: boolean } = {}): void {
    this.#offHostList?.()
    this.#offHostList = hostList.onEvent((e) => this.#hostListChanged(e.rrset))
    if (opts.initial ?? true) this.#hostListChanged(hostList.rrset)
  }

  /**
   * Watches the host list with a watcher of its own (so `rewatch()` can renew it). Resolves once the first answer
   * is known; an empty list from a watcher that could not connect yet removes nobody.
   */
  async watchHostList(): Promise<void> {
    const w = this.#d.watch(`${AUTOTUNNEL_SERVICE}.${this.#domain}`, RRType.PTR)
    const old = this.#ownList
    this.#ownList = w
    this.follow(w, { initial: false })
    void old?.close()
    const m = await w.start().catch(() => undefined)
    if (m !== undefined && this.#ownList === w && !this.#closed) this.#hostListChanged(w.rrset)
  }

  /**
   * Our address changed: the watchers' TCP/TLS sessions (DNS Push, LLQ over TLS) were bound to the old address and
   * are dead without knowing it. Opens every watcher again and resolves every peer once more.
   */
  async rewatch(): Promise<void> {
    if (this.#closed) return
    this.#d.watch.renew?.()
    for (const [host, e] of this.#entries) {
      for (const off of e.offs) off()
      e.offs = []
      const old = [e.srvWatch, e.keyWatch, e.targetWatch]
      e.targetWatch = undefined
      e.watchedTarget = undefined
      e.srvWatch = this.#watch(host, e, `${AUTOTUNNEL_SERVICE}.${host}.${this.#domain}`, RRType.SRV)
      e.keyWatch = this.#watch(host, e, `${host}.${this.#domain}`, RRType.TXT)
      for (const w of old) void w?.close()
      this.#schedule(host, e, 0)
    }
    if (this.#ownList) await this.watchHostList()
  }

  peers(): Peer[] {
    return [...this.#entries.values()].map((e) => e.peer).sort((a, b) => byCodeUnits(a.host, b.host))
  }

  /** A peer by label ("desktop"), FQDN ("desktop.alice.zone", with or without the dot). */
  get(name: string): Peer | undefined {
    return this.#entries.get(this.hostLabel(name) ?? '')?.peer
  }

  byUla(ula: string): Peer | undefined {
    const want = normUla(ula)
    for (const e of this.#entries.values()) if (e.peer.ula && normUla(e.peer.ula) === want) return e.peer
    return undefined
  }

  /** "desktop", "desktop.D", "desktop.D." -> "desktop"; anything outside D (or deeper) -> undefined. */
  hostLabel(name: string): string | undefined {
    const n = fq(name.toLowerCase())
    const label = n.endsWith(`.${this.#domain}`) ? n.slice(0, -this.#domain.length - 1) : n.slice(0, -1)
    return HOST_LABEL.test(label) ? label : undefined
  }

  /**
   * A host of the user looked up on demand (IKE's lookupPeer). A host in the list resolves its entry (once more
   * when not complete). Any other name (an IKE initiator whose PTR we have not seen yet, or whatever name an
   * unauthenticated IKE_AUTH carries) gets one signed resolution, cached (LOOKUP_CACHE_SIZE, LOOKUP_CACHE_TTL_MS)
   * and never watched: it is not added to the table. Undefined when it is not a host of this user.
   */
  async lookup(name: string): Promise<Peer | undefined> {
    if (!fq(name.toLowerCase()).endsWith(`.${this.#domain}`)) return undefined
    const host = this.hostLabel(name)
    if (!host || host === this.#self || this.#closed) return undefined
    const known = this.#entries.get(host)
    if (known) {
      if (known.peer.ula && known.peer.endpoint) return known.peer
      await this.#resolve(host, known)
      return known.peer.ula ? known.peer : undefined
    }
    const now = this.#d.clock.monotonic()
    const hit = this.#lookups.get(host, now)
    if (hit) {
      this.counters.lookupCacheHits++
      return hit
    }
    if (!this.#lookups.mayResolve(now)) {
      this.counters.lookupThrottled++
      return undefined
    }
    this.counters.lookupOneOff++
    const e = this.#newEntry(host)
    const result = this.#resolveOnce(host, e).then(
      () => (e.peer.ula ? e.peer : undefined),
      () => undefined,
    )
    this.#lookups.set(host, result, now)
    return result
  }

  /** How many one-off lookups are cached (at most LOOKUP_CACHE_SIZE), for status and tests. */
  get lookupCacheSize(): number {
    return this.#lookups.size
  }

  /** The mechanisms (push, llq, poll; null while connecting) of a peer's two watchers, for status. */
  watchMechanisms(host: string): { srv: WatchMechanism | null; target: WatchMechanism | null } {
    const e = this.#entries.get(host)
    return { srv: e?.srvWatch?.mechanism ?? null, target: e?.targetWatch?.mechanism ?? null }
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#offHostList?.()
    await this.#ownList?.close()
    const all = [...this.#entries.values()]
    this.#entries.clear()
    this.#lookups.clear()
    await Promise.all(all.map((e) => this.#closeEntry(e)))
  }

  // --- host list ---------------------------------------------------------------------------------------------

  #hostListChanged(rrset: readonly RR[]): void {
    if (this.#closed) return
    const hosts = new Set<string>()
    const listName = `${AUTOTUNNEL_SERVICE}.${this.#domain}`
    for (const r of rrset) {
      if (r.type !== RRType.PTR || r.name.toLowerCase() !== listName) continue
      const target = fq((r.data as { ptrdname: string }).ptrdname.toLowerCase())
      const host = this.#hostOfSrvName(target)
      if (host === undefined) {
        this.counters.foreignNames++
        this.#d.log.warn('peers.foreign_name', { ptr: target })
        continue
      }
      if (host !== this.#self) hosts.add(host)
    }
    for (const h of hosts) if (!this.#entries.has(h)) this.#schedule(h, this.#add(h), 0)
    for (const [h, e] of this.#entries)
      if (!hosts.has(h)) {
        this.#entries.delete(h)
        this.#lookups.delete(h)
        void this.#closeEntry(e)
        this.#d.log.info('peers.gone', { host: h })
        for (const fn of this.#gone) fn(e.peer)
      }
  }

  /** "_autotunnel._udp.H.D." -> "H" for a single label H; otherwise undefined (not one of ours). */
  #hostOfSrvName(name: string): string | undefined {
    const prefix = `${AUTOTUNNEL_SERVICE}.`
    const suffix = `.${this.#domain}`
    if (!name.startsWith(prefix) || !name.endsWith(suffix)) return undefined
    const h = name.slice(prefix.length, -suffix.length)
    return HOST_LABEL.test(h) ? h : undefined
  }

  #add(host: string): Entry {
    const e = this.#newEntry(host)
    this.#entries.set(host, e)
    // In the list now: the entry (with its watchers) answers from here on, not a one-off answer.
    this.#lookups.delete(host)
    const srvName = `${AUTOTUNNEL_SERVICE}.${host}.${this.#domain}`
    e.srvWatch = this.#watch(host, e, srvName, RRType.SRV)
    e.keyWatch = this.#watch(host, e, `${host}.${this.#domain}`, RRType.TXT)
    this.#d.log.info('peers.new', { host })
    return e
  }

  /** An entry with no watchers, not in the table (yet). */
  #newEntry(host: string): Entry {
    return {
      peer: {
        host,
        fqdn: `${host}.${this.#domain.slice(0, -1)}`,
        target: undefined,
        ula: undefined,
        endpoint: undefined,
        nat: undefined,
        publicKeys: [],
        resolvedAt: undefined,
        resolutions: 0,
        lastError: undefined,
      },
      srvWatch: undefined,
      keyWatch: undefined,
      targetWatch: undefined,
      watchedTarget: undefined,
      offs: [],
      timer: undefined,
      pending: undefined,
      again: false,
    }
  }

  #watch(host: string, e: Entry, name: string, type: number): WatchLike {
    const w = this.#d.watch(name, type)
    e.offs.push(
      w.onEvent(() => {
        this.counters.events++
        this.#schedule(host, e, COALESCE_MS)
      }),
    )
    w.start().catch((err: Error) => this.#d.log.warn('peers.watch_failed', { host, name, err: err.message }))
    return w
  }

  async #closeEntry(e: Entry): Promise<void> {
    this.#d.clock.clearTimeout(e.timer)
    for (const off of e.offs) off()
    await Promise.all([e.srvWatch?.close(), e.keyWatch?.close(), e.targetWatch?.close()])
  }

  // --- resolution (Figure 3) -----------------------------------------------------------------------------------

  #schedule(host: string, e: Entry, delayMs: number): void {
    if (this.#closed || e.timer) return
    e.timer = this.#d.clock.setTimeout(() => {
      e.timer = undefined
      void this.#resolve(host, e)
    }, delayMs)
  }

  /** Runs the chain; a call while one runs makes it run once more, and resolves when that run is done. */
  #resolve(host: string, e: Entry): Promise<void> {
    if (e.pending) {
      e.again = true
      return e.pending
    }
    e.pending = (async () => {
      try {
        do {
          e.again = false
          await this.#resolveOnce(host, e)
        } while (e.again && !this.#closed)
      } finally {
        e.pending = undefined
      }
    })()
    return e.pending
  }

  async #resolveOnce(host: string, e: Entry): Promise<void> {
    const { query, log, clock } = this.#d
    this.counters.resolutions++
    // The key record on its own (alongside the SRV): a revoked host's keys must go even when its SRV is gone too.
    const srvName = `${AUTOTUNNEL_SERVICE}.${host}.${this.#domain}`
    const srvP = query.query(srvName, RRType.SRV)
    srvP.catch(() => {})
    const hostName = `${host}.${this.#domain}`
    const keys = await queryIkeKeys(query, hostName)
    const listed = this.#entries.get(host) === e
    if (keys && keys.join('\n') !== e.peer.publicKeys.join('\n')) {
      e.peer = { ...e.peer, publicKeys: keys }
      if (listed) log.info('peers.keys', { host, keys: keys.length })
      // A one-off lookup (not in the table) tells no listener: nothing else knows that peer.
      for (const fn of listed ? this.#keys : []) {
        try {
          fn(e.peer)
        } catch (err) {
          log.warn('peers.listener_failed', { host, err: String(err) })
        }
      }
    }
    let next: Peer
    try {
      // Step 2-3: the SRV gives the port and the target; step 4-5: the target's A (and AAAA, TXT).
      const records = await resolveTarget(query, await srvP, srvName, this.#domain)
      next = {
        ...e.peer,
        ...records,
        resolvedAt: clock.now(),
        resolutions: e.peer.resolutions + 1,
        lastError: undefined,
      }
    } catch (err) {
      this.counters.failures++
      e.peer = { ...e.peer, lastError: (err as Error).message }
      // A one-off lookup may carry any name a remote sender chose: debug only.
      if (this.#entries.get(host) === e) log.info('peers.resolve_failed', { host, err: (err as Error).message })
      else log.debug('peers.resolve_failed', { host, err: (err as Error).message, oneOff: true })
      return
    }
    if (this.#closed) return
    if (this.#entries.get(host) !== e) {
      // A one-off lookup (or an entry removed meanwhile): the answer only, no watcher, no listener.
      e.peer = next
      return
    }
    if (next.target !== e.watchedTarget) {
      // The target name (L.D) changed or is new: watch every RRset there with one ANY subscription.
      const old = e.targetWatch
      e.watchedTarget = next.target
      e.targetWatch = next.target ? this.#watch(host, e, next.target, QTYPE_ANY) : undefined
      void old?.close()
    }
    const prev = e.peer
    e.peer = next
    if (!recordsMoved(prev, next)) return
    log.info('peers.update', {
      host,
      ula: next.ula,
      endpoint: next.endpoint ? `${next.endpoint.address}:${next.endpoint.port}` : null,
      nat: next.nat,
      ...(next.stun ? { stun: `${next.stun.address}:${next.stun.port}`, mapping: next.mapping ?? null } : {}),
      ...(next.relay ? { relay: `${next.relay.address}:${next.relay.port}` } : {}),
      previous: prev.endpoint ? `${prev.endpoint.address}:${prev.endpoint.port}` : null,
    })
    for (const fn of this.#changed) {
      try {
        fn(next, prev.ula ? prev : undefined)
      } catch (err) {
        log.warn('peers.listener_failed', { host, err: String(err) })
      }
    }
  }
}

/** Canonical text of an IPv6 address (so "fd00::0001" and "fd00::1" compare equal). */
export function normUla(a: string): string {
  try {
    return new URL(`http://[${a}]/`).hostname.slice(1, -1)
  } catch {
    return a.toLowerCase()
  }
}
