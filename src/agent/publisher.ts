// Keeps a host's records in DNS (RFC 6281 section 5.2): every UPDATE is TSIG-signed and carries an RFC 9664 lease,
// so records of a host that crashed disappear by themselves; the lease is refreshed at 75% of what the server
// granted (RFC 9664 section 4.1 leaves the time to the client; a failed refresh still has a quarter of the lease
// for retries). A change of address or port is one UPDATE that deletes the old RRsets and adds the new records, so
// a watcher never sees a host with no SRV or a half-changed set. The first UPDATE of a process deletes each owned
// RRset before adding to it, so what a crashed predecessor left there (its ULA, its key) is replaced, not joined. `withdraw()` deletes everything (clean shutdown).
//
//   idle --set()--> sending --ok--> published --75% of lease or set()--> sending
//                      |                                                   ^
//                      +--error--> backoff (1 s doubling, max 60 s) -------+
//   any --withdraw()/stop()--> withdrawn (final)
//
// The transitions are the pure stepPublisher(); the class runs the UPDATEs and the timers each state asks for.

import type { UpdateResult, UpdateSink } from '../dns/client/update.js'
import { type RR, RRClass } from '../dns/wire/rr-table.js'
import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import { type PublishedRR, presentRR, rrKey, rrsetKey } from './records.js'

export const DEFAULT_LEASE_SEC = 5400
export const REFRESH_FRACTION = 0.75
/** A server granting a tiny lease must not make us refresh in a tight loop. */
const MIN_REFRESH_MS = 500

export interface PublisherOptions {
  /** Lease asked for on every UPDATE. @default 5400 (90 minutes, RFC 6281 section 5.2) */
  readonly leaseSec?: number
  /** Refresh at this fraction of the granted lease. @default 0.75 */
  readonly refreshFraction?: number
  /** First retry after a failed UPDATE. @default 1000 */
  readonly retryInitialMs?: number
  /** @default 60000 */
  readonly retryMaxMs?: number
}

export type PublisherState =
  | { readonly kind: 'idle' }
  | { readonly kind: 'sending'; readonly since: number }
  | { readonly kind: 'published'; readonly refreshAt: number }
  | { readonly kind: 'backoff'; readonly retryAt: number; readonly error: string }
  | { readonly kind: 'withdrawn' }

/** What moves the publisher: an UPDATE goes out, the server granted a lease, the UPDATE failed, shutdown. */
export type PublisherEvent =
  | { readonly kind: 'send'; readonly now: number }
  | { readonly kind: 'granted'; readonly now: number; readonly refreshMs: number }
  | { readonly kind: 'failed'; readonly now: number; readonly retryMs: number; readonly error: string }
  | { readonly kind: 'withdraw' }

/** The diagram above. `withdrawn` is final; an answer only counts while its UPDATE is the one being sent. */
export function stepPublisher(s: PublisherState, e: PublisherEvent): PublisherState {
  if (s.kind === 'withdrawn') return s
  switch (e.kind) {
    case 'send':
      return { kind: 'sending', since: e.now }
    case 'granted':
      return s.kind === 'sending' ? { kind: 'published', refreshAt: e.now + e.refreshMs } : s
    case 'failed':
      return s.kind === 'sending' ? { kind: 'backoff', retryAt: e.now + e.retryMs, error: e.error } : s
    case 'withdraw':
      return { kind: 'withdrawn' }
  }
}

export interface PublishedStatus {
  readonly state: PublisherState['kind']
  readonly records: { readonly text: string; readonly leaseLeftSec: number | undefined }[]
  readonly leaseSec: number | undefined
  readonly leaseExpiresAt: number | undefined
  readonly updates: number
  readonly failures: number
  readonly lastError: string | undefined
  readonly via: string | undefined
}

export class Publisher {
  readonly #clock: Clock
  readonly #log: Logger
  readonly #sink: UpdateSink
  readonly leaseSec: number
  readonly #refreshFraction: number
  readonly #retryInitialMs: number
  readonly #retryMaxMs: number

  #state: PublisherState = { kind: 'idle' }
  #zone = ''
  #desired: readonly PublishedRR[] | undefined
  #published: readonly PublishedRR[] = []
  #grantedSec: number | undefined
  #publishedAt: number | undefined
  #timer: TimerHandle | undefined
  #inflight: Promise<void> | undefined
  #dirty = false
  #retryMs: number
  #lastError: string | undefined
  #via: string | undefined
  #listeners: ((records: readonly PublishedRR[]) => void)[] = []
  readonly #fatalListeners: ((message: string) => void)[] = []
  updates = 0
  failures = 0

