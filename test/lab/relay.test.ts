// Relay fallback through TURN in the lab (docs/relay.md): an agent behind a symmetric NAT allocates a relayed
// address on a real coturn (on an internet host, long-term credentials, found by SRV _turn._udp.ZONE), publishes
// relay=ADDR:PORT, and reaches an agent behind an EIM NAT through it (the EIM side sends plain ESP-in-UDP/IKE to
// the relayed address); a second symmetric site reaches the first through both relays, its own allocation on a
// second coturn in the REST scheme with ephemeral credentials from the autotunnel server (a signed TXT query).
// Hosts that can punch are unaffected (test/lab/punch.test.ts).
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { type Topology, withLab } from '../../lab/index.js'
import { agentLog, agentLogLines, dig, type LabServer, startServer, waitFor } from './agent-helpers.js'
import {
  DOMAIN,
  ping,
  relayArgs,
  startIperfServer,
  startLabCoturn,
  startTunnelAgent,
  type TunnelAgent,
  waitPeer,
} from './tunnel-helpers.js'

const TURN_ADDR = '198.51.100.20'
const TOPOLOGY: Topology = {
  core: { router: '192.0.2.254', stun: ['192.0.2.1', '192.0.2.2'] },
  internet: [
    { name: 'server', address: '198.51.100.10' },
    { name: 'turn', address: TURN_ADDR },
  ],
  sites: [
    { name: 'hotel', nat: 'eim', wan: '203.0.113.13', lan: '10.30.0.0/24', hosts: ['hotel-guest'] },
    { name: 'mobile', nat: 'symmetric', wan: '203.0.113.14', lan: '10.40.0.0/24', hosts: ['phone'] },
    { name: 'cafe', nat: 'symmetric', wan: '203.0.113.15', lan: '10.41.0.0/24', hosts: ['laptop'] },
  ],
}

interface PathRow {
  name: string
  path: string
  endpoint: string | null
  relay: string | null
}
interface RelayStatus {
  relay: {
    allocation: { relayed: string | null; lifetimeLeftSec: number; permissions: string[]; channels: unknown[] } | null
  } | null
}

const rowOf = async (a: TunnelAgent, peer: string): Promise<PathRow | undefined> =>
  ((await a.peers()) as unknown as PathRow[]).find((p) => p.name === peer)
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN

async function txtOf(lab: Parameters<typeof dig>[0], srv: LabServer, a: TunnelAgent, want: string): Promise<string> {
  const label = ((await a.status()) as unknown as { identity: { label: string } }).identity.label
  return waitFor(
    `${a.host} to publish ${want} in TXT`,
    async () => (await dig(lab, srv, `${label}.${DOMAIN}`, 'TXT')).find((x) => x.includes(want)),
    30_000,
    200,
  )
}

