// RFC 8764 (DNS Long-Lived Queries), server side: the per-LLQ state machine. Pure: `step` takes the
// state and one event and returns the next state plus the actions the service must perform; time
// comes in events (`now`, monotonic ms), so a FakeClock drives it in tests. Wire encoding lives in
// notify-llq-service.ts; this file knows only record handles `R`.
//
//   Initial Request (id 0)                  Challenge Response (id)           change
//   ───────────────────────► challenged ────────────────────────► established ─────► notifying
//     (reply: Challenge)        │ no response by deadline          │  ▲   refresh     │ ack: next queued
//                               ▼                                  │  └───────────────┘ or established
//                              gone ◄── refresh(lease 0) / lease expiry ◄──────────────┤
//                                   ◄── 3 transmissions of one event, none acknowledged ┘ (RFC 8764 §6.3,
//                                                                                          seed 002 §5.3)

import { LLQ_VERSION, LlqError, LlqOpcode } from '../dns/llq.js'

export { LLQ_VERSION, LlqError, LlqOpcode }
export type LlqErrorValue = (typeof LlqError)[keyof typeof LlqError]
/** TTL marking a removed record in an event, RFC 8764 section 6.2 ("TTL of -1"). */
export const LLQ_REMOVED_TTL = 0xffffffff

export interface LlqConfig {
  /** Granted leases are clamped to [leaseMinSec, leaseMaxSec] (seed 002 §5.3). @default 900 */
  readonly leaseMinSec: number
  /** @default 7200 */
  readonly leaseMaxSec: number
  /** First retransmission of an unacknowledged event after this long, doubling each time. @default 2000 */
  readonly resendMs: number
  /** Transmissions of one event in total before the LLQ is deleted (seed 002 §5.3). @default 3 */
  readonly maxTransmissions: number
  /** A Challenge not answered within this long is forgotten. @default 30000 */
  readonly challengeTimeoutMs: number
  /** Events queued behind an unacknowledged one; beyond this the LLQ is deleted (the client re-reads). @default 64 */
  readonly maxQueuedEvents: number
}

export const DEFAULT_LLQ_CONFIG: LlqConfig = {
  leaseMinSec: 900,
  leaseMaxSec: 7200,
  resendMs: 2000,
  maxTransmissions: 3,
  challengeTimeoutMs: 30_000,
  maxQueuedEvents: 64,
}

export function clampLease(cfg: LlqConfig, requestedSec: number): number {
  return Math.min(cfg.leaseMaxSec, Math.max(cfg.leaseMinSec, requestedSec))
}

export interface LlqChange<R> {
  readonly added: readonly R[]
  readonly removed: readonly R[]
}

export interface LlqPendingEvent<R> {
  readonly msgId: number
  readonly change: LlqChange<R>
  readonly transmissions: number
  readonly nextAt: number
}

export type LlqGoneReason =
  | 'handshake-timeout'
  | 'cancelled'
  | 'expired'
  | 'unreachable'
  | 'overflow'
  | 'replaced'
  /** The key it was set up with was changed or removed, or the privacy rule no longer lets its user watch it. */
  | 'revoked'

export type LlqState<R> =
  | { readonly kind: 'challenged'; readonly id: bigint; readonly leaseSec: number; readonly deadline: number }
  | { readonly kind: 'established'; readonly id: bigint; readonly leaseSec: number; readonly expiresAt: number }
  | {
      readonly kind: 'notifying'
      readonly id: bigint
      readonly leaseSec: number
      readonly expiresAt: number
      readonly pending: LlqPendingEvent<R>
      readonly queue: readonly { msgId: number; change: LlqChange<R> }[]
    }
  | { readonly kind: 'gone'; readonly id: bigint; readonly reason: LlqGoneReason }

export type LlqEvent<R> =
  | { readonly kind: 'challenge-response'; readonly now: number; readonly leaseSec: number }
  | { readonly kind: 'refresh'; readonly now: number; readonly leaseSec: number }
  | { readonly kind: 'change'; readonly now: number; readonly change: LlqChange<R>; readonly msgId: number }
  | { readonly kind: 'ack'; readonly now: number; readonly msgId: number }
  | { readonly kind: 'cancel'; readonly now: number }
  | { readonly kind: 'timer'; readonly now: number }

export type LlqAction<R> =
  /** ACK + Answers: the fourth message of the handshake (also re-sent for a repeated Challenge Response). */
  | { readonly kind: 'send-answers'; readonly leaseSec: number }
  | { readonly kind: 'send-refresh-ack'; readonly leaseSec: number }
  | {
      readonly kind: 'send-event'
      readonly msgId: number
      readonly change: LlqChange<R>
      readonly transmission: number
    }
  | { readonly kind: 'send-error'; readonly error: LlqErrorValue }
  | { readonly kind: 'deleted'; readonly reason: LlqGoneReason }

