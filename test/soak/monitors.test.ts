import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Lab } from '../../lab/index.js'
import { PingMonitor, StreamMonitor } from './monitors.js'

const lab = {} as Lab

test('longestGap: the longest answer-free time overlapping the window, also an open one at its end', () => {
  const p = new PingMonitor(lab, 'desktop')
  p.replies.push(1000, 1050, 1100, 3100, 3150, 3200)
  assert.equal(p.longestGap(1050, 3200), 2000, 'a gap inside the window')
  assert.equal(p.longestGap(3150, 3200), 50, 'the window after the gap')
  assert.equal(p.longestGap(3200, 5000), 1800, 'no answer after the last one: up to the window end')
  assert.equal(p.longestGap(0, 500), 1000, 'the first answer came after the window: from its start')
  assert.equal(new PingMonitor(lab, 'x').longestGap(10, 40), 30)
  assert.equal(p.firstAfter(1100), 3100)
  assert.equal(p.firstAfter(3200), undefined)
})

test('longestStall and grewSince follow the receiver byte counts', () => {
  const s = new StreamMonitor(lab, 'laptop', 'desktop')
  s.events.push(
    { at: 100, kind: 'bytes', bytes: 10 },
    { at: 200, kind: 'bytes', bytes: 20 },
    { at: 300, kind: 'bytes', bytes: 20 },
    { at: 900, kind: 'bytes', bytes: 20 },
    { at: 1000, kind: 'bytes', bytes: 30 },
  )
  assert.equal(s.longestStall(0, 1000), 800)
  assert.equal(s.longestStall(950, 1000), 50)
  assert.ok(s.grewSince(900))
  assert.ok(!s.grewSince(1000))
  assert.equal(s.bytes, 30)
  assert.ok(!s.closed)
})
