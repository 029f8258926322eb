import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { clampLease, DEFAULT_LLQ_CONFIG, type LlqState, llqDeadline, newChallenged, step } from './llq.js'

failOnLeakedResources()

const cfg = { ...DEFAULT_LLQ_CONFIG, resendMs: 1000 }
const change = (v: string) => ({ added: [v], removed: [] as string[] })

function established(now = 0): LlqState<string> {
  const s = newChallenged<string>(cfg, 7n, 3600, now)
  return step(cfg, s, { kind: 'challenge-response', now, leaseSec: 3600 }).state
}

test('lease is clamped to [min, max]', () => {
  for (const [req, want] of [
    [0, 900],
    [10, 900],
    [900, 900],
    [3600, 3600],
    [7200, 7200],
    [99999, 7200],
  ] as const)
    assert.equal(clampLease(cfg, req), want, `requested ${req}`)
})

test('handshake: challenged -> established with ACK + answers; a repeated challenge response re-sends them', () => {
  const c = newChallenged<string>(cfg, 7n, 60, 0)
  assert.equal(c.kind, 'challenged')
  assert.equal(llqDeadline(c), cfg.challengeTimeoutMs)
  const r = step(cfg, c, { kind: 'challenge-response', now: 5, leaseSec: 60 })
  assert.equal(r.state.kind, 'established')
  assert.deepEqual(r.actions, [{ kind: 'send-answers', leaseSec: 900 }])
  assert.equal(llqDeadline(r.state), 5 + 900_000)
  const again = step(cfg, r.state, { kind: 'challenge-response', now: 6, leaseSec: 60 })
  assert.equal(again.state, r.state)
  assert.deepEqual(again.actions, [{ kind: 'send-answers', leaseSec: 900 }])
})

test('an unanswered challenge times out', () => {
  const c = newChallenged<string>(cfg, 7n, 60, 0)
  assert.equal(step(cfg, c, { kind: 'timer', now: cfg.challengeTimeoutMs - 1 }).state.kind, 'challenged')
  const r = step(cfg, c, { kind: 'timer', now: cfg.challengeTimeoutMs })
  assert.deepEqual(r.state, { kind: 'gone', id: 7n, reason: 'handshake-timeout' })
  assert.deepEqual(r.actions, [{ kind: 'deleted', reason: 'handshake-timeout' }])
})

test('refresh extends the lease (clamped); lease 0 cancels; refresh before the handshake is NO-SUCH-LLQ', () => {
  const s = established()
  const r = step(cfg, s, { kind: 'refresh', now: 1000, leaseSec: 100000 })
  assert.deepEqual(r.actions, [{ kind: 'send-refresh-ack', leaseSec: 7200 }])
  assert.equal(llqDeadline(r.state), 1000 + 7200_000)
  const c = step(cfg, r.state, { kind: 'refresh', now: 2000, leaseSec: 0 })
  assert.equal(c.state.kind, 'gone')
  assert.deepEqual(c.actions, [
    { kind: 'send-refresh-ack', leaseSec: 0 },
    { kind: 'deleted', reason: 'cancelled' },
  ])
  const early = step(cfg, newChallenged<string>(cfg, 1n, 60, 0), { kind: 'refresh', now: 1, leaseSec: 60 })
  assert.deepEqual(early.actions, [{ kind: 'send-error', error: 4 }])
})

test('the lease runs out', () => {
  const s = established()
  assert.equal(step(cfg, s, { kind: 'timer', now: 3600_000 - 1 }).state.kind, 'established')
  assert.equal(step(cfg, s, { kind: 'timer', now: 3600_000 }).state.kind, 'gone')
})

test('an unacknowledged event is sent exactly 3 times with exponential back-off, then the LLQ is deleted', () => {
  let s = step(cfg, established(), { kind: 'change', now: 0, change: change('a'), msgId: 42 })
  const sent: [number, number][] = [] // [time, transmission]
  for (const a of s.actions) if (a.kind === 'send-event') sent.push([0, a.transmission])
  let st = s.state
  for (let t = 1; t <= 20_000 && st.kind !== 'gone'; t++) {
    s = step(cfg, st, { kind: 'timer', now: t })
    for (const a of s.actions) if (a.kind === 'send-event') sent.push([t, a.transmission])
    st = s.state
    if (st.kind === 'gone') assert.equal(t, 7000)
  }
  assert.deepEqual(sent, [
    [0, 1],
    [1000, 2],
    [3000, 3],
  ])
  assert.deepEqual(st, { kind: 'gone', id: 7n, reason: 'unreachable' })
})

test('an ack stops retransmission; queued events follow in order; a stale ack is ignored', () => {
  let r = step(cfg, established(), { kind: 'change', now: 0, change: change('a'), msgId: 1 })
  r = step(cfg, r.state, { kind: 'change', now: 10, change: change('b'), msgId: 2 })
  assert.deepEqual(r.actions, [])
  r = step(cfg, r.state, { kind: 'ack', now: 20, msgId: 99 })
  assert.equal(r.state.kind, 'notifying')
  assert.deepEqual(r.actions, [])
  r = step(cfg, r.state, { kind: 'ack', now: 30, msgId: 1 })
  assert.deepEqual(r.actions, [{ kind: 'send-event', msgId: 2, change: change('b'), transmission: 1 }])
  assert.equal(llqDeadline(r.state), 30 + 1000)
  r = step(cfg, r.state, { kind: 'ack', now: 40, msgId: 2 })
  assert.equal(r.state.kind, 'established')
  assert.deepEqual(r.actions, [])
})

test('a queue that overflows deletes the LLQ; events before the handshake are ignored', () => {
  const small = { ...cfg, maxQueuedEvents: 1 }
  let r = step(small, established(), { kind: 'change', now: 0, change: change('a'), msgId: 1 })
  r = step(small, r.state, { kind: 'change', now: 0, change: change('b'), msgId: 2 })
  r = step(small, r.state, { kind: 'change', now: 0, change: change('c'), msgId: 3 })
  assert.deepEqual(r.state, { kind: 'gone', id: 7n, reason: 'overflow' })
  const c = newChallenged<string>(cfg, 1n, 60, 0)
  assert.deepEqual(step(cfg, c, { kind: 'change', now: 0, change: change('a'), msgId: 1 }).actions, [])
})

test('gone is terminal', () => {
  const g: LlqState<string> = { kind: 'gone', id: 1n, reason: 'cancelled' }
  for (const ev of [
    { kind: 'timer', now: 1 },
    { kind: 'ack', now: 1, msgId: 1 },
    { kind: 'refresh', now: 1, leaseSec: 100 },
  ] as const)
    assert.deepEqual(step(cfg, g, ev), { state: g, actions: [] })
  assert.equal(llqDeadline(g), undefined)
})