export interface LlqStep<R> {
  readonly state: LlqState<R>
  readonly actions: readonly LlqAction<R>[]
}

export function newChallenged<R>(cfg: LlqConfig, id: bigint, requestedLeaseSec: number, now: number): LlqState<R> {
  return {
    kind: 'challenged',
    id,
    leaseSec: clampLease(cfg, requestedLeaseSec),
    deadline: now + cfg.challengeTimeoutMs,
  }
}

/** When the service must feed a `timer` event next (undefined: never). */
export function llqDeadline<R>(s: LlqState<R>): number | undefined {
  switch (s.kind) {
    case 'challenged':
      return s.deadline
    case 'established':
      return s.expiresAt
    case 'notifying':
      return Math.min(s.expiresAt, s.pending.nextAt)
    case 'gone':
      return undefined
  }
}

function gone<R>(id: bigint, reason: LlqGoneReason, extra: LlqAction<R>[] = []): LlqStep<R> {
  return { state: { kind: 'gone', id, reason }, actions: [...extra, { kind: 'deleted', reason }] }
}

function backoffMs(cfg: LlqConfig, transmissions: number): number {
  return cfg.resendMs * 2 ** (transmissions - 1)
}

function startEvent<R>(
  cfg: LlqConfig,
  base: { id: bigint; leaseSec: number; expiresAt: number },
  msgId: number,
  change: LlqChange<R>,
  queue: readonly { msgId: number; change: LlqChange<R> }[],
  now: number,
): LlqStep<R> {
  const pending: LlqPendingEvent<R> = { msgId, change, transmissions: 1, nextAt: now + backoffMs(cfg, 1) }
  return {
    state: { kind: 'notifying', id: base.id, leaseSec: base.leaseSec, expiresAt: base.expiresAt, pending, queue },
    actions: [{ kind: 'send-event', msgId, change, transmission: 1 }],
  }
}

export function step<R>(cfg: LlqConfig, s: LlqState<R>, ev: LlqEvent<R>): LlqStep<R> {
  if (s.kind === 'gone') return { state: s, actions: [] }
  switch (ev.kind) {
    case 'challenge-response': {
      if (s.kind === 'challenged') {
        const leaseSec = s.leaseSec
        return {
          state: { kind: 'established', id: s.id, leaseSec, expiresAt: ev.now + leaseSec * 1000 },
          actions: [{ kind: 'send-answers', leaseSec }],
        }
      }
      // A repeated Challenge Response (our ACK was lost): answer again, state unchanged (RFC 8764 §5.2.4).
      return { state: s, actions: [{ kind: 'send-answers', leaseSec: s.leaseSec }] }
    }
    case 'refresh': {
      if (s.kind === 'challenged') return { state: s, actions: [{ kind: 'send-error', error: LlqError.NO_SUCH_LLQ }] }
      if (ev.leaseSec === 0) return gone(s.id, 'cancelled', [{ kind: 'send-refresh-ack', leaseSec: 0 }])
      const leaseSec = clampLease(cfg, ev.leaseSec)
      const expiresAt = ev.now + leaseSec * 1000
      return { state: { ...s, leaseSec, expiresAt }, actions: [{ kind: 'send-refresh-ack', leaseSec }] }
    }
    case 'cancel':
      return gone(s.id, 'cancelled')
    case 'change': {
      if (s.kind === 'challenged') return { state: s, actions: [] }
      if (s.kind === 'established') return startEvent(cfg, s, ev.msgId, ev.change, [], ev.now)
      if (s.queue.length >= cfg.maxQueuedEvents) return gone(s.id, 'overflow')
      return { state: { ...s, queue: [...s.queue, { msgId: ev.msgId, change: ev.change }] }, actions: [] }
    }
    case 'ack': {
      if (s.kind !== 'notifying' || s.pending.msgId !== ev.msgId) return { state: s, actions: [] }
      const base = { id: s.id, leaseSec: s.leaseSec, expiresAt: s.expiresAt }
      const [next, ...rest] = s.queue
      if (!next) return { state: { kind: 'established', ...base }, actions: [] }
      return startEvent(cfg, base, next.msgId, next.change, rest, ev.now)
    }
    case 'timer': {
      if (s.kind === 'challenged')
        return ev.now >= s.deadline ? gone(s.id, 'handshake-timeout') : { state: s, actions: [] }
      if (ev.now >= s.expiresAt) return gone(s.id, 'expired')
      if (s.kind !== 'notifying' || ev.now < s.pending.nextAt) return { state: s, actions: [] }
      const p = s.pending
      if (p.transmissions >= cfg.maxTransmissions) return gone(s.id, 'unreachable')
      const transmissions = p.transmissions + 1
      const pending = { ...p, transmissions, nextAt: ev.now + backoffMs(cfg, transmissions) }
      return {
        state: { ...s, pending },
        actions: [{ kind: 'send-event', msgId: p.msgId, change: p.change, transmission: transmissions }],
      }
    }
  }
}
