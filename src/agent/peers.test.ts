import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { WatchMechanism } from '../dns/client/watcher.js'
import { emptyMessage, type Message } from '../dns/wire/message.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import {
  COALESCE_MS,
  LOOKUP_BURST,
  LOOKUP_CACHE_SIZE,
  LOOKUP_CACHE_TTL_MS,
  LOOKUP_RATE_PER_SEC,
  PeerManager,
  QTYPE_ANY,
  type WatchLike,
} from './peers.js'

failOnLeakedResources()

const D = 'alice.members.example.'
const rr = (name: string, type: number, data: RR['data']): RR => ({ name, type, class: RRClass.IN, ttl: 60, data })

/** An in-memory zone answering the signed queries, and watchers that fire when a test changes it. */
class Zone {
  readonly rrs: RR[] = []
  readonly queries: string[] = []
  readonly watchers: FakeWatch[] = []
  query = async (name: string, type: number): Promise<Message> => {
    this.queries.push(`${name} ${type}`)
    const n = name.toLowerCase()
    return emptyMessage({
      qr: true,
      answers: this.rrs.filter((r) => r.name.toLowerCase() === n && r.type === type),
    })
  }
  watch = (name: string, type: number): WatchLike => {
    const w = new FakeWatch(name, type, this)
    this.watchers.push(w)
    return w
  }
  host(h: string, label: string, ula: string, a: string, port: number, nat = 'pcp'): void {
    this.remove((r) => r.name === `${label}.${D}` || r.name === `_autotunnel._udp.${h}.${D}`)
    this.rrs.push(
      rr(`_autotunnel._udp.${h}.${D}`, RRType.SRV, { priority: 0, weight: 0, port, target: `${label}.${D}` }),
      rr(`${label}.${D}`, RRType.AAAA, { address: ula }),
      rr(`${label}.${D}`, RRType.A, { address: a }),
      rr(`${label}.${D}`, RRType.TXT, { strings: [Buffer.from(`nat=${nat}`)] }),
    )
  }
  remove(pred: (r: RR) => boolean): void {
    for (let i = this.rrs.length - 1; i >= 0; i--) if (pred(this.rrs[i] as RR)) this.rrs.splice(i, 1)
  }
  /** Fires the watchers of `name` (as a DNS Push notification would). */
  notify(name: string): void {
    for (const w of this.watchers) if (w.name.toLowerCase() === name.toLowerCase() && !w.closed) w.fire()
  }
}

class FakeWatch implements WatchLike {
  readonly handlers = new Set<(e: { kind: 'add' | 'remove'; rrset: readonly RR[] }) => void>()
  closed = false
  readonly mechanism: WatchMechanism = 'push'
  constructor(
    readonly name: string,
    readonly type: number,
    readonly zone: Zone,
  ) {}
  get rrset(): RR[] {
    const n = this.name.toLowerCase()
    return this.zone.rrs.filter((r) => r.name.toLowerCase() === n && (this.type === QTYPE_ANY || r.type === this.type))
  }
  onEvent(h: (e: { kind: 'add' | 'remove'; rrset: readonly RR[] }) => void): () => void {
    this.handlers.add(h)
    return () => this.handlers.delete(h)
  }
  async start(): Promise<WatchMechanism> {
    return 'push'
  }
  async close(): Promise<void> {
    this.closed = true
  }
  fire(): void {
    for (const h of this.handlers) h({ kind: 'add', rrset: this.rrset })
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))
async function settle(clock: FakeClock): Promise<void> {
  for (let i = 0; i < 5; i++) {
    clock.advance(COALESCE_MS)
    for (let j = 0; j < 5; j++) await tick()
  }
}

function setup(lookupBurst?: number) {
  const zone = new Zone()
  const clock = new FakeClock()
  const pm = new PeerManager(
    { query: zone, watch: zone.watch, clock, log: nullLogger },
    { domain: 'alice.members.example', hostname: 'laptop', ...(lookupBurst ? { lookupBurst } : {}) },
  )
  const list = zone.watch(`_autotunnel._udp.${D}`, RRType.PTR) as FakeWatch
  const ptr = (h: string, domain = D): RR =>
    rr(`_autotunnel._udp.${D}`, RRType.PTR, { ptrdname: `_autotunnel._udp.${h}.${domain}` })
  return { zone, clock, pm, list, ptr }
}

