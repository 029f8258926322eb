import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../io/leak-check.js'
import { TsigReplayCache } from './tsig-replay.js'

failOnLeakedResources()

const mac = (n: number): Buffer => Buffer.alloc(32, n)

test('a MAC is fresh once, a replay until time signed + window, then forgotten', () => {
  const c = new TsigReplayCache({ windowSec: 300, maxEntries: 10 })
  const first = c.check(mac(1), 1000, 1000)
  assert.equal(first.kind, 'fresh')
  assert.deepEqual(c.check(mac(1), 1000, 1200), { kind: 'replay', result: undefined })
  c.setResult(first, { rcode: 0 })
  assert.deepEqual(c.check(mac(1), 1000, 1300), { kind: 'replay', result: { rcode: 0 } })
  assert.equal(c.check(mac(2), 1300, 1301).kind, 'fresh')
  assert.equal(c.size, 1, 'the first MAC expired at 1300')
  assert.equal(c.stats.replays, 2)
})

test('full: the oldest goes and the floor rises, so an evicted MAC is never accepted again', () => {
  const c = new TsigReplayCache({ windowSec: 300, maxEntries: 2 })
  assert.equal(c.check(mac(1), 1000, 1000).kind, 'fresh')
  assert.equal(c.check(mac(2), 1001, 1001).kind, 'fresh')
  assert.equal(c.check(mac(3), 1002, 1002).kind, 'fresh')
  assert.equal(c.size, 2)
  assert.equal(c.floorSec, 1000)
  assert.equal(c.check(mac(1), 1000, 1003).kind, 'too-old', 'the evicted MAC is refused')
  assert.equal(c.check(mac(4), 1003, 1003).kind, 'fresh')
})

test('never accepts the same MAC twice while a naive list says it could pass the time check', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          m: fc.integer({ min: 0, max: 30 }),
          dt: fc.integer({ min: 0, max: 40 }),
          skew: fc.integer({ min: -100, max: 100 }),
        }),
        {
          maxLength: 200,
        },
      ),
      fc.integer({ min: 1, max: 20 }),
      (ops, maxEntries) => {
        const windowSec = 100
        const c = new TsigReplayCache({ windowSec, maxEntries })
        const accepted = new Map<number, number>()
        const signedAt = new Map<number, number>()
        let now = 10_000
        for (const o of ops) {
          now += o.dt
          // A MAC stands for one message: it always carries the time signed it was first made with.
          if (!signedAt.has(o.m)) signedAt.set(o.m, now + o.skew)
          const ts = signedAt.get(o.m)!
          if (Math.abs(now - ts) > windowSec) continue
          const v = c.check(mac(o.m), ts, now)
          if (v.kind === 'fresh') {
            assert.ok(!accepted.has(o.m) || accepted.get(o.m)! + windowSec < now, `MAC ${o.m} accepted twice`)
            accepted.set(o.m, ts)
          }
          assert.ok(c.size <= maxEntries)
        }
      },
    ),
    { numRuns: 500 },
  )
})
