import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { EdnsOptionCode, findOption } from '../dns/edns.js'
import { decodeUpdateLease, encodeUpdateLease } from '../dns/lease.js'
import { signMessage, verifyMessage } from '../dns/tsig.js'
import { Opcode, Rcode } from '../dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../dns/wire/message.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { KeyRing } from './accounts.js'
import type { ServiceConfig } from './config.js'
import { ServerMetrics } from './metrics.js'
import { DnsService } from './service.js'
import type { RRsetChange, Store } from './store.js'
import { aaaa, aliceService, openStore, rr, tempDir, txt, updateMsg, ZONE } from './test-helpers.js'
import type { InboundContext, TransportKind } from './transport.js'
import { applyUpdate } from './update.js'

failOnLeakedResources()

const cfg: ServiceConfig = {
  zone: ZONE,
  nsName: `ns.${ZONE}`,
  nsAddrs: ['192.0.2.53', '2001:db8::53'],
  hostmaster: `hostmaster.${ZONE}`,
  dnsPort: 5300,
  tlsPort: 8530,
  leaseMinSec: 2,
  leaseMaxSec: 5,
  infraTtlSec: 300,
  negativeTtlSec: 60,
  fudgeSec: 300,
}

function setup(t: { after: (fn: () => void) => void }, clock = new FakeClock()) {
  return aliceService(t, cfg, clock)
}

function ask(svc: DnsService, q: Message, transport: TransportKind = 'udp'): Message {
  let out: Buffer | undefined
  const ctx: InboundContext = {
    peer: { transport, address: '127.0.0.1', port: 1, local: '127.0.0.1:53' },
    reply: (b) => {
      out = b
    },
    send: () => {},
  }
  svc.handle(encodeMessage(q), ctx)
  assert.ok(out, 'an answer')
  return decodeMessage(out)
}

const query = (name: string, type: number, udpSize?: number): Message =>
  emptyMessage({
    id: 7,
    opcode: Opcode.QUERY,
    rd: true,
    questions: [{ name, type, class: RRClass.IN }],
    ...(udpSize ? { edns: { udpSize, version: 0, do: false, options: [] } } : {}),
  })

function put(store: Store, updates: Parameters<typeof updateMsg>[1], leaseSec?: number): void {
  store.write((tx) => applyUpdate(tx, store.index, { msg: updateMsg([], updates), user: 'alice', leaseSec }))
}

test('apex SOA/NS, server address, NXDOMAIN vs NODATA, REFUSED outside the zone', (t) => {
  const { svc, store } = setup(t)
  put(store, [aaaa(`a.b._pub.${ZONE}`, 'fd00::1')])
  const soa = ask(svc, query(ZONE, RRType.SOA))
  assert.equal(soa.rcode, Rcode.NOERROR)
  assert.ok(soa.aa)
  assert.equal(soa.answers[0]?.type, RRType.SOA)
  assert.equal((soa.answers[0]!.data as { serial: number }).serial, store.serial)
  const ns = ask(svc, query(ZONE, RRType.NS))
  assert.deepEqual(
    ns.answers.map((r) => (r.data as { nsdname: string }).nsdname),
    [`ns.${ZONE}`],
  )
  assert.deepEqual(ns.additionals.map((r) => r.type).sort(), [RRType.A, RRType.AAAA])
  const nx = ask(svc, query(`_nope.${ZONE}`, RRType.A))
  assert.equal(nx.rcode, Rcode.NXDOMAIN)
  assert.equal(nx.authorities[0]?.type, RRType.SOA)
  assert.equal(nx.authorities[0]?.ttl, 60)
  const nodata = ask(svc, query(`a.b._pub.${ZONE}`, RRType.A))
  assert.equal(nodata.rcode, Rcode.NOERROR)
  assert.equal(nodata.answers.length, 0)
  assert.equal(nodata.authorities[0]?.type, RRType.SOA)
  assert.equal(ask(svc, query(`b._pub.${ZONE}`, RRType.A)).rcode, Rcode.NOERROR, 'empty non-terminal is NODATA')
  assert.equal(ask(svc, query('example.org.', RRType.A)).rcode, Rcode.REFUSED)
  assert.equal(
    ask(svc, query(`A.B._PUB.${ZONE.toUpperCase()}`, RRType.AAAA)).answers[0]?.name,
    `A.B._PUB.${ZONE.toUpperCase()}`,
  )
})

