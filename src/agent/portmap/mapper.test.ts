import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CLIENT, driveFakeClock, EXTERNAL, fakeEnv, INTERNAL_PORT, loopbackEnv, portMapperSuite } from './suite.js'
import type { PortmapProtocol } from './types.js'

const PROTOCOLS: PortmapProtocol[] = ['pcp', 'natpmp', 'upnp']

for (const p of PROTOCOLS) {
  describe(`PortMapper over FakeNetwork with a ${p}-only gateway`, () => portMapperSuite(p, () => fakeEnv([p])))
  describe(`PortMapper on loopback with a ${p}-only gateway`, () => portMapperSuite(p, () => loopbackEnv([p])))
}

describe('PortMapper orchestration (FakeClock)', () => {
  test('tries PCP, then NAT-PMP, then UPnP: a NAT-PMP gateway answers PCP with UNSUPP_VERSION at once', async (t) => {
    const env = await fakeEnv(['pcp', 'natpmp', 'upnp'], ['natpmp'])
    t.after(() => env.close())
    const m = env.mapper()
    await m.start()
    assert.equal(m.state.kind === 'mapped' && m.state.protocol, 'natpmp')
    assert.deepEqual(env.gateway.requests, { pcp: 1, natpmp: 2, upnp: 0 })
  })

  test('UPnP only: PCP and NAT-PMP get probeMaxTries sends each on the 250 ms doubling schedule', async (t) => {
    const env = await fakeEnv(['pcp', 'natpmp', 'upnp'], ['upnp'])
    t.after(() => env.close())
    const m = env.mapper()
    const started = m.start()
    await driveFakeClock(env.clock as never, 8000, 1)
    await started
    assert.equal(m.state.kind === 'mapped' && m.state.protocol, 'upnp')
    assert.deepEqual(env.gateway.requests, { pcp: 4, natpmp: 4, upnp: 4 })
    const at = (p: PortmapProtocol): number[] => env.gateway.log.filter((r) => r.protocol === p).map((r) => r.atMs)
    assert.deepEqual(at('pcp'), [0, 250, 750, 1750])
    assert.deepEqual(at('natpmp'), [3750, 4000, 4500, 5500])
    assert.deepEqual(at('upnp'), [7500, 7500, 7500, 7500])
  })

  test('no gateway answers: nat-without-mapping after 3 x 3.75 s, then a re-probe after reprobeMs', async (t) => {
    const env = await fakeEnv(['pcp', 'natpmp', 'upnp'], [])
    t.after(() => env.close())
    const m = env.mapper({ reprobeMs: 60_000 })
    const started = m.start()
    await driveFakeClock(env.clock as never, 11_249, 1)
    assert.equal(m.state.kind, 'probing')
    await driveFakeClock(env.clock as never, 1, 1)
    await started
    assert.deepEqual(m.state, { kind: 'nat-without-mapping', address: CLIENT, gateway: '192.168.1.1' })
    assert.deepEqual(env.gateway.requests, { pcp: 4, natpmp: 4, upnp: 4 })
    assert.deepEqual(
      env.events.map((e) => e.reason),
      ['no-mapping'],
    )
    await driveFakeClock(env.clock as never, 60_000 + 11_250, 250)
    assert.deepEqual(env.gateway.requests, { pcp: 8, natpmp: 8, upnp: 8 })
  })

  test('a public primary address means no request at all', async (t) => {
    const env = await fakeEnv(['pcp', 'natpmp', 'upnp'])
    t.after(() => env.close())
    env.network.value = { ifname: 'eth0', address: '198.51.100.20', gateway: '198.51.100.1' }
    const m = env.mapper()
    await m.start()
    assert.deepEqual(m.state, { kind: 'public', address: '198.51.100.20' })
    assert.deepEqual(env.gateway.requests, { pcp: 0, natpmp: 0, upnp: 0 })
  })

  test('CGNAT (100.64/10) counts as private', async (t) => {
    const env = await fakeEnv(['pcp'])
    t.after(() => env.close())
    env.network.value = { ifname: 'eth0', address: '100.64.3.4', gateway: '192.168.1.1' }
    const m = env.mapper()
    await m.start()
    assert.equal(env.gateway.requests.pcp, 1)
  })

  test('renewal retransmits on the RFC 6886 schedule, 9 sends, then re-probes', async (t) => {
    const env = await fakeEnv(['pcp'])
    t.after(() => env.close())
    const m = env.mapper({ lifetimeSec: 120 })
    await m.start()
    env.gateway.enabled.clear()
    await driveFakeClock(env.clock as never, 60_000 + 127_750 + 3750, 250)
    const times = env.gateway.log.slice(1).map((r) => r.atMs - 60_000)
    assert.deepEqual(times, [0, 250, 750, 1750, 3750, 7750, 15750, 31750, 63750, 127750, 128000, 128500, 129500])
    assert.equal(m.state.kind, 'nat-without-mapping')
  })

  test('refresh() with the same network renews at once; with a new address re-probes', async (t) => {
    const env = await fakeEnv(['natpmp'])
    t.after(() => env.close())
    const m = env.mapper()
    await m.start()
    await m.refresh()
    assert.equal(env.gateway.requests.natpmp, 4)
    assert.equal(env.events.length, 1)
    env.network.value = { ifname: 'eth0', address: '192.168.1.11', gateway: '192.168.1.1' }
    await m.refresh()
    assert.deepEqual(
      env.events.map((e) => e.reason),
      ['mapped', 'probing', 'mapped'],
    )
    const s = m.state
    assert.ok(s.kind === 'mapped' && s.external.address === EXTERNAL && s.external.port === INTERNAL_PORT)
  })
})
