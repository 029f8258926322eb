import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from './clock.fake.js'
import { failOnLeakedResources } from './leak-check.js'

failOnLeakedResources()

test('FakeClock fires timers in time order, including ones scheduled while advancing', () => {
  const c = new FakeClock(1000)
  const seen: string[] = []
  c.setTimeout(() => {
    seen.push(`b@${c.monotonic()}`)
    c.setTimeout(() => seen.push(`c@${c.monotonic()}`), 5)
  }, 20)
  c.setTimeout(() => seen.push(`a@${c.monotonic()}`), 10)
  const dropped = c.setTimeout(() => seen.push('never'), 15)
  c.clearTimeout(dropped)
  c.advance(24)
  assert.deepEqual(seen, ['a@10', 'b@20'])
  assert.equal(c.pending, 1)
  c.advance(1)
  assert.deepEqual(seen, ['a@10', 'b@20', 'c@25'])
  assert.equal(c.now(), 1025)
  assert.equal(c.pending, 0)
})
