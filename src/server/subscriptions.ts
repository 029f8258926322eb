// Subscription index shared by LLQ (RFC 8764) and DNS Push (RFC 8765): which watchers care about a
// (name, type). Bounded per client and in total (RFC 8764 SERV-FULL, RFC 8765 SERVFAIL + RETRY DELAY):
// a client that vanishes costs an entry until its owner (LLQ lease, DSO session) removes it.

/** QTYPE ANY: a subscription for it matches a change of any type at the name. */
export const QTYPE_ANY = 255

export interface SubscriptionLimits {
  /** Live subscriptions one source (a client address: all its UDP ports and connections) may hold. @default 1000 */
  readonly perClient: number
  /** Live subscriptions one key (account) may hold, over all its sources. @default 1000 */
  readonly perUser: number
  /**
   * Live subscriptions without a key, over all sources: an anonymous flood cannot fill the server and lock users
   * out (issue 16 finding 3). @default a tenth of `total`
   */
  readonly anonymous: number
  /** Live subscriptions the whole server holds. @default 200000 */
  readonly total: number
}

export const DEFAULT_SUBSCRIPTION_LIMITS: Omit<SubscriptionLimits, 'anonymous'> = {
  perClient: 1000,
  perUser: 1000,
  total: 200_000,
}

export type AddResult =
  | { ok: true }
  | { ok: false; reason: 'client-full' | 'user-full' | 'anonymous-full' | 'total-full' }

/** Canonical form of a name for matching: lower case, no trailing dot (DNS names compare case-insensitively). */
export function canonicalName(name: string): string {
  const n = name.endsWith('.') && name.length > 1 ? name.slice(0, -1) : name
  return n.toLowerCase()
}

/** The per-user bucket of subscriptions made without a key (not a valid user label, so no account has it). */
const ANONYMOUS = '\u0000anonymous'
/** The anonymous limit's default: this fraction of the total. */
const ANONYMOUS_SHARE = 10

function keyOf(name: string, type: number): string {
  return `${canonicalName(name)}|${type}`
}

/**
 * Maps (name, type) to the set of subscribers. `S` is the owner's handle (an LLQ, a Push subscription);
 * `client` groups handles for the per-client limit.
 */
export class SubscriptionIndex<S> {
  readonly limits: SubscriptionLimits
  readonly #byKey = new Map<string, Set<S>>()
  readonly #perClient = new Map<string, number>()
  /** Per user; anonymous subscriptions count under ANONYMOUS. */
  readonly #perUser = new Map<string, number>()
  readonly #meta = new Map<S, { key: string; client: string; user: string }>()

  constructor(limits: Partial<SubscriptionLimits> = {}) {
    const l = { ...DEFAULT_SUBSCRIPTION_LIMITS, ...limits }
    this.limits = { ...l, anonymous: limits.anonymous ?? Math.floor(l.total / ANONYMOUS_SHARE) }
  }

  get size(): number {
    return this.#meta.size
  }

  clientCount(client: string): number {
    return this.#perClient.get(client) ?? 0
  }

  /** Subscriptions held with `user`'s key (undefined: without a key). */
  userCount(user: string | undefined): number {
    return this.#perUser.get(user ?? ANONYMOUS) ?? 0
  }

  /** Checks the limits without adding: lets a caller refuse before it allocates state. */
  admit(client: string, user?: string): AddResult {
    if (this.#meta.size >= this.limits.total) return { ok: false, reason: 'total-full' }
    if (user === undefined && this.userCount(undefined) >= this.limits.anonymous)
      return { ok: false, reason: 'anonymous-full' }
    if (user !== undefined && this.userCount(user) >= this.limits.perUser) return { ok: false, reason: 'user-full' }
    if (this.clientCount(client) >= this.limits.perClient) return { ok: false, reason: 'client-full' }
    return { ok: true }
  }

  add(name: string, type: number, client: string, sub: S, user?: string): AddResult {
    if (this.#meta.has(sub)) return { ok: true }
    const a = this.admit(client, user)
    if (!a.ok) return a
    const key = keyOf(name, type)
    let set = this.#byKey.get(key)
    if (!set) {
      set = new Set()
      this.#byKey.set(key, set)
    }
    set.add(sub)
    const u = user ?? ANONYMOUS
    this.#meta.set(sub, { key, client, user: u })
    this.#perClient.set(client, this.clientCount(client) + 1)
    this.#perUser.set(u, (this.#perUser.get(u) ?? 0) + 1)
    return { ok: true }
  }

  remove(sub: S): boolean {
    const m = this.#meta.get(sub)
    if (!m) return false
    this.#meta.delete(sub)
    const set = this.#byKey.get(m.key)
    if (set) {
      set.delete(sub)
      if (set.size === 0) this.#byKey.delete(m.key)
    }
    const n = this.clientCount(m.client) - 1
    if (n <= 0) this.#perClient.delete(m.client)
    else this.#perClient.set(m.client, n)
    const u = (this.#perUser.get(m.user) ?? 0) - 1
    if (u <= 0) this.#perUser.delete(m.user)
    else this.#perUser.set(m.user, u)
    return true
  }

  /** Subscribers of exactly (name, type), plus those of (name, ANY) when type is not ANY. */
  match(name: string, type: number): S[] {
    const out: S[] = []
    const exact = this.#byKey.get(keyOf(name, type))
    if (exact) for (const s of exact) out.push(s)
    if (type !== QTYPE_ANY) {
      const any = this.#byKey.get(keyOf(name, QTYPE_ANY))
      if (any) for (const s of any) out.push(s)
    }
    return out
  }
}
