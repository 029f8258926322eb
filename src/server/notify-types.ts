// Types shared by the change-notification services (LLQ, RFC 8764; DNS Push, RFC 8765) and the hub that
// feeds them the server's change feed.

import type { SubscriptionIndex } from './subscriptions.js'

/** One RRset's change after a committed update or a lease expiry (the server's `onChange` feed). */
export interface RRsetChange<R> {
  readonly name: string
  readonly type: number
  readonly added: readonly R[]
  readonly removed: readonly R[]
}

export interface NotifyQuestion {
  readonly name: string
  readonly type: number
  readonly class: number
}

/** Something in the subscription index that wants to hear about changes: an LLQ or a Push subscription. */
export interface NotifySubscriber<R> {
  deliver(change: RRsetChange<R>): void
}

/**
 * Whether `user` (the TSIG key owner that authenticated the request, or undefined) may watch `q`
 * (seed 002 §7.2): 'ok'; 'refused' (a name under another user's subdomain, or unsigned); 'notauth'
 * (outside our zone); 'static' (data the server never changes, RFC 8764 STATIC).
 */
export type NotifyVerdict = 'ok' | 'refused' | 'notauth' | 'static'
export type NotifyPolicy = (q: NotifyQuestion, user: string | undefined) => NotifyVerdict

/** Current answer for a question: the full RRset (records `R` as the server's codec defines them). */
export type AnswerLookup<R> = (q: NotifyQuestion) => readonly R[]

/** Delivers each change to every subscriber of its (name, type) and of (name, ANY). */
export function fanOut<R>(index: SubscriptionIndex<NotifySubscriber<R>>, changes: readonly RRsetChange<R>[]): number {
  let delivered = 0
  for (const c of changes) {
    if (c.added.length === 0 && c.removed.length === 0) continue
    for (const sub of index.match(c.name, c.type)) {
      sub.deliver(c)
      delivered++
    }
  }
  return delivered
}
