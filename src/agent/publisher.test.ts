import assert from 'node:assert/strict'
import { test } from 'node:test'
import { UpdateError, type UpdateRequest, type UpdateResult, type UpdateSink } from '../dns/client/update.js'
import { Rcode } from '../dns/wire/header.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { Publisher, type PublisherEvent, type PublisherState, stepPublisher } from './publisher.js'
import { type HostRecordsInput, hostRecords, presentRR, rrKey, rrsetKey } from './records.js'

failOnLeakedResources()

/** An update sink holding a zone in memory with RFC 2136 3.4.2 semantics for the three update forms. */
class FakeZone implements UpdateSink {
  readonly rrs = new Map<string, RR>()
  readonly requests: UpdateRequest[] = []
  fail = 0
  grant: (asked: number | undefined) => number | undefined = (s) => s
  pending: (() => void) | undefined
  hold = false

  async update(req: UpdateRequest): Promise<UpdateResult> {
    this.requests.push(req)
    if (this.hold) await new Promise<void>((r) => (this.pending = r))
    if (this.fail > 0) {
      this.fail--
      throw new Error('timeout')
    }
    for (const u of req.updates) {
      if (u.class === RRClass.ANY) {
        for (const [k, r] of this.rrs) if (rrsetKey(r) === rrsetKey(u)) this.rrs.delete(k)
      } else if (u.class === RRClass.NONE) this.rrs.delete(rrKey(u))
      else this.rrs.set(rrKey(u), u)
    }
    return { rcode: 0, leaseSec: this.grant(req.leaseSec), via: 'fake' }
  }
  text(): string[] {
    return [...this.rrs.values()].map(presentRR).sort()
  }
}

const base: HostRecordsInput = {
  hostname: 'desktop',
  domain: 'alice.members.example',
  ula: 'fd11:2233:4455:6677:22:69ff:fe8e:342a',
  label: 'AutoTunnel-00-22-69-FF-FE-8E-34-2A',
  endpoint: { address: '203.0.113.1', port: 4500 },
  nat: 'natpmp',
  services: [{ type: '_ssh._tcp', port: 22 }],
  ttlSec: 60,
  agentVersion: '0.1.0',
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
}

function setup(opts: ConstructorParameters<typeof Publisher>[1] = {}) {
  const clock = new FakeClock()
  const zone = new FakeZone()
  const log = new MemoryLogger()
  const pub = new Publisher({ clock, log, sink: zone }, opts)
  return { clock, zone, log, pub }
}

test('first publish is one UPDATE (owned RRsets deleted, then the adds) with the 90-minute lease; the zone then holds the seed 002 records', async () => {
  const { zone, pub, clock } = setup()
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  assert.equal(zone.requests.length, 1)
  const req = zone.requests[0]!
  assert.equal(req.leaseSec, 5400)
  assert.equal(req.zone, 'members.example.')
  const firstAdd = req.updates.findIndex((u) => u.class === RRClass.IN)
  assert.ok(req.updates.slice(0, firstAdd).every((u) => u.class === RRClass.ANY))
  assert.ok(req.updates.slice(firstAdd).every((u) => u.class === RRClass.IN))
  assert.equal(req.updates.length - firstAdd, hostRecords(base).length)
  const t = zone.text()
  const has = (s: string): void => assert.ok(t.includes(s), `${s} in\n${t.join('\n')}`)
  has('AutoTunnel-00-22-69-FF-FE-8E-34-2A.alice.members.example. 60 IN AAAA fd11:2233:4455:6677:22:69ff:fe8e:342a')
  has('AutoTunnel-00-22-69-FF-FE-8E-34-2A.alice.members.example. 60 IN A 203.0.113.1')
  has(
    '_autotunnel._udp.desktop.alice.members.example. 60 IN SRV 0 0 4500 AutoTunnel-00-22-69-FF-FE-8E-34-2A.alice.members.example.',
  )
  has('desktop.alice.members.example. 60 IN AAAA fd11:2233:4455:6677:22:69ff:fe8e:342a')
  has('_ssh._tcp.alice.members.example. 60 IN PTR desktop._ssh._tcp.alice.members.example.')
  has('desktop._ssh._tcp.alice.members.example. 60 IN SRV 0 0 22 desktop.alice.members.example.')
  has('_autotunnel._udp.alice.members.example. 60 IN PTR _autotunnel._udp.desktop.alice.members.example.')
  assert.ok(t.some((s) => s.includes(' TXT ') && s.includes('"nat=natpmp"')))
  assert.equal(pub.status().records.length, hostRecords(base).length)
  assert.equal(pub.status().records[0]?.leaseLeftSec, 5400)
  clock.advance(1000)
  assert.equal(pub.status().records[0]?.leaseLeftSec, 5399)
  pub.stop()
})

