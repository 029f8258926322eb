// The Watcher's back-off runs on the injected Clock: against a server that answers every query with SERVFAIL
// (real UDP on 127.0.0.1), a failed start schedules one retry between 0.8 and 1.2 times retryMinMs of clock time,
// and nothing happens before it.
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { test } from 'node:test'
import { FakeClock } from '../../io/clock.fake.js'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { FakeRandom } from '../../io/random.fake.js'
import { Rcode } from '../wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage } from '../wire/message.js'
import { RRType } from '../wire/rr-table.js'
import { Watcher } from './watcher.js'

failOnLeakedResources()

const RETRY_MIN_MS = 1000

test('a watcher whose every mechanism failed retries after the jittered back-off on its Clock', async (t) => {
  const s = dgram.createSocket('udp4')
  let queries = 0
  let answered: () => void = () => {}
  s.on('message', (wire, rinfo) => {
    const q = decodeMessage(wire)
    queries++
    s.send(
      encodeMessage(emptyMessage({ id: q.id, qr: true, rcode: Rcode.SERVFAIL, questions: q.questions })),
      rinfo.port,
      rinfo.address,
      () => answered(),
    )
  })
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))
  t.after(() => new Promise<void>((r) => s.close(() => r())))
  const clock = new FakeClock()
  const w = new Watcher(
    { clock, random: new FakeRandom(1) },
    {
      name: '_autotunnel._udp.alice.members.example.',
      type: RRType.PTR,
      domain: 'alice.members.example',
      server: { host: '127.0.0.1', port: s.address().port },
      mechanisms: ['poll'],
      retryMinMs: RETRY_MIN_MS,
      timeoutMs: 500,
    },
  )
  t.after(() => w.close())
  assert.equal(await w.start(), undefined)
  assert.equal(queries, 1)
  assert.equal(clock.pending, 1, 'one retry timer on the Clock')
  clock.advance(RETRY_MIN_MS * 0.8 - 1)
  assert.equal(queries, 1, 'no retry before 0.8 x retryMinMs')
  const next = new Promise<void>((r) => {
    answered = r
  })
  clock.advance(RETRY_MIN_MS * 0.4 + 1)
  await next
  assert.equal(queries, 2, 'the retry by 1.2 x retryMinMs')
})
