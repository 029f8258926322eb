import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { LeaseTable } from '../lease-table.js'
import { type Rec, ZoneIndex } from '../zone-index.js'
import { applyRows } from './reconcile.js'
import type { Row } from './sql.js'

failOnLeakedResources()

const ZONE = 'example.test.'
const A = 1
const TXT = 16

function row(name: string, type: number, byte: number, over: Partial<Row> = {}): Row {
  return {
    name,
    type,
    class: 1,
    ttl: '60',
    rdata: Buffer.from([10, 0, 0, byte]),
    text: `10.0.0.${byte}`,
    expires_ms: null,
    owner: null,
    wire: null,
    ...over,
  }
}

function zone(rows: Row[]): { index: ZoneIndex; leases: LeaseTable<Rec> } {
  const index = new ZoneIndex(ZONE)
  const leases = new LeaseTable<Rec>()
  applyRows(index, leases, undefined, rows)
  return { index, leases }
}

const addrs = (index: ZoneIndex, name: string, type = A): string[] =>
  [...(index.rrset(name, type)?.records.values() ?? [])].map((r) => r.rr.text).sort()

test('applyRows: the named RRsets become what the rows hold; the differences are the changes', () => {
  const h = `h.${ZONE}`
  const { index, leases } = zone([row(h, A, 1), row(h, A, 2), row(`g.${ZONE}`, A, 9)])
  const { changes, rrsets } = applyRows(index, leases, [[h, A]], [row(h, A, 2), row(h, A, 3)])
  assert.equal(rrsets, 1)
  assert.deepEqual(addrs(index, h), ['10.0.0.2', '10.0.0.3'])
  assert.equal(changes.length, 1)
  assert.deepEqual(
    changes[0]!.added.map((r) => r.text),
    ['10.0.0.3'],
  )
  assert.deepEqual(
    changes[0]!.removed.map((r) => r.text),
    ['10.0.0.1'],
  )
  // An RRset not named is left alone, even when rows of it are passed (a key deferred as pending).
  assert.deepEqual(addrs(index, `g.${ZONE}`), ['10.0.0.9'])
  applyRows(index, leases, [[h, A]], [row(`g.${ZONE}`, A, 8)])
  assert.deepEqual(addrs(index, `g.${ZONE}`), ['10.0.0.9'])
  // ... and a named RRset without rows is deleted.
  assert.deepEqual(addrs(index, h), [])
})

test('applyRows: a refresh (same record, new lease) changes no content and keeps the record; a new TTL replaces it', () => {
  const h = `h.${ZONE}`
  const { index, leases } = zone([row(h, A, 1, { expires_ms: '1000' })])
  const before = index.rrset(h, A)!.records.values().next().value as Rec
  const r1 = applyRows(index, leases, [[h, A]], [row(h, A, 1, { expires_ms: '5000' })])
  assert.deepEqual(r1.changes, [])
  const after = index.rrset(h, A)!.records.values().next().value as Rec
  assert.equal(after, before)
  assert.equal(after.expiresAtMs, 5000)
  assert.equal(leases.get(after), 5000)
  applyRows(index, leases, [[h, A]], [row(h, A, 1, { ttl: '120' })])
  const ttl = index.rrset(h, A)!.records.values().next().value as Rec
  assert.equal(ttl.rr.ttl, 120)
  assert.equal(ttl.expiresAtMs, null)
  assert.equal(leases.get(ttl), undefined)
})

test('applyRows without keys: the whole zone, records absent from the rows are removed', () => {
  const { index, leases } = zone([row(`a.${ZONE}`, A, 1), row(`b.${ZONE}`, TXT, 2, { expires_ms: '7' })])
  assert.equal(leases.size, 1)
  const { changes, rrsets } = applyRows(index, leases, undefined, [row(`a.${ZONE}`, A, 1)])
  assert.equal(rrsets, 2)
  assert.deepEqual(
    changes.map((c) => [c.name, c.type, c.added.length, c.removed.length]),
    [[`b.${ZONE}`, TXT, 0, 1]],
  )
  assert.equal(leases.size, 0)
  assert.equal(index.recordCount, 1)
})
