// Issue 7's done-when story in the lab, real processes only: the autotunnel server, two agents behind two
// miniupnpd home routers (desktop at home, laptop at the cafe) running the tunnel (TUN + ESP-in-UDP keyed by
// IKEv2) and the local resolver. ping -6, ssh by name and iperf3 over the ULAs; a capture on a gateway shows only
// UDP with ESP inside; the laptop moves to the hotel while an iperf3 TCP transfer runs and the transfer survives.
import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { test } from 'node:test'
import { withLab } from '../../lab/index.js'
import { agentLog, type LabServer, startAgent, startServer, waitFor } from './agent-helpers.js'
import {
  DOMAIN,
  LAB_RESOLVER,
  parseIperf,
  ping,
  roamDuringTransfer,
  startIperfServer,
  startSshd,
  startTunnelAgent,
  type TunnelAgent,
  waitPeer,
  waitPing,
} from './tunnel-helpers.js'

const dig = (name: string, type: string): string[] => [
  'dig',
  `@${LAB_RESOLVER}`,
  '+time=1',
  '+tries=1',
  '+noall',
  '+answer',
  '+comments',
  name,
  type,
]
/** Sends N datagrams built from captured ESP payloads (hex lines) to ADDR PORT, pacing every 500. */
const FUZZER = `
import os, random, socket, sys, time
pk = [bytes.fromhex(l) for l in open(sys.argv[1]).read().split()]
dst = (sys.argv[2], int(sys.argv[3])); n = int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r = random.Random(7)
for i in range(n):
    b = pk[i % len(pk)]; k = i % 5
    if k == 0: m = os.urandom(r.randrange(0, 1500))
    elif k == 1:
        m = bytearray(b); j = r.randrange(0, len(m)); m[j] ^= 1 + r.randrange(255); m = bytes(m)
    elif k == 2: m = b[:r.randrange(0, len(b))]
    elif k == 3: m = b
    else: m = b'\\0\\0\\0\\0' + os.urandom(r.randrange(0, 600))
    s.sendto(m, dst)
    if i % 500 == 499: time.sleep(0.002)
print(n)
`

interface DatapathView {
  tun: { counters: { drops: Record<string, number> } }
  ike: { rxMalformed: number }
}
const datapathOf = async (a: TunnelAgent): Promise<DatapathView> =>
  ((await a.status()) as unknown as { datapath: DatapathView }).datapath

const status = (out: string): string | undefined => /status: (\w+)/.exec(out)?.[1]

