import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { UpdateRequest, UpdateResult, UpdateSink } from '../dns/client/update.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import type { PortMapState } from '../portmap/mapper.js'
import { Agent, type AgentPortMapper, FIRST_MAPPING_GRACE_MS } from './agent.js'
import { controlRequest, controlSocketPath } from './control.js'
import { loadIdentity } from './identity.js'
import { type NetEventSource, NetMonitor, type NetState } from './netmon.js'
import { presentRR } from './records.js'

failOnLeakedResources()

class Sink implements UpdateSink {
  readonly requests: UpdateRequest[] = []
  async update(req: UpdateRequest): Promise<UpdateResult> {
    this.requests.push(req)
    return { rcode: 0, leaseSec: req.leaseSec, via: 'fake' }
  }
  last(): string[] {
    return (this.requests.at(-1)?.updates ?? []).map((r) => `${r.class === RRClass.IN ? '+' : '-'} ${presentRR(r)}`)
  }
}

class Mapper implements AgentPortMapper {
  state: PortMapState = { kind: 'probing' }
  starts = 0
  refreshes = 0
  stops = 0
  readonly announcements = new Map<string, number>()
  onChange: () => void = () => {}
  async start(): Promise<void> {
    this.starts++
  }
  async refresh(): Promise<void> {
    this.refreshes++
    this.state = { kind: 'probing' }
  }
  async stop(): Promise<void> {
    this.stops++
    this.state = { kind: 'probing' }
  }
  map(address: string, port: number, protocol: 'pcp' | 'natpmp' | 'upnp' = 'natpmp'): void {
    this.state = {
      kind: 'mapped',
      protocol,
      gateway: '10.0.1.1',
      external: { address, port },
      internalPort: 4500,
      lifetimeSec: 3600,
      expiresAt: Date.UTC(2026, 0, 1) + 3600_000,
    }
    this.onChange()
  }
}

class Events implements NetEventSource {
  fire: () => void = () => {}
  start(on: () => void): void {
    this.fire = on
  }
  stop(): void {}
}

const home: NetState = {
  primary: { ifname: 'eth0', mac: '00:22:69:8e:34:2a', ipv4: '10.0.1.10', gateway: '10.0.1.1' },
  addrs: [{ ifname: 'eth0', family: 'inet', address: '10.0.1.10', prefixLen: 24 }],
}
const cafe: NetState = {
  primary: { ifname: 'eth0', mac: '00:22:69:8e:34:2a', ipv4: '10.20.0.11', gateway: '10.20.0.1' },
  addrs: [{ ifname: 'eth0', family: 'inet', address: '10.20.0.11', prefixLen: 24 }],
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
}

