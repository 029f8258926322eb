import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TokenBucket } from './token-bucket.js'

test('token bucket: burst at once, then the rate; never more than the burst after a long pause', () => {
  const b = new TokenBucket(3, 2)
  assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false])
  assert.equal(b.take(499), false, 'less than one token refilled')
  assert.equal(b.take(500), true, 'one token after 1/rate s')
  assert.equal(b.take(500), false)
  const granted = [0, 1, 2, 3, 4].filter(() => b.take(60_000)).length
  assert.equal(granted, 3, 'a long pause refills to the burst, no more')
  assert.equal(b.take(59_000), false, 'a clock that steps back refills nothing')
  assert.throws(() => new TokenBucket(0, 1), RangeError)
})
