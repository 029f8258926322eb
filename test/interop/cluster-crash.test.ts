// Durability of the PostgreSQL store (docs/cluster.md), the crash test of server-crash.test.ts against two nodes on
// one throwaway PostgreSQL: 1,000 signed updates streamed through node 1 while node 1 is SIGKILLed, or while
// PostgreSQL is restarted with -m immediate (a crash) or stopped and started again. Every update answered NOERROR
// must be in the zone, seen by both nodes; while the database is away updates get SERVFAIL and queries are answered
// from memory; the nodes reconnect and catch up without a restart.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Rcode } from '../../src/dns/wire/header.js'
import type { Message } from '../../src/dns/wire/message.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { PgCluster } from './pg-cluster.js'
import { eventually, keyOf, missingOn, type Outcome, sendAll, updateMessage } from './server-client.js'
import { type AccountJson, ServerProcess, ZONE } from './server-harness.js'

const N = 1000
const QUOTA = ['--max-records', String(20 * N)]
let pg: PgCluster
let alice: AccountJson

before(async () => {
  pg = await PgCluster.start()
  const admin = new ServerProcess()
  admin.store = pg.url
  try {
    alice = await admin.addAccount('alice')
  } finally {
    await admin.cleanup()
  }
})
after(() => pg?.destroy())

async function twoNodes(t: { after: (fn: () => Promise<void>) => void }): Promise<[ServerProcess, ServerProcess]> {
  const nodes = [new ServerProcess(), new ServerProcess()] as [ServerProcess, ServerProcess]
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.cleanup()))
  })
  for (const n of nodes) n.store = pg.url
  await Promise.all(nodes.map((n) => n.start(QUOTA, { tls: false })))
  return nodes
}

function storm(tag: string, count = N): { name: (i: number) => string; msgs: Message[] } {
  const name = (i: number): string => `${tag}${i}.alice.${ZONE}.`
  const msgs = Array.from({ length: count }, (_, i) =>
    updateMessage(i + 1, `${ZONE}.`, [
      { name: name(i), type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: `10.0.${i >> 8}.${i & 255}` } },
      { name: name(i), type: RRType.TXT, class: RRClass.IN, ttl: 60, data: { strings: [Buffer.from(`u ${i}`)] } },
    ]),
  )
  return { name, msgs }
}

async function inDatabase(names: string[]): Promise<number> {
  const rows = await pg.query<{ n: number }>(
    'SELECT count(DISTINCT name)::int AS n FROM autotunnel.rr WHERE name = ANY($1) AND type IN (1, 16)',
    [names],
  )
  return rows[0]?.n ?? 0
}

const noerror = (rs: Outcome[]): number[] => rs.filter((r) => r?.rcode === Rcode.NOERROR).map((r) => r.index)

test('SIGKILL of node 1 mid-storm: every NOERROR-answered update is in the database and on node 2', async (t) => {
  const [n1, n2] = await twoNodes(t)
  const { name, msgs } = storm(`k${Date.now() % 100000}-`)
  const killAt = 300 + Math.floor(Math.random() * 400)
  let acked = 0
  let killed = false
  const results = await sendAll(n1.ports.dns, keyOf(alice), msgs, {
    window: 32,
    timeoutMs: 1500,
    onAnswer: (o, stop) => {
      if (o.rcode === Rcode.NOERROR) acked++
      if (acked >= killAt && !killed) {
        killed = true
        n1.proc!.kill('SIGKILL')
        stop()
      }
    },
  })
  assert.ok(killed)
  const ok = noerror(results)
  assert.ok(ok.length >= killAt && ok.length < N, `${ok.length} acknowledged before the kill`)
  const names = ok.map(name)
  assert.deepEqual(await eventually(n2.ports.dns, keyOf(alice), names), [], 'node 2 answers every acknowledged update')
  assert.equal(await inDatabase(names), names.length)
  await n1.start(QUOTA, { tls: false })
  assert.deepEqual(await missingOn(n1.ports.dns, keyOf(alice), names), [], 'node 1 after its restart')
  t.diagnostic(
    `node 1 killed after ${acked} acks; all ${ok.length} present on node 2, in the database, on node 1 again`,
  )
})