  constructor(deps: { clock: Clock; log: Logger; sink: UpdateSink }, opts: PublisherOptions = {}) {
    this.#clock = deps.clock
    this.#log = deps.log
    this.#sink = deps.sink
    this.leaseSec = opts.leaseSec ?? DEFAULT_LEASE_SEC
    this.#refreshFraction = opts.refreshFraction ?? REFRESH_FRACTION
    this.#retryInitialMs = opts.retryInitialMs ?? 1000
    this.#retryMaxMs = opts.retryMaxMs ?? 60_000
    this.#retryMs = this.#retryInitialMs
  }

  get state(): PublisherState {
    return this.#state
  }
  /** What the server holds after the last successful UPDATE. */
  get published(): readonly PublishedRR[] {
    return this.#published
  }
  /** Called after each successful UPDATE that changed the record set (not after plain refreshes). */
  onPublished(fn: (records: readonly PublishedRR[]) => void): void {
    this.#listeners.push(fn)
  }

  /** Called once when an UPDATE failed with a configuration error that retrying cannot fix (no retry follows). */
  onFatal(fn: (message: string) => void): void {
    this.#fatalListeners.push(fn)
  }

  /** The records that should be in DNS now; an UPDATE goes out at once (or right after one in flight). */
  set(zone: string, desired: readonly PublishedRR[]): void {
    if (this.#state.kind === 'withdrawn') return
    const unchanged = this.#state.kind === 'published' && zone === this.#zone && sameSet(this.#published, desired)
    this.#zone = zone
    this.#desired = desired
    // Nothing to tell the server: the refresh timer keeps the lease.
    if (unchanged && !this.#inflight) return
    this.#kick()
  }

  /** Resolves when no UPDATE is in flight and none is pending (tests, and `down`). */
  /**
   * Refreshes the lease now instead of at its time: the server this agent used went away (its watch was lost), so
   * the records should be taken by the next SRV target (RFC 2782) at once rather than when the lease is due (issue
   * 12: killing a node costs its agents a re-publication within 5 s). Only when published: a send in flight or a
   * back-off retry is already under way.
   */
  refreshNow(): void {
    if (this.#state.kind === 'published') this.#kick()
  }

  async settled(): Promise<void> {
    while (this.#inflight) await this.#inflight
  }

  #kick(): void {
    if (this.#inflight) {
      this.#dirty = true
      return
    }
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#inflight = this.#send().finally(() => {
      this.#inflight = undefined
      if (this.#dirty && this.#state.kind !== 'withdrawn') {
        this.#dirty = false
        this.#kick()
      }
    })
  }

  /** The update section turning `from` (what the server has) into `to`. Exported logic, tested directly. */
  static diff(from: readonly PublishedRR[], to: readonly PublishedRR[]): { deletes: RR[]; adds: RR[] } {
    const content = (xs: readonly PublishedRR[]): Map<string, string> => {
      const m = new Map<string, string[]>()
      for (const p of xs)
        if (p.sharing === 'owned') {
          const k = rrsetKey(p.rr)
          m.set(k, [...(m.get(k) ?? []), `${rrKey(p.rr)}|${p.rr.ttl}`])
        }
      return new Map([...m].map(([k, v]) => [k, v.sort().join('\n')]))
    }
    const before = content(from)
    const after = content(to)
    const deletes: RR[] = []
    const deleted = new Set<string>()
    // `to` as well as `from`: an owned RRset this process has not published yet may still hold the records of a
    // predecessor that died without withdrawing (SIGKILL, power loss) under a lease that runs for hours. The host
    // owns the RRset, so its first UPDATE replaces it as a whole rather than adding a second ULA or key beside it.
    for (const p of [...from, ...to]) {
      const k = rrsetKey(p.rr)
      if (p.sharing === 'owned' && before.get(k) !== after.get(k) && !deleted.has(k)) {
        deleted.add(k)
        deletes.push({ name: p.rr.name, type: p.rr.type, class: RRClass.ANY, ttl: 0, data: null })
      }
    }
    const wanted = new Set(to.map((p) => rrKey(p.rr)))
    for (const p of from)
      if (p.sharing === 'shared' && !wanted.has(rrKey(p.rr))) deletes.push({ ...p.rr, class: RRClass.NONE, ttl: 0 })
    return { deletes, adds: to.map((p) => p.rr) }
  }

  async #send(): Promise<void> {
    const desired = this.#desired
    if (!desired) return
    this.#state = stepPublisher(this.#state, { kind: 'send', now: this.#clock.now() })
    if (this.#state.kind !== 'sending') return
    const { deletes, adds } = Publisher.diff(this.#published, desired)
    const changed = deletes.length > 0 || !sameSet(this.#published, desired)
    let res: UpdateResult
    try {
      res = await this.#sink.update({ zone: this.#zone, updates: [...deletes, ...adds], leaseSec: this.leaseSec })
      if (res.rcode !== 0) throw new Error(`UPDATE refused: rcode ${res.rcode}`)
    } catch (e) {
      const error = (e as Error).message
      this.#state = stepPublisher(this.#state, {
        kind: 'failed',
        now: this.#clock.now(),
        retryMs: this.#retryMs,
        error,
      })
      if (this.#state.kind !== 'backoff') return
      this.failures++
      this.#lastError = error
      // A configuration error (wrong key, domain not in the account: src/dns/client/explain.ts) is not retried:
      // the agent stops and `up` exits non-zero with the message (issue 13 finding 3).
      const explained = (e as { explained?: { fatal: boolean; message: string } }).explained
      if (explained?.fatal) {
        this.#log.error('publish.fatal', { error })
        for (const fn of this.#fatalListeners) fn(explained.message)
        return
      }
      this.#log.warn('publish.failed', { error, retryInMs: this.#retryMs })
      this.#timer = this.#clock.setTimeout(() => this.#kick(), this.#retryMs)
      this.#retryMs = Math.min(this.#retryMs * 2, this.#retryMaxMs)
      return
    }
    const grantedSec = res.leaseSec ?? this.leaseSec
    const refreshMs = Math.max(MIN_REFRESH_MS, grantedSec * 1000 * this.#refreshFraction)
    const now = this.#clock.now()
    this.#state = stepPublisher(this.#state, { kind: 'granted', now, refreshMs })
    if (this.#state.kind !== 'published') return
    this.updates++
    this.#retryMs = this.#retryInitialMs
    this.#lastError = undefined
    this.#via = res.via
    this.#published = desired
    this.#grantedSec = grantedSec
    this.#publishedAt = now
    this.#timer = this.#clock.setTimeout(() => this.#kick(), refreshMs)
    this.#log.info(changed ? 'publish.updated' : 'publish.refreshed', {
      records: desired.length,
      deletes: deletes.length,
      leaseSec: grantedSec,
      via: res.via,
    })
    if (changed) for (const fn of this.#listeners) fn(desired)
  }

  /**
   * Clean shutdown: deletes this host's RRsets and its records in shared RRsets, in one UPDATE. Further `set()`
   * calls are ignored. Throws if the UPDATE fails (the records then expire with their lease).
   */
  async withdraw(): Promise<void> {
    const toDelete = [...this.#published, ...(this.#desired ?? [])]
    this.#state = stepPublisher(this.#state, { kind: 'withdraw' })
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    await this.settled()
    const { deletes } = Publisher.diff(toDelete, [])
    this.#published = []
    if (deletes.length === 0 || !this.#zone) return
    const res = await this.#sink.update({ zone: this.#zone, updates: deletes })
    if (res.rcode !== 0) throw new Error(`withdraw refused: rcode ${res.rcode}`)
    this.#log.info('publish.withdrawn', { deletes: deletes.length, via: res.via })
  }

  /** Stops timers without touching DNS (tests simulate a crash with it). */
  stop(): void {
    this.#state = stepPublisher(this.#state, { kind: 'withdraw' })
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  status(): PublishedStatus {
    const expires =
      this.#publishedAt !== undefined && this.#grantedSec !== undefined
        ? this.#publishedAt + this.#grantedSec * 1000
        : undefined
    const left = expires === undefined ? undefined : Math.max(0, Math.round((expires - this.#clock.now()) / 1000))
    return {
      state: this.#state.kind,
      records: this.#published.map((p) => ({ text: presentRR(p.rr), leaseLeftSec: left })),
      leaseSec: this.#grantedSec,
      leaseExpiresAt: expires,
      updates: this.updates,
      failures: this.failures,
      lastError: this.#lastError,
      via: this.#via,
    }
  }
}

function sameSet(a: readonly PublishedRR[], b: readonly PublishedRR[]): boolean {
  if (a.length !== b.length) return false
  const ka = new Set(a.map((p) => `${rrKey(p.rr)}|${p.rr.ttl}`))
  return b.every((p) => ka.has(`${rrKey(p.rr)}|${p.rr.ttl}`))
}
