// Issue 6's done-when scenarios, in the lab with real miniupnpd gateways and the real `autotunnel server`:
// a mapping and the seed 002 records behind a gateway offering only PCP, only NAT-PMP, only UPnP; a datagram
// from the internet reaching the agent's port; recovery after a gateway restart, a public address change and a
// move to another site; `autotunnel down`; and records expiring by lease after SIGKILL.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Lab } from '../../lab/index.js'
import {
  agentLog,
  dig,
  gatewayMapsTo,
  type LabAgent,
  type LabServer,
  MAIN,
  SERVER_ADDR,
  startAgent,
  startServer,
  waitFor,
  ZONE,
} from './agent-helpers.js'
import { udpSend } from './helpers.js'

const PORT = 4500
const D = `alice.${ZONE}.`

const topology = {
  internet: [{ name: 'server', address: SERVER_ADDR }],
  sites: [
    {
      name: 'home',
      nat: 'upnp' as const,
      wan: '203.0.113.11',
      lan: '192.168.1.0/24',
      hosts: ['desktop'],
      upnp: { natpmp: false, upnp: false },
    },
    {
      name: 'cafe',
      nat: 'upnp' as const,
      wan: '203.0.113.12',
      lan: '10.20.0.0/24',
      hosts: ['laptop'],
      upnp: { pcp: false, upnp: false },
    },
    {
      name: 'office',
      nat: 'upnp' as const,
      wan: '203.0.113.15',
      lan: '192.168.5.0/24',
      hosts: ['workstation'],
      upnp: { pcp: false, natpmp: false },
    },
    { name: 'hotel', nat: 'upnp' as const, wan: '203.0.113.13', lan: '10.30.0.0/24', hosts: ['guest'] },
    { name: 'inn', nat: 'eim' as const, wan: '203.0.113.14', lan: '10.40.0.0/24', hosts: ['traveller'] },
    {
      name: 'public',
      nat: 'none' as const,
      wan: '198.51.100.2',
      lan: '198.51.100.128/25',
      hosts: [{ name: 'vps', address: '198.51.100.130' }],
    },
  ],
}

const SITE_OF: Record<string, string> = { desktop: 'home', laptop: 'cafe', workstation: 'office' }
const PROTO_OF: Record<string, string> = { desktop: 'pcp', laptop: 'natpmp', workstation: 'upnp' }

async function published(a: LabAgent, external: string): Promise<Awaited<ReturnType<LabAgent['status']>> | undefined> {
  const s = await a.status()
  const ok =
    s.portMapping?.external.address === external &&
    s.published.state === 'published' &&
    s.published.records.some((r) => r.text.includes(` A ${external}`))
  return ok ? s : undefined
}

async function recordsOf(lab: Lab, srv: LabServer, host: string, label: string) {
  const target = `${label}.${D}`.toLowerCase()
  const [aaaa, a, txt, srv6] = await Promise.all([
    dig(lab, srv, target, 'AAAA'),
    dig(lab, srv, target, 'A'),
    dig(lab, srv, target, 'TXT'),
    dig(lab, srv, `_autotunnel._udp.${host}.${D}`, 'SRV'),
  ])
  return { target, aaaa, a, txt, srv: srv6 }
}

