// RFC 8765 (DNS Push Notifications) over RFC 8490 (DNS Stateful Operations), server side: one DSO session
// per TLS connection (plain TCP only with --push-plain-tcp). Codec-free: notify-service.ts decodes DSO messages
// into PushInbound and encodes the PushOutbound messages this session hands to `send`.
//
// Session lifecycle, one `stepSession(state, event)`:
//
//   connected ──DSO request (Keepalive or SUBSCRIBE) answered NOERROR──► established (RFC 8490 §5.1)
//      │ DSO unidirectional / response first: close                       │ nothing received for 2 × keepalive
//      ▼                                                                  │ interval, or idle (no subscriptions)
//    closed ◄─────────────────────────────────────────────────────────────┘ past the inactivity timeout
//
// Privacy (seed 002 §7.2; docs/notify.md): DSO carries no TSIG, so a TSIG-signed query on the same
// connection (`authenticated(user)`) tells the session who is there; NotifyPolicy then decides per name.

import type { Clock, TimerHandle } from '../io/clock.js'
import { type Logger, nullLogger } from '../io/log.js'
import type { AnswerLookup, NotifyPolicy, NotifyQuestion, NotifySubscriber, RRsetChange } from './notify-types.js'
import { canonicalName, type SubscriptionIndex } from './subscriptions.js'

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, REFUSED: 5, NOTAUTH: 9, DSOTYPENI: 11 } as const

/** TTL of a PUSH record that removes that one record (RFC 8765 §6.3.1). */
export const PUSH_REMOVE_RR_TTL = 0xffffffff
/** TTL of a PUSH record (CLASS ANY, RDLENGTH 0) that removes an RRset or all RRsets (RFC 8765 §6.3.1). */
export const PUSH_REMOVE_SET_TTL = 0xfffffffe

export type PushInbound =
  | { readonly kind: 'keepalive'; readonly msgId: number; readonly inactivityMs: number; readonly keepaliveMs: number }
  | { readonly kind: 'subscribe'; readonly msgId: number; readonly question: NotifyQuestion }
  | { readonly kind: 'unsubscribe'; readonly subscribeId: number }
  | { readonly kind: 'reconfirm'; readonly question: NotifyQuestion; readonly rdata: Buffer }
  /** A request whose primary TLV we do not implement (answered DSOTYPENI, RFC 8490 §5.1.1). */
  | { readonly kind: 'unknown-request'; readonly msgId: number; readonly tlvType: number }
  /** Unparseable: answered FORMERR when it was a request, otherwise the session is closed. */
  | { readonly kind: 'malformed'; readonly msgId: number }
  /** Any other traffic on the connection (a unidirectional we ignore, a plain DNS query): only resets idle timers. */
  | { readonly kind: 'other' }

export type PushRecordOp<R> =
  | { readonly op: 'add'; readonly rr: R }
  | { readonly op: 'remove'; readonly rr: R }
  | { readonly op: 'remove-rrset'; readonly name: string; readonly type: number; readonly class: number }

export type PushOutbound<R> =
  | {
      readonly kind: 'response'
      readonly msgId: number
      readonly rcode: number
      readonly keepalive?: { readonly inactivityMs: number; readonly keepaliveMs: number }
      readonly retryDelayMs?: number
    }
  | { readonly kind: 'push'; readonly records: readonly PushRecordOp<R>[] }
  /**
   * A committed change for one of the session's subscriptions: its PUSH is `changeRecords(change)`. Handed over
   * as the change itself, so the encoder can build that message once for every session of the same change.
   */
  | { readonly kind: 'change'; readonly change: RRsetChange<R> }
  | { readonly kind: 'close'; readonly reason: string; readonly retryDelayMs?: number }

/** The PUSH records of a change (RFC 8765 §6.3.1): the removed records, then the added ones. */
export function changeRecords<R>(c: RRsetChange<R>): PushRecordOp<R>[] {
  const records: PushRecordOp<R>[] = []
  for (const rr of c.removed) records.push({ op: 'remove', rr })
  for (const rr of c.added) records.push({ op: 'add', rr })
  return records
}

