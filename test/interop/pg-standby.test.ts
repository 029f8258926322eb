// Failover of the PostgreSQL store to a synchronous standby (docs/cluster.md, Deploying): a throwaway primary with
// a synchronous standby (scripts/pg-cluster.sh standby), two server nodes whose store URL lists both servers
// (postgres://...@PRIMARY,STANDBY/...?target_session_attrs=read-write). Signed UPDATEs stream through both nodes;
// the primary is SIGKILLed (postmaster and all its processes) mid-storm and the standby promoted while the storm
// goes on. Every UPDATE answered NOERROR must be on the new primary and answered by both nodes; both nodes take
// updates again soon after the promotion, with no restart; and a change made through node 1 afterwards reaches
// node 2 through the change feed, from the cursor node 2 held before the failover.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Rcode } from '../../src/dns/wire/header.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { PgCluster } from './pg-cluster.js'
import { eventually, keyOf, missingOn, queryMessage, sendAll, updateMessage } from './server-client.js'
import { type AccountJson, BIN, run, ServerProcess, ZONE } from './server-harness.js'

let primary: PgCluster | undefined
let standby: PgCluster | undefined
let alice: AccountJson
/** Both servers, primary first: what the nodes are given. */
let url: string

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const passwordOf = (u: string) => new URL(u).password

before(async () => {
  primary = await PgCluster.start()
  standby = await primary.standby()
  url = `postgres://postgres:${passwordOf(primary.url)}@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/postgres?target_session_attrs=read-write`
  const admin = new ServerProcess()
  admin.store = url
  try {
    alice = await admin.addAccount('alice')
  } finally {
    await admin.cleanup()
  }
})
after(async () => {
  await primary?.destroy()
  await standby?.destroy()
})

test('the URL may list the standby first; a standby alone is refused with what to do', async () => {
  const pw = passwordOf(primary!.url)
  const reversed = `postgres://postgres:${pw}@127.0.0.1:${standby!.port},127.0.0.1:${primary!.port}/postgres`
  const list = await run(BIN, ['account', 'list', '--store', reversed])
  assert.equal(list.code, 0, list.stderr)
  assert.match(list.stdout, /alice/)
  const alone = await run(BIN, ['account', 'list', '--store', standby!.url])
  assert.notEqual(alone.code, 0)
  assert.match(alone.stderr, /a standby \(in recovery\).*point the store URL at the primary, or list every server/)
  assert.doesNotMatch(alone.stderr, new RegExp(pw), 'no password in the message')
})

test('synchronous standby down: no UPDATE is acknowledged before the standby has it', async (t) => {
  const node = new ServerProcess()
  t.after(() => node.cleanup())
  node.store = url
  await node.start([], { tls: false })
  const key = keyOf(alice)
  const send = (name: string) =>
    sendAll(
      node.ports.dns,
      key,
      [
        updateMessage(1, `${ZONE}.`, [
          { name, type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: '10.7.7.7' } },
        ]),
      ],
      { timeoutMs: 60_000 },
    )
  await standby!.stop('fast')
  let up = false
  t.after(async () => {
    if (!up) await standby!.startAgain()
  })
  // The primary has the COMMIT on disk and waits for the standby, with no time limit (the statement timeout ends
  // before the COMMIT). Cancelled (pg_cancel_backend, as an operator might), PostgreSQL returns success with a
  // WARNING: committed on one machine only, so the node answers SERVFAIL.
  const a = send(`sync-a-${Date.now() % 100000}.alice.${ZONE}.`)
  const waiting = async (): Promise<number | undefined> =>
    (
      await primary!.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query LIKE '%USING unnest%'`,
      )
    )[0]?.pid
  let pid: number | undefined
  for (let i = 0; i < 100 && pid === undefined; i++) {
    pid = await waiting()
    if (pid === undefined) await sleep(50)
  }
  assert.ok(pid, 'the COMMIT waits for the standby')
  await primary!.query('SELECT pg_cancel_backend($1)', [pid])
  assert.equal((await a)[0]?.rcode, Rcode.SERVFAIL, 'a COMMIT the standby did not confirm is not acknowledged')
  assert.match(node.stderr, /"msg":"pg\.commit_unconfirmed"/)
  // Left alone, the COMMIT waits: past the watchdog (12 s) the node sees the server answer and keeps waiting
  // rather than giving up (which would leave the backend waiting and take a connection slot at every try).
  const b = send(`sync-b-${Date.now() % 100000}.alice.${ZONE}.`)
  let bAnswered = false
  void b.then(() => {
    bAnswered = true
  })
  const t0 = performance.now()
  while (!node.stderr.includes('"msg":"pg.statement_waiting"') && performance.now() - t0 < 20_000) await sleep(100)
  assert.match(node.stderr, /"msg":"pg\.statement_waiting"/, 'the watchdog found the server answering')
  assert.equal(bAnswered, false, 'not answered while the standby is away')
  assert.doesNotMatch(node.stderr, /"msg":"pg\.primary_lost"/, 'the node did not give up on a live primary')
  const t1 = performance.now()
  await standby!.startAgain()
  up = true
  const started = performance.now()
  assert.equal((await b)[0]?.rcode, Rcode.NOERROR, 'acknowledged once the standby has it')
  t.diagnostic(
    `an UPDATE waited ${((t1 - t0) / 1000).toFixed(1)} s for the stopped standby; answered NOERROR ` +
      `${(performance.now() - t1).toFixed(0)} ms after the standby's start began (the start took ` +
      `${(started - t1).toFixed(0)} ms)`,
  )
})