describe('agent in the lab: mapping and publishing through real gateways', { timeout: 240_000 }, () => {
  let lab: Lab
  let srv: LabServer
  const agents = new Map<string, LabAgent>()
  const started: LabAgent[] = []
  const start = async (host: string, extra: string[] = [], asBob = false): Promise<LabAgent> => {
    const a = await startAgent(lab, srv, host, extra, asBob)
    started.push(a)
    return a
  }

  before(async () => {
    lab = await Lab.up({ topology })
    srv = await startServer(lab)
    for (const host of ['desktop', 'laptop', 'workstation', 'traveller', 'vps'])
      agents.set(host, await start(host, host === 'desktop' ? ['--service', '_ssh._tcp:22'] : []))
  })
  after(async () => {
    await Promise.all(started.map((a) => a.stop()))
    await srv?.stop()
    await lab?.down()
  })

  for (const host of ['desktop', 'laptop', 'workstation']) {
    it(`only ${PROTO_OF[host]} on: mapping, AAAA/SRV/A/TXT with the external address and port, a datagram arrives`, async () => {
      const a = agents.get(host)!
      const site = SITE_OF[host]!
      const pub = lab.publicIpOf(site)
      const s = await waitFor(`${host} to map and publish`, () => published(a, pub), 30_000, 100).catch(
        async (e: Error) => {
          throw new Error(`${e.message}\n${JSON.stringify(await a.status().catch(() => null))}\n${await agentLog(a)}`)
        },
      )
      assert.equal(s.portMapping?.protocol, PROTO_OF[host])
      const port = s.portMapping!.external.port
      assert.equal(port, PORT, 'the gateway grants the external port equal to the internal one when it is free')
      const r = await recordsOf(lab, srv, host, s.identity.label)
      assert.deepEqual(r.aaaa, [`${r.target} IN AAAA ${s.identity.ula}`])
      assert.deepEqual(r.a, [`${r.target} IN A ${pub}`])
      assert.deepEqual(r.srv, [`_autotunnel._udp.${host}.${D} IN SRV 0 0 ${port} ${r.target}`])
      assert.match(r.txt[0] ?? '', new RegExp(`"host=${host}" "nat=${PROTO_OF[host]}"`))
      assert.match(s.identity.ula, /^fd/)
      assert.match(s.identity.label, /^AutoTunnel-([0-9A-F]{2}-){7}[0-9A-F]{2}$/)

      const before = s.udp.rxDatagrams
      await udpSend(lab, 'server', pub, port, `hello ${host}`)
      const got = await waitFor(
        'the datagram at the agent',
        async () => {
          const t = await a.status()
          return t.udp.rxDatagrams > before ? t : undefined
        },
        3000,
      )
      assert.match(got.udp.lastFrom, new RegExp(`^${SERVER_ADDR.replaceAll('.', '\\.')}:`))
    })
  }

  it('a public address: published as is, with the local port, no mapping', async () => {
    const a = agents.get('vps')!
    const s = await waitFor(
      'vps to publish',
      async () => {
        const x = await a.status()
        return x.published.state === 'published' ? x : undefined
      },
      15_000,
      100,
    )
    assert.equal(s.portMapping, null)
    assert.deepEqual(s.reachability?.endpoint, { address: '198.51.100.130', port: PORT })
    const r = await recordsOf(lab, srv, 'vps', s.identity.label)
    assert.deepEqual(r.a, [`${r.target} IN A 198.51.100.130`])
    assert.deepEqual(r.srv, [`_autotunnel._udp.vps.${D} IN SRV 0 0 ${PORT} ${r.target}`])
    assert.match(r.txt[0] ?? '', /"nat=public"/)
    await udpSend(lab, 'server', '198.51.100.130', PORT, 'hello vps')
    await waitFor('the datagram at vps', async () => (await a.status()).udp.rxDatagrams > 0, 3000)
  })

  it('NAT without a mapping protocol: once every protocol gave up, the LAN address is published, nat=unmapped', async (tc) => {
    const a = agents.get('traveller')!
    const t0 = performance.now()
    const s = await waitFor(
      'traveller to publish',
      async () => {
        const x = await a.status()
        return x.published.state === 'published' ? x : undefined
      },
      20_000,
      100,
    )
    tc.diagnostic(`no gateway protocol: published ${Math.round(performance.now() - t0)} ms after this test started`)
    assert.equal(s.portMapping, null)
    assert.equal(s.reachability?.nat, 'unmapped')
    const lanAddr = lab.addressOf('traveller')
    const r = await recordsOf(lab, srv, 'traveller', s.identity.label)
    assert.deepEqual(r.a, [`${r.target} IN A ${lanAddr}`])
    assert.deepEqual(r.srv, [`_autotunnel._udp.traveller.${D} IN SRV 0 0 ${PORT} ${r.target}`])
    assert.match(r.txt[0] ?? '', /"nat=unmapped"/)
  })

  it('status and browse from the command line', async (tc) => {
    const a = agents.get('desktop')!
    const s = await a.status()
    const st = await lab.execOk('desktop', ['node', MAIN, 'status', '--state', a.state])
    assert.match(st.stdout, new RegExp(`ULA\\s+${s.identity.ula}`))
    assert.match(st.stdout, /port map\s+pcp 203\.0\.113\.11:4500/)
    assert.match(st.stdout, /published\s+published/)
    const b = await lab.execOk('desktop', ['node', MAIN, 'browse', '--state', a.state, '--json'])
    assert.deepEqual(JSON.parse(b.stdout), [
      {
        type: '_ssh._tcp',
        instances: [{ name: 'desktop', host: `desktop.${D}`, port: 22, txt: [], addresses: [s.identity.ula] }],
      },
    ])
    const w = await waitFor(
      "the host-list watcher to see the user's five hosts",
      async () => {
        const x = (await a.status()).watchers[0]
        return x && x.records.length === 5 ? x : undefined
      },
      10_000,
      100,
    )
    assert.match(w.via, /^(push|llq)$/, `watcher mechanism ${w.via}`)
    tc.diagnostic(`host-list watcher uses ${w.via}`)
    for (const h of ['desktop', 'laptop', 'workstation'])
      assert.ok(
        w.records.some((r) => r.endsWith(`PTR _autotunnel._udp.${h}.${D}`)),
        `${h} in ${w.records.join(', ')}`,
      )
    const t = await lab.execOk('laptop', ['node', MAIN, 'browse', '--state', agents.get('laptop')!.state, 'ssh'])
    assert.match(
      t.stdout,
      new RegExp(`^_ssh._tcp\\n  desktop  desktop\\.${D.replaceAll('.', '\\.')}:22  ${s.identity.ula}`),
    )
  })

  it('restart the gateway: the mapping exists again within 5 s', async (t) => {
    const a = agents.get('desktop')!
    const addr = lab.addressOf('desktop')
    await waitFor('the PCP mapping on the gateway', () => gatewayMapsTo(lab, 'home', addr, PORT), 10_000)
    const logBefore = (await agentLog(a)).length
    const t0 = performance.now()
    // restartGateway() stops miniupnpd, flushes its rules and lease file, and starts it again: when it returns the
    // gateway holds no mapping, and the agent may already be re-creating it (PCP ANNOUNCE at start-up).
    await lab.restartGateway('home')
    const tRestarted = performance.now()
    await waitFor('the mapping to come back', () => gatewayMapsTo(lab, 'home', addr, PORT), 5000, 20)
    const ms = performance.now() - tRestarted
    t.diagnostic(
      `gateway restart: mapping back ${Math.round(ms)} ms after miniupnpd restarted (restart itself took ${Math.round(tRestarted - t0)} ms)`,
    )
    assert.ok(ms < 5000)
    const after = (await agentLog(a)).slice(logBefore)
    assert.match(
      after,
      /portmap\.(announcement|recreated|renew-failed)/,
      'the agent noticed the restart and mapped again',
    )
    await waitFor('desktop to stay published', () => published(a, lab.publicIpOf('home')), 5000)
  })

  it('change the gateway public address: the A record shows it within 2 s', async (t) => {
    const a = agents.get('laptop')!
    const s0 = await a.status()
    const target = `${s0.identity.label}.${D}`.toLowerCase()
    const t0 = performance.now()
    await lab.setPublicIp('cafe', '203.0.113.112')
    const tChanged = performance.now()
    await waitFor(
      'the new A record',
      async () => (await dig(lab, srv, target, 'A')).join() === `${target} IN A 203.0.113.112`,
      2000,
      20,
    )
    const ms = performance.now() - tChanged
    t.diagnostic(
      `public address change: A record updated ${Math.round(ms)} ms after the change (lab operation ${Math.round(tChanged - t0)} ms)`,
    )
    const srvRec = await dig(lab, srv, `_autotunnel._udp.laptop.${D}`, 'SRV')
    assert.equal(srvRec.length, 1)
    assert.equal((await a.status()).identity.ula, s0.identity.ula)
  })

  it('move the host to another site: new external address and port within 2 s, ULA unchanged', async (t) => {
    const a = agents.get('desktop')!
    const s0 = await a.status()
    const t0 = performance.now()
    await lab.move('desktop', 'hotel')
    const tMoved = performance.now()
    const hotel = lab.publicIpOf('hotel')
    const target = `${s0.identity.label}.${D}`.toLowerCase()
    await waitFor(
      'records at the new site',
      async () => (await dig(lab, srv, target, 'A')).join() === `${target} IN A ${hotel}`,
      2000,
      20,
    )
    const ms = performance.now() - tMoved
    t.diagnostic(
      `move: A record at the new site ${Math.round(ms)} ms after the move (lab operation ${Math.round(tMoved - t0)} ms)`,
    )
    const s1 = await waitFor('status at the new site', () => published(a, hotel), 2000)
    const r = await recordsOf(lab, srv, 'desktop', s0.identity.label)
    assert.deepEqual(r.srv, [`_autotunnel._udp.desktop.${D} IN SRV 0 0 ${s1.portMapping!.external.port} ${target}`])
    assert.deepEqual(r.aaaa, [`${target} IN AAAA ${s0.identity.ula}`])
    assert.equal(s1.identity.ula, s0.identity.ula)
    const got = s1.udp.rxDatagrams
    await udpSend(lab, 'server', hotel, s1.portMapping!.external.port, 'hello after the move')
    await waitFor('a datagram at the new site', async () => (await a.status()).udp.rxDatagrams > got, 3000)
  })

  it('a second host behind the same gateway (bob, key from --password-stdin) gets its own external port', async () => {
    const hotel = lab.publicIpOf('hotel')
    const a = await start('guest', [], true)
    const s = await waitFor('guest to map and publish', () => published(a, hotel), 30_000, 100)
    const port = s.portMapping!.external.port
    assert.notEqual(port, PORT, 'desktop holds 4500 on this gateway')
    const bobD = `bob.${ZONE}.`
    const target = `${s.identity.label}.${bobD}`.toLowerCase()
    assert.deepEqual(await dig(lab, srv, `_autotunnel._udp.guest.${bobD}`, 'SRV', srv.bobDigKey), [
      `_autotunnel._udp.guest.${bobD} IN SRV 0 0 ${port} ${target}`,
    ])
    assert.deepEqual(await dig(lab, srv, target, 'A', srv.bobDigKey), [`${target} IN A ${hotel}`])
    await udpSend(lab, 'server', hotel, port, 'hello guest')
    await waitFor('the datagram at guest', async () => (await a.status()).udp.rxDatagrams > 0, 3000)
  })

  it('autotunnel down: the mapping and the records are gone', async () => {
    const a = agents.get('workstation')!
    const s = await a.status()
    const addr = lab.addressOf('workstation')
    assert.ok(await gatewayMapsTo(lab, 'office', addr, PORT))
    const r = await lab.execOk('workstation', ['node', MAIN, 'down', '--state', a.state])
    assert.match(r.stdout, /records deleted, port mapping deleted/)
    const recs = await recordsOf(lab, srv, 'workstation', s.identity.label)
    assert.deepEqual([recs.aaaa, recs.a, recs.txt, recs.srv], [[], [], [], []])
    assert.deepEqual(await dig(lab, srv, `workstation.${D}`, 'AAAA'), [])
    assert.equal(await gatewayMapsTo(lab, 'office', addr, PORT), false)
    const st = await lab.exec('workstation', ['node', MAIN, 'status', '--state', a.state])
    assert.equal(st.code, 3, 'status reports the agent is not running')
    agents.delete('workstation')
  })

  it('SIGTERM: the agent removes its records and its mapping before it exits', async () => {
    const a = agents.get('desktop')!
    const s = await a.status()
    const addr = lab.addressOf('desktop')
    assert.ok(await gatewayMapsTo(lab, 'hotel', addr, PORT))
    // The spawned pid is the agent itself (`ip netns exec` execs it). A `pgrep -f` here could also match the
    // `sh -c` that runs it, and picked that shell in one CI run.
    const pid = String(a.proc.pid)
    await lab.execOk('desktop', ['kill', '-TERM', pid])
    await waitFor('the agent to exit', async () => (await lab.exec('desktop', ['kill', '-0', pid])).code !== 0, 5000)
    const recs = await recordsOf(lab, srv, 'desktop', s.identity.label)
    assert.deepEqual([recs.aaaa, recs.a, recs.txt, recs.srv], [[], [], [], []])
    assert.deepEqual(await dig(lab, srv, `_ssh._tcp.${D}`, 'PTR'), [])
    assert.equal(await gatewayMapsTo(lab, 'hotel', addr, PORT), false)
    agents.delete('desktop')
  })

  it('SIGKILL the agent: its records disappear when their (shortened) lease ends', async (t) => {
    const a = agents.get('laptop')!
    a.proc.stop()
    agents.delete('laptop')
    const b = await start('laptop', ['--lease', '4'])
    const s = await waitFor('the short-lease agent to publish', () => published(b, lab.publicIpOf('cafe')), 30_000, 100)
    const target = `${s.identity.label}.${D}`.toLowerCase()
    assert.deepEqual(await dig(lab, srv, target, 'AAAA'), [`${target} IN AAAA ${s.identity.ula}`])
    const pid = String(b.proc.pid)
    assert.equal((await lab.exec('laptop', ['kill', '-0', pid])).code, 0, 'the agent process is alive')
    const t0 = performance.now()
    await lab.execOk('laptop', ['kill', '-KILL', pid])
    assert.deepEqual(await dig(lab, srv, target, 'AAAA'), [`${target} IN AAAA ${s.identity.ula}`], 'still there')
    await waitFor('the records to expire', async () => (await dig(lab, srv, target, 'AAAA')).length === 0, 8000, 100)
    const ms = performance.now() - t0
    t.diagnostic(`SIGKILL: records gone ${Math.round(ms)} ms after the kill (lease 4 s, refreshed at 3 s)`)
    assert.deepEqual(await dig(lab, srv, `_autotunnel._udp.laptop.${D}`, 'SRV'), [])
    assert.deepEqual(await dig(lab, srv, target, 'A'), [])
    b.proc.stop()
  })
})
