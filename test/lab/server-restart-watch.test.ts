// Issue 13 finding 2: after a server restart every watch mechanism notices and resubscribes within 5 s, so a host
// started after the restart becomes known to the watchers within 5 s: over DNS Push (the TLS connection closes; the
// back-off is capped at 4 s however long the server was away) and over LLQ on UDP (nothing closes: the client's
// refresh every 3 s gets NO-SUCH-LLQ from the restarted server). The server stays away 6 s, long enough for an
// uncapped back-off to have grown past 5 s.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Lab, type LabProcess } from '../../lab/index.js'
import {
  agentLog,
  type LabAgent,
  type LabServer,
  SERVER_ADDR,
  serverArgv,
  startAgent,
  startServer,
  waitFor,
  ZONE,
} from './agent-helpers.js'

const DOWN_MS = 6000
const BOUND_MS = 5000

const topology = {
  internet: [{ name: 'server', address: SERVER_ADDR }],
  sites: [
    { name: 'home', nat: 'eim' as const, wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop'] },
    { name: 'cafe', nat: 'eim' as const, wan: '203.0.113.12', lan: '10.20.0.0/24', hosts: ['laptop', 'phone'] },
  ],
}

describe('watchers after a server restart', { timeout: 120_000 }, () => {
  let lab: Lab
  let srv: LabServer
  let restarted: LabProcess | undefined
  const agents: LabAgent[] = []
  before(async () => {
    lab = await Lab.up({ topology })
    srv = await startServer(lab)
  })
  after(async () => {
    for (const a of agents) await a.stop().catch(() => {})
    restarted?.stop()
    await srv?.stop()
    await lab?.down()
  })

  const hostList = async (a: LabAgent) => (await a.status()).watchers[0]!

  it('DNS Push and LLQ over UDP learn of a host started after the restart within 5 s', async (t) => {
    const push = await startAgent(lab, srv, 'laptop', ['--no-portmap'])
    agents.push(push)
    const llq = await startAgent(lab, srv, 'phone', ['--no-portmap', '--no-tls'])
    agents.push(llq)
    for (const [a, via] of [
      [push, 'push'],
      [llq, 'llq'],
    ] as const)
      await waitFor(`${a.host} watching via ${via}`, async () => (await hostList(a)).via === via, 20_000, 100)

    // Restart: stop, stay away DOWN_MS, start on the same data directory.
    const pid = String(srv.proc.pid)
    srv.proc.stop()
    await waitFor('the server to exit', async () => (await lab.exec('server', ['kill', '-0', pid])).code !== 0, 5000)
    await new Promise((r) => setTimeout(r, DOWN_MS))
    restarted = lab.spawn('server', serverArgv(srv.data), { logName: 'autotunnel-server-2' })
    await waitFor(
      'the restarted server to answer',
      async () =>
        (
          await lab.exec('server', ['dig', `@${SERVER_ADDR}`, '+short', '+time=1', '+tries=1', ZONE, 'SOA'])
        ).stdout.startsWith(`ns.${ZONE}.`),
      10_000,
      100,
    )
    const ready = performance.now()

    const desktop = await startAgent(lab, srv, 'desktop', ['--no-portmap'])
    agents.push(desktop)
    await waitFor(
      'the desktop published',
      async () => (await desktop.status()).published.state === 'published',
      15_000,
      50,
    )
    const published = performance.now()
    t.diagnostic(`desktop published ${(published - ready).toFixed(0)} ms after the server was back`)

    const known = await Promise.all(
      [push, llq].map(async (a) => {
        try {
          await waitFor(
            `${a.host} to learn of the desktop`,
            async () => (await hostList(a)).records.some((r) => /\bdesktop\./i.test(r)),
            BOUND_MS,
            50,
          )
        } catch (e) {
          throw new Error(`${(e as Error).message}\n${(await agentLog(a)).slice(-3000)}`)
        }
        return { host: a.host, ms: performance.now() - published, via: (await hostList(a)).via }
      }),
    )
    for (const k of known)
      t.diagnostic(`${k.host}: knew the desktop ${k.ms.toFixed(0)} ms after it published (via ${k.via})`)
    const watchLog = async (a: LabAgent) =>
      (await agentLog(a))
        .split('\n')
        .filter((l) => l.includes('"c":"watch"') && l.includes('_autotunnel._udp.alice'))
        .join('\n')
        .slice(-3000)
    // While the server is away the Push agent's SRV look-ups time out; when the server returns during the LLQ step
    // it may settle on LLQ over TLS, which also sees the next restart at once (the connection closes). It does not
    // go back to Push by itself (docs/notify.md).
    assert.ok(['push', 'llq'].includes(known[0]!.via), await watchLog(push))
    assert.equal(known[1]!.via, 'llq', await watchLog(llq))
  })
})
