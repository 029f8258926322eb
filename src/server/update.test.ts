import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Rcode } from '../dns/wire/header.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import type { ServiceConfig } from './config.js'
import type { RRsetChange } from './store.js'
import { a, aaaa, openStore, rr, tempDir, txt, updateMsg, ZONE } from './test-helpers.js'
import { applyUpdate, checkUpdate, consistentReadOf, QUOTA_EXCEEDED, QUOTA_RECHECK, quotaHeadroom } from './update.js'
import { isAtOrBelow, labelBelow } from './zone-index.js'

failOnLeakedResources()

const cfg: ServiceConfig = {
  zone: ZONE,
  nsName: `ns.${ZONE}`,
  nsAddrs: ['127.0.0.1'],
  hostmaster: `hostmaster.${ZONE}`,
  dnsPort: 53,
  tlsPort: 853,
  leaseMinSec: 1800,
  leaseMaxSec: 7200,
  infraTtlSec: 300,
  negativeTtlSec: 60,
  fudgeSec: 300,
}

const H = `mac.alice.${ZONE}`
const none = (name: string, type: number) => rr(name, type, null, { ttl: 0, class: RRClass.NONE })
const any = (name: string, type: number) => rr(name, type, null, { ttl: 0, class: RRClass.ANY })

test('policy on wire labels: an escaped dot is not a label boundary (issue 16 finding 8)', () => {
  assert.equal(checkUpdate(cfg, updateMsg([], [txt(`x\\.bob.${ZONE}`, 'squat')]), 'bob'), Rcode.REFUSED)
  assert.equal(checkUpdate(cfg, updateMsg([], [txt(`x\\.bob.${ZONE}`, 'squat')]), 'x'), Rcode.REFUSED)
  assert.equal(checkUpdate(cfg, updateMsg([], [txt(`a\\.b.bob.${ZONE}`, 'mine')]), 'bob'), undefined)
  assert.equal(checkUpdate(cfg, updateMsg([], [txt(`a\\\\.bob.${ZONE}`, 'label a backslash')]), 'bob'), undefined)
  assert.equal(isAtOrBelow(`x\\.bob.${ZONE}`, `bob.${ZONE}`), false)
  assert.equal(isAtOrBelow(`x\\\\.bob.${ZONE}`, `bob.${ZONE}`), true)
  assert.equal(labelBelow(`x\\.bob.${ZONE}`, ZONE), 'x\\.bob')
  assert.equal(labelBelow(`a.x\\.bob.${ZONE}`, ZONE), 'x\\.bob')
  assert.equal(labelBelow(`a.bob.${ZONE}`, ZONE), 'bob')
  assert.equal(labelBelow(ZONE, ZONE), undefined)
})

test('policy: own subdomain only, zone section checked, server types refused', () => {
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa(H, 'fd00::1')]), 'alice'), undefined)
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa(`alice.${ZONE}`, 'fd00::1')]), 'alice'), undefined)
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa(`mac.bob.${ZONE}`, 'fd00::1')]), 'alice'), Rcode.REFUSED)
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa(`x.malice.${ZONE}`, 'fd00::1')]), 'alice'), Rcode.REFUSED)
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa(ZONE, 'fd00::1')]), 'alice'), Rcode.REFUSED)
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa('mac.other.example.', 'fd00::1')]), 'alice'), Rcode.NOTZONE)
  assert.equal(checkUpdate(cfg, updateMsg([any(`bob.${ZONE}`, RRType.ANY)], []), 'alice'), Rcode.REFUSED)
  assert.equal(checkUpdate(cfg, updateMsg([], [aaaa(H, 'fd00::1')], 'other.example.'), 'alice'), Rcode.NOTAUTH)
  const ns = rr(H, RRType.NS, { nsdname: 'ns.evil.example.' })
  assert.equal(checkUpdate(cfg, updateMsg([], [ns]), 'alice'), Rcode.REFUSED)
  const srv = rr(`_dnsupdate-tls._udp.alice.${ZONE}`, RRType.SRV, { priority: 0, weight: 0, port: 1, target: 'x.' })
  assert.equal(checkUpdate(cfg, updateMsg([], [srv]), 'alice'), Rcode.REFUSED)
})

