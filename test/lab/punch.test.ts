// UDP hole punching in the lab (docs/punch.md): two agents behind endpoint-independent NATs with no mapping
// protocol (nat 'eim', address-and-port-dependent filtering) reach each other directly after learning their
// reflexive endpoints from the core's coturn (advertised by the server as SRV _stun._udp.ZONE); an agent behind a
// symmetric NAT publishes mapping=symmetric and both sides report that a relay is needed, once, without harm.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type Topology, withLab } from '../../lab/index.js'
import { agentLog, dig, type LabServer, startServer, waitFor } from './agent-helpers.js'
import { DOMAIN, ping, startIperfServer, startTunnelAgent, type TunnelAgent, waitPeer } from './tunnel-helpers.js'

const TOPOLOGY: Topology = {
  core: { router: '192.0.2.254', stun: ['192.0.2.1', '192.0.2.2'] },
  internet: [{ name: 'server', address: '198.51.100.10' }],
  sites: [
    { name: 'hotel', nat: 'eim', wan: '203.0.113.13', lan: '10.30.0.0/24', hosts: ['hotel-guest'] },
    { name: 'inn', nat: 'eim', wan: '203.0.113.16', lan: '10.31.0.0/24', hosts: ['inn-guest'] },
    { name: 'mobile', nat: 'symmetric', wan: '203.0.113.14', lan: '10.40.0.0/24', hosts: ['phone'] },
  ],
}

interface StunView {
  stun: { reflexive: { address: string; port: number } | null; mapping: string | null } | null
  reachability: { nat: string } | null
  published: { state: string }
}
interface PathRow {
  name: string
  path: string
  endpoint: string | null
  lastHandshake: string | null
}

const stunOf = async (a: TunnelAgent): Promise<StunView> => (await a.status()) as unknown as StunView
const rowOf = async (a: TunnelAgent, peer: string): Promise<PathRow | undefined> =>
  ((await a.peers()) as unknown as PathRow[]).find((p) => p.name === peer)

/** The TXT strings at the agent's target name L.D, once they include stun=. */
async function publishedTxt(lab: Parameters<typeof dig>[0], srv: LabServer, a: TunnelAgent): Promise<string> {
  const label = ((await a.status()) as unknown as { identity: { label: string } }).identity.label
  return waitFor(
    `${a.host} to publish stun= in TXT`,
    async () => {
      const lines = await dig(lab, srv, `${label}.${DOMAIN}`, 'TXT')
      const l = lines.find((x) => x.includes('stun=') && x.includes('mapping='))
      return l
    },
    20_000,
    200,
  )
}