test('privacy: user names need the user key, discovery SRV records are public', (t) => {
  const { svc, store } = setup(t)
  put(store, [aaaa(`mac.alice.${ZONE}`, 'fd00::1')])
  assert.equal(ask(svc, query(`mac.alice.${ZONE}`, RRType.AAAA)).rcode, Rcode.REFUSED)
  assert.equal(svc.answerer.answer(`mac.alice.${ZONE}`, RRType.AAAA, 'bob').rcode, Rcode.REFUSED)
  assert.equal(svc.answerer.answer(`mac.alice.${ZONE}`, RRType.AAAA, 'alice').answers.length, 1)
  for (const [prefix, port] of [
    ['_dnsupdate-tls._udp', 8530],
    ['_dns-llq-tls._udp', 8530],
    ['_dns-push-tls._tcp', 8530],
    ['_dns-update._udp', 5300],
    ['_dns-llq._udp', 5300],
  ] as const) {
    const r = ask(svc, query(`${prefix}.alice.${ZONE}`, RRType.SRV))
    assert.equal(r.rcode, Rcode.NOERROR, prefix)
    assert.deepEqual(r.answers[0]?.data, { priority: 0, weight: 0, port, target: `ns.${ZONE}` })
    assert.deepEqual(r.additionals.map((x) => x.type).sort(), [RRType.A, RRType.AAAA])
  }
  // The same answer whether the account exists or not (issue 16 finding 9).
  assert.deepEqual(
    ask(svc, query(`_dns-update._udp.nobody.${ZONE}`, RRType.SRV)).answers.map((r) => r.data),
    ask(svc, query(`_dns-update._udp.alice.${ZONE}`, RRType.SRV)).answers.map((r) => r.data),
  )
  assert.equal(ask(svc, query(`nobody.${ZONE}`, RRType.A)).rcode, Rcode.REFUSED)
  assert.equal(ask(svc, query(`alice.${ZONE}`, RRType.A)).rcode, Rcode.REFUSED)
  assert.equal(svc.canWatch({ name: `secret.nobody.${ZONE}`, type: RRType.TXT, class: 1 }, undefined), 'refused')
  assert.equal(svc.canWatch({ name: `mac.alice.${ZONE}`, type: RRType.AAAA, class: 1 }, 'alice'), 'ok')
  assert.equal(svc.canWatch({ name: `mac.alice.${ZONE}`, type: RRType.AAAA, class: 1 }, undefined), 'refused')
  assert.equal(svc.canWatch({ name: 'x.example.org.', type: RRType.AAAA, class: 1 }, 'alice'), 'notauth')
})

test('UDP truncation follows the EDNS payload size; TCP carries everything', (t) => {
  const { svc, store } = setup(t)
  const name = `big._pub.${ZONE}`
  put(
    store,
    Array.from({ length: 40 }, (_, i) => txt(name, `record number ${i} `.padEnd(40, 'x'))),
  )
  const classic = ask(svc, query(name, RRType.TXT))
  assert.ok(classic.tc)
  assert.ok(encodeMessage(classic).length <= 512)
  const edns = ask(svc, query(name, RRType.TXT, 4096))
  assert.ok(!edns.tc)
  assert.equal(edns.answers.length, 40)
  const small = ask(svc, query(name, RRType.TXT, 1232))
  assert.ok(small.tc)
  assert.equal(ask(svc, query(name, RRType.TXT), 'tcp').answers.length, 40)
})

test('unsigned UPDATE is REFUSED; garbage gets FORMERR or nothing', (t) => {
  const { svc, metrics } = setup(t)
  const up = updateMsg([], [aaaa(`mac.alice.${ZONE}`, 'fd00::1')])
  assert.equal(ask(svc, up).rcode, Rcode.REFUSED)
  assert.equal(metrics.registry.value('autotunnel_dns_updates_total', { rcode: 'REFUSED' }), 1)
  const bad = Buffer.from([0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 0x61])
  let out: Buffer | undefined
  svc.handle(bad, {
    peer: { transport: 'udp', address: '', port: 0, local: '' },
    reply: (b) => (out = b),
    send: () => {},
  })
  assert.equal(decodeMessage(out!).rcode, Rcode.FORMERR)
  out = undefined
  svc.handle(Buffer.from([1, 2, 3]), {
    peer: { transport: 'udp', address: '', port: 0, local: '' },
    reply: (b) => (out = b),
    send: () => {},
  })
  assert.equal(out, undefined)
})