test('PostgreSQL restarted -m immediate mid-storm: no acknowledged update lost, nodes catch up without a restart', async (t) => {
  const [n1, n2] = await twoNodes(t)
  const { name, msgs } = storm(`r${Date.now() % 100000}-`)
  const restartAt = 200 + Math.floor(Math.random() * 300)
  let acked = 0
  let restart: Promise<void> | undefined
  const results = await sendAll(n1.ports.dns, keyOf(alice), msgs, {
    window: 32,
    timeoutMs: 3000,
    onAnswer: (o) => {
      if (o.rcode === Rcode.NOERROR) acked++
      if (acked >= restartAt && !restart) restart = pg.restart('immediate')
    },
  })
  assert.ok(restart, 'restart triggered')
  await restart
  const ok = noerror(results)
  const failed = results.filter((r) => r.rcode === Rcode.SERVFAIL).length
  const lost = results.filter((r) => r.rcode === undefined).length
  t.diagnostic(`restart after ${restartAt} acks: ${ok.length} NOERROR, ${failed} SERVFAIL, ${lost} unanswered`)
  assert.equal(
    results.filter((r) => r.rcode !== undefined && r.rcode !== Rcode.NOERROR && r.rcode !== Rcode.SERVFAIL).length,
    0,
    'only NOERROR or SERVFAIL',
  )
  // The same node takes updates again once PostgreSQL is back (its pool reconnects), and node 2 hears of them.
  const later = storm(`r2${Date.now() % 100000}-`, 20)
  const t0 = performance.now()
  let again: Outcome[] = []
  for (;;) {
    again = await sendAll(n1.ports.dns, keyOf(alice), later.msgs, { window: 8, timeoutMs: 3000 })
    if (noerror(again).length === later.msgs.length || performance.now() - t0 > 15_000) break
    await new Promise((r) => setTimeout(r, 200))
  }
  assert.equal(noerror(again).length, later.msgs.length, 'updates accepted again after the restart')
  t.diagnostic(`node 1 accepting updates again ${(performance.now() - t0).toFixed(0)} ms after pg_ctl returned`)
  const names = [...ok.map(name), ...later.msgs.map((_, i) => later.name(i))]
  assert.deepEqual(await eventually(n1.ports.dns, keyOf(alice), names), [], 'node 1 answers every acknowledged update')
  assert.deepEqual(await eventually(n2.ports.dns, keyOf(alice), names), [], 'node 2 caught up from its cursor')
  assert.equal(await inDatabase(names), names.length)
})

test('PostgreSQL away: updates get SERVFAIL, queries are answered from memory; back: updates accepted again', async (t) => {
  const [n1, n2] = await twoNodes(t)
  const { name, msgs } = storm(`s${Date.now() % 100000}-`, 50)
  assert.equal(noerror(await sendAll(n1.ports.dns, keyOf(alice), msgs, { window: 16 })).length, 50)
  const names = msgs.map((_, i) => name(i))
  assert.deepEqual(await eventually(n2.ports.dns, keyOf(alice), names), [])
  await pg.stop('immediate')
  let up = false
  t.after(async () => {
    if (!up) await pg.startAgain()
  })
  const down = storm(`s2${Date.now() % 100000}-`, 10)
  const r = await sendAll(n1.ports.dns, keyOf(alice), down.msgs, { window: 4, timeoutMs: 5000 })
  assert.deepEqual(
    r.map((o) => o.rcode),
    down.msgs.map(() => Rcode.SERVFAIL),
    'every update SERVFAIL while the database is away',
  )
  for (const n of [n1, n2])
    assert.deepEqual(await missingOn(n.ports.dns, keyOf(alice), names), [], 'answered from memory')
  // A refused update left nothing in memory either.
  assert.deepEqual(await missingOn(n1.ports.dns, keyOf(alice), [down.name(0)]), [0])
  await pg.startAgain()
  up = true
  const t0 = performance.now()
  const back = storm(`s3${Date.now() % 100000}-`, 10)
  let ok: number[] = []
  while (ok.length < back.msgs.length && performance.now() - t0 < 15_000) {
    ok = noerror(await sendAll(n2.ports.dns, keyOf(alice), back.msgs, { window: 4, timeoutMs: 3000 }))
    if (ok.length < back.msgs.length) await new Promise((res) => setTimeout(res, 200))
  }
  assert.equal(ok.length, back.msgs.length, 'node 2 accepts updates again')
  assert.deepEqual(
    await eventually(
      n1.ports.dns,
      keyOf(alice),
      back.msgs.map((_, i) => back.name(i)),
    ),
    [],
    'node 1 follows the feed again',
  )
  t.diagnostic(`updates accepted again ${(performance.now() - t0).toFixed(0)} ms after PostgreSQL started`)
})
