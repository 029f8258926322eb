import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { FakeRandom } from '../io/random.fake.js'
import { LlqError, LlqOpcode } from './llq.js'
import { type LlqOutboundEvent, type LlqPeer, type LlqReply, LlqService } from './notify-llq-service.js'
import { fanOut, type NotifySubscriber, type NotifyVerdict } from './notify-types.js'
import { SubscriptionIndex } from './subscriptions.js'

failOnLeakedResources()

const peer: LlqPeer = { key: 'udp:192.0.2.1:5353', client: '192.0.2.1' }
const q = { name: 'host.alice.example.', type: 28, class: 1 }

function setup(limits = {}) {
  const clock = new FakeClock()
  const index = new SubscriptionIndex<NotifySubscriber<string>>(limits)
  const sent: LlqOutboundEvent<string>[] = []
  const zone = new Map<string, string[]>([['host.alice.example.|28', ['fd00::1']]])
  const policy = (qq: { name: string }, user: string | undefined): NotifyVerdict =>
    qq.name.endsWith('alice.example.') && user !== 'alice' ? 'refused' : 'ok'
  const svc = new LlqService<string>(
    {
      clock,
      random: new FakeRandom(1),
      index,
      answer: (qq) => zone.get(`${qq.name}|${qq.type}`) ?? [],
      policy,
      sendEvent: (e) => sent.push(e),
    },
    { resendMs: 500 },
  )
  return { clock, index, sent, svc }
}

function opt(opcode: number, id: bigint, leaseSec: number) {
  return { version: 1, opcode, error: 0, id, leaseSec }
}

function llq(r: LlqReply<string>) {
  assert.equal(r.kind, 'llq')
  return r as Extract<LlqReply<string>, { kind: 'llq' }>
}

function handshake(s: ReturnType<typeof setup>, user: string | undefined = 'alice') {
  const c = llq(s.svc.handle({ question: q, opt: opt(LlqOpcode.SETUP, 0n, 3600), peer, user }))
  assert.equal(c.opt.error, LlqError.NO_ERROR)
  assert.notEqual(c.opt.id, 0n)
  assert.deepEqual(c.answers, [])
  const again = llq(s.svc.handle({ question: q, opt: opt(LlqOpcode.SETUP, 0n, 3600), peer, user }))
  assert.equal(again.opt.id, c.opt.id, 'a repeated initial request gets the same challenge')
  const ack = llq(s.svc.handle({ question: q, opt: opt(LlqOpcode.SETUP, c.opt.id, 3600), peer, user }))
  assert.deepEqual(ack.answers, ['fd00::1'])
  assert.equal(ack.opt.leaseSec, 3600)
  return c.opt.id
}

test('four-way handshake, an event, its ack; the timers end with the LLQ', () => {
  const s = setup()
  const id = handshake(s)
  assert.equal(s.svc.state(id)?.kind, 'established')
  fanOut(s.index, [{ name: 'HOST.alice.example.', type: 28, added: ['fd00::2'], removed: ['fd00::1'] }])
  assert.equal(s.sent.length, 1)
  const ev = s.sent[0]!
  assert.deepEqual([ev.added, ev.removed, ev.opt.opcode, ev.opt.id], [['fd00::2'], ['fd00::1'], 3, id])
  assert.equal(s.svc.ack(peer, id, ev.msgId), 'refused', 'the LLQ was set up by alice: an unsigned ack is not hers')
  assert.equal(s.svc.ack(peer, id, ev.msgId, 'alice'), 'ok')
  s.clock.advance(10_000)
  assert.equal(s.sent.length, 1, 'no retransmission after the ack')
  const cancel = llq(s.svc.handle({ question: q, opt: opt(LlqOpcode.REFRESH, id, 0), peer, user: 'alice' }))
  assert.equal(cancel.opt.leaseSec, 0)
  assert.equal(s.svc.size, 0)
  assert.equal(s.index.size, 0)
  assert.equal(s.clock.pending, 0)
})