test('leases: records go at expiry as a change, refresh extends, no lease is permanent', (t) => {
  const clock = new FakeClock()
  const { svc, store, metrics, dir } = setup(t, clock)
  const changes: RRsetChange[] = []
  store.onChange((c) => changes.push(...c))
  const H = `mac.alice.${ZONE}`
  put(store, [aaaa(H, 'fd00::1'), txt(H, 'v')], 5)
  put(store, [rr(H, RRType.A, { address: '192.0.2.1' })])
  svc.start()
  clock.advance(3000)
  put(store, [aaaa(H, 'fd00::1')], 5) // refresh the AAAA only: now expires at 8 s
  clock.advance(1999)
  assert.equal(store.index.rrset(H, RRType.TXT)?.records.size, 1)
  const serial = store.serial
  clock.advance(1)
  assert.equal(store.index.rrset(H, RRType.TXT), undefined, 'TXT gone at 5 s')
  assert.equal(store.index.rrset(H, RRType.AAAA)?.records.size, 1, 'refreshed AAAA stays')
  assert.equal(store.serial, serial + 1)
  assert.deepEqual(changes.at(-1), { name: H, type: RRType.TXT, added: [], removed: [changes.at(-1)!.removed[0]!] })
  clock.advance(3000)
  assert.equal(store.index.rrset(H, RRType.AAAA), undefined, 'AAAA gone at 8 s')
  assert.equal(store.index.rrset(H, RRType.A)?.records.size, 1, 'no lease = permanent')
  assert.equal(metrics.registry.value('autotunnel_leases_expired_total'), 2)
  assert.equal(clock.pending, 0, 'no lease left, no timer left')
  void dir
})

test('a lease that ran out while the server was down is removed at start', (t) => {
  const clock = new FakeClock()
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  const s1 = openStore(dir, clock)
  const H = `mac.alice.${ZONE}`
  put(s1, [aaaa(H, 'fd00::1')], 5)
  put(s1, [aaaa(H, 'fd00::2')], 60)
  s1.close()
  clock.advance(10_000)
  const store = openStore(dir, clock)
  const keys = new KeyRing({ db: store.db, clock, checkExternal: () => store.checkExternal() })
  const svc = new DnsService({ store, keys, clock, log: nullLogger, metrics: new ServerMetrics() }, cfg)
  t.after(() => {
    svc.stop()
    store.close()
  })
  assert.equal(store.index.rrset(H, RRType.AAAA)?.records.size, 2)
  svc.start()
  assert.deepEqual(
    [...store.index.rrset(H, RRType.AAAA)!.records.values()].map((r) => r.rr.text),
    ['fd00::2'],
  )
  assert.equal(store.db.prepare('SELECT count(*) FROM rr').pluck().get(), 1)
})

