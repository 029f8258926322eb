// An UPDATE without prerequisites that deletes an RRset or every RRset of a name (RFC 2136 2.5.2, 2.5.3) deletes
// what the database holds, not only what the taking node's index holds, and the other nodes drop it too (the change
// feed names it) (docs/cluster.md, Consistency). Deterministic set-up: a record is written straight into the
// database without a change-feed row, so no node's index has it; node 2 then reads it into its index through an
// UPDATE with a prerequisite on that name (its transaction re-reads the name: consistent.ts), while node 1's index
// still lacks it (the feed never names that RRset). The deletion goes through node 1.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { deleteName, deleteRRset, nameInUse, updateMessage } from '../../src/dns/update.js'
import { rcodeName } from '../../src/dns/wire/header.js'
import type { Message } from '../../src/dns/wire/message.js'
import { type RR, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { canonicalRData, rdataText } from '../../src/server/rdata.js'
import { PgCluster } from './pg-cluster.js'
import { keyOf, sendAll } from './server-client.js'
import { type AccountJson, ServerProcess, tsigArg, ZONE } from './server-harness.js'

let pg: PgCluster
const nodes = [new ServerProcess(), new ServerProcess()]
const [n1, n2] = nodes as [ServerProcess, ServerProcess]
let alice: AccountJson

before(async () => {
  pg = await PgCluster.start()
  for (const n of nodes) n.store = pg.url
  alice = await n1.addAccount('alice')
  await Promise.all(nodes.map((n) => n.start(['--log-level', 'warn'], { tls: false })))
})
after(async () => {
  await Promise.all(nodes.map((n) => n.cleanup()))
  await pg?.destroy()
})

const rnd = (): string => Math.random().toString(36).slice(2, 8)

const update = (id: number, prereqs: RR[], updates: RR[]): Message =>
  updateMessage({ id, zone: `${ZONE}.`, prereqs, updates })
const aaaa = (name: string, address: string): RR => ({
  name,
  type: RRType.AAAA,
  class: RRClass.IN,
  ttl: 60,
  data: { address },
})

async function send(node: ServerProcess, msg: Message): Promise<string> {
  const [o] = await sendAll(node.ports.dns, keyOf(alice), [msg], { timeoutMs: 5000 })
  return o!.rcode === undefined ? 'no answer' : rcodeName(o!.rcode)
}

/** A TXT record written into rr directly: committed, but named by no change-feed row. */
async function insertUnannounced(name: string, s: string): Promise<void> {
  const data = { strings: [Buffer.from(s)] }
  const rdata = canonicalRData(RRType.TXT, data)
  await pg.query('INSERT INTO autotunnel.rr (name, type, class, ttl, rdata, text) VALUES ($1, $2, $3, 60, $4, $5)', [
    name,
    RRType.TXT,
    RRClass.IN,
    rdata,
    rdataText(RRType.TXT, rdata),
  ])
}

async function typesIn(name: string): Promise<number[]> {
  return (await pg.query<{ type: number }>('SELECT type FROM autotunnel.rr WHERE name = $1 ORDER BY type', [name])).map(
    (r) => r.type,
  )
}

/** The TXT strings `node` answers for `name` (dig -y as alice), and the status. */
async function txtOn(node: ServerProcess, name: string): Promise<{ status: string; txt: string }> {
  const d = await node.dig(['-y', tsigArg(alice), name, 'TXT'])
  const status = /status: (\w+)/.exec(d.stdout)?.[1] ?? 'no answer'
  const txt = d.stdout
    .split('\n')
    .filter((l) => !l.startsWith(';') && /\sTXT\s/.test(l))
    .map((l) => l.split(/\sTXT\s/)[1]!.trim())
    .join(' ')
  return { status, txt }
}

/** Polls until `fn` returns true (the feed delay; rejects after `ms`). */
async function until(ms: number, what: string, fn: () => Promise<boolean>): Promise<void> {
  const t0 = performance.now()
  while (!(await fn())) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Puts the unannounced TXT at `name` into node 2's index only (node 1's lacks it), beside an AAAA. */
async function seedOnNode2(name: string): Promise<void> {
  await insertUnannounced(name, 'unseen')
  assert.equal(await send(n2, update(1, [nameInUse(name)], [aaaa(name, 'fd00::2')])), 'NOERROR')
  assert.deepEqual(await txtOn(n2, name), { status: 'NOERROR', txt: '"unseen"' })
  // Node 1 has the AAAA (the feed names that RRset) but not the TXT.
  await until(5000, 'AAAA on node 1', async () =>
    (await n1.dig(['-y', tsigArg(alice), '+short', name, 'AAAA'])).stdout.includes('fd00::2'),
  )
  assert.deepEqual(await txtOn(n1, name), { status: 'NOERROR', txt: '' })
}

test("deleting an RRset through a node whose index lacks a record of it deletes the database's record, on every node", async () => {
  const name = `rrset-${rnd()}.alice.${ZONE}.`
  await seedOnNode2(name)
  assert.equal(await send(n1, update(2, [], [deleteRRset(name, RRType.TXT)])), 'NOERROR')
  assert.deepEqual(await typesIn(name), [RRType.AAAA], 'the TXT RRset is gone from the database, the AAAA stays')
  await until(5000, 'node 2 drops the TXT', async () => (await txtOn(n2, name)).txt === '')
})

test("deleting every RRset of a name through a node whose index lacks some deletes the database's, on every node", async () => {
  const name = `name-${rnd()}.alice.${ZONE}.`
  await seedOnNode2(name)
  assert.equal(await send(n1, update(3, [], [deleteName(name)])), 'NOERROR')
  assert.deepEqual(await typesIn(name), [], 'nothing is left at the name in the database')
  for (const n of nodes)
    await until(5000, 'the name gone on both nodes', async () => (await txtOn(n, name)).status === 'NXDOMAIN')
})

const txt = (name: string, s: string): RR => ({
  name,
  type: RRType.TXT,
  class: RRClass.IN,
  ttl: 60,
  data: { strings: [Buffer.from(s)] },
})
const txtRows = async (name: string): Promise<string[]> =>
  (
    await pg.query<{ text: string }>('SELECT text FROM autotunnel.rr WHERE name = $1 AND type = $2 ORDER BY text', [
      name,
      RRType.TXT,
    ])
  ).map((r) => r.text)

test('a deletion of an RRset followed by adds to it in one UPDATE: the database holds the added records only', async () => {
  const name = `readd-${rnd()}.alice.${ZONE}.`
  await seedOnNode2(name)
  assert.equal(await send(n1, update(4, [], [deleteRRset(name, RRType.TXT), txt(name, 'new')])), 'NOERROR')
  assert.deepEqual(await txtRows(name), ['"new"'])
  // The record the database holds and this node's index lacks, deleted and added again: one row, no error (a
  // statement may not touch a row twice).
  const again = `again-${rnd()}.alice.${ZONE}.`
  await seedOnNode2(again)
  const msg = update(5, [], [deleteName(again), txt(again, 'unseen'), txt(again, 'other')])
  assert.equal(await send(n1, msg), 'NOERROR')
  assert.deepEqual(await txtRows(again), ['"other"', '"unseen"'])
  assert.deepEqual(await typesIn(again), [RRType.TXT, RRType.TXT])
})
