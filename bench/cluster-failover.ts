// bench/cluster's failover part (see failoverBench).
import { UpdateClient } from '../src/dns/client/update.js'
import { Watcher } from '../src/dns/client/watcher.js'
import { RRClass, RRType } from '../src/dns/wire/rr-table.js'
import { SystemClock } from '../src/io/clock.js'
import { MemoryLogger } from '../src/io/log.js'
import { NotifyServer, tsigKey } from '../test/interop/notify-harness.js'
import type { PgCluster } from '../test/interop/pg-cluster.js'
import { type AccountJson, ZONE } from '../test/interop/server-harness.js'
import { median } from './cluster-accounting.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Failover: three nodes (TLS, each advertising its own name); an agent's watcher (DNS Push) and update client (DNS
 * over TLS, the agent's default) both use node V (their bootstrap, first in V's SRV answers); V is SIGKILLed. As the agent does (src/agent/attach.ts),
 * the watcher's onLost re-publishes through the update client. Measured from the SIGKILL: the watch re-established
 * through another node, the records refreshed (an UPDATE with its lease accepted by another node), and the later of
 * the two. V is restarted between repetitions, and each repetition kills another node.
 */
export async function failoverBench(pg: PgCluster, acct: AccountJson, reps: number): Promise<string> {
  const nodes = [1, 2, 3].map(
    // The update runs before it leave the account far over the default record quota.
    (i) => new NotifyServer(['--log-level', 'warn', '--max-records', '100000000', '--advertise', `ns${i}:127.0.0.1`]),
  ) as NotifyServer[]
  const watchMs: number[] = []
  const publishMs: number[] = []
  const bothMs: number[] = []
  try {
    for (const n of nodes) n.store = pg.url
    await Promise.all(nodes.map((n) => n.start()))
    const key = tsigKey(acct)
    const domain = `bench.${ZONE}`
    const srvPorts = async (n: NotifyServer): Promise<string> =>
      (await n.dig(['+short', `_dns-update._udp.${domain}.`, 'SRV'])).stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[2])
        .sort()
        .join(',')
    const allPorts = nodes
      .map((n) => String(n.dnsPort))
      .sort()
      .join(',')
    const everyNodeListed = async (): Promise<void> => {
      for (let t = 0; t < 300; t++) {
        const seen = await Promise.all(nodes.map(srvPorts))
        if (seen.every((x) => x === allPorts)) return
        await sleep(50)
      }
      throw new Error(
        `failover: the nodes do not all list each other (${allPorts}: ${await Promise.all(nodes.map(srvPorts))})`,
      )
    }
    for (let rep = 0; rep < reps; rep++) {
      await everyNodeListed()
      const victim = nodes[rep % nodes.length]!
      const name = `fo${rep}-${process.pid}.${domain}.`
      const log = new MemoryLogger()
      const w = new Watcher(
        { log },
        {
          name,
          type: RRType.AAAA,
          domain,
          server: { host: '127.0.0.1', port: victim.dnsPort },
          key,
          tls: { rejectUnauthorized: false },
          mechanisms: ['push'],
        },
      )
      const uc = new UpdateClient(
        { clock: new SystemClock(), log },
        // TLS, as the agent by default (each node has its own self-signed certificate here: not pinned);
        // BENCH_FAILOVER_UPDATE=udp: plain UDP (`up --no-tls` style).
        {
          bootstrap: { host: '127.0.0.1', port: victim.dnsPort },
          domain,
          key,
          ...(process.env.BENCH_FAILOVER_UPDATE === 'udp' ? {} : { tls: { insecure: true } }),
        },
      )
      const viaVictim = (via: string): boolean =>
        via.endsWith(`:${victim.dnsPort}`) || via.endsWith(`:${victim.tlsPort}`)
      const publish = (addr: string) =>
        uc.update({
          zone: ZONE,
          updates: [{ name, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: addr } }],
          leaseSec: 3600,
        })
      try {
        const first = await publish('fd00::1')
        if (!viaVictim(first.via)) throw new Error(`failover: published via ${first.via}`)
        if ((await w.start()) !== 'push') throw new Error('failover: no Push watch')
        const pushes = () =>
          log.entries.filter((e) => e.event === 'watch.mechanism' && e.fields.mechanism === 'push').length
        let killedAt = 0
        let published = 0
        let publishing = false
        // The agent: when a watch is lost, re-publish now (it retries until an UPDATE is accepted).
        w.onLost(() => {
          if (publishing || published) return
          publishing = true
          void (async () => {
            for (let i = 0; i < 20 && !published; i++) {
              try {
                const r = await publish('fd00::1')
                if (!viaVictim(r.via)) published = performance.now()
              } catch {
                // The dead node's timeout; the client skips it from now on.
              }
            }
          })()
        })
        await victim.stop('SIGKILL')
        killedAt = performance.now()
        let watched = 0
        while ((!watched || !published) && performance.now() - killedAt < 15_000) {
          if (!watched && pushes() >= 2) watched = performance.now()
          await sleep(5)
        }
        if (!watched || !published) throw new Error(`failover: rep ${rep} not recovered within 15 s`)
        watchMs.push(watched - killedAt)
        publishMs.push(published - killedAt)
        bothMs.push(Math.max(watched, published) - killedAt)
        console.log(
          `  failover rep=${rep + 1} killed node ${nodes.indexOf(victim) + 1}: watch re-established ${(watched - killedAt).toFixed(0)} ms, ` +
            `records refreshed ${(published - killedAt).toFixed(0)} ms`,
        )
      } finally {
        await w.close()
      }
      await victim.start()
    }
  } finally {
    await Promise.all(nodes.map((n) => n.cleanup()))
  }
  const f = (xs: number[]): string => `p50 ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`
  return (
    `failover (${reps} SIGKILLs of the node a watcher and an update client use): watch re-established ` +
    `${f(watchMs)}; records refreshed through another node ${f(publishMs)}; both ${f(bothMs)}`
  )
}