test('setting the same records again sends nothing (a netlink event that changed nothing)', async () => {
  const { zone, pub } = setup()
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  assert.equal(zone.requests.length, 1)
  pub.stop()
})

test('refresh at 75% of the granted lease re-adds the same records without deleting anything', async () => {
  const { zone, pub, clock } = setup({ leaseSec: 5400 })
  zone.grant = () => 3600
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  clock.advance(2700 * 1000 - 1)
  await flush()
  assert.equal(zone.requests.length, 1)
  clock.advance(1)
  await pub.settled()
  await flush()
  assert.equal(zone.requests.length, 2)
  const r = zone.requests[1]!
  assert.ok(r.updates.every((u) => u.class === RRClass.IN))
  assert.equal(r.updates.length, hostRecords(base).length)
  assert.equal(pub.status().leaseSec, 3600)
  pub.stop()
  assert.equal(clock.pending, 0)
})

test('a new external address and port replace A and SRV in one UPDATE, leaving no trace of the old ones', async () => {
  const { zone, pub } = setup()
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  const before = zone.text()
  pub.set('members.example.', hostRecords({ ...base, endpoint: { address: '198.51.100.7', port: 40001 } }))
  await pub.settled()
  assert.equal(zone.requests.length, 2)
  const r = zone.requests[1]!
  const deletes = r.updates.filter((u) => u.class !== RRClass.IN)
  assert.deepEqual(deletes.map((d) => [d.name, d.type, d.class]).sort(), [
    ['AutoTunnel-00-22-69-FF-FE-8E-34-2A.alice.members.example.', RRType.A, RRClass.ANY],
    ['_autotunnel._udp.desktop.alice.members.example.', RRType.SRV, RRClass.ANY],
  ])
  const after = zone.text()
  assert.equal(after.length, before.length)
  assert.ok(after.some((s) => s.endsWith('IN A 198.51.100.7')))
  assert.ok(!after.some((s) => s.includes('203.0.113.1')))
  assert.ok(after.some((s) => s.includes('SRV 0 0 40001 AutoTunnel')))
  pub.stop()
})

test('the first UPDATE after a crash replaces the owned RRsets the dead process left, keeping one ULA', async () => {
  const { zone, pub } = setup()
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  pub.stop()
  const restarted = new Publisher({ sink: zone, clock: new FakeClock(), log: new MemoryLogger() })
  const ula = 'fd00:1111:2222:3333:22:69ff:fe8e:342a'
  restarted.set('members.example.', hostRecords({ ...base, ula }))
  await restarted.settled()
  const aaaa = zone.text().filter((s) => s.includes(' AAAA '))
  assert.equal(aaaa.length, 2, aaaa.join('\n'))
  assert.ok(
    aaaa.every((s) => s.endsWith(ula)),
    aaaa.join('\n'),
  )
  const deletes = zone.requests[1]!.updates.filter((u) => u.class !== RRClass.IN)
  assert.ok(deletes.every((d) => d.class === RRClass.ANY))
  assert.equal(
    deletes.length,
    new Set(
      hostRecords(base)
        .filter((p) => p.sharing === 'owned')
        .map((p) => rrsetKey(p.rr)),
    ).size,
  )
  restarted.stop()
})