export interface PushConfig {
  /** Server's inactivity timeout for a session without subscriptions (RFC 8490 §6.2). @default 30000 */
  readonly inactivityMs: number
  /** Keepalive interval the server asks for (RFC 8490 §6.1, at least 10 s). @default 60000 */
  readonly keepaliveMs: number
  /** RETRY DELAY sent with SERVFAIL when the server is full (RFC 8490 §7.1). @default 60000 */
  readonly retryDelayMs: number
}

export const DEFAULT_PUSH_CONFIG: PushConfig = { inactivityMs: 30_000, keepaliveMs: 60_000, retryDelayMs: 60_000 }

export type SessionState =
  | { readonly kind: 'connected'; readonly since: number }
  | { readonly kind: 'established'; readonly lastRx: number; readonly idleSince: number | undefined }
  | { readonly kind: 'closed'; readonly reason: string }

export type SessionEvent =
  | { readonly kind: 'request'; readonly now: number; readonly answeredOk: boolean }
  | { readonly kind: 'rx'; readonly now: number }
  | { readonly kind: 'unidirectional-first'; readonly now: number }
  | { readonly kind: 'subscriptions'; readonly now: number; readonly count: number }
  | { readonly kind: 'timer'; readonly now: number }
  | { readonly kind: 'close'; readonly reason: string }

export function stepSession(cfg: PushConfig, s: SessionState, ev: SessionEvent): SessionState {
  if (s.kind === 'closed') return s
  switch (ev.kind) {
    case 'close':
      return { kind: 'closed', reason: ev.reason }
    case 'unidirectional-first':
      return s.kind === 'connected' ? { kind: 'closed', reason: 'dso-before-session' } : { ...s, lastRx: ev.now }
    case 'request':
      if (s.kind === 'connected')
        return ev.answeredOk ? { kind: 'established', lastRx: ev.now, idleSince: ev.now } : { ...s, since: ev.now }
      return { ...s, lastRx: ev.now }
    case 'rx':
      return s.kind === 'established' ? { ...s, lastRx: ev.now } : s
    case 'subscriptions':
      if (s.kind !== 'established') return s
      return { ...s, idleSince: ev.count === 0 ? (s.idleSince ?? ev.now) : undefined }
    case 'timer': {
      const d = sessionDeadline(cfg, s)
      if (d === undefined || ev.now < d) return s
      return { kind: 'closed', reason: s.kind === 'established' && s.idleSince === undefined ? 'keepalive' : 'idle' }
    }
  }
}

export function sessionDeadline(cfg: PushConfig, s: SessionState): number | undefined {
  if (s.kind === 'closed') return undefined
  if (s.kind === 'connected') return s.since + cfg.inactivityMs
  const keep = s.lastRx + 2 * cfg.keepaliveMs
  return s.idleSince === undefined ? keep : Math.min(keep, s.idleSince + cfg.inactivityMs)
}

export interface PushSessionDeps<R> {
  readonly clock: Clock
  readonly log?: Logger
  readonly index: SubscriptionIndex<NotifySubscriber<R>>
  readonly answer: AnswerLookup<R>
  readonly policy: NotifyPolicy
  /** Whether a record exists now (RECONFIRM). */
  readonly exists: (q: NotifyQuestion, rdata: Buffer) => boolean
  /** A removal for a RECONFIRM of a record that does not exist: the session builds one from the question and RDATA. */
  readonly removal: (q: NotifyQuestion, rdata: Buffer) => R
  readonly send: (m: PushOutbound<R>) => void
}

interface Subscription<R> {
  readonly msgId: number
  readonly question: NotifyQuestion
  readonly key: string
  readonly subscriber: NotifySubscriber<R>
}

