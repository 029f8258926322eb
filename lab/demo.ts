// `autotunnel demo` (`make demo`): the whole story in the lab, printed as a timeline a newcomer can follow.
// server up -> two homes (desktop at home, laptop at the cafe, each behind a miniupnpd router) -> records published
// (dig) -> peers learned from DNS -> ssh from the laptop to the desktop by name (the agent's resolver) -> the laptop
// roams to the hotel while the ssh session streams -> the session carries on -> everything torn down.
// Everything runs as real processes in network namespaces; Ctrl-C tears it all down (the lab's signal guard).
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { dig, type LabServer, MAIN, SERVER_ADDR, startServer, ZONE } from '../test/lab/agent-helpers.js'
import {
  DOMAIN,
  LAB_RESOLVER,
  ping,
  startSshd,
  startTunnelAgent,
  type TunnelAgent,
  waitPeer,
  waitPing,
} from '../test/lab/tunnel-helpers.js'
import { Lab } from './lab.js'

const t0 = performance.now()
const out = (s: string): void => {
  process.stdout.write(`${s}\n`)
}
const step = (s: string): void => out(`\n[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${s}`)
const note = (s: string): void => out(`          ${s}`)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export async function runDemo(opts: { ticks?: number } = {}): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      'autotunnel demo needs root: it builds network namespaces, NAT gateways and TUN devices.\n' +
        'Run it as root, e.g. `sudo make demo` or `sudo bin/autotunnel demo`.\n',
    )
    return 1
  }
  const temp: string[] = []
  let logDir: string | undefined
  const onExit = (): void => {
    for (const d of temp) rmSync(d, { recursive: true, force: true })
    if (logDir)
      process.stderr.write(
        `\ninterrupted: the lab is torn down; its logs are kept in ${logDir} (\`autotunnel lab clean\` removes them)\n`,
      )
  }
  process.on('exit', onExit)
  out('autotunnel demo: Back to My Mac, rebuilt. Reach your machines by name, end to end encrypted, across NATs.')
  step('building the lab: an internet core, the server, three sites behind NAT routers')
  const lab = await Lab.up({ sites: ['home', 'cafe', 'hotel'] })
  logDir = lab.dir
  let srv: LabServer | undefined
  const agents: TunnelAgent[] = []
  try {
    note(`lab run ${lab.name} (namespaces atl-${lab.name}-*)`)
    note(
      `home   router ${lab.publicIpOf('home')} (miniupnpd: PCP, NAT-PMP, UPnP)  host desktop ${lab.addressOf('desktop')}`,
    )
    note(
      `cafe   router ${lab.publicIpOf('cafe')} (miniupnpd)                        host laptop  ${lab.addressOf('laptop')}`,
    )
    note(`hotel  router ${lab.publicIpOf('hotel')} (plain NAT, no mapping protocol)`)

    step(`server up: autotunnel server at ${SERVER_ADDR}, authoritative for ${ZONE}; account alice -> ${DOMAIN}`)
    srv = await startServer(lab, { leaseMin: 30 })
    temp.push(srv.data)
    note('DNS UPDATE (TSIG), update leases, LLQ and DNS Push, over UDP, TCP and TLS')

    step('two homes: `autotunnel up` on the desktop (home) and on the laptop (cafe)')
    const desktop = await startTunnelAgent(lab, srv, 'desktop')
    agents.push(desktop)
    temp.push(desktop.state)
    const laptop = await startTunnelAgent(lab, srv, 'laptop')
    agents.push(laptop)
    temp.push(laptop.state)
    for (const a of [desktop, laptop]) {
      const s = await a.status()
      note(
        `${a.host.padEnd(8)} ULA ${a.ula}  label ${s.identity.label}  ` +
          `port map ${s.portMapping ? `${s.portMapping.protocol} ${s.portMapping.external.address}:${s.portMapping.external.port}` : 'pending'}`,
      )
    }

    step("records published: what any of alice's hosts reads (dig -y with her key, from the server)")
    const dPeer = await waitPeer(laptop, 'desktop', desktop.ula)
    await waitPeer(desktop, 'laptop', laptop.ula)
    const srvLines = await dig(lab, srv, `_autotunnel._udp.desktop.${DOMAIN}`, 'SRV', srv.digKey, true)
    for (const l of srvLines) note(l)
    const target = srvLines[0]?.split(' ').pop() ?? ''
    for (const type of ['AAAA', 'A', 'TXT'])
      for (const l of await dig(lab, srv, target, type, srv.digKey, true)) note(l)
    const via = (await laptop.status()).watchers[0]?.via ?? '?'
    note(
      `the laptop learned the desktop from DNS (host list watched via ${via}): ULA ${dPeer.ula}, endpoint ${dPeer.endpoint}`,
    )

    step("the laptop's local resolver answers alice's host names with their ULAs")
    const d = await lab.exec('laptop', ['dig', `@${LAB_RESOLVER}`, '+short', 'desktop', 'AAAA'])
    note(`dig @${LAB_RESOLVER} desktop AAAA  ->  ${d.stdout.trim()}`)
    await waitPing(lab, 'laptop', desktop.ula)
    const p = await ping(lab, 'laptop', desktop.ula, 5)
    note(
      `ping -6 desktop's ULA: ${p.rtts.map((x) => `${x} ms`).join(', ')} (IKEv2 keyed the tunnel on the first packet)`,
    )

    step('ssh from the laptop to the desktop by name: `ssh root@desktop` (OpenSSH, over the ULAs)')
    const sshd = await startSshd(lab, 'desktop', desktop.ula)
    temp.push(sshd.dir)
    const ticks = opts.ticks ?? 60
    const remote = `for i in $(seq 1 ${ticks}); do echo "tick $i at $(date +%T.%3N)"; sleep 0.1; done`
    const [cmd, ...args] = lab.argv('laptop', [...sshd.ssh, 'root@desktop', remote])
    const child = spawn(cmd ?? 'ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let last = performance.now()
    let maxGap = 0
    let lines = 0
    let moved = false
    const rl = createInterface({ input: child.stdout })
    const ended = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)))
    rl.on('line', (line) => {
      const now = performance.now()
      if (moved) maxGap = Math.max(maxGap, now - last)
      last = now
      lines++
      if (lines <= 3 || lines % 10 === 0 || (moved && lines % 5 === 0)) note(`ssh desktop> ${line}`)
    })
    await sleep(Math.min(2500, ticks * 40))
    step('the laptop roams: it leaves the cafe and joins the hotel Wi-Fi (new address, new NAT, no port mapping)')
    moved = true
    last = performance.now()
    await lab.move('laptop', 'hotel')
    note(`laptop is now ${lab.addressOf('laptop')} behind ${lab.publicIpOf('hotel')}; its ULA and the ssh session stay`)
    const code = await ended
    step(
      `the session carried on: ${lines} lines, ssh exit code ${code}, longest gap after the move ${maxGap.toFixed(0)} ms`,
    )
    const peers = await desktop.peers()
    const lp = peers.find((x) => x.name === 'laptop')
    note(`the desktop now reaches the laptop at ${lp?.endpoint} (learned from its authenticated packets and MOBIKE)`)
    note(`tunnel counters: ${lp?.bytesIn} bytes in, ${lp?.bytesOut} bytes out; last handshake ${lp?.lastHandshake}`)
    step('`autotunnel status` on the desktop: its peers')
    const st = await lab.exec('desktop', [process.execPath, MAIN, 'status', '--state', desktop.state])
    const rows = st.stdout.split('\n')
    const at = rows.findIndex((l) => l.startsWith('peers'))
    for (const l of rows.slice(at, at + 4).filter(Boolean)) note(l)
    await sshd.stop()
    return code === 0 ? 0 : 1
  } finally {
    step('tearing everything down: agents, server, gateways, namespaces')
    for (const a of agents) await a.stop().catch(() => {})
    await srv?.stop().catch(() => {})
    await lab.down()
    logDir = undefined
    onExit()
    process.off('exit', onExit)
    step('done')
  }
}
