import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { MemoryLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import { RELAY_NO_SERVER_RETRY_MS, RelayManager } from './relay.js'

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

test('RelayManager: no TURN server found -> nothing set up, nothing published, one log line, a slow retry', async () => {
  const clock = new FakeClock()
  const net = new FakeNetwork()
  const udp = net.socket('10.0.0.2')
  await udp.bind(4500, '10.0.0.2')
  const peer = net.socket('203.0.113.9')
  await peer.bind(4500, '203.0.113.9')
  const got: Buffer[] = []
  peer.onMessage((m) => got.push(Buffer.from(m)))
  const calls: string[] = []
  const tunnel = {
    setRelayDemux: (d: unknown) => calls.push(`demux ${d ? 'set' : 'cleared'}`),
    setRelayRoute: () => calls.push('route'),
  } as unknown as Tunnel
  const published: unknown[] = []
  const log = new MemoryLogger()
  let lookups = 0
  const m = new RelayManager(
    { clock, random: new FakeRandom(), log, udp, tunnel: () => tunnel, onRelay: (r) => published.push(r) },
    {
      servers: async () => {
        lookups++
        return []
      },
      credentials: async () => ({ username: 'u', password: 'p' }),
    },
  )
  // Not wanted (not symmetric): the socket is a pass-through and nothing is looked up.
  const s = m.socket()
  s.send(Buffer.from('x'), 0, 1, 4500, '203.0.113.9')
  await flush()
  assert.deepEqual(got.map(String), ['x'])
  assert.equal(lookups, 0)
  m.want(true)
  await flush()
  assert.equal(lookups, 1)
  m.want(true)
  await flush()
  assert.equal(lookups, 1, 'idempotent')
  clock.advance(RELAY_NO_SERVER_RETRY_MS)
  await flush()
  assert.equal(lookups, 2)
  assert.deepEqual(calls, [])
  assert.deepEqual(published, [])
  assert.equal(m.relayed, undefined)
  assert.equal(log.entries.filter((r) => r.event === 'relay.no_server').length, 1)
  m.peer('hotel', { address: '203.0.113.9', port: 4500 })
  s.send(Buffer.from('y'), 0, 1, 4500, '203.0.113.9')
  await flush()
  assert.deepEqual(got.map(String), ['x', 'y'], 'no allocation: a relayed peer is sent to directly')
  m.want(false)
  assert.equal(clock.pending, 0)
  await m.close()
  await udp.close()
  await peer.close()
})