async function setup(t: { after: (fn: () => Promise<void> | void) => void }, withMapper = true) {
  const dir = await mkdtemp(join(tmpdir(), 'at-agent-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const clock = new FakeClock()
  const log = new MemoryLogger()
  const events = new Events()
  let state = home
  const net = new NetMonitor({ clock, log, events, read: async () => state }, { debounceMs: 50 })
  const sink = new Sink()
  const mapper = new Mapper()
  const fnet = new FakeNetwork()
  const udp = fnet.socket('10.0.1.10')
  const agent = new Agent(
    { clock, random: new FakeRandom(9), log, net, sink, udp, ...(withMapper ? { mapper } : {}) },
    {
      stateDir: dir,
      hostname: 'desktop',
      domain: 'alice.members.example',
      zone: 'members.example',
      port: 4500,
      leaseSec: 5400,
      ttlSec: 60,
      services: [{ type: '_ssh._tcp', port: 22 }],
      portmap: withMapper,
    },
  )
  mapper.onChange = () => agent.mappingChanged()
  t.after(async () => {
    await agent.shutdown({ clean: false })
    assert.equal(clock.pending, 0, 'no timer left behind')
  })
  const setNet = (s: NetState): void => {
    state = s
    events.fire()
  }
  return { dir, clock, log, sink, mapper, agent, fnet, udp, setNet }
}

test('behind NAT: nothing is published until the mapping arrives, then A/SRV carry the external address and port', async (t) => {
  const { dir, sink, mapper, agent } = await setup(t)
  await agent.start()
  await flush()
  assert.equal(mapper.starts, 1)
  assert.equal(sink.requests.length, 0, 'a private host waits for the mapper')
  mapper.map('203.0.113.11', 4500)
  await agent.publisher.settled()
  assert.equal(sink.requests.length, 1)
  const id = agent.identity
  const recs = sink.last()
  assert.ok(recs.includes(`+ ${id.label}.alice.members.example. 60 IN A 203.0.113.11`), recs.join('\n'))
  assert.ok(
    recs.includes(
      `+ _autotunnel._udp.desktop.alice.members.example. 60 IN SRV 0 0 4500 ${id.label}.alice.members.example.`,
    ),
  )
  assert.ok(recs.includes(`+ ${id.label}.alice.members.example. 60 IN AAAA ${id.ula}`))
  assert.equal(id.label, 'AutoTunnel-00-22-69-FF-FE-8E-34-2A')
  assert.deepEqual(await loadIdentity(dir), id)

  const s = (await controlRequest(controlSocketPath(dir), 'status')) as {
    identity: { ula: string }
    portMapping: { external: unknown; protocol: string }
    published: { records: { leaseLeftSec: number }[] }
    peers: unknown[]
  }
  assert.equal(s.identity.ula, id.ula)
  assert.deepEqual(s.portMapping.external, { address: '203.0.113.11', port: 4500 })
  assert.equal(s.portMapping.protocol, 'natpmp')
  assert.equal(s.published.records.length, recs.filter((r) => r.startsWith('+ ')).length)
  assert.equal(s.published.records[0]?.leaseLeftSec, 5400)
  assert.deepEqual(s.peers, [])
})

test('no gateway answers: after the grace period the private address is published as nat=unmapped', async (t) => {
  const { sink, agent, clock } = await setup(t)
  await agent.start()
  clock.advance(FIRST_MAPPING_GRACE_MS - 1)
  await flush()
  assert.equal(sink.requests.length, 0)
  clock.advance(1)
  await agent.publisher.settled()
  const recs = sink.last()
  assert.ok(recs.some((r) => r.endsWith('IN A 10.0.1.10')))
  assert.ok(recs.some((r) => r.includes('"nat=unmapped"')))
  assert.equal(agent.reach?.nat, 'unmapped')
})

test('without port mapping on a public address the host address and local port are published at once', async (t) => {
  const { sink, agent, setNet, clock } = await setup(t, false)
  await agent.start()
  await agent.publisher.settled()
  assert.ok(
    sink.last().some((r) => r.endsWith('IN A 10.0.1.10')),
    'portmap off: private address published',
  )
  setNet({
    primary: { ifname: 'eth0', mac: '00:22:69:8e:34:2a', ipv4: '198.51.100.2', gateway: '198.51.100.1' },
    addrs: [],
  })
  clock.advance(50)
  await flush()
  await agent.publisher.settled()
  assert.ok(sink.last().some((r) => r.endsWith('IN A 198.51.100.2')))
  assert.ok(sink.last().some((r) => r.includes('"nat=public"')))
})

test('a move re-maps and replaces A and SRV in one UPDATE; the ULA stays', async (t) => {
  const { sink, mapper, agent, setNet, clock } = await setup(t)
  const changes: string[] = []
  agent.onNetworkChange((n) => changes.push(n.primary?.ipv4 ?? '-'))
  await agent.start()
  mapper.map('203.0.113.11', 4500)
  await agent.publisher.settled()
  const ula = agent.identity.ula
  setNet(cafe)
  clock.advance(50)
  await flush()
  assert.equal(mapper.refreshes, 1)
  assert.deepEqual(changes, ['10.20.0.11'])
  mapper.map('203.0.113.12', 4501, 'pcp')
  await agent.publisher.settled()
  const last = sink.requests.at(-1)!
  const deletes = last.updates.filter((u) => u.class === RRClass.ANY).map((u) => u.type)
  assert.deepEqual(deletes.sort(), [RRType.A, RRType.TXT, RRType.SRV].sort())
  assert.ok(sink.last().some((r) => r.endsWith('IN A 203.0.113.12')))
  assert.ok(sink.last().some((r) => r.includes('SRV 0 0 4501 AutoTunnel')))
  assert.equal(agent.identity.ula, ula)
})

test('down over the control socket withdraws the records, deletes the mapping and stops the agent', async (t) => {
  const { dir, sink, mapper, agent } = await setup(t)
  await agent.start()
  mapper.map('203.0.113.11', 4500)
  await agent.publisher.settled()
  const r = (await controlRequest(controlSocketPath(dir), 'down')) as Record<string, unknown>
  assert.deepEqual(r, { clean: true, recordsDeleted: true, hadMapping: true, mappingDeleted: true, errors: [] })
  assert.equal(mapper.stops, 1)
  const last = sink.requests.at(-1)!
  assert.equal(last.leaseSec, undefined)
  assert.ok(last.updates.every((u) => u.class !== RRClass.IN))
  assert.ok(last.updates.some((u) => u.type === RRType.A && u.class === RRClass.ANY))
  await agent.done
})

test('datagrams to the agent port are counted in status', async (t) => {
  const { dir, agent, fnet } = await setup(t)
  const handed: string[] = []
  agent.onDatagram((msg) => handed.push(msg.toString()))
  await agent.start()
  const peer = fnet.socket('198.51.100.10')
  await peer.bind(0)
  peer.send(Buffer.from('hello'), 0, 5, 4500, '10.0.1.10')
  await flush()
  const s = (await controlRequest(controlSocketPath(dir), 'status')) as {
    udp: { rxDatagrams: number; lastFrom: string }
  }
  assert.equal(s.udp.rxDatagrams, 1)
  assert.match(s.udp.lastFrom, /^198\.51\.100\.10:/)
  assert.deepEqual(handed, ['hello'], 'handed on to the tunnel hook')
  await peer.close()
})