test('prerequisites and the four update forms (RFC 2136 3.2, 3.4.2)', (t) => {
  const { dir, cleanup } = tempDir()
  const store = openStore(dir)
  t.after(() => {
    store.close()
    cleanup()
  })
  const run = (prereqs: Parameters<typeof updateMsg>[0], updates: Parameters<typeof updateMsg>[1]) =>
    store.write((tx) =>
      applyUpdate(tx, store.index, { msg: updateMsg(prereqs, updates), user: 'alice', leaseSec: undefined }),
    )
  const table: [string, () => number, number][] = [
    ['add AAAA', () => run([], [aaaa(H, 'fd00::1'), aaaa(H, 'fd00::2')]), Rcode.NOERROR],
    ['name in use', () => run([any(H, RRType.ANY)], []), Rcode.NOERROR],
    ['name in use fails', () => run([any(`nx.alice.${ZONE}`, RRType.ANY)], []), Rcode.NXDOMAIN],
    ['name not in use fails', () => run([none(H, RRType.ANY)], []), Rcode.YXDOMAIN],
    ['name not in use', () => run([none(`nx.alice.${ZONE}`, RRType.ANY)], []), Rcode.NOERROR],
    ['rrset exists', () => run([any(H, RRType.AAAA)], []), Rcode.NOERROR],
    ['rrset exists fails', () => run([any(H, RRType.A)], []), Rcode.NXRRSET],
    ['rrset does not exist fails', () => run([none(H, RRType.AAAA)], []), Rcode.YXRRSET],
    ['value-dependent', () => run([aaaa(H, 'fd00::2', 0), aaaa(H, 'fd00::1', 0)], []), Rcode.NOERROR],
    ['value-dependent subset fails', () => run([aaaa(H, 'fd00::1', 0)], []), Rcode.NXRRSET],
    ['prereq ttl must be 0', () => run([{ ...any(H, RRType.AAAA), ttl: 5 }], []), Rcode.FORMERR],
    ['failed prereq applies nothing', () => run([any(H, RRType.A)], [a(H, '192.0.2.1')]), Rcode.NXRRSET],
    [
      'delete one RR',
      () => run([], [rr(H, RRType.AAAA, { address: 'fd00::1' }, { ttl: 0, class: RRClass.NONE })]),
      Rcode.NOERROR,
    ],
    ['add A and TXT', () => run([], [a(H, '192.0.2.1'), txt(H, 'hello')]), Rcode.NOERROR],
    ['delete RRset', () => run([], [any(H, RRType.TXT)]), Rcode.NOERROR],
    [
      'class ANY with data is FORMERR',
      () => run([], [{ ...a(H, '192.0.2.9'), class: RRClass.ANY, ttl: 0 }]),
      Rcode.FORMERR,
    ],
  ]
  for (const [name, fn, want] of table) assert.equal(fn(), want, name)
  assert.deepEqual(
    [...store.index.node(H)!.rrsets.keys()].sort((x, y) => x - y),
    [RRType.A, RRType.AAAA],
  )
  assert.equal(store.index.rrset(H, RRType.AAAA)!.records.size, 1)
  assert.equal(store.index.rrset(H, RRType.A)!.records.size, 1)
  assert.equal(run([], [any(H, RRType.ANY)]), Rcode.NOERROR)
  assert.equal(store.index.nameExists(H), false)
  assert.equal(store.index.nameExists(`alice.${ZONE}`), false, 'empty non-terminal goes with its last descendant')
})

