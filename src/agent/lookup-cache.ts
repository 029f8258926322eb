// The answers of one-off look-ups (names an IKE initiator claims that are not in the host list, peers.ts lookup()):
// kept LOOKUP_CACHE_SIZE at most, least recently used first out, each for LOOKUP_CACHE_TTL_MS, and new resolutions
// rationed by a token bucket. Bounded in memory and in queries whatever names a remote sender makes up.
import { TokenBucket } from '../io/token-bucket.js'

/** At most this many answers are kept (least recently used go). */
export const LOOKUP_CACHE_SIZE = 64
/** ... each for this long (short: a revoked key must not stay usable, and a new host is retried soon). */
export const LOOKUP_CACHE_TTL_MS = 10_000
/**
 * One-off resolutions are rationed (this many at once, refilled at LOOKUP_RATE_PER_SEC): every IKE_AUTH with a new
 * made-up identity would otherwise cost the provider's DNS server a chain of signed queries (issue 16 finding 11),
 * at the rate of our IKE_SA_INIT handshakes (hundreds a second). A real new host of the user is in the host list
 * within a second or two; until then its IKE retransmissions retry the look-up.
 */
export const LOOKUP_BURST = 8
export const LOOKUP_RATE_PER_SEC = 2

export class LookupCache<V> {
  readonly #entries = new Map<string, { readonly expires: number; readonly value: V }>()
  readonly #ration: TokenBucket

  constructor(burst = LOOKUP_BURST) {
    this.#ration = new TokenBucket(burst, LOOKUP_RATE_PER_SEC)
  }

  /** The live answer for `key` (now the most recently used), or undefined. */
  get(key: string, now: number): V | undefined {
    const hit = this.#entries.get(key)
    this.#entries.delete(key)
    if (!hit || hit.expires <= now) return undefined
    this.#entries.set(key, hit)
    return hit.value
  }

  /** Whether a new resolution may run now (takes a token). */
  mayResolve(now: number): boolean {
    return this.#ration.take(now)
  }

  set(key: string, value: V, now: number): void {
    this.#entries.delete(key)
    this.#entries.set(key, { expires: now + LOOKUP_CACHE_TTL_MS, value })
    while (this.#entries.size > LOOKUP_CACHE_SIZE) {
      const oldest = this.#entries.keys().next().value
      if (oldest === undefined) break
      this.#entries.delete(oldest)
    }
  }

  delete(key: string): void {
    this.#entries.delete(key)
  }

  clear(): void {
    this.#entries.clear()
  }

  get size(): number {
    return this.#entries.size
  }
}
