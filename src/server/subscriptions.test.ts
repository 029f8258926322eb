import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../io/leak-check.js'
import { QTYPE_ANY, SubscriptionIndex } from './subscriptions.js'

failOnLeakedResources()

test('matches exact (name, type) and ANY, case-insensitively; limits per client and in total', () => {
  const ix = new SubscriptionIndex<string>({ perClient: 2, total: 3, anonymous: 3 })
  assert.deepEqual(ix.add('Host.Example.', 28, 'c1', 'a'), { ok: true })
  assert.deepEqual(ix.add('host.example', QTYPE_ANY, 'c1', 'b'), { ok: true })
  assert.deepEqual(ix.add('x.example.', 1, 'c1', 'c'), { ok: false, reason: 'client-full' })
  assert.deepEqual(ix.add('x.example.', 1, 'c2', 'c'), { ok: true })
  assert.deepEqual(ix.add('y.example.', 1, 'c3', 'd'), { ok: false, reason: 'total-full' })
  assert.deepEqual(ix.match('HOST.example.', 28).sort(), ['a', 'b'])
  assert.deepEqual(ix.match('host.example.', 1), ['b'])
  assert.deepEqual(ix.match('host.example.', QTYPE_ANY), ['b'])
  assert.ok(ix.remove('a'))
  assert.ok(!ix.remove('a'))
  assert.equal(ix.clientCount('c1'), 1)
})

test('limits per key and for anonymous subscriptions: an anonymous flood leaves room for keyed ones', () => {
  const ix = new SubscriptionIndex<string>({ perClient: 100, perUser: 2, total: 10 })
  assert.equal(ix.limits.anonymous, 1, 'default: a tenth of the total')
  assert.deepEqual(ix.add('p.example.', 1, 'evil', 'p1'), { ok: true })
  assert.deepEqual(ix.add('q.example.', 1, 'evil2', 'p2'), { ok: false, reason: 'anonymous-full' })
  assert.deepEqual(ix.add('a.alice.example.', 1, 'c1', 'a1', 'alice'), { ok: true })
  assert.deepEqual(ix.add('b.alice.example.', 1, 'c2', 'a2', 'alice'), { ok: true })
  assert.deepEqual(ix.add('c.alice.example.', 1, 'c3', 'a3', 'alice'), { ok: false, reason: 'user-full' })
  assert.deepEqual(ix.add('a.bob.example.', 1, 'c1', 'b1', 'bob'), { ok: true })
  assert.equal(ix.userCount('alice'), 2)
  assert.ok(ix.remove('a1'))
  assert.equal(ix.userCount('alice'), 1)
  assert.ok(ix.remove('p1'))
  assert.equal(ix.userCount(undefined), 0)
})

test('agrees with a naive list under random adds and removes', () => {
  const names = ['a.example.', 'B.example.', 'c.example']
  const op = fc.oneof(
    fc.record({
      kind: fc.constant('add' as const),
      sub: fc.integer({ min: 0, max: 20 }),
      name: fc.constantFrom(...names),
      type: fc.constantFrom(1, 28, QTYPE_ANY),
      client: fc.constantFrom('c1', 'c2', 'c3'),
    }),
    fc.record({ kind: fc.constant('remove' as const), sub: fc.integer({ min: 0, max: 20 }) }),
  )
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const limits = { perClient: 5, total: 9, anonymous: 9 }
      const ix = new SubscriptionIndex<number>(limits)
      const naive = new Map<number, { name: string; type: number; client: string }>()
      for (const o of ops) {
        if (o.kind === 'remove') {
          assert.equal(ix.remove(o.sub), naive.delete(o.sub))
          continue
        }
        const perClient = [...naive.values()].filter((v) => v.client === o.client).length
        const fits = naive.has(o.sub) || (naive.size < limits.total && perClient < limits.perClient)
        assert.equal(ix.add(o.name, o.type, o.client, o.sub).ok, fits)
        if (fits && !naive.has(o.sub))
          naive.set(o.sub, { name: o.name.toLowerCase().replace(/\.$/, ''), type: o.type, client: o.client })
      }
      assert.equal(ix.size, naive.size)
      for (const n of names)
        for (const type of [1, 28]) {
          const want = [...naive.entries()]
            .filter(
              ([, v]) => v.name === n.toLowerCase().replace(/\.$/, '') && (v.type === type || v.type === QTYPE_ANY),
            )
            .map(([k]) => k)
            .sort((a, b) => a - b)
          assert.deepEqual(
            ix.match(n, type).sort((a, b) => a - b),
            want,
          )
        }
    }),
    { numRuns: 500 },
  )
})
