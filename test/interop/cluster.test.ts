// Three `autotunnel server` nodes sharing one throwaway PostgreSQL 15 (docs/cluster.md): an UPDATE through node 1
// is answered by nodes 2 and 3 (dig -y) and reaches an LLQ watcher on node 2 and a DNS Push watcher on node 3; an
// account added with the CLI is in force on every node within 1 s; a lease granted by node 1 expires exactly once
// (one 'expire' row in the change feed) while node 1 is down.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { UpdateClient } from '../../src/dns/client/update.js'
import { type WatchEvent, Watcher } from '../../src/dns/client/watcher.js'
import { type AAAAData, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { SystemClock } from '../../src/io/clock.js'
import { MemoryLogger } from '../../src/io/log.js'
import {
  type NotifyServer,
  runPython,
  threeNodeCluster,
  tsigArg,
  tsigKey,
  waitFor,
  watcherOptions,
  ZONE,
} from './notify-harness.js'

const EXTRA = ['--lease-min', '1', '--lease-max', '2', '--llq-lease-min', '60', '--llq-lease-max', '60']
const cluster = threeNodeCluster(EXTRA)
const { nodes } = cluster
const [n1, n2, n3] = nodes

const rnd = (): string => Math.random().toString(36).slice(2, 8)
const addrs = (rrs: readonly { data: unknown }[]): string[] => rrs.map((r) => (r.data as AAAAData).address).sort()

/** Retries `fn` until it returns a value or `ms` pass; resolves with the value and the time it took. */
async function within<T>(ms: number, what: string, fn: () => Promise<T | undefined>): Promise<{ v: T; ms: number }> {
  const t0 = performance.now()
  for (;;) {
    const v = await fn()
    if (v !== undefined) return { v, ms: performance.now() - t0 }
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function watcherOn(n: NotifyServer, name: string, mech: 'llq' | 'push'): Watcher {
  return new Watcher({}, watcherOptions(n, cluster.alice, name, { mechanisms: [mech] }))
}

test('nsupdate through node 1: dig -y on nodes 2 and 3, an LLQ watcher on node 2 and a Push watcher on node 3', async (t) => {
  const name = `c-${rnd()}.alice.${ZONE}.`
  const llq = watcherOn(n2, name, 'llq')
  const push = watcherOn(n3, name, 'push')
  t.after(() => Promise.all([llq.close(), push.close()]))
  assert.equal(await llq.start(), 'llq')
  assert.equal(await push.start(), 'push')
  const seen = (w: Watcher, what: string) =>
    waitFor<WatchEvent, number>(
      (h) => w.onEvent(h),
      (e) => (e.kind === 'add' && addrs(e.records).includes('fd00::c1') ? performance.now() : undefined),
      5000,
      what,
    )
  const llqSeen = seen(llq, 'LLQ event on node 2')
  const pushSeen = seen(push, 'Push event on node 3')
  const r = await n1.nsupdate(cluster.alice, [`update add ${name} 60 AAAA fd00::c1`])
  const answered = performance.now()
  assert.equal(r.code, 0, r.stderr)
  const [l, p] = await Promise.all([llqSeen, pushSeen])
  t.diagnostic(
    `LLQ on node 2 ${(l - answered).toFixed(0)} ms, Push on node 3 ${(p - answered).toFixed(0)} ms after nsupdate exited`,
  )
  for (const n of [n2, n3]) {
    const { ms } = await within(1000, `dig on port ${n.dnsPort}`, async () => {
      const d = await n.dig(['-y', tsigArg(cluster.alice), '+short', name, 'AAAA'])
      return d.stdout.trim() === 'fd00::c1' ? true : undefined
    })
    t.diagnostic(`dig -y on node port ${n.dnsPort}: answered ${ms.toFixed(0)} ms after the watchers`)
  }
  // A removal through node 3 reaches the LLQ watcher on node 2 and node 1's answers.
  const removed = waitFor<WatchEvent, true>(
    (h) => llq.onEvent(h),
    (e) => (e.kind === 'remove' ? true : undefined),
    5000,
    'LLQ removal on node 2',
  )
  assert.equal((await n3.nsupdate(cluster.alice, [`update delete ${name} AAAA`])).code, 0)
  await removed
  await within(1000, 'removal on node 1', async () => {
    const d = await n1.dig(['-y', tsigArg(cluster.alice), name, 'AAAA'])
    return d.stdout.includes('status: NXDOMAIN') ? true : undefined
  })
  // The zone serial is the feed position: once caught up, every node answers the same one.
  const serial = async (n: NotifyServer): Promise<string> =>
    (await n.dig(['+short', `${ZONE}.`, 'SOA'])).stdout.split(' ')[2] ?? ''
  await within(1000, 'same serial on all nodes', async () => {
    const s = await Promise.all(nodes.map(serial))
    return s[0] !== '' && s.every((x) => x === s[0]) ? s[0] : undefined
  })
})

test('an account added with the CLI is in force on every node within 1 s; its updates are accepted by node 1', async (t) => {
  const user = `u${rnd()}`
  const acct = await n3.addAccount(user)
  const added = performance.now()
  const name = `h.${user}.${ZONE}`
  const { ms } = await within(1000, 'update signed by the new key accepted by node 1', async () => {
    const r = await n1.nsupdate(acct, [`update add ${name} 60 AAAA fd00::a1`])
    return r.code === 0 ? true : undefined
  })
  t.diagnostic(
    `new account usable on node 1 ${(performance.now() - added).toFixed(0)} ms after the CLI returned (${ms.toFixed(0)} ms of retries)`,
  )
  for (const n of [n2, n3])
    await within(1000, 'record on the other nodes', async () => {
      const d = await n.dig(['-y', tsigArg(acct), '+short', name, 'AAAA'])
      return d.stdout.trim() === 'fd00::a1' ? true : undefined
    })
})

test('discovery SRV records list every live node; a killed node is withdrawn within 10 s', async (t) => {
  const srv = async (n: NotifyServer, service: string): Promise<string[]> =>
    (await n.dig(['+short', `${service}.alice.${ZONE}.`, 'SRV'])).stdout.trim().split('\n').filter(Boolean).sort()
  const want = (ns: NotifyServer[], tls: boolean): string[] =>
    ns.map((n) => `0 1 ${tls ? n.tlsPort : n.dnsPort} ns${nodes.indexOf(n) + 1}.${ZONE}.`).sort()
  for (const n of nodes) {
    await within(5000, 'every node listed', async () =>
      JSON.stringify(await srv(n, '_dns-update._udp')) === JSON.stringify(want(nodes, false)) ? true : undefined,
    )
    assert.deepEqual(await srv(n, '_dns-push-tls._tcp'), want(nodes, true))
  }
  // The targets' addresses are answered by every node, with the SRV answer's additional data too.
  const a = await n1.dig(['+short', `ns3.${ZONE}.`, 'A'])
  assert.equal(a.stdout.trim(), '127.0.0.1')
  const full = await n2.dig([`_dns-update._udp.alice.${ZONE}.`, 'SRV'])
  assert.match(full.stdout, new RegExp(`ns1\\.${ZONE.replace('.', '\\.')}\\.\\s+\\d+\\s+IN\\s+A\\s+127\\.0\\.0\\.1`))
  await n3.stop('SIGKILL')
  const t0 = performance.now()
  for (const n of [n1, n2])
    await within(10_000, 'node 3 withdrawn', async () =>
      JSON.stringify(await srv(n, '_dns-update._udp')) === JSON.stringify(want([n1, n2], false)) ? true : undefined,
    )
  t.diagnostic(`node 3 withdrawn from the SRV records ${(performance.now() - t0).toFixed(0)} ms after its SIGKILL`)
  // ns3 is no longer a node: like any name an account could own, it is private (REFUSED unsigned).
  assert.match((await n1.dig([`ns3.${ZONE}.`, 'A'])).stdout, /status: REFUSED/)
  await n3.start()
  await within(5000, 'node 3 listed again', async () =>
    JSON.stringify(await srv(n1, '_dns-update._udp')) === JSON.stringify(want(nodes, false)) ? true : undefined,
  )
})

test('a Push watcher whose node is killed re-subscribes through another node (RFC 2782 next target) within 5 s', async (t) => {
  const name = `fo-${rnd()}.alice.${ZONE}.`
  const log = new MemoryLogger()
  // Each node has its own self-signed certificate: no pin here (a deployment gives each node a CA-signed one).
  const w = new Watcher(
    { log },
    {
      name,
      type: RRType.AAAA,
      domain: `alice.${ZONE}`,
      server: { host: '127.0.0.1', port: n1.dnsPort },
      key: tsigKey(cluster.alice),
      tls: { rejectUnauthorized: false },
      mechanisms: ['push'],
      retryMinMs: 100,
      retryMaxMs: 500,
      timeoutMs: 1000,
    },
  )
  t.after(() => w.close())
  assert.equal(await w.start(), 'push')
  // The agent's update client, on the same bootstrap (plain UDP: the SRV answer names node 1 first).
  const uc = new UpdateClient(
    { clock: new SystemClock(), log },
    {
      bootstrap: { host: '127.0.0.1', port: n1.dnsPort },
      domain: `alice.${ZONE}`,
      key: tsigKey(cluster.alice),
      timeoutMs: 500,
    },
  )
  const upd = (addr: string) =>
    uc.update({
      zone: ZONE,
      updates: [{ name, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: addr } }],
    })
  assert.match((await upd('fd00::e1')).via, new RegExp(`:${n1.dnsPort}$`))
  const pushes = () => log.entries.filter((e) => e.event === 'watch.mechanism' && e.fields.mechanism === 'push').length
  assert.equal(pushes(), 1)
  // Watcher.onLost: the agent re-publishes when it fires (src/agent/attach.ts).
  const lost: string[] = []
  w.onLost((why) => lost.push(why))
  await n1.stop('SIGKILL')
  const killed = performance.now()
  const { ms } = await within(5000, 'watch re-established on another node', async () =>
    pushes() >= 2 ? true : undefined,
  )
  t.diagnostic(`Push watch re-established ${ms.toFixed(0)} ms after node 1 (its node and its bootstrap) was killed`)
  assert.ok(lost.length >= 1, "onLost fired for the killed node's session")
  const seen = waitFor<WatchEvent, true>(
    (h) => w.onEvent(h),
    (e) => (e.kind === 'add' && addrs(e.records).includes('fd00::f0') ? true : undefined),
    3000,
    'change after the failover',
  )
  assert.equal((await n3.nsupdate(cluster.alice, [`update add ${name} 60 AAAA fd00::f0`])).code, 0)
  await seen
  // The update client: the UPDATE in flight to the dead node fails, the next goes to another listed node.
  const t1 = performance.now()
  await assert.rejects(upd('fd00::e2'), /UPDATE via udp:127\.0\.0\.1:\d+ failed/)
  const r = await upd('fd00::e2')
  assert.doesNotMatch(r.via, new RegExp(`:${n1.dnsPort}$`))
  t.diagnostic(
    `update client: published via ${r.via} ${(performance.now() - t1).toFixed(0)} ms after its first failed attempt began`,
  )
  assert.ok(performance.now() - killed < 10_000)
  await n1.start()
})

test('a lease granted by node 1 expires exactly once (one feed row) while node 1 is down', async (t) => {
  const name = `lease-${rnd()}.alice.${ZONE}.`
  // nsupdate cannot send the update-lease option (RFC 9664): dnspython does, with the user's TSIG key.
  const py = `
import dns.update, dns.query, dns.tsigkeyring, dns.edns, struct
k = dns.tsigkeyring.from_text({'${cluster.alice.keyName}': '${cluster.alice.secret}'})
u = dns.update.UpdateMessage('${ZONE}.', keyring=k, keyname='${cluster.alice.keyName}', keyalgorithm='${cluster.alice.algorithm}')
u.add('${name}', 60, 'AAAA', 'fd00::1e')
u.add('${name}', 60, 'TXT', 'leased')
u.use_edns(0, options=[dns.edns.GenericOption(2, struct.pack('!I', 1))])
r = dns.query.udp(u, '127.0.0.1', port=${n1.dnsPort}, timeout=3)
print(r.rcode())
`
  assert.equal((await runPython(py)).trim(), '0')
  await n1.stop('SIGKILL')
  const rows = (): Promise<{ type: number; n: number }[]> =>
    cluster.pg.query(
      "SELECT type, count(*)::int AS n FROM autotunnel.change WHERE kind = 'expire' AND name = $1 GROUP BY type ORDER BY type",
      [name],
    )
  await within(5000, 'lease expired in the database', async () => {
    const left = await cluster.pg.query('SELECT 1 FROM autotunnel.rr WHERE name = $1', [name])
    return left.length === 0 ? true : undefined
  })
  for (const n of [n2, n3])
    await within(1000, 'expiry seen by the nodes still up', async () => {
      const d = await n.dig(['-y', tsigArg(cluster.alice), name, 'AAAA'])
      return d.stdout.includes('status: NXDOMAIN') ? true : undefined
    })
  // Two more sweep periods on both remaining nodes: still exactly one expiry per RRset.
  await new Promise((r) => setTimeout(r, 2500))
  assert.deepEqual(
    await rows(),
    [
      { type: RRType.TXT, n: 1 },
      { type: RRType.AAAA, n: 1 },
    ].sort((a, b) => a.type - b.type),
  )
  // Node 1 comes back and loads the zone without the expired records.
  await n1.start()
  const d = await n1.dig(['-y', tsigArg(cluster.alice), name, 'TXT'])
  assert.match(d.stdout, /status: NXDOMAIN/)
  t.diagnostic('one expire row per RRset; node 1 restarted without the records')
})
