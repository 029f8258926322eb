import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { FakeClock } from '../io/clock.fake.js'
import { type DeadlineSlot, DeadlineSweep } from './deadline-sweep.js'

test('many deadlines share one timer; each fires once, at its time, in order', () => {
  const clock = new FakeClock()
  const fired: [string, number][] = []
  const t0 = clock.monotonic()
  const sweep = new DeadlineSweep<string>(clock, (x) => fired.push([x, clock.monotonic() - t0]))
  for (let i = 0; i < 1000; i++) sweep.schedule(`a${i}`, t0 + 2000)
  sweep.schedule('early', t0 + 500)
  assert.equal(clock.pending, 1, 'one Clock timer for 1,001 deadlines')
  clock.advance(499)
  assert.equal(fired.length, 0)
  clock.advance(1)
  assert.deepEqual(fired, [['early', 500]])
  clock.advance(1500)
  assert.equal(fired.length, 1001)
  assert.ok(fired.slice(1).every(([, at]) => at === 2000))
  assert.equal(clock.pending, 0, 'nothing live: no timer')
  assert.equal(sweep.size, 0)
})

test('moving and cancelling deadlines: only the live slot fires; close leaves no timer', () => {
  const clock = new FakeClock()
  const fired: string[] = []
  const t0 = clock.monotonic()
  const sweep = new DeadlineSweep<string>(clock, (x) => fired.push(x))
  let a = sweep.schedule('a', t0 + 100)
  a = sweep.schedule('a', t0 + 300, a)
  const b = sweep.schedule('b', t0 + 200)
  sweep.cancel(b)
  clock.advance(250)
  assert.deepEqual(fired, [])
  clock.advance(50)
  assert.deepEqual(fired, ['a'])
  sweep.schedule('c', t0 + 1000)
  sweep.close()
  assert.equal(clock.pending, 0)
  clock.advance(10_000)
  assert.deepEqual(fired, ['a'])
})

test('a deadline scheduled from the callback, even one already due, fires in a later sweep', () => {
  const clock = new FakeClock()
  const t0 = clock.monotonic()
  const fired: string[] = []
  const sweep: DeadlineSweep<string> = new DeadlineSweep<string>(clock, (x) => {
    fired.push(x)
    if (x === 'first') sweep.schedule('again', clock.monotonic())
  })
  sweep.schedule('first', t0 + 10)
  clock.advance(10)
  clock.advance(1)
  assert.deepEqual(fired, ['first', 'again'])
  assert.equal(clock.pending, 0)
})

test('against a naive list: same items fire at the same times, one timer at most', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant('set' as const), item: fc.nat(20), at: fc.nat(5000) }),
          fc.record({ op: fc.constant('cancel' as const), item: fc.nat(20) }),
          fc.record({ op: fc.constant('advance' as const), ms: fc.nat(800) }),
        ),
        { maxLength: 200 },
      ),
      (ops) => {
        const clock = new FakeClock()
        const t0 = clock.monotonic()
        const got: string[] = []
        const sweep = new DeadlineSweep<number>(clock, (x) => got.push(`${x}@${clock.monotonic() - t0}`))
        const slots = new Map<number, DeadlineSlot<number>>()
        const naive = new Map<number, number>()
        const want: string[] = []
        let now = 0
        const advanceNaive = (to: number): void => {
          // Fires due items by deadline; at the FakeClock's granularity every due item fires at its own time.
          for (;;) {
            let next: [number, number] | undefined
            for (const [item, at] of naive) if (at <= to && (!next || at < next[1])) next = [item, at]
            if (!next) break
            naive.delete(next[0])
            want.push(`${next[0]}@${Math.max(next[1], now)}`)
          }
          now = to
        }
        for (const o of ops) {
          if (o.op === 'set') {
            const at = now + o.at
            slots.set(o.item, sweep.schedule(o.item, t0 + at, slots.get(o.item)))
            naive.set(o.item, at)
          } else if (o.op === 'cancel') {
            sweep.cancel(slots.get(o.item))
            slots.delete(o.item)
            naive.delete(o.item)
          } else {
            clock.advance(o.ms)
            advanceNaive(now + o.ms)
          }
          assert.ok(clock.pending <= 1)
          assert.equal(sweep.size, naive.size)
        }
        // Same items at the same times (order among equal deadlines is not promised).
        assert.deepEqual([...got].sort(), [...want].sort())
        sweep.close()
        assert.equal(clock.pending, 0)
      },
    ),
    { numRuns: 300 },
  )
})
