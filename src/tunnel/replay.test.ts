import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { NaiveReplayWindow, REPLAY_DEFAULT_WINDOW, ReplayWindow } from './replay.js'

test('default window covers at least 1024 packets', () => {
  assert.ok(REPLAY_DEFAULT_WINDOW >= 1024)
  assert.equal(new ReplayWindow().windowSize, REPLAY_DEFAULT_WINDOW)
})

// The Linux kernel's numbered replay cases (drivers/net/wireguard/selftest/counter.c, ported to Go in
// wireguard-go replay/replay_test.go). Adapted to ESP: counters there start at 0 and a window of W accepts
// highest - W; ESP numbers start at 1 (so every case is shifted by +1) and a window of W accepts highest - (W - 1).
for (const blocks of [2, 33, 64]) {
  test(`kernel numbered replay cases, ${blocks}-block window`, () => {
    const LIMIT = 2 ** 40
    const probe = new ReplayWindow({ blocks })
    const W = probe.windowSize - 1
    const T_LIM = W + 1
    const REJECT_AFTER = LIMIT - 1 // kernel: counters >= REJECT_AFTER_MESSAGES are rejected
    let f = new ReplayWindow({ blocks, limit: LIMIT })
    let n = 0
    const T = (counter: number, expected: boolean): void => {
      n++
      const seq = counter + 1
      const pre = f.check(seq)
      const got = f.accept(seq)
      assert.equal(got, expected, `case ${n}: counter ${counter}`)
      if (!pre) assert.equal(got, false, `case ${n}: check() said no but accept() said yes`)
    }
    T(0, true) /*  1 */
    T(1, true) /*  2 */
    T(1, false) /*  3 */
    T(9, true) /*  4 */
    T(8, true) /*  5 */
    T(7, true) /*  6 */
    T(7, false) /*  7 */
    T(T_LIM, true) /*  8 */
    T(T_LIM - 1, true) /*  9 */
    T(T_LIM - 1, false) /* 10 */
    T(T_LIM - 2, true) /* 11 */
    T(2, true) /* 12 */
    T(2, false) /* 13 */
    T(T_LIM + 16, true) /* 14 */
    T(3, false) /* 15 */
    T(T_LIM + 16, false) /* 16 */
    T(T_LIM * 4, true) /* 17 */
    T(T_LIM * 4 - (T_LIM - 1), true) /* 18 */
    T(10, false) /* 19 */
    T(T_LIM * 4 - T_LIM, false) /* 20 */
    T(T_LIM * 4 - (T_LIM + 1), false) /* 21 */
    T(T_LIM * 4 - (T_LIM - 2), true) /* 22 */
    T(T_LIM * 4 + 1 - T_LIM, false) /* 23 */
    T(0, false) /* 24 */
    T(REJECT_AFTER, false) /* 25 */
    T(REJECT_AFTER - 1, true) /* 26 */
    T(REJECT_AFTER, false) /* 27 */
    T(REJECT_AFTER - 1, false) /* 28 */
    T(REJECT_AFTER - 2, true) /* 29 */
    T(REJECT_AFTER + 1, false) /* 30 */
    T(REJECT_AFTER + 2, false) /* 31 */
    T(REJECT_AFTER - 2, false) /* 32 */
    T(REJECT_AFTER - 3, true) /* 33 */
    T(0, false) /* 34 */

    f = new ReplayWindow({ blocks, limit: LIMIT })
    for (let i = 1; i <= W; i++) T(i, true)
    T(0, true)
    T(0, false)

    f = new ReplayWindow({ blocks, limit: LIMIT })
    for (let i = 2; i <= W + 1; i++) T(i, true)
    T(1, true)
    T(0, false)

    f = new ReplayWindow({ blocks, limit: LIMIT })
    for (let i = W + 1; i > 0; i--) T(i, true)

    f = new ReplayWindow({ blocks, limit: LIMIT })
    for (let i = W + 2; i > 1; i--) T(i, true)
    T(0, false)

    f = new ReplayWindow({ blocks, limit: LIMIT })
    for (let i = W; i > 0; i--) T(i, true)
    T(W + 1, true)
    T(0, false)

    f = new ReplayWindow({ blocks, limit: LIMIT })
    for (let i = W; i > 0; i--) T(i, true)
    T(0, true)
    T(W + 1, true)
  })
}

test('property: the bitmap window agrees with the naive set-based window', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 8 }),
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: -300, max: 300 })), { maxLength: 400 }),
      (blocks, steps) => {
        const fast = new ReplayWindow({ blocks })
        const naive = new NaiveReplayWindow(fast.windowSize)
        let cursor = 1
        for (const [jump, delta] of steps) {
          // Mostly near the front of the window, sometimes a big jump forward.
          const seq = jump ? cursor + Math.abs(delta) * 7 : Math.max(0, cursor + delta)
          const pre = fast.check(seq)
          const a = fast.accept(seq)
          const b = naive.accept(seq)
          assert.equal(a, b, `seq ${seq} (highest ${fast.highest})`)
          if (a) assert.ok(pre)
          if (seq > cursor) cursor = seq
        }
      },
    ),
    { numRuns: 500 },
  )
})

test('RFC 4303 Appendix A2.2: ESN high bits are inferred on both sides of a 2^32 boundary', () => {
  const w = new ReplayWindow()
  const W = w.windowSize
  const S = 0x1_0000_0000
  assert.equal(w.inferEsn(1), 1)
  assert.ok(w.accept(S - 10))
  // Case A (window within one subspace): a small low value means the next subspace.
  assert.equal(w.inferEsn(5), S + 5)
  assert.equal(w.inferEsn(S - 20), S - 20)
  assert.ok(w.accept(S + 3))
  // Case B (window spans the boundary): a value just below 2^32 belongs to the previous subspace.
  assert.equal(w.inferEsn(S - 20), S - 20)
  assert.equal(w.inferEsn(4), S + 4)
  assert.equal(w.inferEsn(W + 100), S + W + 100)
  assert.ok(w.accept(5 * S + 7))
  assert.equal(w.inferEsn(6), 5 * S + 6)
  assert.equal(w.inferEsn(S - 1), 4 * S + S - 1)
})
