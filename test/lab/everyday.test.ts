// The everyday commands in the lab (issue 17, docs/commands.md): `autotunnel ping`, `ip`, `whois` and `netcheck`
// run as a user would, in the hosts' namespaces, against real agents. desktop (home, miniupnpd: PCP, NAT-PMP, UPnP)
// and laptop (cafe, miniupnpd) map their port: direct; hotel-guest (EIM NAT, no mapping protocol) is punched to;
// phone (symmetric NAT) reaches hotel-guest through its TURN allocation on coturn: relay.
import assert from 'node:assert/strict'
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { type Lab, type Topology, withLab } from '../../lab/index.js'
import { agentLogLines, type LabServer, MAIN, startServer, waitFor } from './agent-helpers.js'
import { Browser } from './cdp.js'
import { relayArgs, startLabCoturn, startTunnelAgent, type TunnelAgent, waitPeer, waitPing } from './tunnel-helpers.js'

const TURN_ADDR = '198.51.100.20'
const TOPOLOGY: Topology = {
  core: { router: '192.0.2.254', stun: ['192.0.2.1', '192.0.2.2'] },
  internet: [
    { name: 'server', address: '198.51.100.10' },
    { name: 'turn', address: TURN_ADDR },
  ],
  sites: [
    { name: 'home', nat: 'upnp', wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop'] },
    { name: 'cafe', nat: 'upnp', wan: '203.0.113.12', lan: '10.20.0.0/24', hosts: ['laptop'] },
    { name: 'hotel', nat: 'eim', wan: '203.0.113.13', lan: '10.30.0.0/24', hosts: ['hotel-guest'] },
    { name: 'mobile', nat: 'symmetric', wan: '203.0.113.14', lan: '10.40.0.0/24', hosts: ['phone'] },
  ],
}

interface NetcheckJson {
  nat: {
    nat: boolean
    type: string
    mapping: string | null
    filtering: string | null
    otherAddress: { address: string } | null
  } | null
  portMapping: Record<'pcp' | 'natpmp' | 'upnp', { answers: boolean; externalAddress?: string }> | null
  publicIPv4: string | null
  ipv6: { addresses: string[] }
  dns: { server: string; ms: number | null } | null
  relays: { server: string; ms: number | null }[]
}

const NOBODY = 65534
const CAPS = '-all,+net_admin,+net_bind_service'
const UNPRIVILEGED = [
  'setpriv',
  '--reuid',
  String(NOBODY),
  '--regid',
  String(NOBODY),
  '--clear-groups',
  `--inh-caps=${CAPS}`,
  `--ambient-caps=${CAPS}`,
  `--bounding-set=${CAPS}`,
  '--no-new-privs',
  '--',
]

/** The status page's peer rows as the DOM holds them: [host, path, endpoint, ...]. */
const ROWS = '[...document.querySelectorAll("#peers tbody tr")].map((r) => [...r.cells].map((c) => c.textContent))'
const PAGE_PORT = 8088
const METRICS_PORT = 9188

/** Fetches URL in the host's namespace and prints prometheus_client's parse: {family: [[name, labels, value]]}. */
const PARSE_METRICS = `
import sys, json, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
print(json.dumps({f.name: [[s.name, s.labels, s.value] for s in f.samples] for f in text_string_to_metric_families(text)}))
`

async function fetchIn(lab: Lab, host: string, url: string): Promise<string> {
  const r = await lab.exec(host, [
    '/usr/bin/python3',
    '-c',
    'import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1],timeout=5).read().decode())',
    url,
  ])
  return r.stdout
}

/** Text of a screenshot (tesseract, English), spaces collapsed. */
async function ocr(png: string): Promise<string> {
  const { execFile } = await import('node:child_process')
  const out = await new Promise<string>((resolve, reject) =>
    execFile('tesseract', [png, '-'], (e, stdout) => (e ? reject(e) : resolve(stdout))),
  )
  return out.replace(/[ \t]+/g, ' ')
}

/** `autotunnel ARGS --state DIR` in the agent's host. */
function cli(lab: Lab, a: TunnelAgent, args: string[], timeoutMs = 30_000) {
  return lab.exec(a.host, ['node', MAIN, ...args, '--state', a.state], { timeoutMs })
}

const PONG = /^pong from (\S+) \((\S+)\) via (direct|punched|relay) (\S+), seq (\d+), in ([\d.]+) ms/

/** Pong lines of `autotunnel ping` output, parsed. */
function pongs(out: string): { host: string; ula: string; path: string; endpoint: string; ms: number }[] {
  return out.split('\n').flatMap((l) => {
    const m = PONG.exec(l)
    return m ? [{ host: m[1]!, ula: m[2]!, path: m[3]!, endpoint: m[4]!, ms: Number(m[6]) }] : []
  })
}

test('everyday commands: ping (direct, punched, relay, down), ip, whois, netcheck, /metrics, the status page across a roam', {
  timeout: 300_000,
}, async (t) => {
  await withLab(t, { topology: TOPOLOGY }, async (lab) => {
    const agents: TunnelAgent[] = []
    let srv: LabServer | undefined
    const dir = await mkdtemp(join(tmpdir(), 'at-everyday-'))
    try {
      const turn = await startLabCoturn(lab, dir, 'turn', { listen: TURN_ADDR })
      t.after(() => turn.stop())
      srv = await startServer(lab, { leaseMin: 30, extra: ['--stun', '192.0.2.1:3478', '--turn', `${TURN_ADDR}:3478`] })
      const relayOpts = await relayArgs(dir)
      // The desktop runs as install-service's unit would: not root, with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only
      // (ambient and bounding sets, no new privileges); its state, key and CA readable by that user alone.
      const deskState = join(dir, 'desktop-state')
      await mkdir(deskState, { mode: 0o700 })
      await copyFile(srv.keyFile, join(dir, 'alice.key.json'))
      await copyFile(join(srv.data, 'tls.crt'), join(dir, 'tls.crt'))
      for (const f of [deskState, join(dir, 'alice.key.json'), join(dir, 'tls.crt')]) await chown(f, NOBODY, NOBODY)
      await chmod(dir, 0o711)
      const deskArgs = [
        '--key-file',
        join(dir, 'alice.key.json'),
        '--ca',
        join(dir, 'tls.crt'),
        '--status-page',
        `127.0.0.1:${PAGE_PORT}`,
        '--metrics',
        `127.0.0.1:${METRICS_PORT}`,
      ]
      const [desktop, laptop, guest, phone] = await Promise.all([
        startTunnelAgent(lab, srv, 'desktop', deskArgs, deskState, UNPRIVILEGED),
        startTunnelAgent(lab, srv, 'laptop'),
        startTunnelAgent(lab, srv, 'hotel-guest'),
        startTunnelAgent(lab, srv, 'phone', relayOpts),
      ])
      agents.push(desktop, laptop, guest, phone)
      const caps = await readFile(`/proc/${desktop.proc.pid}/status`, 'utf8')
      assert.match(caps, /^Uid:\s+65534\s/m)
      assert.match(caps, /^CapEff:\s+0000000000001400$/m, 'CAP_NET_ADMIN + CAP_NET_BIND_SERVICE only')
      await waitPeer(laptop, 'desktop', desktop.ula, 30_000)
      await waitPeer(laptop, 'hotel-guest', guest.ula, 30_000)
      await waitPeer(phone, 'hotel-guest', guest.ula, 30_000)

      // 1. laptop -> desktop, both mapped: three replies, direct, to the home gateway's mapped port; exit 0.
      await waitFor(
        'the desktop to publish its mapped endpoint',
        async () => (await laptop.peers()).find((p) => p.name === 'desktop' && p.endpoint?.startsWith('203.0.113.11:')),
        30_000,
        200,
      )
      const direct = await cli(lab, laptop, ['ping', 'desktop', '-c', '3', '-i', '0.2'])
      t.diagnostic(`laptop$ autotunnel ping desktop -c 3\n${direct.stdout}`)
      assert.equal(direct.code, 0, direct.stdout + direct.stderr)
      const dp = pongs(direct.stdout)
      assert.equal(dp.length, 3, direct.stdout)
      for (const p of dp) {
        assert.equal(p.host, 'desktop')
        assert.equal(p.ula, desktop.ula)
        assert.equal(p.path, 'direct')
        assert.match(p.endpoint, /^203\.0\.113\.11:\d+$/)
        assert.ok(p.ms > 0 && p.ms < 1000, String(p.ms))
      }
      assert.match(direct.stdout, /3 sent, 3 answered, 0 lost/)
      // The unprivileged desktop set its TUN device up (ICMPv6 through it) and bound its resolver to port 53.
      await waitPing(lab, 'laptop', desktop.ula)
      const dst = (await desktop.status()) as unknown as { datapath: { resolver: { port: number } | null } }
      assert.equal(dst.datapath.resolver?.port, 53)

      // 2. laptop -> hotel-guest (EIM NAT, no mapping protocol): punched, to its STUN-learned endpoint.
      const punched = await cli(lab, laptop, ['ping', 'hotel-guest', '-c', '2', '-i', '0.2'])
      t.diagnostic(`laptop$ autotunnel ping hotel-guest -c 2\n${punched.stdout}`)
      assert.equal(punched.code, 0, punched.stdout + punched.stderr)
      const pp = pongs(punched.stdout)
      assert.equal(pp.length, 2, punched.stdout)
      for (const p of pp) {
        assert.equal(p.path, 'punched')
        assert.match(p.endpoint, /^203\.0\.113\.13:\d+$/)
      }

      // 3. phone (symmetric) -> hotel-guest (EIM): relay, the guest's endpoint seen through our allocation.
      await waitFor(
        'the phone to hold a TURN allocation',
        async () =>
          ((await phone.status()) as unknown as { datapath: { relay: { allocation: unknown } | null } }).datapath.relay
            ?.allocation,
        30_000,
        200,
      )
      const relayed = await cli(lab, phone, ['ping', 'hotel-guest', '-c', '3', '-i', '0.2', '--json'])
      assert.equal(relayed.code, 0, relayed.stdout + relayed.stderr)
      const rj = JSON.parse(relayed.stdout) as {
        transmitted: number
        received: number
        answers: { reply: boolean; path: string; endpoint: string; rttMs: number }[]
      }
      t.diagnostic(`phone$ autotunnel ping hotel-guest -c 3 --json\n${relayed.stdout}`)
      assert.equal(rj.transmitted, 3)
      assert.equal(rj.received, 3)
      for (const a of rj.answers) assert.equal(a.path, 'relay', JSON.stringify(a))
      const relayedText = await cli(lab, phone, ['ping', 'hotel-guest', '-c', '1'])
      assert.equal(pongs(relayedText.stdout)[0]?.path, 'relay', relayedText.stdout)

      // 4. ip, ip HOST, whois ULA (a peer's, our own), whois by outer address.
      const ip = await cli(lab, laptop, ['ip'])
      assert.equal(ip.code, 0, ip.stderr)
      assert.equal(ip.stdout.trim(), laptop.ula)
      const ipd = await cli(lab, laptop, ['ip', 'desktop'])
      assert.equal(ipd.stdout.trim(), desktop.ula, ipd.stderr)
      const ipl = JSON.parse((await cli(lab, desktop, ['ip', 'laptop', '--json'])).stdout) as Record<string, unknown>
      assert.equal(ipl.ula, laptop.ula)
      assert.equal(ipl.fqdn, 'laptop.alice.members.example')
      const who = await cli(lab, desktop, ['whois', laptop.ula])
      t.diagnostic(`desktop$ autotunnel whois ${laptop.ula}\n${who.stdout}`)
      assert.equal(who.code, 0, who.stderr)
      assert.match(who.stdout, /^host {8}laptop\.alice\.members\.example$/m)
      assert.match(who.stdout, /^account {5}alice \(alice\.members\.example\)$/m)
      assert.match(who.stdout, /^key {9}ed25519 SHA256:[A-Za-z0-9+/]{43}$/m)
      const wj = JSON.parse((await cli(lab, desktop, ['whois', laptop.ula, '--json'])).stdout) as {
        host: string
        keys: { fingerprint: string }[]
        path: string
      }
      const mine = JSON.parse((await cli(lab, laptop, ['whois', laptop.ula, '--json'])).stdout) as typeof wj & {
        self: boolean
      }
      assert.equal(mine.self, true)
      assert.equal(mine.keys[0]?.fingerprint, wj.keys[0]?.fingerprint, 'the key the desktop sees is the laptop’s own')
      const byAddr = JSON.parse((await cli(lab, laptop, ['whois', '203.0.113.11', '--json'])).stdout) as {
        host: string
        matched: string
      }
      assert.equal(byAddr.host, 'desktop')
      const stranger = await cli(lab, laptop, ['whois', 'fd00::1'])
      assert.notEqual(stranger.code, 0)
      assert.match(stranger.stderr, /not an address of any of alice\.members\.example's hosts/)

      // 5. netcheck on the desktop (home: miniupnpd answers PCP, NAT-PMP and UPnP) and on the phone (symmetric NAT,
      // no mapping protocol), with the servers their agents found by SRV (DNS service, STUN, TURN).
      const ncd = await cli(lab, desktop, ['netcheck', '--json'])
      t.diagnostic(`desktop$ autotunnel netcheck --json\n${ncd.stdout}`)
      assert.equal(ncd.code, 0, ncd.stderr)
      const nd = JSON.parse(ncd.stdout) as NetcheckJson
      assert.equal(nd.portMapping?.pcp.answers, true)
      assert.equal(nd.portMapping?.natpmp.answers, true)
      assert.equal(nd.portMapping?.upnp.answers, true)
      assert.equal(nd.portMapping?.natpmp.externalAddress, '203.0.113.11')
      assert.equal(nd.publicIPv4, '203.0.113.11')
      assert.equal(nd.nat?.nat, true)
      assert.equal(nd.nat?.mapping, 'endpoint-independent', JSON.stringify(nd.nat))
      assert.ok(nd.nat?.filtering, JSON.stringify(nd.nat))
      assert.equal(nd.nat?.otherAddress?.address, '192.0.2.2', 'coturn in the core names its second address')
      assert.equal(nd.dns?.server, '198.51.100.10:53')
      assert.ok((nd.dns?.ms ?? -1) > 0, JSON.stringify(nd.dns))
      assert.deepEqual(
        nd.relays.map((r) => r.server),
        [`${TURN_ADDR}:3478`],
      )
      assert.ok((nd.relays[0]?.ms ?? -1) > 0, JSON.stringify(nd.relays))
      assert.deepEqual(nd.ipv6.addresses, [])
      const ncp = await cli(lab, phone, ['netcheck', '--json'])
      t.diagnostic(`phone$ autotunnel netcheck --json\n${ncp.stdout}`)
      const np = JSON.parse(ncp.stdout) as NetcheckJson
      assert.equal(np.nat?.type, 'symmetric', JSON.stringify(np.nat))
      assert.notEqual(np.nat?.mapping, 'endpoint-independent')
      assert.equal(np.publicIPv4, '203.0.113.14')
      assert.equal(np.portMapping?.pcp.answers, false)
      assert.equal(np.portMapping?.natpmp.answers, false)
      assert.equal(np.portMapping?.upnp.answers, false)
      const text = await cli(lab, phone, ['netcheck'])
      assert.match(text.stdout, /^NAT {9}symmetric: mapping address(-and-port)?-dependent/m)

      // 6. The desktop's /metrics (a real agent, three peers) parses with prometheus_client.
      const prom = await lab.exec('desktop', [
        '/usr/bin/python3',
        '-c',
        PARSE_METRICS,
        `http://127.0.0.1:${METRICS_PORT}/metrics`,
      ])
      assert.equal(prom.code, 0, prom.stderr)
      const fams = JSON.parse(prom.stdout) as Record<string, [string, Record<string, string>, number][]>
      const up = fams.autotunnel_peer_up ?? []
      assert.deepEqual(up.map((x) => x[1].peer).sort(), ['hotel-guest', 'laptop', 'phone'])
      assert.ok(
        up.some((x) => x[1].peer === 'laptop' && x[1].path === 'direct' && x[2] === 1),
        JSON.stringify(up),
      )
      assert.ok((fams.autotunnel_peer_receive_bytes?.find((x) => x[1].peer === 'laptop')?.[2] ?? 0) > 0)

      // 7. The status page in headless Chromium: both of the desktop's peers named (OCR of the screenshot) with
      // their path; then, with one page left open, the laptop roams to the hotel (EIM NAT, no mapping): the same page,
      // never reloaded, shows its new endpoint and path (Server-Sent Events).
      const browser = await Browser.launch(lab.netnsOf('desktop'))
      try {
        await browser.open(`http://127.0.0.1:${PAGE_PORT}/`)
        await waitFor(
          'the page to draw the three peers from its event stream',
          async () =>
            (await browser.eval('document.querySelectorAll("#peers tbody tr").length')) === 3 &&
            String(await browser.eval('document.getElementById("live").textContent')).startsWith('live'),
          10_000,
          100,
        )
        const shot1 = join(dir, 'page-1.png')
        await writeFile(shot1, await browser.screenshot())
        const ocr1 = await ocr(shot1)
        t.diagnostic(`status page (OCR):\n${ocr1}`)
        for (const host of ['laptop', 'hotel-guest', 'phone']) assert.match(ocr1, new RegExp(`^${host} `, 'm'), ocr1)
        // Paths and endpoints from the page's DOM (exact), the names from the pixels (OCR is not exact on digits).
        const rows1 = (await browser.eval(ROWS)) as string[][]
        assert.deepEqual(
          rows1.map((r) => r[0]),
          ['hotel-guest', 'laptop', 'phone'],
        )
        assert.match(
          rows1
            .find((r) => r[0] === 'laptop')
            ?.slice(1, 3)
            .join(' ') ?? '',
          /^direct 203\.0\.113\.12:\d+$/,
        )
        assert.match(
          await fetchIn(lab, 'desktop', `http://127.0.0.1:${PAGE_PORT}/metrics`),
          /^autotunnel_agent_status_page_clients 1$/m,
        )
        const loads = await browser.eval(
          'performance.getEntriesByType("navigation").length + ":" + performance.timeOrigin',
        )
        await lab.move('laptop', 'hotel')
        await waitFor(
          'the open page to show the laptop at the hotel',
          async () =>
            /^203\.0\.113\.13:/.test(
              String(
                await browser.eval(
                  '[...document.querySelectorAll("#peers tbody tr")].find((r) => r.cells[0].textContent === "laptop")?.cells[2].textContent',
                ),
              ),
            ),
          30_000,
          200,
        )
        assert.equal(
          await browser.eval('performance.getEntriesByType("navigation").length + ":" + performance.timeOrigin'),
          loads,
          'not reloaded',
        )
        const shot2 = join(dir, 'page-2.png')
        await writeFile(shot2, await browser.screenshot())
        const ocr2 = await ocr(shot2)
        t.diagnostic(`status page after the roam, same page (OCR):\n${ocr2}`)
        for (const host of ['laptop', 'hotel-guest', 'phone']) assert.match(ocr2, new RegExp(`^${host} `, 'm'), ocr2)
        const rows2 = (await browser.eval(ROWS)) as string[][]
        t.diagnostic(`page rows before the roam ${JSON.stringify(rows1)}, after ${JSON.stringify(rows2)}`)
        assert.match(rows2.find((r) => r[0] === 'laptop')?.[2] ?? '', /^203\.0\.113\.13:\d+$/)
      } finally {
        await browser.close()
      }

      // 8. A host that is down: hotel-guest killed (no clean-up, its records stay until their lease ends).
      process.kill(guest.proc.pid, 'SIGKILL')
      const down = await cli(lab, laptop, ['ping', 'hotel-guest', '-c', '2', '-i', '0', '-W', '1'])
      t.diagnostic(`laptop$ autotunnel ping hotel-guest -c 2 -W 1  (hotel-guest killed)\n${down.stdout}`)
      assert.equal(down.code, 1, down.stdout + down.stderr)
      assert.equal(pongs(down.stdout).length, 0)
      assert.match(down.stdout, /hotel-guest is down or unreachable: no reply to 2 ping\(s\)/)
      const unknown = await cli(lab, laptop, ['ping', 'nosuchhost', '-c', '1'])
      assert.equal(unknown.code, 1)
      assert.match(unknown.stderr, /no host nosuchhost in alice\.members\.example/)
    } catch (e) {
      for (const a of agents)
        t.diagnostic(`${a.host}:\n${await agentLogLines(a, /relay|turn|ike\.|punch|error|warn/, 30)}`)
      throw e
    } finally {
      await Promise.allSettled(agents.map((a) => a.stop()))
      await srv?.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