test('relay: a symmetric NAT reaches an EIM NAT and another symmetric NAT through coturn', {
  timeout: 170_000,
}, async (t) => {
  await withLab(t, { topology: TOPOLOGY }, async (lab) => {
    const agents: TunnelAgent[] = []
    let srv: LabServer | undefined
    const dir = await mkdtemp(join(tmpdir(), 'at-relay-'))
    try {
      const secretFile = join(dir, 'turn-secret')
      await writeFile(secretFile, 'rest-secret\n', { mode: 0o600 })
      // coturn 1: static long-term user (port 3478, SRV); coturn 2: REST scheme (port 3479, given with --relay).
      for (const [sub, extra] of [
        ['static', { ports: [49152, 55000] as const }],
        ['rest', { port: 3479, secret: 'rest-secret', ports: [55001, 60000] as const }],
      ] as const) {
        const p = await startLabCoturn(lab, dir, sub, { listen: TURN_ADDR, ...extra })
        t.after(() => p.stop())
      }
      srv = await startServer(lab, {
        leaseMin: 30,
        extra: ['--stun', '192.0.2.1:3478', '--turn', `${TURN_ADDR}:3478`, '--turn-secret-file', secretFile],
      })
      const srvRows = await dig(lab, srv, '_turn._udp.members.example', 'SRV')
      assert.ok(
        srvRows.some((l) => /SRV 0 0 3478 t1\._turn\._udp\.members\.example\.$/.test(l)),
        srvRows.join('|'),
      )
      const relayOpts = await relayArgs(dir)
      const [hotel, phone, laptop] = await Promise.all([
        startTunnelAgent(lab, srv, 'hotel-guest'),
        startTunnelAgent(lab, srv, 'phone', [
          ...relayOpts,
          ...(process.env.RELAY_DEBUG ? ['--log-level', 'debug'] : []),
        ]),
        // The laptop runs the tunnel on one thread (the main thread's Sender and its GSO batches); the others with
        // the default send and TUN threads.
        startTunnelAgent(lab, srv, 'laptop', ['--relay', `${TURN_ADDR}:3479`, '--tunnel-threads', 'off']),
      ])
      agents.push(hotel, phone, laptop)

      // 1. The symmetric hosts allocate and publish relay= (the relayed address on the TURN host); the EIM host
      // (also given no credentials) publishes none.
      const pTxt = await txtOf(lab, srv, phone, 'relay=')
      const lTxt = await txtOf(lab, srv, laptop, 'relay=')
      const hTxt = await txtOf(lab, srv, hotel, 'stun=')
      assert.match(pTxt, /"mapping=symmetric" "relay=198\.51\.100\.20:\d+"/)
      // The laptop's allocation is on the REST coturn (its relayed port range), with the server's credentials.
      const lPort = Number(/"mapping=symmetric" "relay=198\.51\.100\.20:(\d+)"/.exec(lTxt)?.[1])
      assert.ok(lPort >= 55001 && lPort <= 60000, lTxt)
      assert.doesNotMatch(hTxt, /relay=/)
      const phoneRelay = /relay=([\d.]+:\d+)/.exec(pTxt)?.[1]
      const st = (await phone.status()) as unknown as { datapath: RelayStatus }
      assert.equal(st.datapath.relay?.allocation?.relayed, phoneRelay)
      assert.ok((st.datapath.relay?.allocation?.lifetimeLeftSec ?? 0) > 300)

      // 2. phone <-> hotel-guest: ping both ways, TCP, path relay on both sides.
      await waitPeer(hotel, 'phone', phone.ula)
      await waitPeer(phone, 'hotel-guest', hotel.ula)
      await waitFor(
        'phone -> hotel-guest ping through the relay',
        async () => (await lab.exec('phone', ['ping', '-6', '-n', '-c', '1', '-W', '1', hotel.ula])).code === 0,
        30_000,
        100,
      )
      const back = await ping(lab, 'hotel-guest', phone.ula, 10)
      assert.equal(back.code, 0, 'hotel-guest -> phone')
      const there = await ping(lab, 'phone', hotel.ula, 10)
      assert.equal(there.code, 0, 'phone -> hotel-guest')
      const relayRtt = median(there.rtts)
      const hRow = await rowOf(hotel, 'phone')
      const pRow = await rowOf(phone, 'hotel-guest')
      assert.equal(hRow?.path, 'relay', JSON.stringify(hRow))
      assert.equal(pRow?.path, 'relay', JSON.stringify(pRow))
      assert.equal(hRow?.endpoint, phoneRelay, 'the EIM side sends to the relayed address')
      assert.match(pRow?.endpoint ?? '', /^203\.0\.113\.13:\d+$/)
      const pst = (await phone.status()) as unknown as { datapath: RelayStatus }
      assert.ok(pst.datapath.relay?.allocation?.permissions.includes('203.0.113.13'), JSON.stringify(pst.datapath))

      await startIperfServer(lab, 'hotel-guest', hotel.ula)
      const iperf = await lab.exec('phone', ['iperf3', '-6', '-c', hotel.ula, '-t', '2', '-J'], { timeoutMs: 20_000 })
      assert.equal(iperf.code, 0, iperf.stdout.slice(0, 400))
      const bps = (JSON.parse(iperf.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
        .bits_per_second
      assert.ok(bps > 1e6, `TCP through the relay: ${bps} bit/s`)

      // 3. The hotel gateway: the tunnel flow goes to the relay only, never to the phone's site.
      const ct = await lab.exec('hotel', ['conntrack', '-L', '-p', 'udp'])
      const flows = ct.stdout.split('\n').filter((l) => / sport=4500 /.test(l) && /src=10\.30\.0\.\d+ /.test(l))
      assert.ok(
        flows.some((l) => l.includes(`dst=${TURN_ADDR} `)),
        flows.join('\n'),
      )
      assert.ok(!flows.some((l) => l.includes('dst=203.0.113.14 ')), flows.join('\n'))

      // 4. laptop <-> phone: both symmetric, each through its own relay to the other's.
      await waitPeer(laptop, 'phone', phone.ula)
      await waitFor(
        'laptop -> phone ping through both relays',
        async () => (await lab.exec('laptop', ['ping', '-6', '-n', '-c', '1', '-W', '1', phone.ula])).code === 0,
        30_000,
        100,
      )
      const dbl = await ping(lab, 'phone', laptop.ula, 5)
      assert.equal(dbl.code, 0, 'phone -> laptop')
      assert.equal((await rowOf(laptop, 'phone'))?.path, 'relay')
      assert.equal((await rowOf(phone, 'laptop'))?.path, 'relay')

      // 5. The phone roams to the cafe (another symmetric NAT): its old allocation belongs to the old 5-tuple, so it
      // allocates again and republishes relay=; the hotel follows the new relayed address (DNS Push, punch, MOBIKE).
      const moveAt = performance.now()
      await lab.move('phone', 'cafe')
      const pTxt2 = await waitFor(
        'phone to publish a new relay= from the cafe',
        async () =>
          (await dig(lab, srv!, `${(await phone.status()).identity.label}.${DOMAIN}`, 'TXT')).find(
            (x) => x.includes('stun=203.0.113.15:') && x.includes('relay=') && !x.includes(`relay=${phoneRelay}"`),
          ),
        30_000,
        200,
      )
      const republishedMs = performance.now() - moveAt
      const phoneRelay2 = /relay=([\d.]+:\d+)/.exec(pTxt2)?.[1]
      await waitFor(
        'hotel-guest -> phone ping after the move',
        async () => (await lab.exec('hotel-guest', ['ping', '-6', '-n', '-c', '1', '-W', '1', phone.ula])).code === 0,
        40_000,
        100,
      )
      const backAfterMs = performance.now() - moveAt
      const hRow2 = await rowOf(hotel, 'phone')
      assert.equal(hRow2?.path, 'relay', JSON.stringify(hRow2))
      assert.equal(hRow2?.endpoint, phoneRelay2)
      t.diagnostic(
        `roaming: new relay= ${phoneRelay2} published ${republishedMs.toFixed(0)} ms after the move; ` +
          `hotel-guest -> phone answered again after ${backAfterMs.toFixed(0)} ms`,
      )
      t.diagnostic(
        `relay: phone ${phoneRelay}; RTT phone->hotel median ${relayRtt} ms, hotel->phone ${median(back.rtts)} ms, ` +
          `phone->laptop (two relays) ${median(dbl.rtts)} ms; iperf3 TCP via relay ${(bps / 1e6).toFixed(0)} Mbit/s`,
      )
      if (process.env.RELAY_DEBUG)
        t.diagnostic(
          (await agentLog(phone))
            .split('\n')
            .filter((l) => /relay|turn|ike\.up|peers\.update|network|agent\.stun/.test(l))
            .map((l) => l.slice(0, 300))
            .join('\n'),
        )
    } catch (e) {
      for (const a of agents)
        t.diagnostic(`${a.host}:\n${await agentLogLines(a, /relay|turn|ike\.|punch|error|warn/, 40)}`)
      throw e
    } finally {
      await Promise.allSettled(agents.map((a) => a.stop()))
      await srv?.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