test('host list: every other host of the user is a peer; itself and other users are not', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  zone.host('laptop', 'AutoTunnel-BB', 'fd00::2', '203.0.113.12', 4500)
  zone.rrs.push(ptr('desktop'), ptr('laptop'), ptr('desktop', 'bob.members.example.'), ptr('x.y'))
  pm.follow(list)
  await settle(clock)
  assert.deepEqual(
    pm.peers().map((p) => [p.host, p.fqdn, p.ula, p.endpoint, p.nat]),
    [['desktop', 'desktop.alice.members.example', 'fd00::1', { address: '203.0.113.11', port: 4500 }, 'pcp']],
  )
  assert.equal(pm.counters.foreignNames, 2)
  assert.equal(pm.byUla('fd00:0::1')?.host, 'desktop')
  assert.equal(pm.get('desktop.alice.members.example.')?.host, 'desktop')
  assert.equal(pm.get('desktop.bob.members.example'), undefined)
  await pm.close()
})

test('Figure 3 order: SRV first, then the target; the target is watched with one ANY subscription', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  zone.rrs.push(ptr('desktop'))
  pm.follow(list)
  await settle(clock)
  assert.equal(zone.queries[0], `_autotunnel._udp.desktop.${D} ${RRType.SRV}`)
  // The key record at the host name is read beside the SRV (issue 8), then the target's three types.
  assert.equal(zone.queries[1], `desktop.${D} ${RRType.TXT}`)
  assert.deepEqual(
    zone.queries
      .slice(2)
      .map((q) => q.split(' ')[0])
      .sort(),
    [`AutoTunnel-AA.${D}`, `AutoTunnel-AA.${D}`, `AutoTunnel-AA.${D}`].map((x) => x.toLowerCase()),
  )
  assert.deepEqual(
    zone.watchers.map((w) => [w.name.toLowerCase(), w.type]),
    [
      [`_autotunnel._udp.${D}`, RRType.PTR],
      [`_autotunnel._udp.desktop.${D}`, RRType.SRV],
      [`desktop.${D}`, RRType.TXT],
      [`autotunnel-aa.${D}`, QTYPE_ANY],
    ],
  )
  await pm.close()
})

test('key records at H.D: read on resolution, a removal (revocation) is told to onKeys even with the SRV gone', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  const keyRR = rr(`desktop.${D}`, RRType.TXT, { strings: [Buffer.from('v=at-ike1; k=ed25519; p=AAAA')] })
  zone.rrs.push(ptr('desktop'), keyRR, rr(`desktop.${D}`, RRType.TXT, { strings: [Buffer.from('other=1')] }))
  const told: number[] = []
  pm.onKeys((p) => told.push(p.publicKeys.length))
  pm.follow(list)
  await settle(clock)
  assert.deepEqual(pm.get('desktop')?.publicKeys, ['v=at-ike1; k=ed25519; p=AAAA'])
  assert.deepEqual(told, [1])
  // Revocation deletes the key and the SRV in one UPDATE: the keys still go.
  zone.remove((r) => r === keyRR || r.type === RRType.SRV)
  zone.notify(`desktop.${D}`)
  await settle(clock)
  assert.deepEqual(pm.get('desktop')?.publicKeys, [])
  assert.deepEqual(told, [1, 0])
  assert.match(pm.get('desktop')?.lastError ?? '', /no SRV/)
  // An unchanged key set on the next event tells nobody.
  zone.notify(`desktop.${D}`)
  await settle(clock)
  assert.deepEqual(told, [1, 0])
  await pm.close()
})

