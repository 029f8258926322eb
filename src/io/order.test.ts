import assert from 'node:assert/strict'
import { test } from 'node:test'
import { byCodeUnits } from './order.js'

test('byCodeUnits orders by UTF-16 code units, whatever the locale', () => {
  assert.deepEqual(['laptop', 'Desktop', 'desktop', 'a-b', 'a.b', 'hotel-guest'].sort(byCodeUnits), [
    'Desktop',
    'a-b',
    'a.b',
    'desktop',
    'hotel-guest',
    'laptop',
  ])
  assert.equal(byCodeUnits('x', 'x'), 0)
})
