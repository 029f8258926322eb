import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { fanOut, type NotifySubscriber, type NotifyVerdict } from './notify-types.js'
import { changeRecords, type PushOutbound, PushSession } from './push.js'
import { SubscriptionIndex } from './subscriptions.js'

failOnLeakedResources()

const q = { name: 'host.alice.example.', type: 28, class: 1 }

function setup(limits = {}) {
  const clock = new FakeClock()
  const index = new SubscriptionIndex<NotifySubscriber<string>>(limits)
  const out: PushOutbound<string>[] = []
  const zone = new Map<string, string[]>([['host.alice.example.|28', ['fd00::1']]])
  const policy = (qq: { name: string }, user: string | undefined): NotifyVerdict =>
    !qq.name.endsWith('example.')
      ? 'notauth'
      : qq.name.endsWith('alice.example.') && user !== 'alice'
        ? 'refused'
        : 'ok'
  const deps = {
    clock,
    index,
    answer: (qq: { name: string; type: number }) => zone.get(`${qq.name}|${qq.type}`) ?? [],
    policy,
    exists: (_q: unknown, rdata: Buffer) => rdata.toString() === 'fd00::1',
    removal: (_q: unknown, rdata: Buffer) => rdata.toString(),
    send: (m: PushOutbound<string>) => out.push(m),
  }
  const s = new PushSession<string>(deps, '192.0.2.1', { keepaliveMs: 10_000, inactivityMs: 5_000 })
  return { clock, index, out, s, deps }
}

test('keepalive establishes the session; SUBSCRIBE before authentication is REFUSED for a private name', () => {
  const t = setup()
  t.s.receive({ kind: 'keepalive', msgId: 1, inactivityMs: 0, keepaliveMs: 0 })
  assert.deepEqual(t.out.shift(), {
    kind: 'response',
    msgId: 1,
    rcode: 0,
    keepalive: { inactivityMs: 5_000, keepaliveMs: 10_000 },
  })
  assert.equal(t.s.state.kind, 'established')
  t.s.receive({ kind: 'subscribe', msgId: 2, question: q })
  assert.deepEqual(t.out.shift(), { kind: 'response', msgId: 2, rcode: 5 })
  t.s.authenticated('alice')
  t.s.receive({ kind: 'subscribe', msgId: 3, question: q })
  assert.equal((t.out.shift() as { rcode: number }).rcode, 0)
  assert.deepEqual(t.out.shift(), { kind: 'push', records: [{ op: 'add', rr: 'fd00::1' }] })
  t.s.receive({ kind: 'subscribe', msgId: 4, question: { ...q, name: 'HOST.alice.example.' } })
  assert.deepEqual(t.out.shift(), { kind: 'response', msgId: 4, rcode: 1 }, 'duplicate subscription')
  t.s.receive({ kind: 'subscribe', msgId: 5, question: { name: 'x.other.', type: 1, class: 1 } })
  assert.deepEqual(t.out.shift(), { kind: 'response', msgId: 5, rcode: 9 })
  t.s.receive({ kind: 'subscribe', msgId: 6, question: { name: 'public.example.', type: 1, class: 1 } })
  assert.equal((t.out.shift() as { rcode: number }).rcode, 0)
  t.s.close('test')
})

test('changes are pushed in order (removals before additions), unsubscribe stops them', () => {
  const t = setup()
  t.s.authenticated('alice')
  t.s.receive({ kind: 'subscribe', msgId: 7, question: q })
  t.out.length = 0
  fanOut(t.index, [{ name: q.name, type: 28, added: ['fd00::2'], removed: ['fd00::1'] }])
  fanOut(t.index, [{ name: q.name, type: 28, added: ['fd00::3'], removed: [] }])
  assert.deepEqual(
    t.out.map((o) => (o.kind === 'change' ? changeRecords(o.change) : o)),
    [
      [
        { op: 'remove', rr: 'fd00::1' },
        { op: 'add', rr: 'fd00::2' },
      ],
      [{ op: 'add', rr: 'fd00::3' }],
    ],
  )
  t.out.length = 0
  t.s.receive({ kind: 'unsubscribe', subscribeId: 7 })
  fanOut(t.index, [{ name: q.name, type: 28, added: ['fd00::4'], removed: [] }])
  assert.deepEqual(t.out, [])
  assert.equal(t.index.size, 0)
  t.s.close('test')
  assert.equal(t.clock.pending, 0)
})

test('RECONFIRM of a record that no longer exists pushes its removal', () => {
  const t = setup()
  t.s.authenticated('alice')
  t.s.receive({ kind: 'subscribe', msgId: 7, question: q })
  t.out.length = 0
  t.s.receive({ kind: 'reconfirm', question: q, rdata: Buffer.from('fd00::1') })
  assert.deepEqual(t.out, [])
  t.s.receive({ kind: 'reconfirm', question: q, rdata: Buffer.from('fd00::dead') })
  assert.deepEqual(t.out, [{ kind: 'push', records: [{ op: 'remove', rr: 'fd00::dead' }] }])
  t.s.close('test')
})

test('full server: SERVFAIL with RETRY DELAY; per-client limit: REFUSED', () => {
  const t = setup({ total: 1, anonymous: 1 })
  t.s.receive({ kind: 'subscribe', msgId: 1, question: { name: 'a.example.', type: 1, class: 1 } })
  assert.equal((t.out.shift() as { rcode: number }).rcode, 0)
  t.s.receive({ kind: 'subscribe', msgId: 2, question: { name: 'b.example.', type: 1, class: 1 } })
  assert.deepEqual(t.out.shift(), { kind: 'response', msgId: 2, rcode: 2, retryDelayMs: 60_000 })
  t.s.close('test')
  const u = setup({ perClient: 0 })
  u.s.receive({ kind: 'subscribe', msgId: 1, question: { name: 'a.example.', type: 1, class: 1 } })
  assert.deepEqual(u.out.shift(), { kind: 'response', msgId: 1, rcode: 5 })
  u.s.close('test')
})

test('protocol errors and timeouts close the session and free its subscriptions', () => {
  const t = setup()
  t.s.receive({ kind: 'unsubscribe', subscribeId: 1 })
  assert.deepEqual(t.out, [{ kind: 'close', reason: 'dso-before-session' }])
  assert.equal(t.clock.pending, 0)

  const u = setup()
  u.s.receive({ kind: 'subscribe', msgId: 1, question: { name: 'a.example.', type: 1, class: 1 } })
  u.out.length = 0
  u.clock.advance(19_999)
  assert.equal(u.s.state.kind, 'established', 'a session with subscriptions is not idle')
  u.s.receive({ kind: 'keepalive', msgId: 2, inactivityMs: 0, keepaliveMs: 0 })
  u.clock.advance(19_999)
  assert.equal(u.s.state.kind, 'established')
  u.clock.advance(1)
  assert.deepEqual(u.out.at(-1), { kind: 'close', reason: 'keepalive' })
  assert.equal(u.index.size, 0)
  assert.equal(u.clock.pending, 0)

  const v = setup()
  v.s.receive({ kind: 'keepalive', msgId: 1, inactivityMs: 0, keepaliveMs: 0 })
  v.clock.advance(5_000)
  assert.deepEqual(v.out.at(-1), { kind: 'close', reason: 'idle' })
  const w = setup()
  w.s.receive({ kind: 'unknown-request', msgId: 9, tlvType: 0x7777 })
  assert.deepEqual(w.out.shift(), { kind: 'response', msgId: 9, rcode: 11 })
  w.s.close('test')
})
