import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FAULT_KINDS, schedule, seededRandom } from './faults.js'

test('the schedule holds every kind once per round and replays from its seed', () => {
  const take = (seed: number) => {
    const it = schedule(seededRandom(seed))
    return Array.from({ length: FAULT_KINDS.length * 3 }, () => it.next().value)
  }
  const a = take(42)
  for (let r = 0; r < 3; r++)
    assert.deepEqual([...a.slice(r * FAULT_KINDS.length, (r + 1) * FAULT_KINDS.length)].sort(), [...FAULT_KINDS].sort())
  assert.deepEqual(take(42), a)
  assert.notDeepEqual(take(43), a)
})