test('a pushed A change moves the endpoint; events from one UPDATE are coalesced into one resolution', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  zone.rrs.push(ptr('desktop'))
  const changes: string[] = []
  pm.onChange((p, prev) =>
    changes.push(`${prev?.endpoint?.address ?? '-'} -> ${p.endpoint?.address}:${p.endpoint?.port}`),
  )
  pm.follow(list)
  await settle(clock)
  const before = pm.counters.resolutions
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.99', 4501)
  zone.notify(`_autotunnel._udp.desktop.${D}`)
  zone.notify(`AutoTunnel-AA.${D}`)
  await settle(clock)
  assert.equal(pm.counters.resolutions - before, 1)
  assert.deepEqual(changes, ['- -> 203.0.113.11:4500', '203.0.113.11 -> 203.0.113.99:4501'])
  // Nothing changed: a notification resolves again but tells nobody.
  zone.notify(`_autotunnel._udp.desktop.${D}`)
  await settle(clock)
  assert.equal(changes.length, 2)
  await pm.close()
})

test('a host leaving the list is gone: listeners told, its watchers closed', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  zone.rrs.push(ptr('desktop'))
  const gone: string[] = []
  pm.onGone((p) => gone.push(p.host))
  pm.follow(list)
  await settle(clock)
  zone.remove((r) => r.type === RRType.PTR)
  list.fire()
  await settle(clock)
  assert.deepEqual(gone, ['desktop'])
  assert.deepEqual(pm.peers(), [])
  assert.ok(zone.watchers.slice(1).every((w) => w.closed))
  await pm.close()
})

test('lookup on demand (an IKE initiator not yet in the list); never outside the domain, never itself', async () => {
  const { zone, pm, list } = setup()
  zone.host('tv', 'AutoTunnel-CC', 'fd00::3', '203.0.113.13', 4600)
  pm.follow(list)
  const p = await pm.lookup('tv.alice.members.example')
  assert.equal(p?.ula, 'fd00::3')
  assert.deepEqual(p?.endpoint, { address: '203.0.113.13', port: 4600 })
  assert.equal(await pm.lookup('tv.bob.members.example'), undefined)
  assert.equal(await pm.lookup('laptop.alice.members.example'), undefined)
  assert.equal(await pm.lookup('nosuch.alice.members.example'), undefined)
  assert.ok(pm.counters.failures >= 1)
  await pm.close()
})

test('lookup of names not in the host list creates no watcher and no peer (a remote sender holds no state)', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  zone.rrs.push(ptr('desktop'))
  pm.follow(list)
  await settle(clock)
  const watchers = zone.watchers.length
  for (let i = 0; i < 1000; i++) {
    assert.equal(await pm.lookup(`h${i.toString(36)}x${(i * 7919).toString(36)}.alice.members.example`), undefined)
  }
  assert.equal(zone.watchers.length, watchers)
  assert.ok(pm.lookupCacheSize <= LOOKUP_CACHE_SIZE)
  assert.deepEqual(
    pm.peers().map((p) => p.host),
    ['desktop'],
  )
  // Issue 16 finding 11: 1,000 made-up identities at one instant cost LOOKUP_BURST resolutions, not 1,000.
  assert.equal(pm.counters.lookupOneOff, LOOKUP_BURST)
  assert.equal(pm.counters.lookupThrottled, 1000 - LOOKUP_BURST)
  const queries = zone.queries.length
  await pm.lookup('another.alice.members.example')
  assert.equal(zone.queries.length, queries, 'a throttled look-up sends no query')
  clock.advance(1000)
  for (let i = 0; i < 10; i++) await pm.lookup(`later${i}.alice.members.example`)
  assert.equal(pm.counters.lookupOneOff, LOOKUP_BURST + LOOKUP_RATE_PER_SEC, 'refilled at LOOKUP_RATE_PER_SEC')
  await pm.close()
})