test('no ack: exactly 3 transmissions (0, 0.5 s, 1.5 s), then the LLQ is gone at 3.5 s', () => {
  const s = setup()
  const id = handshake(s)
  const t0 = s.clock.monotonic()
  const times: number[] = []
  const svc = s.svc
  fanOut(s.index, [{ name: q.name, type: 28, added: ['fd00::9'], removed: [] }])
  times.push(s.clock.monotonic() - t0)
  const sentBefore = s.sent.length
  for (let i = 0; i < 100; i++) {
    s.clock.advance(50)
    while (times.length < s.sent.length - sentBefore + 1) times.push(s.clock.monotonic() - t0)
  }
  assert.deepEqual(times, [0, 500, 1500])
  assert.deepEqual(
    s.sent.map((e) => e.transmission),
    [1, 2, 3],
  )
  assert.equal(new Set(s.sent.map((e) => e.msgId)).size, 1, 'retransmissions reuse the message ID')
  assert.equal(svc.state(id), undefined)
  assert.equal(svc.stats.deleted.unreachable, 1)
  const r = llq(svc.handle({ question: q, opt: opt(LlqOpcode.REFRESH, id, 3600), peer, user: 'alice' }))
  assert.equal(r.opt.error, LlqError.NO_SUCH_LLQ)
  assert.equal(s.clock.pending, 0)
})

test('errors: bad version, bad opcode, unknown id, refused without the owner key, server full', () => {
  const s = setup({ perClient: 1 })
  const bad = llq(s.svc.handle({ question: q, opt: { ...opt(1, 0n, 60), version: 2 }, peer, user: 'alice' }))
  assert.equal(bad.opt.error, LlqError.BAD_VERS)
  const op = llq(s.svc.handle({ question: q, opt: opt(9, 0n, 60), peer, user: 'alice' }))
  assert.equal(op.opt.error, LlqError.FORMAT_ERR)
  const unk = llq(s.svc.handle({ question: q, opt: opt(LlqOpcode.REFRESH, 1234n, 60), peer, user: 'alice' }))
  assert.equal(unk.opt.error, LlqError.NO_SUCH_LLQ)
  assert.deepEqual(s.svc.handle({ question: q, opt: opt(1, 0n, 60), peer, user: undefined }), {
    kind: 'rcode',
    rcode: 5,
  })
  assert.deepEqual(s.svc.handle({ question: q, opt: opt(1, 0n, 60), peer, user: 'bob' }), { kind: 'rcode', rcode: 5 })
  handshake(s)
  const q2 = { name: 'public.example.', type: 1, class: 1 }
  const full = llq(s.svc.handle({ question: q2, opt: opt(1, 0n, 60), peer, user: undefined }))
  assert.equal(full.opt.error, LlqError.SERV_FULL)
  s.svc.close()
  assert.equal(s.clock.pending, 0)
})

test('a challenge response from another peer or user does not complete the handshake', () => {
  const s = setup()
  const c = llq(s.svc.handle({ question: q, opt: opt(1, 0n, 60), peer, user: 'alice' }))
  const other = { key: 'udp:192.0.2.9:1', client: '192.0.2.9' }
  const r1 = llq(s.svc.handle({ question: q, opt: opt(1, c.opt.id, 60), peer: other, user: 'alice' }))
  assert.equal(r1.opt.error, LlqError.NO_SUCH_LLQ)
  assert.deepEqual(s.svc.handle({ question: q, opt: opt(1, c.opt.id, 60), peer, user: undefined }), {
    kind: 'rcode',
    rcode: 5,
  })
  assert.equal(s.svc.state(c.opt.id)?.kind, 'challenged')
  s.clock.advance(30_000)
  assert.equal(s.svc.size, 0)
  assert.equal(s.index.size, 0)
})

test('lease expiry and a dropped TCP peer remove LLQs', () => {
  const s = setup()
  handshake(s)
  s.clock.advance(3600_000)
  assert.equal(s.svc.size, 0)
  assert.equal(s.svc.stats.deleted.expired, 1)
  const tcp = { key: 'conn:1', client: '192.0.2.1' }
  const c = llq(s.svc.handle({ question: q, opt: opt(1, 0n, 60), peer: tcp, user: 'alice' }))
  llq(s.svc.handle({ question: q, opt: opt(1, c.opt.id, 60), peer: tcp, user: 'alice' }))
  s.svc.dropPeer('conn:1')
  assert.equal(s.svc.size, 0)
  assert.equal(s.index.size, 0)
  assert.equal(s.clock.pending, 0)
})
