// Issue 8 in the lab with the real server and agents (real TUN devices, real miniupnpd gateways): two agents key
// each other with RFC 7427 signatures from their published host keys (no manual keys); roaming with MOBIKE, and
// without it (DNS path), with the interruption measured; a flood of IKE_SA_INIT from spoofed sources triggers
// cookies while the existing peer keeps working; `autotunnel revoke` from one host and `account revoke-host` on the
// server cut a host off while the user's other hosts keep working.
//
// "Spoofed" here: the flood is sent from the server's namespace through a raw socket (IP_HDRINCL) with source
// addresses 198.51.100.20-99, which no lab node owns; the agent's answers (COOKIE notifies) go nowhere, as for a
// real spoofed flood. The packets cross the core router and the home gateway's port mapping like any datagram.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { withLab } from '../../lab/index.js'
import { agentLog, dig, type LabServer, MAIN, SERVER_ADDR, startServer, waitFor, ZONE } from './agent-helpers.js'
import {
  DOMAIN,
  longestLoss,
  ping,
  roamDuringTransfer,
  startTunnelAgent,
  type TunnelAgent,
  waitPeer,
  waitPing,
} from './tunnel-helpers.js'

interface IkeRow {
  name: string
  auth: string | null
  mobike: boolean | null
  keys: number
}
interface IkeView {
  ikeAuth: string
  ike: { mobikeUpdates: number; cookiesSent: number; ikeEstablished: number; authFailures: number; revoked: number }
}

const rows = async (a: TunnelAgent): Promise<IkeRow[]> => (await a.peers()) as unknown as IkeRow[]
const ikeOf = async (a: TunnelAgent): Promise<IkeView> =>
  ((await a.status()) as unknown as { datapath: IkeView }).datapath

/** Longest run of lost echoes in `ping -i 0.01` output (in echoes, 10 ms each). */
/** IKE_SA_INIT (SA: AES-GCM-16-256, PRF-HMAC-SHA2-256, group 31; KE; Ni) with the non-ESP marker, from raw sources. */
const FLOOD = `
import os, random, socket, struct, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def tr(t, i, attrs=b'', last=False):
    return struct.pack('!BBHBBH', 0 if last else 3, 0, 8 + len(attrs), t, 0, i) + attrs
trs = tr(1, 20, struct.pack('!HH', 0x800E, 256)) + tr(2, 5) + tr(4, 31, last=True)
prop = struct.pack('!BBHBBBB', 0, 0, 8 + len(trs), 1, 1, 0, 3) + trs
def init():
    sa = struct.pack('!BBH', 34, 0, 4 + len(prop)) + prop
    ke = struct.pack('!BBHHH', 40, 0, 8 + 32, 31, 0) + os.urandom(32)
    ni = struct.pack('!BBH', 0, 0, 4 + 32) + os.urandom(32)
    body = sa + ke + ni
    hdr = os.urandom(8) + bytes(8) + struct.pack('!BBBBII', 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return bytes(4) + hdr + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
r = random.Random(8)
t0 = time.time()
for i in range(n):
    src = '198.51.100.%d' % r.randrange(20, 100)
    m = init()
    udp = struct.pack('!HHHH', r.randrange(1024, 65535), port, 8 + len(m), 0) + m
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), r.randrange(65536), 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + udp, (dst, 0))
    if i % 200 == 199: time.sleep(0.01)
print(n, round(time.time() - t0, 2))
`

