// portMapperSuite: one behavioural suite run against each mapping protocol (after js-libp2p's interface
// compliance suites), on FakeNetwork + FakeClock (exact request counts and times) or on loopback sockets.
// Test support only: imported by mapper.test.ts and the interop tests.

import assert from 'node:assert/strict'
import type http from 'node:http'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { type Clock, SystemClock } from '../io/clock.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { type DatagramSocket, UdpSocket } from '../io/datagram.js'
import { MemoryLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { FakeGateway, serveFakeGatewayHttp } from './fake-gateway.js'
import { type PortMapEvent, PortMapper, type PortMapperOptions } from './mapper.js'
import { StaticNetworkInfo } from './netinfo.js'
import type { PortmapProtocol, PortmapSockets } from './types.js'

export interface PortmapEnv {
  readonly kind: 'fake' | 'loopback'
  readonly clock: Clock
  readonly gateway: FakeGateway
  readonly network: StaticNetworkInfo
  /** The FakeNetwork, for tests that add their own senders (fake env only). */
  readonly net: FakeNetwork
  readonly log: MemoryLogger
  readonly events: PortMapEvent[]
  /** Builds a mapper on this env (protocols, ports and group options filled in for it). */
  mapper(opts?: Partial<PortMapperOptions>): PortMapper
  /** Lets `ms` of (fake or real) time pass, delivering datagrams on the way. */
  advance(ms: number): Promise<void>
  /** Waits until `pred` holds (fake: advancing time in small steps), failing after `maxMs`. */
  until(pred: () => boolean, maxMs: number): Promise<void>
  close(): Promise<void>
}

export const GATEWAY = '192.168.1.1'
export const CLIENT = '192.168.1.10'
export const EXTERNAL = '203.0.113.1'
export const INTERNAL_PORT = 4500

const flush = (): Promise<void> => new Promise((r) => setImmediate(r))

/** Advances a FakeClock in `stepMs` steps, letting microtasks and I/O callbacks run between steps. */
export async function driveFakeClock(clock: FakeClock, ms: number, stepMs = 1): Promise<void> {
  await flush()
  for (let t = 0; t < ms; t += stepMs) {
    clock.advance(Math.min(stepMs, ms - t))
    await flush()
  }
}

export async function fakeEnv(protocols: readonly PortmapProtocol[], enabled = protocols): Promise<PortmapEnv> {
  const clock = new FakeClock()
  const net = new FakeNetwork()
  const pxp = net.socket(GATEWAY)
  await pxp.bind(5351)
  const ssdp = net.socket(GATEWAY)
  await ssdp.bind(1900)
  const gateway = new FakeGateway(
    { clock, pxpSocket: pxp, ssdpSocket: ssdp },
    {
      externalAddress: EXTERNAL,
      enabled,
      announceTo: { address: '224.0.0.1', port: 5350 },
      notifyTo: { address: '239.255.255.250', port: 1900 },
      httpBase: `http://${GATEWAY}:5000`,
    },
  )
  const sockets: PortmapSockets = {
    udp: () => net.socket(CLIENT),
    async multicast(_group, port) {
      const s = net.socket('0.0.0.0')
      await s.bind(port)
      return s
    },
  }
  const network = new StaticNetworkInfo({ ifname: 'eth0', address: CLIENT, gateway: GATEWAY })
  const log = new MemoryLogger()
  const events: PortMapEvent[] = []
  const mappers: PortMapper[] = []
  const env: PortmapEnv = {
    kind: 'fake',
    clock,
    gateway,
    network,
    net,
    log,
    events,
    mapper(opts = {}) {
      const m = new PortMapper(
        { clock, random: new FakeRandom(7), log, sockets, network, http: gateway.httpFn(CLIENT) },
        { internalPort: INTERNAL_PORT, protocols, onChange: (e) => events.push(e), ...opts },
      )
      mappers.push(m)
      return m
    },
    advance: (ms) => driveFakeClock(clock, ms, 1),
    async until(pred, maxMs) {
      for (let t = 0; t <= maxMs && !pred(); t++) await driveFakeClock(clock, 1)
      assert.ok(pred(), `condition not met within ${maxMs} ms of fake time`)
    },
    async close() {
      for (const m of mappers) await m.stop()
      await pxp.close()
      await ssdp.close()
    },
  }
  return env
}

/** Real sockets on 127.0.0.1 with ephemeral ports; the retry schedule is shortened so a test takes seconds. */
export async function loopbackEnv(protocols: readonly PortmapProtocol[], enabled = protocols): Promise<PortmapEnv> {
  const clock = new SystemClock()
  const lo = '127.0.0.1'
  const pxp = new UdpSocket()
  const pxpAddr = await pxp.bind(0, lo)
  const ssdp = new UdpSocket()
  const ssdpAddr = await ssdp.bind(0, lo)
  const gateway = new FakeGateway(
    { clock, pxpSocket: pxp, ssdpSocket: ssdp },
    { externalAddress: EXTERNAL, enabled, httpBase: '' },
  )
  const server: http.Server = await serveFakeGatewayHttp(gateway, lo)
  const httpPort = (server.address() as { port: number }).port
  gateway.httpBase = `http://${lo}:${httpPort}`
  const listeners: DatagramSocket[] = []
  const sockets: PortmapSockets = {
    udp: () => new UdpSocket(),
    // Announcements on loopback are unicast to the listener's ephemeral port: the gateway learns it here.
    async multicast(group) {
      const s = new UdpSocket()
      const a = await s.bind(0, lo)
      if (group === '224.0.0.1') gateway.announceTo = a
      else gateway.notifyTo = a
      listeners.push(s)
      return s
    },
  }
  const network = new StaticNetworkInfo({ ifname: 'lo', address: lo, gateway: lo })
  const log = new MemoryLogger()
  const events: PortMapEvent[] = []
  const mappers: PortMapper[] = []
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
  return {
    kind: 'loopback',
    clock,
    gateway,
    network,
    net: new FakeNetwork(),
    log,
    events,
    mapper(opts = {}) {
      const m = new PortMapper(
        { clock, random: new FakeRandom(7), log, sockets, network },
        {
          internalPort: INTERNAL_PORT,
          protocols,
          gatewayPort: pxpAddr.port,
          ssdpPort: ssdpAddr.port,
          ssdpMulticastGroup: null,
          retry: { initialMs: 100, maxTries: 3 },
          probeMaxTries: 3,
          announceJitterMaxMs: 0,
          onChange: (e) => events.push(e),
          ...opts,
        },
      )
      mappers.push(m)
      return m
    },
    advance: sleep,
    async until(pred, maxMs) {
      const end = Date.now() + maxMs
      while (!pred() && Date.now() < end) await sleep(5)
      assert.ok(pred(), `condition not met within ${maxMs} ms`)
    },
    async close() {
      for (const m of mappers) await m.stop()
      await pxp.close()
      await ssdp.close()
      for (const s of listeners) await s.close()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

/**
 * Requests one mapping (create) costs per protocol: the probe (PCP ANNOUNCE, NAT-PMP address, SSDP M-SEARCH plus
 * the description), then the mapping (PCP MAP; NAT-PMP address and MAP; UPnP GetExternalIPAddress, AddPortMapping).
 */
const CREATE_COST: Record<PortmapProtocol, number> = { pcp: 2, natpmp: 3, upnp: 4 }
/** ... one renewal: UPnP asks the address, checks the entry, then adds. */
const RENEW_COST: Record<PortmapProtocol, number> = { pcp: 1, natpmp: 2, upnp: 3 }

/** The same behaviour, whatever the protocol. `make` builds a fresh env whose gateway speaks only `protocol`. */
export function portMapperSuite(protocol: PortmapProtocol, make: () => Promise<PortmapEnv>): void {
  const fresh = async (t: { after: (fn: () => Promise<void>) => void }): Promise<PortmapEnv> => {
    const env = await make()
    t.after(() => env.close())
    return env
  }

  test(`${protocol}: maps the internal port, asking for the same external port`, async (t) => {
    const env = await fresh(t)
    const m = env.mapper()
    await m.start()
    const s = m.state
    assert.equal(s.kind, 'mapped')
    if (s.kind !== 'mapped') return
    assert.equal(s.protocol, protocol)
    assert.deepEqual(s.external, { address: EXTERNAL, port: INTERNAL_PORT })
    assert.equal(s.lifetimeSec, 3600)
    assert.equal(env.gateway.requests[protocol], CREATE_COST[protocol])
    assert.deepEqual(
      env.events.map((e) => e.reason),
      ['mapped'],
    )
    assert.equal(env.gateway.mappings.size, 1)
  })

  test(`${protocol}: stop() deletes the mapping and leaves no timer`, async (t) => {
    const env = await fresh(t)
    const m = env.mapper()
    await m.start()
    await m.stop()
    assert.equal(env.gateway.mappings.size, 0)
    assert.equal(env.gateway.requests[protocol], CREATE_COST[protocol] + 1)
    if (env.clock instanceof FakeClock) assert.equal(env.clock.pending, 0)
  })

  test(`${protocol}: a gateway restart is noticed and the mapping re-created`, async (t) => {
    const env = await fresh(t)
    const m = env.mapper()
    await m.start()
    // RFC 6887 8.5 tolerates 2 s of disagreement: a restart is only visible once more than that has passed.
    await env.advance(env.kind === 'fake' ? 60_000 : 2500)
    env.gateway.restart()
    assert.equal(env.gateway.mappings.size, 0)
    await env.until(() => env.gateway.mappings.size === 1 && env.events.length === 2, 5000)
    assert.deepEqual(
      env.events.map((e) => e.reason),
      ['mapped', 'recreated'],
    )
    assert.equal(m.state.kind, 'mapped')
  })

  if (protocol !== 'upnp')
    test(`${protocol}: an external address announcement moves the mapping`, async (t) => {
      const env = await fresh(t)
      const m = env.mapper()
      await m.start()
      await env.advance(env.kind === 'fake' ? 10_000 : 50)
      env.gateway.setExternalAddress('198.51.100.7')
      await env.until(() => env.events.length === 2, 5000)
      assert.equal(env.events[1]!.reason, 'external-changed')
      const s = m.state
      assert.ok(s.kind === 'mapped' && s.external.address === '198.51.100.7')
    })

  test(`${protocol}: a gateway that stops answering leads to 'lost' and nat-without-mapping`, async (t) => {
    const env = await fresh(t)
    const m = env.mapper(env.kind === 'fake' ? { lifetimeSec: 120 } : { lifetimeSec: 2 })
    await m.start()
    const before = env.gateway.requests[protocol]
    env.gateway.enabled.clear()
    await env.until(() => m.state.kind === 'nat-without-mapping', env.kind === 'fake' ? 300_000 : 5000)
    assert.deepEqual(
      env.events.map((e) => e.reason),
      ['mapped', 'lost'],
    )
    assert.ok(env.gateway.requests[protocol] > before)
  })

  if (protocol !== 'upnp')
    test(`${protocol}: renews at half-life with exactly one exchange, quietly`, async (t) => {
      const env = await fresh(t)
      if (!(env.clock instanceof FakeClock)) return t.skip('needs the fake clock')
      const clock = env.clock
      const m = env.mapper()
      await m.start()
      const n0 = env.gateway.requests[protocol]
      await driveFakeClock(clock, 1_799_000, 1000)
      assert.equal(env.gateway.requests[protocol], n0)
      await driveFakeClock(clock, 1000, 1000)
      assert.equal(env.gateway.requests[protocol], n0 + RENEW_COST[protocol])
      const renewTimes = env.gateway.log.slice(n0).map((r) => r.atMs)
      assert.ok(renewTimes.every((ms) => ms === 1_800_000))
      await driveFakeClock(clock, 1_800_000, 1000)
      assert.equal(env.gateway.requests[protocol], n0 + 2 * RENEW_COST[protocol])
      assert.equal(env.events.length, 1)
    })
}
