import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../../io/clock.fake.js'
import { FeedSchedule } from './feed-schedule.js'

/** A schedule whose reads finish when the test says so; `reads` counts the reads started. */
function harness(): { clock: FakeClock; s: FeedSchedule; reads: () => number; finish: () => Promise<void> } {
  const clock = new FakeClock()
  let reads = 0
  let done: (() => void) | undefined
  const s = new FeedSchedule(
    {
      clock,
      read: () => {
        reads++
        return new Promise<void>((r) => {
          done = r
        })
      },
    },
    { gapMs: 5, busyWaitMs: 10 },
  )
  const finish = async (): Promise<void> => {
    done?.()
    done = undefined
    // The read's finally runs in a later microtask.
    await new Promise((r) => setImmediate(r))
  }
  return { clock, s, reads: () => reads, finish }
}

test('a kick reads at once; kicks during the read and the gap share one more read, gapMs after the first began', async () => {
  const { clock, s, reads, finish } = harness()
  s.kick()
  assert.equal(reads(), 1)
  s.kick()
  s.kick()
  await finish()
  assert.equal(reads(), 1, 'the second read waits for the gap')
  clock.advance(4)
  assert.equal(reads(), 1)
  clock.advance(1)
  assert.equal(reads(), 2)
  await finish()
  clock.advance(100)
  assert.equal(reads(), 2, 'nothing more was asked')
  s.close()
})

test('while the node commits, a kick is served by a commit sent after it, with no read of its own', async () => {
  const { clock, s, reads } = harness()
  s.committing = true
  s.kick()
  clock.advance(2)
  s.committing = false
  s.committing = true // the next commit, sent 2 ms after the kick: its statement reads the feed
  s.served(clock.monotonic())
  clock.advance(50)
  assert.equal(reads(), 0)
  s.close()
})

test('a kick during a commit that a commit sent BEFORE it cannot serve: a read follows after busyWaitMs', async () => {
  const { clock, s, reads } = harness()
  s.committing = true
  const sentAt = clock.monotonic()
  clock.advance(1)
  s.kick()
  s.served(sentAt) // the running commit's read: its snapshot may predate what the ring announced
  s.committing = false
  clock.advance(9)
  assert.equal(reads(), 0)
  clock.advance(1)
  assert.equal(reads(), 1, 'read after busyWaitMs')
  s.close()
})

test('within busyWaitMs after a commit returned the node counts as committing; later a kick reads at once', async () => {
  const { clock, s, reads, finish } = harness()
  s.committing = true
  s.committing = false
  clock.advance(3)
  s.kick()
  assert.equal(reads(), 0, 'waits for the next commit')
  clock.advance(10)
  assert.equal(reads(), 1, 'none came: a read of its own')
  await finish()
  clock.advance(20)
  s.kick()
  assert.equal(reads(), 2, 'idle: at once')
  s.close()
})

test('again() during a read asks for another; close() stops everything', async () => {
  const { clock, s, reads, finish } = harness()
  s.kick()
  s.again()
  await finish()
  clock.advance(5)
  assert.equal(reads(), 2)
  await finish()
  s.committing = true
  s.kick()
  s.close()
  clock.advance(100)
  assert.equal(reads(), 2)
})

test('readNow reads while the node commits, where a kick waits for the next commit', async () => {
  const { clock, s, reads, finish } = harness()
  s.committing = true
  s.kick()
  assert.equal(reads(), 0, 'a kick waits for the commit')
  s.readNow()
  assert.equal(reads(), 1, 'readNow does not')
  await finish()
  s.committing = false
  clock.advance(100)
  s.close()
})