test('IKE in the agent: signatures from DNS, MOBIKE and DNS roaming, cookie flood, revocation', {
  timeout: 170_000,
}, async (t) => {
  await withLab(t, { sites: ['home', 'cafe', 'hotel', 'public'] }, async (lab) => {
    const agents: TunnelAgent[] = []
    let srv: LabServer | undefined
    const stopAgent = async (a: TunnelAgent): Promise<void> => {
      await a.stop()
      agents.splice(agents.indexOf(a), 1)
    }
    try {
      srv = await startServer(lab, { leaseMin: 30 })
      const desktop = await startTunnelAgent(lab, srv, 'desktop')
      agents.push(desktop)
      let laptop = await startTunnelAgent(lab, srv, 'laptop')
      agents.push(laptop)

      // 1. No manual keys: each host publishes its key at H.D; the first ping keys the tunnel with signatures.
      // `up` returns once its control socket answers; its first UPDATE may still be on its way (it was, once, on a
      // loaded CI machine), so wait for the record rather than read it once.
      const s0 = srv
      let keyTxt: string[] = []
      await waitFor(
        'the desktop key record at its host name',
        async () => {
          keyTxt = await dig(lab, s0, 'desktop.alice.members.example', 'TXT')
          return keyTxt.some((l) => l.includes('v=at-ike1; k=ed25519; p='))
        },
        15_000,
        200,
      ).catch((e: Error) => assert.fail(`${e.message}; key record at the host name: ${keyTxt.join(' | ')}`))
      await waitPeer(laptop, 'desktop', desktop.ula)
      await waitPeer(desktop, 'laptop', laptop.ula)
      await waitPing(lab, 'laptop', desktop.ula)
      assert.equal((await ping(lab, 'laptop', desktop.ula, 3)).code, 0)
      const row = (await rows(laptop)).find((r) => r.name === 'desktop')
      assert.equal(row?.auth, 'signature', `auth in status: ${JSON.stringify(row)}`)
      assert.equal(row?.keys, 1)
      assert.equal((await ikeOf(desktop)).ikeAuth, 'signature')
      assert.match(await agentLog(desktop), /"peerAuth":"signature".*"msg":"ike\.up"/)
      t.diagnostic(`keyed with signatures: laptop sees desktop ${JSON.stringify(row)}`)

      // 2. Roaming with MOBIKE: the laptop moves to the hotel while a TCP transfer (iperf3, desktop -> laptop) and
      // a 10 ms ping stream (desktop -> laptop) run.
      const mobikeBefore = (await ikeOf(laptop)).ike.mobikeUpdates
      const {
        iperf,
        roam,
        stall,
        ping: loss,
      } = await roamDuringTransfer(lab, {
        fixed: 'desktop',
        fixedUla: desktop.ula,
        roamer: 'laptop',
        roamerUla: laptop.ula,
        site: 'hotel',
        seconds: 6,
        pings: 500,
        moveAfterMs: 2000,
      })
      assert.equal(iperf.code, 0, `iperf3 across the move: ${roam.error ?? iperf.stderr}`)
      const mobikeAfter = (await ikeOf(laptop)).ike.mobikeUpdates
      t.diagnostic(
        `MOBIKE roam cafe -> hotel: ping loss run ${loss.gap} (~${loss.gap * 10} ms, ${loss.answered}/500 answered), ` +
          `iperf3 longest zero-byte run ${(stall.seconds * 1000).toFixed(0)} ms, ` +
          `${(roam.receivedBps / 1e6).toFixed(1)} Mbit/s, laptop mobikeUpdates ${mobikeBefore} -> ${mobikeAfter}`,
      )
      assert.ok(mobikeAfter > mobikeBefore, 'MOBIKE update counted')
      assert.match(await agentLog(laptop), /"ike\.mobike\.(updated|address_list_sent)"/)
      assert.ok(loss.gap * 10 < 1000, `MOBIKE interruption ${loss.gap * 10} ms`)
      assert.equal(
        (await waitPeer(desktop, 'laptop', laptop.ula)).endpoint?.split(':')[0],
        lab.publicIpOf('hotel'),
        'desktop sends to the hotel NAT',
      )

      // 3. MOBIKE off (--no-mobike on the laptop): a move back to the cafe is followed through DNS only. The ping
      // stream goes desktop -> laptop only, so the laptop sends nothing the desktop could learn the new address
      // from (NAT rebinding) before its DNS records move.
      // A clean stop sends IKE Deletes before the socket closes: the desktop drops the SA on the laptop's Delete.
      await stopAgent(laptop)
      await waitFor(
        "the desktop to get the laptop's IKE Delete",
        async () =>
          /"peer":"laptop\.alice\.members\.example","reason":"peer deleted","msg":"ike\.sa\.down"/.test(
            await agentLog(desktop),
          ),
        5000,
        100,
      )
      laptop = await startTunnelAgent(lab, srv, 'laptop', ['--no-mobike'])
      agents.push(laptop)
      await waitPeer(laptop, 'desktop', desktop.ula)
      await waitPeer(desktop, 'laptop', laptop.ula)
      await waitPing(lab, 'laptop', desktop.ula)
      await waitPing(lab, 'desktop', laptop.ula)
      assert.equal((await rows(desktop)).find((r) => r.name === 'laptop')?.mobike, false, 'SA without MOBIKE')
      const echo2 = lab.exec('desktop', ['ping', '-6', '-n', '-i', '0.01', '-c', '800', '-W', '1', laptop.ula], {
        timeoutMs: 30_000,
      })
      await new Promise((r) => setTimeout(r, 1500))
      await lab.move('laptop', 'cafe')
      const loss2 = longestLoss((await echo2).stdout)
      t.diagnostic(
        `DNS-only roam hotel -> cafe (--no-mobike): ping loss run ${loss2.gap} (~${loss2.gap * 10} ms, ` +
          `${loss2.answered}/800 answered)`,
      )
      const cafe = lab.publicIpOf('cafe').replaceAll('.', '\\.')
      assert.match(
        await agentLog(desktop),
        new RegExp(`"host":"laptop","endpoint":\\{"address":"${cafe}".*"msg":"datapath\\.endpoint_from_dns"`),
        'the desktop moved the laptop from its DNS records',
      )
      await waitFor(
        'the desktop to follow the laptop to the cafe',
        async () =>
          (await waitPeer(desktop, 'laptop', laptop.ula)).endpoint === `${lab.publicIpOf('cafe')}:4500` &&
          (await lab.exec('desktop', ['ping', '-6', '-n', '-c', '1', '-W', '1', laptop.ula])).code === 0,
        15_000,
        200,
      )
      assert.ok(loss2.answered > 100, 'the stream recovered')

      // 4. A flood of IKE_SA_INIT from spoofed sources at the desktop's mapped port: cookies, and the laptop's
      // existing SA keeps carrying a ping stream.
      const before = (await ikeOf(desktop)).ike
      const stream = lab.exec('laptop', ['ping', '-6', '-n', '-i', '0.01', '-c', '300', '-W', '1', desktop.ula], {
        timeoutMs: 30_000,
      })
      const flood = await lab.execOk(
        'server',
        ['/usr/bin/python3', '-c', FLOOD, lab.publicIpOf('home'), '4500', '5000'],
        {
          timeoutMs: 60_000,
        },
      )
      const streamOut = (await stream).stdout
      const after = (await ikeOf(desktop)).ike
      const ls = longestLoss(streamOut)
      t.diagnostic(
        `flood: ${flood.stdout.trim()} (IKE_SA_INITs, seconds) from 80 spoofed sources; desktop cookiesSent ` +
          `+${after.cookiesSent - before.cookiesSent}, laptop ping stream ${ls.answered}/300 answered, ` +
          `longest loss run ${ls.gap}`,
      )
      // Not every datagram is read (the socket buffer overflows at this rate): 1,250-3,100 of 5,000 in the runs so far.
      assert.ok(after.cookiesSent - before.cookiesSent > 300, 'COOKIE notifies under the flood')
      assert.ok(ls.answered >= 255 && ls.gap < 50, `existing peer served during the flood: ${ls.answered}/300`)

      // 5. Revocation. A third host (vps) talks to both; the desktop revokes the laptop: the desktop and the vps
      // drop it, its pings fail, desktop <-> vps keeps working.
      const vps = await startTunnelAgent(lab, srv, 'vps')
      agents.push(vps)
      await waitPeer(vps, 'desktop', desktop.ula)
      await waitPeer(vps, 'laptop', laptop.ula)
      await waitPing(lab, 'vps', desktop.ula)
      await waitPing(lab, 'vps', laptop.ula)
      const t0 = performance.now()
      const rv = await lab.execOk('desktop', ['node', MAIN, 'revoke', 'laptop', '--state', desktop.state])
      t.diagnostic(`autotunnel revoke laptop (from the desktop):\n${rv.stdout.trim()}`)
      const gone = async (a: TunnelAgent): Promise<boolean> => !(await rows(a)).some((r) => r.name === 'laptop')
      await waitFor(
        'desktop and vps to drop the laptop',
        async () => (await gone(desktop)) && (await gone(vps)),
        60_000,
        50,
      )
      const dropMs = performance.now() - t0
      assert.ok(!(await dig(lab, srv, 'laptop.alice.members.example', 'TXT')).length, 'key record gone')
      const laptopPing = await ping(lab, 'laptop', desktop.ula, 3)
      assert.notEqual(laptopPing.code, 0, 'the revoked laptop cannot reach the desktop')
      assert.notEqual((await ping(lab, 'laptop', vps.ula, 3)).code, 0, 'nor the vps')
      assert.equal((await ping(lab, 'vps', desktop.ula, 3)).code, 0, 'vps <-> desktop keeps working')
      const dIke = (await ikeOf(desktop)).ike
      t.diagnostic(
        `revocation by UPDATE: peers dropped the laptop ${dropMs.toFixed(0)} ms after the command started; ` +
          `desktop authFailures ${dIke.authFailures} (laptop's new IKE_AUTH refused)`,
      )
      assert.match(await agentLog(desktop), /"ike\.auth\.failed"/)

      // Only the key record removed (nsupdate with the account key): the desktop's key watcher fires, revalidation
      // runs at once and deletes the SA authenticated with that key; new IKE_AUTH from the vps fails.
      const revokedBefore = dIke.revoked
      const t2 = performance.now()
      await lab.execOk('server', ['nsupdate', '-y', srv.digKey], {
        input: `server ${SERVER_ADDR}\nzone ${ZONE}\nupdate delete vps.${DOMAIN} TXT\nsend\n`,
      })
      await waitFor(
        'desktop to revoke the vps SA',
        async () => (await ikeOf(desktop)).ike.revoked > revokedBefore,
        60_000,
        50,
      )
      t.diagnostic(
        `key record only removed: desktop deleted the vps SA after ${(performance.now() - t2).toFixed(0)} ms`,
      )
      assert.match(await agentLog(desktop), /"peer":"vps\.alice\.members\.example","msg":"ike\.revoked"/)
      assert.notEqual(
        (await ping(lab, 'vps', desktop.ula, 3)).code,
        0,
        'the vps without a key cannot reach the desktop',
      )

      // Server-side: `account revoke-host alice vps` edits the store; the running server notices (external
      // generation) and notifies the watchers.
      const t1 = performance.now()
      const rh = await lab.execOk('server', [
        'node',
        MAIN,
        'account',
        'revoke-host',
        'alice',
        'vps',
        '--data',
        srv.data,
      ])
      t.diagnostic(`account revoke-host alice vps:\n${rh.stdout.trim()}`)
      await waitFor(
        'desktop to drop the vps',
        async () => !(await rows(desktop)).some((r) => r.name === 'vps'),
        60_000,
        50,
      )
      t.diagnostic(`revocation on the server: desktop dropped the vps after ${(performance.now() - t1).toFixed(0)} ms`)
      assert.deepEqual(await dig(lab, srv, `_autotunnel._udp.vps.${DOMAIN}`, 'SRV'), [])

      // 6. --ike-auth psk (interop/fallback): two PSK hosts key each other; a signature-only host refuses them.
      for (const a of agents.filter((x) => x.host !== 'desktop')) await stopAgent(a)
      // Both names are on the account's revoked list (the server refuses their records): the operator lifts it.
      for (const h of ['laptop', 'vps'])
        await lab.execOk('server', ['node', MAIN, 'account', 'unrevoke-host', 'alice', h, '--data', srv.data])
      const laptopPsk = await startTunnelAgent(lab, srv, 'laptop', ['--ike-auth', 'psk'])
      agents.push(laptopPsk)
      const vpsPsk = await startTunnelAgent(lab, srv, 'vps', ['--ike-auth', 'psk'])
      agents.push(vpsPsk)
      assert.deepEqual(await dig(lab, srv, `vps.${DOMAIN}`, 'TXT'), [], 'no key record in psk mode')
      await waitPeer(laptopPsk, 'vps', vpsPsk.ula)
      await waitPeer(vpsPsk, 'laptop', laptopPsk.ula)
      await waitPing(lab, 'laptop', vpsPsk.ula)
      assert.equal((await rows(laptopPsk)).find((r) => r.name === 'vps')?.auth, 'psk')
      await waitPeer(desktop, 'vps', vpsPsk.ula)
      assert.notEqual((await ping(lab, 'desktop', vpsPsk.ula, 2)).code, 0, 'signature host refuses a PSK host')
      // And `autotunnel revoke` without a running agent: directly with the account key file.
      const direct = await lab.execOk('laptop', [
        'node',
        MAIN,
        'revoke',
        'vps',
        '--state',
        '/nonexistent',
        '--server',
        SERVER_ADDR,
        '--domain',
        DOMAIN,
        '--key-file',
        srv.keyFile,
      ])
      t.diagnostic(`autotunnel revoke vps (direct, no agent): ${direct.stdout.split('\n')[0]}`)
      await waitFor(
        'laptop to drop the vps',
        async () => !(await rows(laptopPsk)).some((r) => r.name === 'vps'),
        10_000,
        50,
      )
    } catch (e) {
      for (const a of agents) t.diagnostic(`--- ${a.host} log tail ---\n${(await agentLog(a)).slice(-5000)}`)
      throw e
    } finally {
      for (const a of agents) await a.stop()
      await srv?.stop()
    }
  })
})