interface Answer {
  readonly node: 1 | 2
  readonly name: string
  readonly rcode: number | undefined
  /** performance.now() of the answer. */
  readonly at: number
}

test('primary SIGKILLed mid-storm, standby promoted: nothing acknowledged lost, both nodes write again, the feed goes on', async (t) => {
  const nodes = [new ServerProcess(), new ServerProcess()] as const
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.cleanup()))
  })
  for (const n of nodes) n.store = url
  await Promise.all(nodes.map((n) => n.start(['--max-records', '100000'], { tls: false })))
  const [sync] = await primary!.query<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication')
  assert.equal(sync?.sync_state, 'sync', 'the standby is synchronous')

  const key = keyOf(alice)
  const tag = `f${Date.now() % 100000}-`
  const answers: Answer[] = []
  const killAt = 300 + Math.floor(Math.random() * 300)
  let acked = 0
  let killedAt = 0
  let promoteAt = 0
  let promotedAt = 0
  let failover: Promise<void> | undefined
  let outage: number[][] = []
  let stop = false
  let seq = 0
  const afterPromotion = (node: 1 | 2) =>
    answers.filter((a) => a.node === node && promotedAt > 0 && a.at > promotedAt && a.rcode === Rcode.NOERROR)
  // One storm per node: chunks of 16 signed UPDATEs (an A and a TXT record each, a new name each), until both
  // nodes have taken 100 after the promotion. While the database is away the SERVFAILs come at once: a short
  // pause between failed chunks keeps the storm from spinning.
  const storm = async (node: 1 | 2): Promise<void> => {
    const port = (node === 1 ? nodes[0] : nodes[1]).ports.dns
    const deadline = performance.now() + 60_000
    while (!stop && performance.now() < deadline) {
      const names: string[] = []
      const msgs = Array.from({ length: 16 }, (_, j) => {
        const i = seq++
        const name = `${tag}${node}-${i}.alice.${ZONE}.`
        names.push(name)
        return updateMessage(j + 1, `${ZONE}.`, [
          {
            name,
            type: RRType.A,
            class: RRClass.IN,
            ttl: 60,
            data: { address: `10.${node}.${(i >> 8) & 255}.${i & 255}` },
          },
          { name, type: RRType.TXT, class: RRClass.IN, ttl: 60, data: { strings: [Buffer.from(`u ${i}`)] } },
        ])
      })
      const rs = await sendAll(port, key, msgs, {
        window: 16,
        timeoutMs: 5000,
        onAnswer: (o) => {
          answers.push({ node, name: names[o.index]!, rcode: o.rcode, at: performance.now() })
          if (o.rcode === Rcode.NOERROR) acked++
          if (acked >= killAt && !failover)
            failover = (async () => {
              killedAt = performance.now()
              await primary!.kill()
              // The failover tool's delay: updates get SERVFAIL meanwhile, and queries are answered from memory.
              const acks = answers.filter((a) => a.rcode === Rcode.NOERROR).map((a) => a.name)
              outage = await Promise.all(nodes.map((n) => missingOn(n.ports.dns, keyOf(alice), acks.slice(0, 100))))
              await sleep(Math.max(0, 500 - (performance.now() - killedAt)))
              promoteAt = performance.now()
              await standby!.promote()
              promotedAt = performance.now()
            })()
        },
      })
      if (afterPromotion(1).length >= 100 && afterPromotion(2).length >= 100) stop = true
      if (rs.some((r) => r.rcode !== Rcode.NOERROR)) await sleep(10)
    }
  }
  await Promise.all([storm(1), storm(2)])
  await failover
  assert.ok(promotedAt > 0, 'the failover happened')

  const rcodes = new Map<string, number>()
  for (const a of answers) rcodes.set(String(a.rcode), (rcodes.get(String(a.rcode)) ?? 0) + 1)
  const ok = answers.filter((a) => a.rcode === Rcode.NOERROR)
  const failed = answers.filter((a) => a.rcode === Rcode.SERVFAIL)
  t.diagnostic(`answers by rcode: ${JSON.stringify(Object.fromEntries(rcodes))}; killed after ${killAt} acks`)
  assert.equal(ok.length + failed.length, answers.length, 'only NOERROR or SERVFAIL, none unanswered')
  assert.ok(failed.length > 0, 'the outage was seen (SERVFAIL while no server took writes)')
  assert.deepEqual(outage, [[], []], 'both nodes answered queries from memory while no server took writes')
  assert.equal(
    failed.filter((a) => a.at < killedAt).length,
    0,
    'no SERVFAIL before the kill (the standby did not slow anyone down)',
  )

  // Both nodes write again within a few seconds of the promotion, without a restart.
  const firsts = ([1, 2] as const).map((node) => {
    const first = afterPromotion(node)[0]
    assert.ok(first, `node ${node} takes updates again`)
    // The answer may have been written before pg_ctl promote returned: count from the promote command too.
    const firstAny = ok.find((a) => a.node === node && a.at > promoteAt)!
    return { node, fromPromote: firstAny.at - promoteAt, fromPromoted: first.at - promotedAt }
  })
  for (const f of firsts) {
    t.diagnostic(
      `node ${f.node}: first NOERROR ${f.fromPromote.toFixed(0)} ms after pg_ctl promote began ` +
        `(${(promotedAt - promoteAt).toFixed(0)} ms to return), ${f.fromPromoted.toFixed(0)} ms after it returned`,
    )
    assert.ok(f.fromPromote < 5000, `node ${f.node} writes again within 5 s of the promotion`)
  }

  // Every acknowledged update is on the new primary and answered by both nodes.
  const names = [...new Set(ok.map((a) => a.name))]
  const [inDb] = await standby!.query<{ n: number }>(
    'SELECT count(DISTINCT name)::int AS n FROM autotunnel.rr WHERE name = ANY($1) AND type IN (1, 16)',
    [names],
  )
  assert.equal(inDb?.n, names.length, 'every NOERROR-answered update is on the new primary')
  for (const [i, n] of nodes.entries())
    assert.deepEqual(
      await eventually(n.ports.dns, keyOf(alice), names),
      [],
      `node ${i + 1} answers every acknowledged update`,
    )

  // The cursor stays valid: physical replication keeps the xids, and the promoted standby numbers its
  // transactions after every one it replayed, so every feed row written after the failover sorts after every row
  // a node could have read before it on (xid, id).
  const before = ok.filter((a) => a.at < killedAt).map((a) => a.name)
  const afterNames = ok.filter((a) => a.at > promotedAt).map((a) => a.name)
  const [xids] = await standby!.query<{ before: string; after: string }>(
    `SELECT (SELECT max(xid)::text FROM autotunnel.change WHERE name = ANY($1)) AS before,
            (SELECT min(xid)::text FROM autotunnel.change WHERE name = ANY($2)) AS after`,
    [before, afterNames],
  )
  t.diagnostic(`feed xids: last before the kill ${xids?.before}, first after the promotion ${xids?.after}`)
  assert.ok(BigInt(xids!.before) < BigInt(xids!.after), 'feed rows after the failover sort after those before it')

  // The feed goes on: a change through node 1 now reaches node 2 from its cursor (not from a whole-zone re-read,
  // which only follows a failed COMMIT of node 2's own).
  const resyncs = () => (nodes[1].stderr.match(/"store\.resynced"/g) ?? []).length
  const resyncsBefore = resyncs()
  const last = `${tag}last.alice.${ZONE}.`
  const t0 = performance.now()
  const r = await sendAll(nodes[0].ports.dns, key, [
    updateMessage(1, `${ZONE}.`, [
      { name: last, type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: '10.9.9.9' } },
      { name: last, type: RRType.TXT, class: RRClass.IN, ttl: 60, data: { strings: [Buffer.from('last')] } },
    ]),
  ])
  assert.equal(r[0]?.rcode, Rcode.NOERROR)
  for (;;) {
    const [q] = await sendAll(nodes[1].ports.dns, key, [queryMessage(1, last, RRType.A)])
    if (q?.msg?.answers.length === 1) break
    assert.ok(performance.now() - t0 < 2000, 'node 2 hears of node 1 after the failover')
    await sleep(5)
  }
  t.diagnostic(`a change through node 1 answered by node 2 ${(performance.now() - t0).toFixed(0)} ms later`)
  assert.equal(resyncs(), resyncsBefore, 'node 2 followed the feed, no whole-zone re-read')
  // While neither server took writes, the log said what was wrong with each and what to do.
  assert.match(
    nodes[0].stderr + nodes[1].stderr,
    /no writable PostgreSQL server among 2 \(127\.0\.0\.1:\d+: [^;]+; 127\.0\.0\.1:\d+: a standby \(in recovery\)\): promote a standby/,
  )
  assert.doesNotMatch(
    nodes[0].stderr + nodes[1].stderr,
    new RegExp(passwordOf(primary!.url)),
    'no password in the logs',
  )
  for (const [i, n] of nodes.entries())
    assert.ok(
      n.stderr
        .split('\n')
        .some((l) => l.includes('"msg":"pg.primary"') && l.includes(`"primary":"127.0.0.1:${standby!.port}"`)),
      `node ${i + 1} logged its new primary`,
    )
})