test('TSIG: signed UPDATE with a lease commits and echoes it signed; BADKEY, BADSIG, BADTIME are NOTAUTH; an unknown account key is BADSIG', async (t) => {
  const clock = new FakeClock(Date.UTC(2026, 10, 21))
  const { svc, store, metrics } = setup(t, clock)
  const key = { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
  const nowSec = Math.floor(clock.now() / 1000)
  const send = (wire: Buffer): Promise<Buffer> =>
    new Promise((resolve) =>
      svc.handle(wire, {
        peer: { transport: 'udp', address: '127.0.0.1', port: 1, local: '' },
        reply: (b) => resolve(b!),
        send: () => {},
      }),
    )
  const up = updateMsg([], [aaaa(`mac.alice.${ZONE}`, 'fd00::1')])
  up.edns = { udpSize: 1232, version: 0, do: false, options: [encodeUpdateLease({ leaseSec: 3600, keyLeaseSec: 1 })] }
  const signed = signMessage(up, key, { timeSigned: nowSec })
  const res = await send(signed.wire)
  const v = verifyMessage(res, () => key, { requestMac: signed.mac, now: nowSec })
  assert.ok(v.ok, 'response signed with the request key')
  assert.equal(v.msg.rcode, Rcode.NOERROR)
  const ul = decodeUpdateLease(findOption(v.msg.edns, EdnsOptionCode.UPDATE_LEASE)!.data)
  assert.deepEqual(ul, { leaseSec: 5, keyLeaseSec: 5 }, 'clamped to --lease-max; KEY-LEASE at least the lease')
  assert.equal(store.leases.size, 1)
  assert.equal(store.leases.nextExpiryMs(), clock.now() + 5000)

  const cases: [string, Buffer, string][] = [
    ['BADKEY', signMessage(up, { ...key, name: 'some.other.key.' }, { timeSigned: nowSec }).wire, 'BADKEY'],
    ['no account carol', signMessage(up, { ...key, name: `carol.${ZONE}` }, { timeSigned: nowSec }).wire, 'BADSIG'],
    ['BADSIG', signMessage(up, { ...key, secret: Buffer.alloc(32, 2) }, { timeSigned: nowSec }).wire, 'BADSIG'],
    ['BADTIME', signMessage(up, key, { timeSigned: nowSec - 1000 }).wire, 'BADTIME'],
  ]
  for (const [name, wire, kind] of cases) {
    const r = decodeMessage(await send(wire))
    assert.equal(r.rcode, Rcode.NOTAUTH, name)
    assert.equal(r.tsig?.data.error, Rcode[kind as 'BADKEY'], name)
    assert.ok((metrics.registry.value('autotunnel_tsig_failures_total', { kind }) ?? 0) >= 1, name)
  }
  assert.equal(metrics.registry.value('autotunnel_dns_updates_total', { rcode: 'NOTAUTH' }), 4)
})

test('TSIG replay: the same signed UPDATE is applied once and its retransmission gets the first answer; a fudge of 65535 does not widen the window', async (t) => {
  const clock = new FakeClock(Date.UTC(2026, 10, 21))
  const { svc, store } = setup(t, clock)
  const key = { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
  const nowSec = Math.floor(clock.now() / 1000)
  const send = (wire: Buffer): Promise<Buffer> =>
    new Promise((resolve) =>
      svc.handle(wire, {
        peer: { transport: 'udp', address: '127.0.0.1', port: 1, local: '' },
        reply: (b) => resolve(b!),
        send: () => {},
      }),
    )
  const up = updateMsg([], [aaaa(`mac.alice.${ZONE}`, 'fd00::1')])
  up.edns = { udpSize: 1232, version: 0, do: false, options: [encodeUpdateLease({ leaseSec: 3600 })] }
  const signed = signMessage(up, key, { timeSigned: nowSec })
  assert.equal(decodeMessage(await send(signed.wire)).rcode, Rcode.NOERROR)
  store.write((tx) => {
    for (const r of store.recordsAtOrBelow(`alice.${ZONE}`)) tx.remove(r)
  })
  const again = decodeMessage(await send(signed.wire))
  assert.equal(again.rcode, Rcode.NOERROR, 'the first answer, lease echo included')
  assert.ok(findOption(again.edns, EdnsOptionCode.UPDATE_LEASE))
  assert.equal(store.index.recordCount, 0, 'not applied again')
  assert.equal(svc.replay.stats.replays, 1)
  const old = signMessage(up, key, { timeSigned: nowSec - 36_000, fudge: 65_535 })
  const r = decodeMessage(await send(old.wire))
  assert.equal(r.rcode, Rcode.NOTAUTH)
  assert.equal(r.tsig?.data.error, Rcode.BADTIME)
})

test('random and mutated packets: never a throw, exactly one reply or drop each', async (t) => {
  const { svc, store, metrics } = setup(t)
  put(store, [aaaa(`a._pub.${ZONE}`, 'fd00::1')])
  const seeds = [
    encodeMessage(query(`a._pub.${ZONE}`, RRType.AAAA, 1232)),
    encodeMessage(updateMsg([], [aaaa(`mac.alice.${ZONE}`, 'fd00::1')])),
    encodeMessage(query(ZONE, RRType.SOA)),
  ]
  let calls = 0
  const ctx: InboundContext = {
    peer: { transport: 'udp', address: '127.0.0.1', port: 1, local: '' },
    reply: () => {
      calls++
    },
    send: () => {},
  }
  let sent = 0
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)),
        fc
          .tuple(fc.nat(seeds.length - 1), fc.array(fc.tuple(fc.nat(600), fc.nat(255)), { maxLength: 6 }))
          .map(([i, muts]) => {
            const b = Buffer.from(seeds[i]!)
            for (const [pos, v] of muts) b[pos % b.length] = v
            return b
          }),
      ),
      (pkt) => {
        sent++
        svc.handle(pkt, ctx)
      },
    ),
    { numRuns: 3000 },
  )
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  assert.equal(calls, sent)
  assert.equal(metrics.registry.value('autotunnel_dns_dropped_total', { reason: 'internal' }), 0, 'no internal error')
  assert.ok(metrics.registry.value('autotunnel_dns_dropped_total', { reason: 'formerr' }) > 0)
})

test('an UPDATE is answered before its change reaches the watchers, and both come after the COMMIT', async (t) => {
  const { svc, store, clock } = setup(t)
  const key = { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
  const order: string[] = []
  store.onChange((changes, serial) => {
    const durable = store.db.prepare('SELECT count(*) AS n FROM rr WHERE name = ?').get(`w.alice.${ZONE}`) as {
      n: number
    }
    order.push(`change ${changes.length} serial=${serial} rows=${durable.n}`)
  })
  const answered = new Promise<void>((resolve) =>
    svc.handle(
      signMessage(updateMsg([], [aaaa(`w.alice.${ZONE}`, 'fd00::9')]), key, { timeSigned: clock.now() / 1000 }).wire,
      {
        peer: { transport: 'udp', address: '127.0.0.1', port: 1, local: '' },
        reply: (b) => {
          order.push(`reply rcode=${decodeMessage(b!).rcode}`)
          resolve()
        },
        send: () => {},
      },
    ),
  )
  await answered
  await new Promise((r) => setImmediate(r))
  assert.deepEqual(order, ['reply rcode=0', `change 1 serial=${store.serial} rows=1`])
})