/** One DSO session carrying DNS Push subscriptions. */
export class PushSession<R> {
  readonly config: PushConfig
  /** "conn:N": the per-client limit counts per connection's client address, given as `client`. */
  readonly client: string
  #state: SessionState
  #user: string | undefined
  #timer: TimerHandle | undefined
  readonly #d: PushSessionDeps<R>
  readonly #log: Logger
  readonly #byId = new Map<number, Subscription<R>>()
  readonly #byKey = new Map<string, Subscription<R>>()

  constructor(deps: PushSessionDeps<R>, client: string, opts: Partial<PushConfig> = {}) {
    this.#d = deps
    this.#log = deps.log ?? nullLogger
    this.client = client
    this.config = { ...DEFAULT_PUSH_CONFIG, ...opts }
    this.#state = { kind: 'connected', since: deps.clock.monotonic() }
    this.#schedule()
  }

  get state(): SessionState {
    return this.#state
  }
  get user(): string | undefined {
    return this.#user
  }
  get subscriptionCount(): number {
    return this.#byId.size
  }

  /**
   * A TSIG-verified DNS request arrived on this connection, signed with `user`'s key. Rebinding to another user
   * re-checks the subscriptions held: the session never keeps a name its current binding cannot read.
   */
  authenticated(user: string): void {
    const before = this.#user
    this.#user = user
    if (before !== undefined && before !== user && !this.recheck()) return
    this.#event({ kind: 'rx', now: this.#d.clock.monotonic() })
  }