test('hole punching: two EIM NATs reach each other directly; a symmetric NAT needs a relay', {
  timeout: 120_000,
}, async (t) => {
  await withLab(t, { topology: TOPOLOGY }, async (lab) => {
    const agents: TunnelAgent[] = []
    let srv: LabServer | undefined
    try {
      srv = await startServer(lab, { leaseMin: 30, extra: ['--stun', '192.0.2.1:3478'] })
      const srvName = await dig(lab, srv, '_stun._udp.members.example', 'SRV')
      assert.ok(
        srvName.some((l) => /SRV 0 0 3478 s1\._stun\._udp\.members\.example\.$/.test(l)),
        srvName.join('|'),
      )
      const [hotel, inn, phone] = await Promise.all(
        ['hotel-guest', 'inn-guest', 'phone'].map((h) => startTunnelAgent(lab, srv!, h)),
      )
      agents.push(hotel!, inn!, phone!)
      const h = hotel!
      const i = inn!
      const ph = phone!

      // 1. Each EIM agent publishes its site's public address with a port, and mapping=eim; nat=unmapped and the
      // LAN A/SRV stay as before (issue 6).
      const [hTxt, iTxt, pTxt] = await Promise.all([h, i, ph].map((a) => publishedTxt(lab, srv!, a)))
      const published = performance.now()
      assert.match(hTxt!, /"nat=unmapped".*"stun=203\.0\.113\.13:\d+" "mapping=eim"/)
      assert.match(iTxt!, /"nat=unmapped".*"stun=203\.0\.113\.16:\d+" "mapping=eim"/)
      assert.match(pTxt!, /"nat=unmapped".*"stun=203\.0\.113\.14:\d+" "mapping=symmetric"/)
      const hs = await stunOf(h)
      assert.equal(hs.stun?.mapping, 'eim')
      assert.match(hTxt!, new RegExp(`stun=${hs.stun?.reflexive?.address}:${hs.stun?.reflexive?.port}"`))
      const hA = await dig(lab, srv, `${(await h.status()).identity.label}.${DOMAIN}`, 'A')
      assert.ok(
        hA.some((l) => / A 10\.30\.0\.\d+$/.test(l)),
        hA.join('|'),
      )
      // 2. Ping over the punched path, TCP through it, path in status.
      await waitPeer(h, 'inn-guest', i.ula)
      const peerKnownMs = performance.now() - published
      await waitFor(
        'ping hotel-guest -> inn-guest over the punched path',
        async () => (await lab.exec('hotel-guest', ['ping', '-6', '-n', '-c', '1', '-W', '1', i.ula])).code === 0,
        20_000,
        50,
      )
      const firstReplyMs = performance.now() - published
      const p = await ping(lab, 'hotel-guest', i.ula, 10)
      assert.equal(p.code, 0)
      const rtt = [...p.rtts].sort((a, b) => a - b)[Math.floor(p.rtts.length / 2)]
      t.diagnostic(
        `first ping reply ${firstReplyMs.toFixed(0)} ms after both published (peer known at ${peerKnownMs.toFixed(0)} ms); median RTT ${rtt} ms`,
      )
      if (process.env.PUNCH_DEBUG)
        t.diagnostic(
          (await agentLog(h))
            .split('\n')
            .filter((l) => /punch\.|ike\.up|ike\.|endpoint|peers\.update|agent\.stun/.test(l))
            .map((l) => l.slice(0, 300))
            .join('\n'),
        )
      // Our reflexive address agrees with coturn's own client from the same namespace.
      const ref = await lab.exec('hotel-guest', ['timeout', '3', 'turnutils_stunclient', '192.0.2.1'])
      assert.match(ref.stdout, /UDP reflexive addr: 203\.0\.113\.13:\d+/)
      t.diagnostic(
        `hotel ${hTxt}\ninn ${iTxt}\nphone ${pTxt}\nturnutils: ${/UDP reflexive addr: \S+/.exec(ref.stdout)?.[0]}`,
      )

      await startIperfServer(lab, 'inn-guest', i.ula)
      const iperf = await lab.exec('hotel-guest', ['iperf3', '-6', '-c', i.ula, '-t', '2', '-J'], {
        timeoutMs: 20_000,
      })
      assert.equal(iperf.code, 0, iperf.stdout.slice(0, 400))
      const bps = (JSON.parse(iperf.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
        .bits_per_second
      assert.ok(bps > 1e6, `TCP over the punched path: ${bps} bit/s`)
      t.diagnostic(`iperf3 TCP over the punched path: ${(bps / 1e6).toFixed(0)} Mbit/s`)
      const row = await rowOf(h, 'inn-guest')
      assert.equal(row?.path, 'punched', JSON.stringify(row))
      assert.match(row?.endpoint ?? '', /^203\.0\.113\.16:\d+$/)
      assert.equal((await rowOf(i, 'hotel-guest'))?.path, 'punched')

      // 3. The hotel gateway's conntrack: the tunnel flow goes straight to the inn's public address, and nothing
      // from the agent's port goes to the server.
      const ct = await lab.exec('hotel', ['conntrack', '-L', '-p', 'udp'])
      const flows = ct.stdout.split('\n').filter((l) => / sport=4500 /.test(l) && /src=10\.30\.0\.\d+ /.test(l))
      assert.ok(
        flows.some((l) => /dst=203\.0\.113\.16 sport=4500 dport=\d+ .*src=203\.0\.113\.16 /.test(l)),
        flows.join('\n'),
      )
      assert.ok(!flows.some((l) => l.includes('dst=198.51.100.10 ')), flows.join('\n'))
      for (const l of flows) assert.match(l, /dst=(203\.0\.113\.16|192\.0\.2\.[12]) /)

      // 4. The symmetric host: both sides say a relay is needed; traffic toward it fails without harm; one log line.
      await waitPeer(h, 'phone', ph.ula)
      await waitPeer(ph, 'hotel-guest', h.ula)
      assert.match((await rowOf(h, 'phone'))?.path ?? '', /^unreachable: needs relay/)
      assert.match((await rowOf(ph, 'hotel-guest'))?.path ?? '', /^unreachable: needs relay/)
      const bad = await lab.exec('phone', ['ping', '-6', '-n', '-c', '3', '-i', '0.2', '-W', '1', h.ula])
      assert.notEqual(bad.code, 0)
      const phs = await stunOf(ph)
      assert.equal(phs.stun?.mapping, 'symmetric')
      assert.equal(phs.published.state, 'published')
      const log = await agentLog(ph)
      const relayLines = log.split('\n').filter((l) => l.includes('punch.needs_relay') && l.includes('hotel-guest'))
      assert.equal(relayLines.length, 1, relayLines.join('\n'))
      // Its other functions still work: the EIM hosts still ping each other, the phone still answers status.
      assert.equal((await ping(lab, 'inn-guest', h.ula, 3)).code, 0)
      assert.ok((await ph.status()).identity.ula)
    } finally {
      await Promise.allSettled(agents.map((a) => a.stop()))
      await srv?.stop()
    }
  })
})
