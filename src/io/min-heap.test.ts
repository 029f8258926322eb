import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { MinHeap } from './min-heap.js'

test('MinHeap pops in key order whatever the pushes, resets and interleaved pops', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(fc.integer({ min: -50, max: 50 }), fc.constant('pop' as const), fc.constant('reset' as const)),
        {
          maxLength: 200,
        },
      ),
      (ops) => {
        const h = new MinHeap<{ k: number }>((x) => x.k)
        let naive: number[] = []
        for (const op of ops) {
          if (op === 'pop') {
            naive.sort((a, b) => a - b)
            assert.equal(h.pop()?.k, naive.shift())
          } else if (op === 'reset') {
            const keep = naive.filter((k) => k % 2 === 0)
            h.reset(h.entries().filter((x) => x.k % 2 === 0))
            naive = keep
          } else {
            h.push({ k: op })
            naive.push(op)
          }
          assert.equal(h.size, naive.length)
          assert.equal(h.peek()?.k, naive.length ? Math.min(...naive) : undefined)
        }
      },
    ),
    { numRuns: 500 },
  )
})
