import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../io/leak-check.js'
import { LeaseTable } from './lease-table.js'

failOnLeakedResources()

/** The obvious version: a map scanned in full on every question. */
class NaiveLeases {
  readonly m = new Map<number, number>()
  popDue(now: number): number[] {
    const due = [...this.m].filter(([, at]) => at <= now).sort((a, b) => a[1] - b[1] || a[0] - b[0])
    for (const [k] of due) this.m.delete(k)
    return due.map(([k]) => k)
  }
  next(): number | undefined {
    const v = [...this.m.values()]
    return v.length ? Math.min(...v) : undefined
  }
}

type Op = { op: 'set'; key: number; at: number } | { op: 'del'; key: number } | { op: 'pop'; now: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('set' as const),
    key: fc.integer({ min: 0, max: 30 }),
    at: fc.integer({ min: 0, max: 200 }),
  }),
  fc.record({ op: fc.constant('del' as const), key: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ op: fc.constant('pop' as const), now: fc.integer({ min: 0, max: 200 }) }),
)

test('lease table agrees with the naive scan', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
      const t = new LeaseTable<number>()
      const n = new NaiveLeases()
      for (const o of ops) {
        if (o.op === 'set') {
          t.set(o.key, o.at)
          n.m.set(o.key, o.at)
        } else if (o.op === 'del') {
          assert.equal(t.delete(o.key), n.m.delete(o.key))
        } else {
          // Same set of due keys; the heap orders by time only, so compare sorted by (time, key).
          const got = t.popDue(o.now)
          const want = n.popDue(o.now)
          assert.deepEqual(
            [...got].sort((a, b) => a - b),
            [...want].sort((a, b) => a - b),
          )
        }
        assert.equal(t.size, n.m.size)
        assert.equal(t.nextExpiryMs(), n.next())
      }
    }),
    { numRuns: 300 },
  )
})

test('popDue returns keys earliest first and moving a lease later keeps it', () => {
  const t = new LeaseTable<string>()
  t.set('a', 30)
  t.set('b', 10)
  t.set('c', 20)
  t.set('b', 50)
  assert.deepEqual(t.popDue(40), ['c', 'a'])
  assert.equal(t.nextExpiryMs(), 50)
  assert.deepEqual(t.popDue(49), [])
  assert.deepEqual(t.popDue(50), ['b'])
  assert.equal(t.nextExpiryMs(), undefined)
})