test('a service removed: its shared PTR record is deleted by value, its own RRsets as sets', async () => {
  const { zone, pub } = setup()
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  pub.set('members.example.', hostRecords({ ...base, services: [] }))
  await pub.settled()
  const r = zone.requests[1]!
  const ptrDelete = r.updates.find((u) => u.type === RRType.PTR && u.class !== RRClass.IN)
  assert.equal(ptrDelete?.class, RRClass.NONE)
  assert.equal(ptrDelete?.name, '_ssh._tcp.alice.members.example.')
  assert.ok(!zone.text().some((s) => s.includes('desktop._ssh._tcp')))
  pub.stop()
})

test('failures back off 1 s, 2 s, 4 s, then the records go out; a success resets the back-off', async () => {
  const { zone, pub, clock } = setup()
  zone.fail = 3
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  assert.equal(pub.state.kind, 'backoff')
  const sendsAt: number[] = []
  for (let ms = 0; ms < 8000; ms += 250) {
    const n = zone.requests.length
    clock.advance(250)
    await pub.settled()
    await flush()
    if (zone.requests.length > n) sendsAt.push(clock.monotonic())
  }
  assert.deepEqual(sendsAt, [1000, 3000, 7000])
  assert.equal(pub.state.kind, 'published')
  assert.equal(pub.failures, 3)
  assert.equal(zone.text().length, hostRecords(base).length)
  pub.stop()
})

test('changes made while an UPDATE is in flight are coalesced into one follow-up UPDATE', async () => {
  const { zone, pub } = setup()
  zone.hold = true
  pub.set('members.example.', hostRecords(base))
  await flush()
  for (const port of [5000, 5001, 5002])
    pub.set('members.example.', hostRecords({ ...base, endpoint: { address: '203.0.113.1', port } }))
  zone.hold = false
  zone.pending?.()
  await pub.settled()
  await flush()
  await pub.settled()
  assert.equal(zone.requests.length, 2)
  assert.ok(zone.text().some((s) => s.includes('SRV 0 0 5002 AutoTunnel')))
  pub.stop()
})

test('withdraw deletes everything this host owns in one UPDATE and keeps the shared type-enumeration PTR', async () => {
  const { zone, pub, clock } = setup()
  const other = hostRecords({ ...base, hostname: 'laptop', label: 'AutoTunnel-02-00-00-FF-FE-00-00-01' })
  for (const p of other) zone.rrs.set(rrKey(p.rr), p.rr)
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  await pub.withdraw()
  assert.equal(zone.requests.length, 2)
  assert.equal(zone.requests[1]?.leaseSec, undefined)
  assert.deepEqual(zone.text(), other.map((p) => presentRR(p.rr)).sort())
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  assert.equal(zone.requests.length, 2, 'set() after withdraw is ignored')
  assert.equal(clock.pending, 0)
})

test('stepPublisher: the transitions of the diagram, withdrawn is final, a late answer is ignored', () => {
  const idle: PublisherState = { kind: 'idle' }
  const sending: PublisherState = { kind: 'sending', since: 10 }
  const published: PublisherState = { kind: 'published', refreshAt: 500 }
  const backoff: PublisherState = { kind: 'backoff', retryAt: 20, error: 'x' }
  const withdrawn: PublisherState = { kind: 'withdrawn' }
  const send: PublisherEvent = { kind: 'send', now: 10 }
  const granted: PublisherEvent = { kind: 'granted', now: 100, refreshMs: 400 }
  const failed: PublisherEvent = { kind: 'failed', now: 10, retryMs: 1000, error: 'timeout' }
  const withdraw: PublisherEvent = { kind: 'withdraw' }
  const cases: [string, PublisherState, PublisherEvent, PublisherState][] = [
    ['idle + send', idle, send, sending],
    ['published + send (refresh or set)', published, send, sending],
    ['backoff + send (retry)', backoff, send, sending],
    ['sending + granted', sending, granted, published],
    ['sending + failed', sending, failed, { kind: 'backoff', retryAt: 1010, error: 'timeout' }],
    ['idle + granted (no UPDATE out)', idle, granted, idle],
    ['published + failed (no UPDATE out)', published, failed, published],
    ['sending + withdraw', sending, withdraw, withdrawn],
    ['withdrawn + send', withdrawn, send, withdrawn],
    ['withdrawn + granted', withdrawn, granted, withdrawn],
    ['withdrawn + failed', withdrawn, failed, withdrawn],
  ]
  for (const [name, from, event, want] of cases) assert.deepEqual(stepPublisher(from, event), want, name)
})

