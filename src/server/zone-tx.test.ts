import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { ChangeFanout, type RRsetChange } from './zone-tx.js'

failOnLeakedResources()

const change = (name: string): RRsetChange => ({ name, type: 1, added: [], removed: [] })

test('ChangeFanout: deferred changes wait for emitDeferred and come out in commit order with their serials', () => {
  const f = new ChangeFanout(new MemoryLogger())
  const seen: [string, number][] = []
  f.on((cs, serial) => {
    for (const c of cs) seen.push([c.name, serial])
  })
  f.committed([change('a')], 1, true)
  f.committed([change('b')], 2, true)
  f.committed([], 3, true)
  assert.deepEqual(seen, [])
  f.committed([change('now')], 4, false)
  assert.deepEqual(seen, [['now', 4]])
  f.emitDeferred()
  assert.deepEqual(seen, [
    ['now', 4],
    ['a', 1],
    ['b', 2],
  ])
  f.emitDeferred()
  assert.equal(seen.length, 3)
})

test('ChangeFanout: a listener that throws is logged and the others still run; unsubscribe and clear', () => {
  const log = new MemoryLogger()
  const f = new ChangeFanout(log)
  let calls = 0
  f.on(() => {
    throw new Error('boom')
  })
  const off = f.on(() => calls++)
  f.emit([change('x')], 7)
  assert.equal(calls, 1)
  assert.equal(log.entries.filter((e) => e.event === 'store.listener_failed').length, 1)
  off()
  f.emit([change('y')], 8)
  assert.equal(calls, 1)
  const failures = () => log.entries.filter((e) => e.event === 'store.listener_failed').length
  assert.equal(failures(), 2)
  f.clear()
  f.emit([change('z')], 9)
  assert.equal(failures(), 2)
})
