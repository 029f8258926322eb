// Found by the soak run (docs/soak.md): a gateway restart flushes its connection tracking, so the DNS Push
// sessions of the hosts behind it are dead without a FIN or RST ever reaching them; until the next DSO keepalive
// (the server asks for one a minute) such a host missed every change of its peers, here the new ULA of a peer
// whose agent was killed and started again. The agent now opens its watchers again when its mapper sees the
// gateway restart (PCP epoch reset) or a new public address.
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { withLab } from '../../lab/index.js'
import { type LabServer, startServer, waitFor } from './agent-helpers.js'
import { startTunnelAgent, type TunnelAgent, waitPeer } from './tunnel-helpers.js'

/** Well under the minute of a DSO keepalive, with room for a loaded machine. */
const LEARN_MS = 20_000

test('after its gateway restarts, an agent still learns at once that a peer came back with a new ULA', {
  timeout: 120_000,
}, async (t) => {
  await withLab(t, { sites: ['home', 'cafe'] }, async (lab) => {
    let srv: LabServer | undefined
    const agents: TunnelAgent[] = []
    try {
      srv = await startServer(lab, { leaseMin: 30 })
      const desktop = await startTunnelAgent(lab, srv, 'desktop')
      agents.push(desktop)
      let laptop = await startTunnelAgent(lab, srv, 'laptop')
      agents.push(laptop)
      await waitPeer(desktop, 'laptop', laptop.ula)
      await lab.restartGateway('home')
      const logOf = () => readFile(desktop.proc.log, 'utf8')
      // Either event means the gateway's state is gone (run.ts GATEWAY_STATE_LOST): 'recreated' when the renewal
      // got the same external port back with an epoch that went back, 'external-changed' when the restarted
      // gateway gave another port (waiting for 'recreated' alone failed one clean-clone run under load).
      const lost = (log: string): boolean =>
        log
          .split('\n')
          .some((l) => l.includes('"msg":"portmap.state"') && /"reason":"(recreated|external-changed)"/.test(l))
      await waitFor('the desktop to see the home gateway restart', async () => lost(await logOf()), 20_000, 200).catch(
        async (e: unknown) => {
          const seen = (await logOf()).split('\n').filter((l) => l.includes('portmap'))
          throw new Error(`${String(e)}\ndesktop's portmap log lines:\n${seen.slice(-15).join('\n')}`)
        },
      )
      const how = (await logOf()).split('\n').filter((l) => l.includes('"msg":"portmap.state"'))
      t.diagnostic(`desktop's mapper after the restart: ${how.slice(-1)[0]?.match(/"reason":"[a-z-]+"/)?.[0] ?? '?'}`)
      process.kill(-laptop.proc.pid, 'SIGKILL')
      await new Promise((r) => setTimeout(r, 300))
      const killedAt = performance.now()
      laptop = await startTunnelAgent(lab, srv, 'laptop', [], laptop.state)
      agents.push(laptop)
      await waitPeer(desktop, 'laptop', laptop.ula, LEARN_MS)
      t.diagnostic(`desktop learned the laptop's new ULA ${Math.round(performance.now() - killedAt)} ms after the kill`)
    } finally {
      for (const a of agents.reverse()) await a.stop().catch(() => {})
      await srv?.stop()
    }
  })
})
