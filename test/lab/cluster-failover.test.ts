// Issue 12's failover story in the network lab: three `autotunnel server` nodes (one per internet host of the lab)
// on one throwaway PostgreSQL, behind one zone whose discovery SRV records list every live node; two tunnel agents
// (desktop at home, laptop at the cafe) publish and watch through node 1 (their bootstrap, listed first by it)
// while the laptop pings the desktop's ULA. Node 1 is SIGKILLed: both agents must have their records refreshed and
// their watch re-established through another node within 5 s, a host published after the kill (through node 2)
// must reach both, and the ping must keep going (its longest gap is reported). The agents keep the default 5400 s
// lease: the re-publication comes from the agent noticing its watch was lost (Publisher.refreshNow), not from a
// lease refresh that happens to be due.
//
// PostgreSQL runs in the root namespace; the nodes reach it through its unix socket (a directory under /tmp:
// network namespaces share the filesystem, and `ip netns exec` keeps /tmp).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { Lab, type LabProcess } from '../../lab/index.js'
import { PgCluster } from '../interop/pg-cluster.js'
import { agentLog, type LabAgent, type LabServer, MAIN, startAgent, waitFor, ZONE } from './agent-helpers.js'
import { longestLoss, startTunnelAgent, type TunnelAgent, waitPeer, waitPing } from './tunnel-helpers.js'

const run = promisify(execFile)
const BOUND_MS = 5000
const PING_MS = 50
const NODES = [
  { host: 'server', name: 'ns1', addr: '198.51.100.10' },
  { host: 'server2', name: 'ns2', addr: '198.51.100.11' },
  { host: 'server3', name: 'ns3', addr: '198.51.100.12' },
] as const