test('serial increases on every change and only then; change feed carries the net change', (t) => {
  const { dir, cleanup } = tempDir()
  const store = openStore(dir)
  t.after(() => {
    store.close()
    cleanup()
  })
  const seen: RRsetChange[][] = []
  store.onChange((c) => seen.push(c))
  const run = (updates: Parameters<typeof updateMsg>[1]) =>
    store.write((tx) =>
      applyUpdate(tx, store.index, { msg: updateMsg([], updates), user: 'alice', leaseSec: undefined }),
    )
  const s0 = store.serial
  run([aaaa(H, 'fd00::1')])
  assert.equal(store.serial, s0 + 1)
  run([aaaa(H, 'fd00::1')])
  assert.equal(store.serial, s0 + 1, 'a duplicate add is not a change')
  assert.equal(seen.length, 1)
  assert.deepEqual(
    seen[0]!.map((c) => [c.name, c.type, c.added.map((r) => r.text), c.removed.length]),
    [[H, RRType.AAAA, ['fd00::1'], 0]],
  )
  // Add then delete in one write: no net change, no event.
  store.write((tx) => {
    applyUpdate(tx, store.index, { msg: updateMsg([], [a(H, '192.0.2.7')]), user: 'alice', leaseSec: undefined })
    applyUpdate(tx, store.index, {
      msg: updateMsg([], [rr(H, RRType.A, { address: '192.0.2.7' }, { ttl: 0, class: RRClass.NONE })]),
      user: 'alice',
      leaseSec: undefined,
    })
  })
  assert.equal(seen.length, 1)
  assert.equal(store.serial, s0 + 3)
})

test('quota: an UPDATE that would grow an account past maxRecords leaves no trace; at the limit, replace works', (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  const store = openStore(dir)
  t.after(() => store.close())
  const seen: RRsetChange[][] = []
  store.onChange((c) => seen.push(c))
  const apply = (updates: ReturnType<typeof a>[], maxRecords = 2): number[] =>
    store.write((tx) => [
      applyUpdate(tx, store.index, {
        msg: updateMsg([], [a(H, '192.0.2.1')]),
        user: 'alice',
        leaseSec: undefined,
        maxRecords,
      }),
      applyUpdate(tx, store.index, { msg: updateMsg([], updates), user: 'alice', leaseSec: undefined, maxRecords }),
    ])
  assert.deepEqual(apply([a(H, '192.0.2.2')]), [Rcode.NOERROR, Rcode.NOERROR])
  const serial = store.serial
  const changes = seen.length
  assert.deepEqual(apply([a(H, '192.0.2.3'), txt(H, 'x')]), [Rcode.NOERROR, QUOTA_EXCEEDED])
  assert.equal(store.index.recordsUnder('alice'), 2)
  assert.equal(store.db.prepare('SELECT count(*) FROM rr').pluck().get(), 2, 'nothing of it reached SQLite')
  assert.equal(seen.length, changes, 'no change feed')
  assert.equal(store.serial, serial)
  // Delete one and add one in the same UPDATE: the count stays at the limit.
  const swap = [rr(H, RRType.A, { address: '192.0.2.2' }, { ttl: 0, class: RRClass.NONE }), a(H, '192.0.2.9')]
  assert.deepEqual(apply(swap), [Rcode.NOERROR, Rcode.NOERROR])
  assert.equal(store.index.recordsUnder('alice'), 2)
  assert.equal(
    checkUpdate(
      { ...cfg, maxUpdateRecords: 2 },
      updateMsg([], [a(H, '192.0.2.1'), a(H, '192.0.2.2'), a(H, '192.0.2.3')]),
      'alice',
    ),
    Rcode.REFUSED,
  )
})