  /**
   * Checks every subscription against the policy again (the account set or the binding changed). DNS Push has no
   * server-side UNSUBSCRIBE, so a subscription that is no longer allowed closes the session; the client
   * reconnects and subscribes to what it may still watch. Returns false when the session was closed.
   */
  recheck(): boolean {
    if (this.#state.kind === 'closed') return false
    for (const sub of this.#byId.values())
      if (this.#d.policy(sub.question, this.#user) !== 'ok') {
        this.close('not permitted')
        return false
      }
    return true
  }

  receive(m: PushInbound): void {
    if (this.#state.kind === 'closed') return
    const now = this.#d.clock.monotonic()
    switch (m.kind) {
      case 'keepalive':
        this.#respond(m.msgId, RCODE.NOERROR, true)
        return
      case 'subscribe':
        this.#subscribe(m.msgId, m.question)
        return
      case 'unsubscribe':
        if (this.#first()) return
        this.#unsubscribe(m.subscribeId)
        this.#event({ kind: 'rx', now })
        return
      case 'reconfirm':
        if (this.#first()) return
        this.#reconfirm(m.question, m.rdata)
        this.#event({ kind: 'rx', now })
        return
      case 'unknown-request':
        this.#respond(m.msgId, RCODE.DSOTYPENI, false)
        return
      case 'malformed':
        if (m.msgId !== 0) this.#respond(m.msgId, RCODE.FORMERR, false)
        else this.close('malformed')
        return
      case 'other':
        this.#event({ kind: 'rx', now })
        return
    }
  }

  /** Ends the session (connection closed, server stopping): removes every subscription. */
  close(reason: string, retryDelayMs?: number): void {
    if (this.#state.kind === 'closed') return
    for (const sub of this.#byId.values()) this.#d.index.remove(sub.subscriber)
    this.#byId.clear()
    this.#byKey.clear()
    this.#d.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#state = { kind: 'closed', reason }
    this.#log.debug('push.session_closed', { reason, client: this.client })
    this.#d.send(retryDelayMs === undefined ? { kind: 'close', reason } : { kind: 'close', reason, retryDelayMs })
  }

  /** A unidirectional message before the session exists is a protocol error (RFC 8490 §5.1). */
  #first(): boolean {
    if (this.#state.kind !== 'connected') return false
    this.close('dso-before-session')
    return true
  }

  /** Answers a request. Only a Keepalive response carries a Keepalive TLV: a response's first TLV must be of its request's type (RFC 8490 §5.4.4). */
  #respond(msgId: number, rcode: number, keepalive: boolean, retryDelayMs?: number): void {
    const out: PushOutbound<R> = {
      kind: 'response',
      msgId,
      rcode,
      ...(keepalive
        ? { keepalive: { inactivityMs: this.config.inactivityMs, keepaliveMs: this.config.keepaliveMs } }
        : {}),
      ...(retryDelayMs !== undefined ? { retryDelayMs } : {}),
    }
    this.#d.send(out)
    this.#event({ kind: 'request', now: this.#d.clock.monotonic(), answeredOk: rcode === RCODE.NOERROR })
  }

  #subscribe(msgId: number, q: NotifyQuestion): void {
    const key = `${canonicalName(q.name)}|${q.type}|${q.class}`
    if (msgId === 0 || this.#byId.has(msgId) || this.#byKey.has(key)) {
      this.#respond(msgId, RCODE.FORMERR, false)
      return
    }
    const verdict = this.#d.policy(q, this.#user)
    if (verdict !== 'ok') {
      this.#respond(msgId, verdict === 'notauth' ? RCODE.NOTAUTH : RCODE.REFUSED, false)
      return
    }
    const sub: Subscription<R> = { msgId, question: q, key, subscriber: { deliver: (c) => this.#deliver(c) } }
    const added = this.#d.index.add(q.name, q.type, this.client, sub.subscriber, this.#user)
    if (!added.ok) {
      if (added.reason === 'total-full' || added.reason === 'anonymous-full')
        this.#respond(msgId, RCODE.SERVFAIL, false, this.config.retryDelayMs)
      else this.#respond(msgId, RCODE.REFUSED, false)
      return
    }
    this.#byId.set(msgId, sub)
    this.#byKey.set(key, sub)
    this.#respond(msgId, RCODE.NOERROR, false)
    this.#event({ kind: 'subscriptions', now: this.#d.clock.monotonic(), count: this.#byId.size })
    // The current answer follows the response at once (RFC 8765 §6.2), so the client starts complete.
    const current = this.#d.answer(q)
    if (current.length > 0) this.#d.send({ kind: 'push', records: current.map((rr) => ({ op: 'add', rr })) })
  }

  #unsubscribe(subscribeId: number): void {
    const sub = this.#byId.get(subscribeId)
    if (!sub) return
    this.#byId.delete(subscribeId)
    this.#byKey.delete(sub.key)
    this.#d.index.remove(sub.subscriber)
    this.#event({ kind: 'subscriptions', now: this.#d.clock.monotonic(), count: this.#byId.size })
  }

  #reconfirm(q: NotifyQuestion, rdata: Buffer): void {
    const sub = this.#byKey.get(`${canonicalName(q.name)}|${q.type}|${q.class}`)
    if (!sub || this.#d.exists(q, rdata)) return
    this.#d.send({ kind: 'push', records: [{ op: 'remove', rr: this.#d.removal(q, rdata) }] })
  }

  #deliver(c: RRsetChange<R>): void {
    if (this.#state.kind === 'closed') return
    this.#d.send({ kind: 'change', change: c })
  }

  #event(ev: SessionEvent): void {
    const before = this.#state
    this.#state = stepSession(this.config, this.#state, ev)
    if (this.#state.kind === 'closed' && before.kind !== 'closed') {
      const reason = this.#state.reason
      this.#state = before
      this.close(reason)
      return
    }
    this.#schedule()
  }

  #schedule(): void {
    this.#d.clock.clearTimeout(this.#timer)
    const at = sessionDeadline(this.config, this.#state)
    this.#timer =
      at === undefined
        ? undefined
        : this.#d.clock.setTimeout(() => {
            this.#timer = undefined
            this.#event({ kind: 'timer', now: this.#d.clock.monotonic() })
          }, at - this.#d.clock.monotonic())
  }
}