test('primary frozen (SIGSTOP: gone without closing its connections), standby promoted: both nodes write again', async (t) => {
  // Its own pair: the one above ends with its primary killed.
  const p = await PgCluster.start()
  t.after(() => p.destroy())
  const sb = await p.standby()
  t.after(() => sb.destroy())
  const u = `postgres://postgres:${passwordOf(p.url)}@127.0.0.1:${p.port},127.0.0.1:${sb.port}/postgres`
  const admin = new ServerProcess()
  admin.store = u
  let account: AccountJson
  try {
    account = await admin.addAccount('alice')
  } finally {
    await admin.cleanup()
  }
  const nodes = [new ServerProcess(), new ServerProcess()] as const
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.cleanup()))
  })
  for (const n of nodes) n.store = u
  await Promise.all(nodes.map((n) => n.start([], { tls: false })))
  const key = keyOf(account)
  let seq = 0
  const update = (node: number) => {
    const name = `z${node}-${seq++}.alice.${ZONE}.`
    return {
      name,
      msg: updateMessage(1, `${ZONE}.`, [
        { name, type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: `10.8.${node}.${seq & 255}` } },
      ]),
    }
  }
  const acked: string[] = []
  for (const [i, n] of nodes.entries()) {
    const w = update(i + 1)
    assert.equal((await sendAll(n.ports.dns, key, [w.msg]))[0]?.rcode, Rcode.NOERROR)
    acked.push(w.name)
  }
  await p.freeze()
  const frozenAt = performance.now()
  await sb.promote()
  const promotedAt = performance.now()
  // Each node: one UPDATE at a time until one is acknowledged. The first waits on a connection to the frozen
  // server until the watchdog (statement timeout + 2 s) closes every connection to it.
  const recover = async (i: number): Promise<number> => {
    const n = nodes[i]!
    for (;;) {
      const w = update(i + 1)
      const [r] = await sendAll(n.ports.dns, key, [w.msg], { timeoutMs: 30_000 })
      if (r?.rcode === Rcode.NOERROR) {
        acked.push(w.name)
        return performance.now()
      }
      assert.equal(r?.rcode, Rcode.SERVFAIL, 'SERVFAIL while the primary is unreachable')
      if (performance.now() - frozenAt > 30_000) assert.fail(`node ${i + 1} did not write again in 30 s`)
      await sleep(50)
    }
  }
  const back = await Promise.all([recover(0), recover(1)])
  for (const [i, at] of back.entries())
    t.diagnostic(
      `node ${i + 1}: first NOERROR ${(at - frozenAt).toFixed(0)} ms after the freeze ` +
        `(promotion took ${(promotedAt - frozenAt).toFixed(0)} ms)`,
    )
  for (const at of back) assert.ok(at - frozenAt < 20_000, 'writes again within 20 s of the freeze')
  const [inDb] = await sb.query<{ n: number }>(
    'SELECT count(DISTINCT name)::int AS n FROM autotunnel.rr WHERE name = ANY($1)',
    [acked],
  )
  assert.equal(inDb?.n, acked.length, 'every acknowledged update is on the new primary')
  // The LISTEN connections moved too: a change through node 1 reaches node 2.
  const w = update(1)
  assert.equal((await sendAll(nodes[0].ports.dns, key, [w.msg]))[0]?.rcode, Rcode.NOERROR)
  const t0 = performance.now()
  for (;;) {
    const [r] = await sendAll(nodes[1].ports.dns, key, [queryMessage(1, w.name, RRType.A)])
    if (r?.msg?.answers.length === 1) break
    assert.ok(performance.now() - t0 < 2000, 'node 2 hears of node 1 after the failover')
    await sleep(20)
  }
  for (const [i, n] of nodes.entries())
    assert.match(n.stderr, /"msg":"pg\.primary_lost"/, `node ${i + 1} gave up on the frozen server`)
})