test('tunnel end to end: peers from DNS, resolver, ping/ssh/iperf3 over ULAs, ESP only on the wire, roaming', {
  timeout: 170_000,
}, async (t) => {
  await withLab(t, { sites: ['home', 'cafe', 'hotel'] }, async (lab) => {
    const cleanups: (() => Promise<void>)[] = []
    const agents: TunnelAgent[] = []
    let srv: LabServer | undefined
    try {
      srv = await startServer(lab, { leaseMin: 30 })
      const desktop = await startTunnelAgent(lab, srv, 'desktop')
      agents.push(desktop)
      const laptop = await startTunnelAgent(lab, srv, 'laptop')
      agents.push(laptop)

      // Peers from DNS (host list PTR -> SRV -> A/AAAA), each side.
      const dPeer = await waitPeer(laptop, 'desktop', desktop.ula)
      assert.equal(dPeer.endpoint, `${lab.publicIpOf('home')}:4500`)
      const lPeer = await waitPeer(desktop, 'laptop', laptop.ula)
      assert.equal(lPeer.endpoint, `${lab.publicIpOf('cafe')}:4500`)
      // Another user's host (bob, at the hotel) is never a peer of alice's hosts.
      const bob = await startAgent(
        lab,
        srv,
        'hotel-guest',
        ['--resolver', '127.0.0.1:5353', '--log-level', 'info'],
        true,
      )
      agents.push(bob as TunnelAgent)
      await waitFor('bob published', async () => (await bob.status()).published.state === 'published', 15_000, 100)
      await new Promise((r) => setTimeout(r, 500))
      assert.deepEqual(
        (await laptop.peers()).map((x) => x.name),
        ['desktop'],
      )
      assert.deepEqual(((await bob.status()) as unknown as { peers: unknown[] }).peers, [])

      // The local resolver: full and short names, NODATA for A, NXDOMAIN for an unknown host, REFUSED elsewhere.
      const full = await lab.execOk('laptop', dig(`desktop.${DOMAIN}`, 'AAAA'))
      assert.match(full.stdout, new RegExp(`IN\\s+AAAA\\s+${desktop.ula}`))
      const short = await lab.execOk('laptop', dig('desktop', 'AAAA'))
      assert.match(short.stdout, new RegExp(`IN\\s+AAAA\\s+${desktop.ula}`))
      assert.equal(status((await lab.execOk('laptop', dig(`desktop.${DOMAIN}`, 'A'))).stdout), 'NOERROR')
      assert.doesNotMatch((await lab.execOk('laptop', dig(`desktop.${DOMAIN}`, 'A'))).stdout, /\sIN\s+A\s/)
      assert.equal(status((await lab.execOk('laptop', dig(`nosuch.${DOMAIN}`, 'AAAA'))).stdout), 'NXDOMAIN')
      assert.equal(status((await lab.execOk('laptop', dig('example.org', 'AAAA'))).stdout), 'REFUSED')
      assert.equal(status((await lab.execOk('laptop', dig(`desktop.bob.members.example`, 'AAAA'))).stdout), 'REFUSED')

      // ping -6 to the peer's ULA: the first packet starts IKE, the tunnel then carries ICMPv6.
      await waitPing(lab, 'laptop', desktop.ula)
      const p = await ping(lab, 'laptop', desktop.ula, 10)
      assert.equal(p.code, 0, 'ping -6 over the tunnel')
      assert.equal(p.rtts.length, 10)
      const rtt = p.rtts.reduce((a, b) => a + b, 0) / p.rtts.length
      t.diagnostic(`ping -6 laptop -> desktop ULA: avg ${rtt.toFixed(3)} ms over ${p.rtts.length}`)
      const back = await ping(lab, 'desktop', laptop.ula, 3)
      assert.equal(back.code, 0, 'ping -6 desktop -> laptop')
      const row = await waitPeer(laptop, 'desktop', desktop.ula)
      assert.deepEqual(row.watch, { srv: 'push', target: 'push' }, 'peer records watched by DNS Push')
      assert.ok(row.lastHandshake && row.bytesIn > 0 && row.bytesOut > 0 && row.path === 'direct', JSON.stringify(row))

      // Capture on the cafe gateway while traffic flows: only UDP (ESP-in-UDP, IKE, keepalives) to home.
      const home = lab.publicIpOf('home')
      const pcap = `/tmp/at-e2e-${lab.name}.pcap`
      cleanups.push(() => rm(pcap, { force: true }))
      // At most 30,000 frames (the iperf3 run below alone would write hundreds of MB).
      const cap = lab.spawn('cafe', ['tcpdump', '-i', 'any', '-nn', '-U', '-c', '30000', '-w', pcap, 'host', home], {
        logName: 'tcpdump-cafe',
      })
      await new Promise((r) => setTimeout(r, 700))

      // ssh by name through the local resolver (getaddrinfo -> 127.0.0.53 -> desktop's ULA), sshd on the ULA.
      const sshd = await startSshd(lab, 'desktop', desktop.ula)
      cleanups.push(sshd.stop)
      const ssh = await lab.exec('laptop', [...sshd.ssh, 'root@desktop', 'echo ssh-over-autotunnel; hostname -I'], {
        timeoutMs: 20_000,
      })
      assert.equal(ssh.code, 0, `ssh root@desktop: ${ssh.stderr}`)
      assert.match(ssh.stdout, /ssh-over-autotunnel/)
      assert.ok(ssh.stdout.includes(desktop.ula), 'the ssh session runs on the desktop')

      // iperf3 TCP over the ULAs.
      await startIperfServer(lab, 'desktop', desktop.ula)
      const ip = await lab.exec('laptop', ['iperf3', '-6', '-c', desktop.ula, '-t', '3', '-J'], { timeoutMs: 30_000 })
      const perf = parseIperf(ip.stdout)
      assert.equal(ip.code, 0, `iperf3: ${perf.error ?? ip.stderr}`)
      t.diagnostic(`iperf3 TCP laptop -> desktop over the tunnel: ${(perf.receivedBps / 1e6).toFixed(1)} Mbit/s`)
      assert.ok(perf.receivedBps > 1e6)

      cap.stop()
      await new Promise((r) => setTimeout(r, 300))
      const frames = await lab.execOk('cafe', [
        'tshark',
        '-r',
        pcap,
        '-d',
        'udp.port==4500,udpencap',
        '-T',
        'fields',
        '-e',
        'frame.protocols',
      ])
      const protos = frames.stdout.split('\n').filter(Boolean)
      assert.ok(protos.length > 100, `captured ${protos.length} frames`)
      const plain = protos.filter((x) => !/:ip:udp(:|$)/.test(x) || /ipv6|icmp|tcp|ssh/.test(x))
      assert.deepEqual(plain.slice(0, 5), [], 'every frame between the sites is UDP, nothing in clear')
      const esp = protos.filter((x) => x.includes(':esp')).length
      t.diagnostic(`capture on the cafe gateway: ${protos.length} frames to/from home, ${esp} ESP-in-UDP`)
      assert.ok(esp > protos.length * 0.9)

      // Hostile input on the desktop's mapped port, from the internet: 100,000 datagrams made from captured ESP
      // (replayed, bit-flipped, cut), random bytes, and garbage behind the non-ESP marker (IKE). The agent survives,
      // drops are counted, nothing reaches the TUN device, the laptop's endpoint is not hijacked, ping still works.
      const payloads = await lab.execOk('cafe', [
        'tshark',
        '-r',
        pcap,
        '-c',
        '3000',
        '-d',
        'udp.port==4500,udpencap',
        '-Y',
        `ip.dst==${home} && esp`,
        '-T',
        'fields',
        '-e',
        'udp.payload',
      ])
      const captured = payloads.stdout.split('\n').filter(Boolean).slice(0, 500)
      assert.ok(captured.length > 50)
      const fuzzFile = `/tmp/at-e2e-${lab.name}.fuzz`
      cleanups.push(() => rm(fuzzFile, { force: true }))
      await lab.execOk('server', ['sh', '-c', `cat > ${fuzzFile}`], { input: captured.join('\n') })
      const dpBefore = await datapathOf(desktop)
      const fuzz = await lab.execOk('server', ['/usr/bin/python3', '-c', FUZZER, fuzzFile, home, '4500', '100000'], {
        timeoutMs: 60_000,
      })
      assert.equal(fuzz.stdout.trim(), '100000')
      await new Promise((r) => setTimeout(r, 500))
      const dpAfter = await datapathOf(desktop)
      const drops = (d: DatapathView): number => Object.values(d.tun.counters.drops).reduce((a, b) => a + b, 0)
      const dropped = drops(dpAfter) - drops(dpBefore)
      const ikeBad = dpAfter.ike.rxMalformed - dpBefore.ike.rxMalformed
      t.diagnostic(
        `fuzz: 100000 datagrams sent; tunnel drops +${dropped} (${JSON.stringify(
          Object.fromEntries(
            Object.entries(dpAfter.tun.counters.drops)
              .map(([k, v]) => [k, v - (dpBefore.tun.counters.drops[k] ?? 0)])
              .filter(([, v]) => v),
          ),
        )}), IKE malformed +${ikeBad}`,
      )
      assert.ok(dropped > 10_000, `drops counted: ${dropped}`)
      assert.equal((await waitPeer(desktop, 'laptop', laptop.ula)).endpoint, `${lab.publicIpOf('cafe')}:4500`)
      assert.equal((await ping(lab, 'laptop', desktop.ula, 3)).code, 0, 'ping after the fuzz run')

      // Roaming: laptop -> hotel (EIM NAT, no mapping protocol) while an iperf3 TCP transfer runs. -R: the desktop
      // sends and the laptop's intervals count what arrived, so a stall shows as zero-byte intervals.
      // A 10 ms ping stream from the desktop to the laptop's ULA runs too: its longest run of lost echoes is the
      // interruption at a finer grain than iperf3's intervals.
      const {
        iperf: r,
        roam,
        moveStartSec: moveStart,
        movedBySec,
        stall,
        ping: loss,
      } = await roamDuringTransfer(lab, {
        fixed: 'desktop',
        fixedUla: desktop.ula,
        roamer: 'laptop',
        roamerUla: laptop.ula,
        site: 'hotel',
        seconds: 10,
        pings: 600,
        moveAfterMs: 3000,
      })
      t.diagnostic(
        `laptop moved to hotel (${lab.addressOf('laptop')}) from +${(moveStart + 0.2).toFixed(2)} s to +${movedBySec.toFixed(2)} s`,
      )
      assert.equal(r.code, 0, `iperf3 across the move: ${roam.error ?? r.stderr}`)
      t.diagnostic(
        `iperf3 intervals (KB per 0.1 s): ${roam.intervals.map((i) => Math.round(i.bytes / 1000)).join(' ')}`,
      )
      const later = roam.intervals.filter((i) => i.start >= moveStart + 1.5)
      const laterBytes = later.reduce((a, i) => a + i.bytes, 0)
      const laterSec = later.reduce((a, i) => a + (i.end - i.start), 0)
      assert.ok(laterSec > 3 && laterBytes > (0.5 * 20e6 * laterSec) / 8, 'the transfer carries on at its rate')
      t.diagnostic(
        `roaming interruption: ${(stall.seconds * 1000).toFixed(0)} ms (longest zero-byte run of 0.1 s intervals ` +
          `from the move on, at +${stall.from.toFixed(1)} s); throughput ${(roam.receivedBps / 1e6).toFixed(1)} Mbit/s`,
      )
      assert.ok(stall.seconds < 5, `interruption ${stall.seconds} s`)
      t.diagnostic(
        `ping -i 0.01 desktop -> laptop across the move: ${loss.answered}/600 answered, longest loss run ${loss.gap} (~${loss.gap * 10} ms)`,
      )
      assert.ok(loss.answered > 300)
      const after2 = await waitPeer(desktop, 'laptop', laptop.ula)
      assert.equal(after2.endpoint?.split(':')[0], lab.publicIpOf('hotel'), 'desktop now sends to the hotel NAT')

      // The desktop stops (clean: its records go): the laptop drops the peer and its route. It starts again with a
      // new ULA: the laptop learns it and a ping to the new ULA keys a new tunnel.
      await desktop.stop()
      agents.splice(agents.indexOf(desktop), 1)
      await waitFor(
        'the laptop to drop the desktop',
        async () => !(await laptop.peers()).some((x) => x.name === 'desktop'),
        15_000,
        100,
      )
      const routes = await lab.execOk('laptop', ['ip', '-6', 'route', 'show', 'dev', 'autotun0'])
      assert.ok(!routes.stdout.includes(desktop.ula), `route to the old ULA removed: ${routes.stdout}`)
      const desktop2 = await startTunnelAgent(lab, srv, 'desktop')
      agents.push(desktop2)
      assert.notEqual(desktop2.ula, desktop.ula)
      await waitPeer(laptop, 'desktop', desktop2.ula)
      await waitPing(lab, 'laptop', desktop2.ula)
      t.diagnostic(`desktop restarted with ULA ${desktop2.ula}: learned and reachable from the hotel`)
    } catch (e) {
      for (const a of agents) t.diagnostic(`--- ${a.host} log tail ---\n${(await agentLog(a)).slice(-6000)}`)
      throw e
    } finally {
      for (const c of cleanups.reverse()) await c().catch(() => {})
      for (const a of agents) await a.stop()
      await srv?.stop()
    }
  })
})