test('shared store: which UPDATEs are checked against the database (prerequisites, near the quota), and the recheck', (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  const store = openStore(dir)
  t.after(() => store.close())
  const domain = `alice.${ZONE}`
  const req = (prereqs: ReturnType<typeof a>[], updates: ReturnType<typeof a>[], maxRecords = 1000) => ({
    msg: updateMsg(prereqs, updates),
    user: 'alice',
    leaseSec: undefined,
    maxRecords,
  })
  assert.equal(quotaHeadroom(1000), 100)
  assert.equal(quotaHeadroom(5000), 500)
  // No prerequisites, far from the quota: the fast path.
  assert.equal(consistentReadOf(store.index, req([], [a(H, '192.0.2.1')]), ZONE), undefined)
  // Prerequisites: the names of both sections are re-read; the account only when near its quota.
  assert.deepEqual(consistentReadOf(store.index, req([none(H, RRType.A)], [txt(`x.${domain}`, 'x')]), ZONE), {
    domain,
    names: [H, `x.${domain}`],
    wholeAccount: false,
  })
  // 0 records + 1 added + headroom 100 > 100: near the quota, the whole account is read.
  assert.equal(consistentReadOf(store.index, req([], [a(H, '192.0.2.1')], 100), ZONE)?.wholeAccount, true)
  // Only deletions cannot cross the quota.
  assert.equal(consistentReadOf(store.index, req([], [any(H, RRType.A)], 100), ZONE), undefined)
  // On the fast path (quotaFromIndex) an UPDATE that has come near the quota since it arrived asks for the recheck,
  // having applied nothing; re-read (no quotaFromIndex) the exact check applies.
  const near = { ...req([], [a(H, '192.0.2.1')], 100), quotaFromIndex: true }
  assert.equal(
    store.write((tx) => applyUpdate(tx, store.index, near)),
    QUOTA_RECHECK,
  )
  assert.equal(store.index.recordsUnder('alice'), 0)
  assert.equal(
    store.write((tx) => applyUpdate(tx, store.index, { ...near, quotaFromIndex: false })),
    Rcode.NOERROR,
  )
  const far = { ...req([], [a(H, '192.0.2.2')], 1000), quotaFromIndex: true }
  assert.equal(
    store.write((tx) => applyUpdate(tx, store.index, far)),
    Rcode.NOERROR,
  )
  assert.equal(store.index.recordsUnder('alice'), 2)
})

test('records, leases and serial survive a reopen', (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  const clock = new FakeClock()
  const s1 = openStore(dir, clock)
  s1.write((tx) =>
    applyUpdate(tx, s1.index, { msg: updateMsg([], [aaaa(H, 'fd00::1'), txt(H, 'x')]), user: 'alice', leaseSec: 60 }),
  )
  s1.write((tx) =>
    applyUpdate(tx, s1.index, { msg: updateMsg([], [a(H, '192.0.2.1')]), user: 'alice', leaseSec: undefined }),
  )
  const serial = s1.serial
  s1.close()
  const s2 = openStore(dir, clock)
  t.after(() => s2.close())
  assert.equal(s2.serial, serial)
  assert.equal(s2.index.recordCount, 3)
  assert.equal(s2.leases.size, 2)
  assert.equal(s2.leases.nextExpiryMs(), clock.now() + 60_000)
  assert.equal(s2.index.rrset(H, RRType.TXT)!.records.values().next().value!.rr.text, '"x"')
})

test('a failed commit leaves the index as it was', (t) => {
  const { dir, cleanup } = tempDir()
  const store = openStore(dir)
  t.after(() => {
    store.close()
    cleanup()
  })
  store.write((tx) =>
    applyUpdate(tx, store.index, { msg: updateMsg([], [aaaa(H, 'fd00::1')]), user: 'alice', leaseSec: undefined }),
  )
  const serial = store.serial
  store.db.exec('CREATE TRIGGER fail BEFORE INSERT ON rr BEGIN SELECT RAISE(ABORT, "disk full"); END')
  assert.throws(() =>
    store.write((tx) =>
      applyUpdate(tx, store.index, {
        msg: updateMsg(
          [],
          [aaaa(H, 'fd00::2'), rr(H, RRType.AAAA, { address: 'fd00::1' }, { ttl: 0, class: RRClass.NONE })],
        ),
        user: 'alice',
        leaseSec: undefined,
      }),
    ),
  )
  assert.equal(store.serial, serial)
  assert.deepEqual(
    [...store.index.rrset(H, RRType.AAAA)!.records.values()].map((r) => r.rr.text),
    ['fd00::1'],
  )
})
