import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { MemoryLogger } from '../io/log.js'
import { choosePath, type NatView, PUNCH_DURATION_MS, PUNCH_INTERVAL_MS, Puncher, pathLabel } from './punch.js'

const EP = { address: '203.0.113.13', port: 4500 }
const LAN = { address: '10.30.0.11', port: 4500 }

test('punch schedule: 0xFF now and every 200 ms for 5 s, then nothing', () => {
  const clock = new FakeClock()
  const sent: number[] = []
  const p = new Puncher({ clock, log: new MemoryLogger(), send: () => sent.push(clock.monotonic()) })
  p.punch('b', EP)
  assert.equal(p.active, 1)
  for (let t = 0; t < 8000; t += 10) clock.advance(10)
  assert.equal(sent.length, PUNCH_DURATION_MS / PUNCH_INTERVAL_MS + 1)
  assert.deepEqual(sent.slice(0, 3), [0, 200, 400])
  assert.equal(sent.at(-1), PUNCH_DURATION_MS)
  assert.equal(p.active, 0)
  assert.equal(clock.pending, 0)
})

test('punch again during a burst extends it (no second timer) and a new endpoint is sent to at once', () => {
  const clock = new FakeClock()
  const to: string[] = []
  const p = new Puncher({ clock, log: new MemoryLogger(), send: (ep) => to.push(`${clock.monotonic()}@${ep.port}`) })
  p.punch('b', EP)
  clock.advance(1000)
  p.punch('b', { ...EP, port: 4501 })
  assert.equal(clock.pending, 1)
  assert.equal(to.at(-1), '1000@4501')
  for (let t = 0; t < 8000; t += 10) clock.advance(10)
  assert.equal(to.at(-1), `${6000}@4501`)
  assert.equal(p.counters.bursts, 1)
  p.punch('c', EP)
  p.close()
  assert.equal(clock.pending, 0)
})

const unmapped = (mapping?: 'eim' | 'symmetric', stun = EP): NatView => ({ nat: 'unmapped', stun, mapping })

test('choosePath: table', () => {
  const rows: { name: string; self: NatView | undefined; peer: NatView & { endpoint?: typeof EP }; want: string }[] = [
    { name: 'both mapped', self: { nat: 'pcp' }, peer: { nat: 'upnp', endpoint: EP }, want: 'direct' },
    { name: 'we unmapped, peer public', self: unmapped('eim'), peer: { nat: 'public', endpoint: EP }, want: 'punch' },
    {
      name: 'peer unmapped without stun',
      self: unmapped('eim'),
      peer: { nat: 'unmapped', endpoint: LAN },
      want: 'lan',
    },
    {
      name: 'peer eim, we eim',
      self: unmapped('eim', { address: '203.0.113.11', port: 4500 }),
      peer: { ...unmapped('eim'), endpoint: LAN },
      want: 'stun+punch',
    },
    {
      name: 'peer eim, we unknown',
      self: unmapped(undefined, { address: '203.0.113.11', port: 4500 }),
      peer: { ...unmapped('eim'), endpoint: LAN },
      want: 'stun+punch',
    },
    {
      name: 'same NAT',
      self: unmapped('eim'),
      peer: { ...unmapped('eim', { ...EP, port: 9 }), endpoint: LAN },
      want: 'lan',
    },
    {
      name: 'peer symmetric, we mapped',
      self: { nat: 'natpmp' },
      peer: { ...unmapped('symmetric'), endpoint: LAN },
      want: 'stun',
    },
    {
      name: 'peer symmetric, we eim',
      self: unmapped('eim', { address: '203.0.113.11', port: 4500 }),
      peer: { ...unmapped('symmetric'), endpoint: LAN },
      want: 'relay',
    },
    {
      name: 'we symmetric, peer eim',
      self: unmapped('symmetric', { address: '203.0.113.14', port: 1 }),
      peer: { ...unmapped('eim'), endpoint: LAN },
      want: 'relay',
    },
    {
      name: 'we symmetric, peer mapped',
      self: unmapped('symmetric', { address: '203.0.113.14', port: 1 }),
      peer: { nat: 'pcp', endpoint: EP },
      want: 'punch',
    },
  ]
  for (const r of rows) {
    const d = choosePath(r.self, r.peer)
    const got = d.relay
      ? 'relay'
      : d.viaStun
        ? d.punch
          ? 'stun+punch'
          : 'stun'
        : d.punch
          ? 'punch'
          : d.endpoint === LAN
            ? 'lan'
            : 'direct'
    assert.equal(got, r.want, r.name)
  }
})

test('pathLabel', () => {
  const punched = choosePath(unmapped('eim', { address: '203.0.113.11', port: 1 }), {
    ...unmapped('eim'),
    endpoint: LAN,
  })
  assert.equal(pathLabel(punched, true), 'punched')
  assert.equal(pathLabel(punched, false), 'punching')
  const relay = choosePath(unmapped('eim', { address: '203.0.113.11', port: 1 }), unmapped('symmetric'))
  assert.match(pathLabel(relay, false), /^unreachable: needs relay \(/)
  assert.equal(pathLabel(choosePath({ nat: 'public' }, { nat: 'pcp', endpoint: EP }), false), 'direct')
})

test("choosePath with relays (docs/relay.md): the peer's relay= is its endpoint, our own relay carries ours", () => {
  const R1 = { address: '198.51.100.20', port: 49152 }
  const R2 = { address: '198.51.100.20', port: 49153 }
  const STUN_P = { address: '203.0.113.14', port: 61000 }
  const STUN_E = { address: '203.0.113.13', port: 4500 }
  const sym = (relay?: typeof R1): NatView => ({ nat: 'unmapped', stun: STUN_P, mapping: 'symmetric', relay })
  const eim: NatView = { nat: 'unmapped', stun: STUN_E, mapping: 'eim' }
  // We are EIM, the peer symmetric with a relay: send to its relay, punch toward it.
  let d = choosePath(eim, { ...sym(R1), endpoint: LAN })
  assert.deepEqual([d.endpoint, d.punch, d.viaRelay, d.relayed, d.relay], [R1, true, false, true, undefined])
  assert.equal(pathLabel(d, false), 'relay')
  assert.equal(pathLabel(d, true), 'relay')
  // We are symmetric with a relay, the peer EIM: its stun= through our relay.
  d = choosePath(sym(R1), { ...eim, endpoint: LAN })
  assert.deepEqual([d.endpoint, d.punch, d.viaRelay, d.relayed], [STUN_E, false, true, true])
  // Both symmetric with relays: its relay through ours.
  d = choosePath(sym(R1), { ...sym(R2), stun: { ...STUN_P, address: '203.0.113.15' }, endpoint: LAN })
  assert.deepEqual([d.endpoint, d.punch, d.viaRelay, d.relayed], [R2, false, true, true])
  // No relay anywhere: as before.
  d = choosePath(sym(), { ...eim, endpoint: LAN })
  assert.match(pathLabel(d, false), /^unreachable: needs relay/)
  assert.equal(d.viaRelay, undefined)
  // A peer that can be reached without a relay ignores relay= (mapped peer; EIM peers punch).
  d = choosePath(sym(R1), { nat: 'mapped', endpoint: STUN_E })
  assert.deepEqual([d.endpoint, d.punch, d.relayed], [STUN_E, true, undefined])
  d = choosePath(eim, { nat: 'unmapped', stun: { address: '203.0.113.16', port: 4500 }, mapping: 'eim', relay: R1 })
  assert.deepEqual([d.punch, d.relayed], [true, undefined])
})