const topology = {
  internet: NODES.map((n) => ({ name: n.host, address: n.addr })),
  sites: [
    { name: 'home', nat: 'upnp' as const, wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop'] },
    { name: 'cafe', nat: 'upnp' as const, wan: '203.0.113.12', lan: '10.20.0.0/24', hosts: ['laptop', 'phone'] },
  ],
}

/** The URL of `pg` through its unix socket (reachable from every namespace), same password and port. */
function socketUrl(pg: PgCluster): string {
  const u = new URL(pg.url)
  return `postgres://${u.username}:${u.password}@/postgres?host=${encodeURIComponent(join(pg.dir, 'sock'))}&port=${u.port}`
}

/** The log shows the host-list watch `name` lost and then on DNS Push again (not merely another watch lost). */
function rewatched(log: string, name: string): boolean {
  let lost = false
  for (const line of log.split('\n')) {
    let e: { msg?: string; name?: string; mechanism?: string }
    try {
      e = JSON.parse(line) as typeof e
    } catch {
      continue
    }
    // The agent's log has two "name" keys (the logger's and the watched name): JSON.parse keeps the last.
    if (e.name?.toLowerCase().replace(/\.$/, '') !== name.toLowerCase().replace(/\.$/, '')) continue
    if (e.msg === 'watch.lost') lost = true
    else if (lost && e.msg === 'watch.mechanism' && e.mechanism === 'push') return true
  }
  return false
}

describe('three server nodes on PostgreSQL: the node two tunnel agents use is killed', { timeout: 150_000 }, () => {
  let lab: Lab | undefined
  let pg: PgCluster | undefined
  let data: string | undefined
  let srv: LabServer
  const procs: (LabProcess | undefined)[] = []
  const agents: LabAgent[] = []
  let pinger: LabProcess | undefined

  before(async () => {
    data = await mkdtemp(join(tmpdir(), 'at-cluster-'))
    pg = await PgCluster.start()
    lab = await Lab.up({ topology })
    // One certificate for every node (the agents' --ca), naming each node's server name and address.
    const san = [`DNS:ns.${ZONE}`, ...NODES.flatMap((n) => [`DNS:${n.name}.${ZONE}`, `IP:${n.addr}`])].join(',')
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(data, 'tls.key'),
      '-out',
      join(data, 'tls.crt'),
      '-days',
      '2',
      '-subj',
      `/CN=ns1.${ZONE}`,
      '-addext',
      `subjectAltName=${san}`,
    ])
    const add = await run('node', [MAIN, 'account', 'add', 'alice', '--store', pg.url, '--zone', ZONE, '--json'])
    const key = JSON.parse(add.stdout) as { keyName: string; secret: string; algorithm: string }
    const keyFile = join(data, 'alice.key.json')
    await writeFile(keyFile, add.stdout)
    const url = socketUrl(pg)
    for (const [i, n] of NODES.entries())
      procs[i] = lab.spawn(
        n.host,
        [
          'node',
          MAIN,
          'server',
          '--zone',
          ZONE,
          '--store',
          url,
          '--listen',
          `${n.addr}:53`,
          '--tls-listen',
          `${n.addr}:853`,
          '--tls-cert',
          join(data, 'tls.crt'),
          '--tls-key',
          join(data, 'tls.key'),
          '--advertise',
          `${n.name}:${n.addr}`,
          '--lease-min',
          '2',
        ],
        { logName: `autotunnel-${n.name}` },
      )
    // Every node answers, and lists all three in its discovery SRV records.
    for (const n of NODES)
      await waitFor(
        `${n.name} to list the three nodes`,
        async () => {
          const r = await lab!.exec(n.host, [
            'dig',
            `@${n.addr}`,
            '+short',
            '+time=1',
            '+tries=1',
            `_dns-push-tls._tcp.alice.${ZONE}`,
            'SRV',
          ])
          return r.stdout.trim().split('\n').filter(Boolean).length === 3
        },
        20_000,
        200,
      ).catch(async (e: Error) => {
        throw new Error(`${e.message}\n${await readFile(procs[NODES.indexOf(n)]!.log, 'utf8').catch(() => '')}`)
      })
    srv = {
      data,
      keyFile,
      key,
      proc: procs[0]!,
      digKey: `${key.algorithm}:${key.keyName}:${key.secret}`,
      bobDigKey: '',
      stop: async () => {},
    }
  })

  after(async () => {
    pinger?.stop()
    for (const a of agents) await a.stop().catch(() => {})
    for (const p of procs) p?.stop()
    // The nodes' pools hold connections: give SIGTERM/SIGKILL time before PostgreSQL goes.
    await new Promise((r) => setTimeout(r, 1700))
    await lab?.down()
    await pg?.destroy()
    if (data) await rm(data, { recursive: true, force: true })
  })

  it('both agents re-publish and re-watch through another node within 5 s; the ping keeps going', async (t) => {
    const desktop = await startTunnelAgent(lab!, srv, 'desktop')
    agents.push(desktop)
    const laptop = await startTunnelAgent(lab!, srv, 'laptop')
    agents.push(laptop)
    await waitPeer(laptop, 'desktop', desktop.ula)
    await waitPeer(desktop, 'laptop', laptop.ula)
    await waitPing(lab!, 'laptop', desktop.ula)
    const both: TunnelAgent[] = [desktop, laptop]
    const onNode1 = (via: string | null): boolean => !!via && (via.includes('ns1.') || via.includes(NODES[0].addr))
    for (const a of both)
      await waitFor(
        `${a.host} published through node 1 and watching via push`,
        async () => {
          const s = await a.status()
          return s.published.state === 'published' && onNode1(s.published.via) && s.watchers[0]!.via === 'push'
        },
        20_000,
        100,
      )

    pinger = lab!.spawn('laptop', ['ping', '-6', '-n', '-i', String(PING_MS / 1000), '-W', '1', desktop.ula], {
      logName: 'ping-laptop-desktop',
    })
    await new Promise((r) => setTimeout(r, 1000))
    const logAt = new Map<string, number>()
    const updatesAt = new Map<string, number>()
    for (const a of both) {
      logAt.set(a.host, (await agentLog(a)).length)
      updatesAt.set(a.host, (await a.status()).published.updates)
    }

    const pid = procs[0]!.pid
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      process.kill(pid, 'SIGKILL')
    }
    const killed = performance.now()

    const recovered = await Promise.all(
      both.map(async (a) => {
        const since = async (): Promise<string> => (await agentLog(a)).slice(logAt.get(a.host))
        let published = 0
        let watched = 0
        try {
          await waitFor(
            `${a.host} to re-publish and re-watch through another node`,
            async () => {
              const s = await a.status()
              if (
                !published &&
                s.published.state === 'published' &&
                s.published.via &&
                !onNode1(s.published.via) &&
                s.published.updates > updatesAt.get(a.host)!
              )
                published = performance.now() - killed
              if (!watched && s.watchers[0]!.via === 'push' && rewatched(await since(), s.watchers[0]!.name))
                watched = performance.now() - killed
              return published > 0 && watched > 0
            },
            3 * BOUND_MS,
            25,
          )
        } catch (e) {
          throw new Error(`${(e as Error).message}\n${(await since()).slice(-4000)}`)
        }
        const s = await a.status()
        return { host: a.host, published, watched, via: s.published.via }
      }),
    )
    for (const r of recovered)
      t.diagnostic(
        `${r.host}: re-published via ${r.via} ${r.published.toFixed(0)} ms, Push watch re-established ${r.watched.toFixed(0)} ms after the SIGKILL of node 1`,
      )
    const failover = Math.max(...recovered.flatMap((r) => [r.published, r.watched]))
    t.diagnostic(
      `failover time (SIGKILL of node 1 to both agents re-published and re-watching): ${failover.toFixed(0)} ms`,
    )

    // A change after the kill: a third host publishes through node 2 and both agents learn of it.
    const phone = await startAgent(lab!, srv, 'phone', ['--no-portmap', '--server', `${NODES[1].addr}:53`])
    agents.push(phone)
    await waitFor('the phone published', async () => (await phone.status()).published.state === 'published', 15_000, 50)
    const phonePublished = performance.now()
    for (const a of both)
      await waitFor(
        `${a.host} to learn of the phone`,
        async () => (await a.status()).watchers[0]!.records.some((r) => /\bphone\./i.test(r)),
        BOUND_MS,
        50,
      )
    t.diagnostic(`both agents knew the phone ${(performance.now() - phonePublished).toFixed(0)} ms after it published`)

    pinger.stop()
    await new Promise((r) => setTimeout(r, 300))
    const loss = longestLoss(await readFile(pinger.log, 'utf8'))
    t.diagnostic(
      `ping -i ${PING_MS / 1000} laptop -> desktop ULA across the kill: ${loss.answered} answered, longest gap ${loss.gap} echoes (~${loss.gap * PING_MS} ms)`,
    )
    assert.ok(loss.answered > 20, `the ping ran (${loss.answered} answered)`)
    assert.ok(loss.gap * PING_MS <= 1000, `the ping kept going: longest gap ${loss.gap} echoes`)
    for (const r of recovered) {
      assert.ok(
        r.published <= BOUND_MS,
        `${r.host} re-published through another node ${r.published.toFixed(0)} ms after the kill`,
      )
      assert.ok(r.watched <= BOUND_MS, `${r.host} re-watched ${r.watched.toFixed(0)} ms after the kill`)
    }
  })
})
