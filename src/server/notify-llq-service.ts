// RFC 8764 (DNS Long-Lived Queries), server side: the set of live LLQs. Routes decoded LLQ requests and
// event acknowledgements to the per-LLQ state machine (llq.ts), keeps each LLQ's next deadline in one
// DeadlineSweep (one Clock timer for all of them, not one per LLQ: a fan-out moves them all at once), registers established LLQs in the subscription index and turns the actions of `step` into
// replies and outgoing events. Privacy (seed 002 §7.2) is the server's NotifyPolicy, given the TSIG user.
// Encoding is the caller's: requests come in decoded, events go out through `sendEvent`.

import type { Clock } from '../io/clock.js'
import { type Logger, nullLogger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { type DeadlineSlot, DeadlineSweep } from './deadline-sweep.js'
import {
  DEFAULT_LLQ_CONFIG,
  LLQ_VERSION,
  type LlqAction,
  type LlqChange,
  type LlqConfig,
  LlqError,
  type LlqErrorValue,
  type LlqGoneReason,
  LlqOpcode,
  type LlqState,
  llqDeadline,
  newChallenged,
  step,
} from './llq.js'
import type { AnswerLookup, NotifyPolicy, NotifyQuestion, NotifySubscriber, RRsetChange } from './notify-types.js'
import { canonicalName, type SubscriptionIndex } from './subscriptions.js'

/** The LLQ option's fields (RFC 8764 section 3.2). */
export interface LlqOptionData {
  readonly version: number
  readonly opcode: number
  readonly error: number
  readonly id: bigint
  readonly leaseSec: number
}

/** Where an LLQ's events go: a UDP source address or a TCP/TLS connection. */
export interface LlqPeer {
  /** Unique per reply path: "udp:ADDR:PORT" or "conn:N". */
  readonly key: string
  /** Groups peers for the per-client limit (the client's address). */
  readonly client: string
}

export interface LlqRequest {
  readonly question: NotifyQuestion
  readonly opt: LlqOptionData
  readonly peer: LlqPeer
  /** The account whose TSIG key signed the request, when it was signed and verified. */
  readonly user?: string | undefined
  /** The key (an opaque Account) that signed it: `retain` hands it back when the account set changes. */
  readonly binding?: unknown
}

/** What to answer: an LLQ response (rcode NOERROR, the option, maybe answers) or a bare RCODE. */
export type LlqReply<R> =
  | { readonly kind: 'llq'; readonly opt: LlqOptionData; readonly answers: readonly R[] }
  | { readonly kind: 'rcode'; readonly rcode: number }

export interface LlqOutboundEvent<R> {
  readonly peer: LlqPeer
  readonly msgId: number
  readonly question: NotifyQuestion
  readonly opt: LlqOptionData
  readonly added: readonly R[]
  readonly removed: readonly R[]
  readonly user: string | undefined
  readonly transmission: number
}

export interface LlqServiceDeps<R> {
  readonly clock: Clock
  readonly random: Random
  readonly log?: Logger
  readonly index: SubscriptionIndex<NotifySubscriber<R>>
  readonly answer: AnswerLookup<R>
  readonly policy: NotifyPolicy
  readonly sendEvent: (ev: LlqOutboundEvent<R>) => void
}

const RCODE_REFUSED = 5
const RCODE_NOTAUTH = 9

interface Entry<R> {
  state: LlqState<R>
  readonly question: NotifyQuestion
  readonly peer: LlqPeer
  readonly user: string | undefined
  readonly binding: unknown
  readonly handshakeKey: string
  slot: DeadlineSlot<Entry<R>> | undefined
  readonly subscriber: NotifySubscriber<R>
  indexed: boolean
}

export interface LlqStats {
  eventsSent: number
  retransmissions: number
  deleted: Record<LlqGoneReason, number>
}

export class LlqService<R> {
  readonly config: LlqConfig
  readonly stats: LlqStats = {
    eventsSent: 0,
    retransmissions: 0,
    deleted: {
      'handshake-timeout': 0,
      cancelled: 0,
      expired: 0,
      unreachable: 0,
      overflow: 0,
      replaced: 0,
      revoked: 0,
    },
  }
  readonly #d: LlqServiceDeps<R>
  readonly #log: Logger
  readonly #byId = new Map<bigint, Entry<R>>()
  /** peer key + question -> LLQ: a repeated Initial Request gets the same Challenge. */
  readonly #byHandshake = new Map<string, Entry<R>>()
  readonly #byPeer = new Map<string, Set<Entry<R>>>()
  readonly #deadlines: DeadlineSweep<Entry<R>>

  constructor(deps: LlqServiceDeps<R>, opts: Partial<LlqConfig> = {}) {
    this.#d = deps
    this.#log = deps.log ?? nullLogger
    this.config = { ...DEFAULT_LLQ_CONFIG, ...opts }
    this.#deadlines = new DeadlineSweep(deps.clock, (e) => {
      e.slot = undefined
      this.#apply(e, { kind: 'timer', now: this.#d.clock.monotonic() })
    })
  }

  get size(): number {
    return this.#byId.size
  }

  /** LLQs by state kind (O(n): for metrics and tests, not the hot path). */
  counts(): Record<LlqState<R>['kind'], number> {
    const c = { challenged: 0, established: 0, notifying: 0, gone: 0 }
    for (const e of this.#byId.values()) c[e.state.kind]++
    return c
  }

  /** The state of an LLQ, for tests and metrics. */
  state(id: bigint): LlqState<R> | undefined {
    return this.#byId.get(id)?.state
  }

  /** Answers an LLQ Setup or Refresh request (an ordinary query carrying the LLQ option). */
  handle(req: LlqRequest): LlqReply<R> {
    const { opt } = req
    const err = (error: LlqErrorValue, leaseSec = 0): LlqReply<R> => ({
      kind: 'llq',
      opt: { version: LLQ_VERSION, opcode: opt.opcode, error, id: opt.id, leaseSec },
      answers: [],
    })
    if (opt.version !== LLQ_VERSION) return err(LlqError.BAD_VERS)
    if (opt.opcode !== LlqOpcode.SETUP && opt.opcode !== LlqOpcode.REFRESH) return err(LlqError.FORMAT_ERR)
    if (opt.id === 0n) {
      if (opt.opcode !== LlqOpcode.SETUP) return err(LlqError.FORMAT_ERR)
      return this.#initial(req, err)
    }
    const e = this.#byId.get(opt.id)
    if (!e || e.peer.key !== req.peer.key || !sameQuestion(e.question, req.question)) {
      return err(LlqError.NO_SUCH_LLQ)
    }
    if (e.user !== req.user) return { kind: 'rcode', rcode: RCODE_REFUSED }
    const now = this.#d.clock.monotonic()
    const ev =
      opt.opcode === LlqOpcode.SETUP
        ? ({ kind: 'challenge-response', now, leaseSec: opt.leaseSec } as const)
        : ({ kind: 'refresh', now, leaseSec: opt.leaseSec } as const)
    return this.#apply(e, ev) ?? err(LlqError.UNKNOWN_ERR)
  }

  /**
   * An event acknowledgement (a response carrying LLQ-EVENT with the event's message ID), from `user` (the TSIG
   * signer, if any). An LLQ set up with TSIG takes acknowledgements signed by the same user only: 'refused'.
   */
  ack(peer: LlqPeer, id: bigint, msgId: number, user?: string): 'ok' | 'unknown' | 'refused' {
    const e = this.#byId.get(id)
    if (!e || e.peer.key !== peer.key) return 'unknown'
    if (e.user !== undefined && e.user !== user) return 'refused'
    this.#apply(e, { kind: 'ack', now: this.#d.clock.monotonic(), msgId })
    return 'ok'
  }

  /** A TCP/TLS connection closed: its LLQs cannot be reached any more. */
  dropPeer(peerKey: string): void {
    const set = this.#byPeer.get(peerKey)
    if (!set) return
    for (const e of [...set]) this.#apply(e, { kind: 'cancel', now: this.#d.clock.monotonic() })
  }

  close(): void {
    for (const e of [...this.#byId.values()]) this.#remove(e, 'cancelled')
    this.#deadlines.close()
  }

  /**
   * Deletes every LLQ for which `keep(question, user, binding)` is false (reason 'revoked'): run when the account
   * set changed, so no LLQ outlives its key or watches a name its user may no longer read. Returns how many went.
   */
  retain(keep: (q: NotifyQuestion, user: string | undefined, binding: unknown) => boolean): number {
    let n = 0
    for (const e of [...this.#byId.values()])
      if (!keep(e.question, e.user, e.binding)) {
        this.#remove(e, 'revoked')
        n++
      }
    return n
  }

  #initial(req: LlqRequest, err: (e: LlqErrorValue) => LlqReply<R>): LlqReply<R> {
    const verdict = this.#d.policy(req.question, req.user)
    if (verdict === 'refused') return { kind: 'rcode', rcode: RCODE_REFUSED }
    if (verdict === 'notauth') return { kind: 'rcode', rcode: RCODE_NOTAUTH }
    if (verdict === 'static') return err(LlqError.STATIC)
    const hk = `${req.peer.key}|${canonicalName(req.question.name)}|${req.question.type}`
    const old = this.#byHandshake.get(hk)
    if (old && old.state.kind === 'challenged' && old.user === req.user) return this.#challengeReply(old)
    // A fresh Initial Request for a question this peer already watches replaces the old LLQ.
    if (old) this.#remove(old, 'replaced')
    if (!this.#d.index.admit(req.peer.client, req.user).ok) return err(LlqError.SERV_FULL)
    const now = this.#d.clock.monotonic()
    const id = this.#newId()
    const e: Entry<R> = {
      state: newChallenged<R>(this.config, id, req.opt.leaseSec, now),
      question: req.question,
      peer: req.peer,
      user: req.user,
      binding: req.binding,
      handshakeKey: hk,
      slot: undefined,
      subscriber: { deliver: (c) => this.#deliver(e, c) },
      indexed: false,
    }
    this.#byId.set(id, e)
    this.#byHandshake.set(hk, e)
    let peerSet = this.#byPeer.get(req.peer.key)
    if (!peerSet) this.#byPeer.set(req.peer.key, (peerSet = new Set()))
    peerSet.add(e)
    // Challenged LLQs count against the limits too, so a flood of Initial Requests cannot exhaust memory.
    this.#d.index.add(req.question.name, req.question.type, req.peer.client, e.subscriber, req.user)
    e.indexed = true
    this.#schedule(e)
    this.#log.debug('llq.challenge', { id: id.toString(16), name: req.question.name, type: req.question.type })
    return this.#challengeReply(e)
  }

  #challengeReply(e: Entry<R>): LlqReply<R> {
    const s = e.state
    const leaseSec = s.kind === 'gone' ? 0 : s.leaseSec
    return {
      kind: 'llq',
      opt: { version: LLQ_VERSION, opcode: LlqOpcode.SETUP, error: LlqError.NO_ERROR, id: s.id, leaseSec },
      answers: [],
    }
  }

  #newId(): bigint {
    for (;;) {
      const id = this.#d.random.bytes(8).readBigUInt64BE(0)
      if (id !== 0n && !this.#byId.has(id)) return id
    }
  }

  #deliver(e: Entry<R>, c: RRsetChange<R>): void {
    const change: LlqChange<R> = { added: c.added, removed: c.removed }
    this.#apply(e, { kind: 'change', now: this.#d.clock.monotonic(), change, msgId: this.#d.random.int(0x10000) })
  }

  /** Runs one step and performs its actions; returns the reply for a request, if the step produced one. */
  #apply(e: Entry<R>, ev: Parameters<typeof step<R>>[2]): LlqReply<R> | undefined {
    const r = step(this.config, e.state, ev)
    e.state = r.state
    let reply: LlqReply<R> | undefined
    for (const a of r.actions) reply = this.#act(e, a) ?? reply
    if (e.state.kind !== 'gone') this.#schedule(e)
    return reply
  }

  #act(e: Entry<R>, a: LlqAction<R>): LlqReply<R> | undefined {
    const id = e.state.id
    const opt = (opcode: number, leaseSec: number, error: number = LlqError.NO_ERROR): LlqOptionData => ({
      version: LLQ_VERSION,
      opcode,
      error,
      id,
      leaseSec,
    })
    switch (a.kind) {
      case 'send-answers':
        return { kind: 'llq', opt: opt(LlqOpcode.SETUP, a.leaseSec), answers: this.#d.answer(e.question) }
      case 'send-refresh-ack':
        return { kind: 'llq', opt: opt(LlqOpcode.REFRESH, a.leaseSec), answers: [] }
      case 'send-error':
        return { kind: 'llq', opt: opt(LlqOpcode.REFRESH, 0, a.error), answers: [] }
      case 'send-event': {
        const s = e.state
        const remainingSec =
          s.kind === 'established' || s.kind === 'notifying'
            ? Math.max(0, Math.round((s.expiresAt - this.#d.clock.monotonic()) / 1000))
            : 0
        if (a.transmission === 1) this.stats.eventsSent++
        else this.stats.retransmissions++
        this.#d.sendEvent({
          peer: e.peer,
          msgId: a.msgId,
          question: e.question,
          opt: opt(LlqOpcode.EVENT, remainingSec),
          added: a.change.added,
          removed: a.change.removed,
          user: e.user,
          transmission: a.transmission,
        })
        return undefined
      }
      case 'deleted':
        this.#remove(e, a.reason)
        return undefined
    }
  }

  #remove(e: Entry<R>, reason: LlqGoneReason): void {
    this.#deadlines.cancel(e.slot)
    e.slot = undefined
    if (this.#byId.get(e.state.id) !== e) return
    if (e.state.kind !== 'gone') e.state = { kind: 'gone', id: e.state.id, reason }
    this.#byId.delete(e.state.id)
    if (this.#byHandshake.get(e.handshakeKey) === e) this.#byHandshake.delete(e.handshakeKey)
    const peerSet = this.#byPeer.get(e.peer.key)
    if (peerSet) {
      peerSet.delete(e)
      if (peerSet.size === 0) this.#byPeer.delete(e.peer.key)
    }
    if (e.indexed) this.#d.index.remove(e.subscriber)
    e.indexed = false
    this.stats.deleted[reason]++
    this.#log.debug('llq.deleted', { id: e.state.id.toString(16), reason })
  }

  #schedule(e: Entry<R>): void {
    const at = llqDeadline(e.state)
    if (at === e.slot?.at) return
    if (at === undefined) {
      this.#deadlines.cancel(e.slot)
      e.slot = undefined
      return
    }
    e.slot = this.#deadlines.schedule(e, at, e.slot)
  }
}

function sameQuestion(a: NotifyQuestion, b: NotifyQuestion): boolean {
  return a.type === b.type && canonicalName(a.name) === canonicalName(b.name)
}