test('a one-off lookup is cached for LOOKUP_CACHE_TTL_MS, positive and negative; the list takes over', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.host('tv', 'AutoTunnel-CC', 'fd00::3', '203.0.113.13', 4600)
  pm.follow(list)
  const p = await pm.lookup('tv.alice.members.example')
  assert.equal(p?.ula, 'fd00::3')
  assert.equal(pm.get('tv'), undefined)
  const q = zone.queries.length
  assert.equal((await pm.lookup('TV.alice.members.example.'))?.ula, 'fd00::3')
  assert.equal(await pm.lookup('nosuch.alice.members.example'), undefined)
  const q2 = zone.queries.length
  assert.equal(await pm.lookup('nosuch.alice.members.example'), undefined)
  assert.equal(zone.queries.length, q2)
  assert.ok(q2 > q)
  assert.equal(pm.counters.lookupCacheHits, 2)
  clock.advance(LOOKUP_CACHE_TTL_MS + 1)
  assert.equal(await pm.lookup('nosuch.alice.members.example'), undefined)
  assert.ok(zone.queries.length > q2)
  // Once in the host list, tv is a peer with watchers and its cached one-off answer is gone.
  const watchers = zone.watchers.length
  zone.rrs.push(ptr('tv'))
  list.fire()
  await settle(clock)
  assert.equal(pm.get('tv')?.ula, 'fd00::3')
  assert.ok(zone.watchers.length > watchers)
  assert.equal(pm.lookupCacheSize, 1)
  await pm.close()
})

test('an LRU of LOOKUP_CACHE_SIZE: the least recently used answer goes first', async () => {
  const { zone, pm, list } = setup(LOOKUP_CACHE_SIZE * 2)
  pm.follow(list)
  for (let i = 0; i < LOOKUP_CACHE_SIZE; i++) await pm.lookup(`n${i}.alice.members.example`)
  await pm.lookup('n0.alice.members.example') // n0 is now the most recent
  await pm.lookup('extra.alice.members.example') // evicts n1
  assert.equal(pm.lookupCacheSize, LOOKUP_CACHE_SIZE)
  const q = zone.queries.length
  await pm.lookup('n0.alice.members.example')
  assert.equal(zone.queries.length, q)
  await pm.lookup('n1.alice.members.example')
  assert.ok(zone.queries.length > q)
  await pm.close()
})

test('an SRV target outside the domain is refused', async () => {
  const { zone, clock, pm, list, ptr } = setup()
  zone.rrs.push(
    ptr('evil'),
    rr(`_autotunnel._udp.evil.${D}`, RRType.SRV, {
      priority: 0,
      weight: 0,
      port: 1,
      target: 'host.bob.members.example.',
    }),
    rr('host.bob.members.example.', RRType.AAAA, { address: 'fd00::66' }),
  )
  pm.follow(list)
  await settle(clock)
  assert.equal(pm.get('evil')?.ula, undefined)
  assert.match(pm.get('evil')?.lastError ?? '', /outside/)
  await pm.close()
})

test('rewatch after a move: every watcher is opened again and every peer resolved again', async () => {
  const { zone, clock, pm, ptr, list } = setup()
  await list.close()
  zone.host('desktop', 'AutoTunnel-AA', 'fd00::1', '203.0.113.11', 4500)
  zone.rrs.push(ptr('desktop'))
  await pm.watchHostList()
  await settle(clock)
  assert.equal(pm.get('desktop')?.ula, 'fd00::1')
  const before = zone.watchers.filter((w) => !w.closed)
  const resolutions = pm.counters.resolutions
  let renewed = 0
  Object.assign(zone.watch, { renew: () => renewed++ })
  await pm.rewatch()
  await settle(clock)
  assert.equal(renewed, 1, 'new connections for the new watchers (shared DNS Push sessions renewed)')
  assert.ok(
    before.every((w) => w.closed),
    'old watchers closed',
  )
  const open = zone.watchers.filter((w) => !w.closed)
  assert.equal(open.length, before.length)
  assert.ok(open.every((w) => !before.includes(w)))
  assert.equal(pm.counters.resolutions, resolutions + 1)
  // The renewed watchers deliver: the desktop leaves the list.
  zone.remove((r) => r.type === RRType.PTR)
  zone.notify(`_autotunnel._udp.${D}`)
  await settle(clock)
  assert.deepEqual(pm.peers(), [])
  await pm.close()
})
