// TSIG replay cache (RFC 8945 5.2.3 leaves replay protection to the time check; issue 16 findings 2 and 7): the
// MACs of signed requests the server accepted, kept while a message with that MAC could still pass the time check
// (until time signed + the server's fudge). A request whose MAC is in the cache is a replay: it never binds a DNS
// Push connection and an UPDATE is not applied again (its first result is answered instead, so a client's
// retransmission of the same bytes still gets its answer).
//
// Bounded: at most `maxEntries` MACs. When full, the oldest entry goes and `floorSec` rises to its time signed:
// a request signed at or before the floor is refused as too old (it could be a replay of an evicted MAC), so the
// bound never opens a replay window; at a sustained rate R above maxEntries / fudge, the window of accepted time
// shrinks to about maxEntries / R seconds behind now.

import type { EdnsOption } from '../dns/wire/message.js'

/**
 * What an UPDATE's first execution answered, for replays of the same bytes: numbers only, so the cache holds no
 * Buffers (at thousands of updates a second, retained Buffers cost more in GC than the lookups do), but for the
 * rare refusal that carries an Extended DNS Error.
 */
export interface ReplayResult {
  readonly rcode: number
  readonly leaseSec?: number | undefined
  readonly keyLeaseSec?: number | undefined
  /** The Extended DNS Error of the first answer (a refusal's reason, RFC 8914): a retransmission says it again. */
  readonly ede?: EdnsOption | undefined
}

/** One remembered MAC; the first answer packed into numbers (NONE when absent): one small object per MAC. */
interface Entry {
  /** The entry is also the 'fresh' verdict handed back by check(): setResult() then needs no second lookup. */
  readonly kind: 'fresh'
  readonly key: string
  readonly expiresSec: number
  readonly timeSignedSec: number
  rcode: number
  leaseSec: number
  keyLeaseSec: number
  /** Set only on refusals that explain themselves (rare): one more slot in every entry, no object. */
  ede: EdnsOption | undefined
}

const NONE = -1
/** Octets of the MAC used as the key (128 bits; HMAC-MD5's whole MAC). */
const KEY_OCTETS = 16

/** Swept-off slots at the queue's head before the array is compacted. */
const COMPACT_AT = 4096
/**
 * The smallest `--tsig-replay-cache`: the cache must hold more than one second of signed requests (time signed
 * has a resolution of 1 s, so the floor would otherwise refuse the current second's fresh requests).
 */
export const MIN_REPLAY_CACHE_ENTRIES = 1000

export type ReplayVerdict =
  | { readonly kind: 'fresh' }
  | { readonly kind: 'replay'; readonly result: ReplayResult | undefined }
  /** Signed at or before the floor left by evictions: cannot be told from a replay. */
  | { readonly kind: 'too-old' }

const TOO_OLD: ReplayVerdict = { kind: 'too-old' }

export interface ReplayCacheOptions {
  /** The server's TSIG fudge: an entry lives until time signed + this. @default 300 */
  readonly windowSec?: number
  /** MACs kept at most. @default 200000 */
  readonly maxEntries?: number
}

export const DEFAULT_REPLAY_CACHE_ENTRIES = 200_000

export class TsigReplayCache {
  readonly windowSec: number
  readonly maxEntries: number
  /** Requests refused as replays or as too old, and entries evicted before their time. */
  readonly stats = { replays: 0, tooOld: 0, evicted: 0 }
  readonly #byMac = new Map<string, Entry>()
  /** Entries in insertion order, which is (nearly) expiry order: swept and evicted from `#head`. */
  #queue: Entry[] = []
  #head = 0
  #sweptSec = -Infinity
  #floorSec = -Infinity

  constructor(opts: ReplayCacheOptions = {}) {
    this.windowSec = opts.windowSec ?? 300
    this.maxEntries = opts.maxEntries ?? DEFAULT_REPLAY_CACHE_ENTRIES
  }

  get size(): number {
    return this.#byMac.size
  }

  get floorSec(): number {
    return this.#floorSec
  }

  /**
   * Looks `mac` up and, when it is new, remembers it (the caller then processes the request and may hand the
   * verdict to setResult). The key is the MAC's first KEY_OCTETS octets: 128 bits cannot collide by chance, and
   * nobody without the key can choose a MAC.
   */
  check(mac: Buffer, timeSignedSec: number, nowSec: number): ReplayVerdict {
    this.#sweep(nowSec)
    const k = mac.latin1Slice(0, Math.min(KEY_OCTETS, mac.length))
    const e = this.#byMac.get(k)
    if (e) {
      this.stats.replays++
      if (e.rcode === NONE) return { kind: 'replay', result: undefined }
      const result: ReplayResult = {
        rcode: e.rcode,
        ...(e.leaseSec !== NONE ? { leaseSec: e.leaseSec } : {}),
        ...(e.keyLeaseSec !== NONE ? { keyLeaseSec: e.keyLeaseSec } : {}),
        ...(e.ede ? { ede: e.ede } : {}),
      }
      return { kind: 'replay', result }
    }
    if (timeSignedSec <= this.#floorSec) {
      this.stats.tooOld++
      return TOO_OLD
    }
    while (this.#byMac.size >= this.maxEntries) this.#evictOldest()
    const entry: Entry = {
      kind: 'fresh',
      key: k,
      expiresSec: timeSignedSec + this.windowSec,
      timeSignedSec,
      rcode: NONE,
      leaseSec: NONE,
      keyLeaseSec: NONE,
      ede: undefined,
    }
    this.#byMac.set(k, entry)
    this.#queue.push(entry)
    return entry
  }

  /** Records what the request that got the verdict `fresh` (from check) was answered, for its replays. */
  setResult(fresh: ReplayVerdict, result: ReplayResult): void {
    if (fresh.kind !== 'fresh') return
    const e = fresh as Entry
    e.rcode = result.rcode
    e.leaseSec = result.leaseSec ?? NONE
    e.keyLeaseSec = result.keyLeaseSec ?? NONE
    e.ede = result.ede
  }

  /** Drops entries whose time has passed; at most once per second, so a check costs two Map operations. */
  #sweep(nowSec: number): void {
    if (nowSec === this.#sweptSec) return
    this.#sweptSec = nowSec
    const q = this.#queue
    while (this.#head < q.length && q[this.#head]!.expiresSec < nowSec) this.#byMac.delete(q[this.#head++]!.key)
    this.#compact()
  }

  #evictOldest(): void {
    const e = this.#queue[this.#head++]
    if (!e) return
    this.#byMac.delete(e.key)
    if (e.timeSignedSec > this.#floorSec) this.#floorSec = e.timeSignedSec
    this.stats.evicted++
    this.#compact()
  }

  #compact(): void {
    if (this.#head < COMPACT_AT || this.#head * 2 < this.#queue.length) return
    this.#queue = this.#queue.slice(this.#head)
    this.#head = 0
  }
}