test('a configuration error (wrong key) is not retried: onFatal fires once with the message (issue 13 finding 3)', async () => {
  const clock = new FakeClock()
  const log = new MemoryLogger()
  const requests: UpdateRequest[] = []
  const sink: UpdateSink = {
    update: async (req) => {
      requests.push(req)
      throw new UpdateError('wrong key or key secret: ...', Rcode.BADKEY, {
        explained: { kind: 'key', fatal: true, message: 'wrong key or key secret: ...' },
      })
    },
  }
  const pub = new Publisher({ clock, log, sink }, {})
  const fatal: string[] = []
  pub.onFatal((m) => fatal.push(m))
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  clock.advance(120_000)
  await flush()
  await pub.settled()
  assert.deepEqual(fatal, ['wrong key or key secret: ...'])
  assert.equal(requests.length, 1, 'no retry')
  pub.stop()
})

test('a transient error (no answer) keeps retrying and never calls onFatal', async () => {
  const clock = new FakeClock()
  const log = new MemoryLogger()
  let n = 0
  const sink: UpdateSink = {
    update: async () => {
      n++
      throw new UpdateError('no answer', -1, {
        explained: { kind: 'unreachable', fatal: false, message: 'no answer from udp:192.0.2.1:53' },
      })
    },
  }
  const pub = new Publisher({ clock, log, sink }, {})
  const fatal: string[] = []
  pub.onFatal((m) => fatal.push(m))
  pub.set('members.example.', hostRecords(base))
  for (let i = 0; i < 40; i++) {
    clock.advance(1000)
    await flush()
    await pub.settled()
  }
  assert.ok(n >= 4, `retried (${n} attempts)`)
  assert.deepEqual(fatal, [])
  pub.stop()
})

test('refreshNow sends the refresh at once when published, and not while an UPDATE is in flight', async () => {
  const { zone, pub, clock } = setup({ leaseSec: 5400 })
  zone.grant = () => 3600
  pub.refreshNow()
  await flush()
  assert.equal(zone.requests.length, 0, 'nothing published yet: nothing to refresh')
  pub.set('members.example.', hostRecords(base))
  await pub.settled()
  assert.equal(zone.requests.length, 1)
  pub.refreshNow()
  await pub.settled()
  await flush()
  assert.equal(zone.requests.length, 2, 'the refresh went out before its time')
  assert.ok(
    zone.requests[1]!.updates.every((u) => u.class === RRClass.IN),
    'a refresh deletes nothing',
  )
  assert.equal(pub.status().state, 'published')
  // The next refresh is timed from this one: nothing more until 75% of the lease has passed again.
  clock.advance(2700 * 1000 - 1)
  await flush()
  assert.equal(zone.requests.length, 2)
  zone.hold = true
  clock.advance(1)
  await flush()
  assert.equal(zone.requests.length, 3)
  pub.refreshNow()
  await flush()
  assert.equal(zone.requests.length, 3, 'no second UPDATE beside the one in flight')
  zone.hold = false
  zone.pending?.()
  await pub.settled()
  pub.stop()
  assert.equal(clock.pending, 0)
})
