// An UPDATE without prerequisites waits for a write with prerequisites (or near its quota) of its account that is in
// flight on any node, so it cannot be acknowledged before that write commits (docs/cluster.md, Consistency): the
// lock such a write holds is taken here from a separate PostgreSQL client, exactly as consistent.ts takes it
// (pg_advisory_xact_lock(ACCOUNT_LOCK, hashtext(account domain)) in an open transaction). While it is held, an
// unconditional UPDATE of that account is not answered (its node waits in PostgreSQL for the lock), one of another
// account is; once it is released, the waiting UPDATE is answered NOERROR and its record is in the database. A
// shared hold (what an unconditional write itself takes) does not make another unconditional UPDATE wait.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import pg from 'pg'
import { deleteName, updateMessage } from '../../src/dns/update.js'
import { rcodeName } from '../../src/dns/wire/header.js'
import type { Message } from '../../src/dns/wire/message.js'
import { type RR, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { ACCOUNT_LOCK } from '../../src/server/pg/sql.js'
import { PgCluster } from './pg-cluster.js'
import { keyOf, sendAll } from './server-client.js'
import { type AccountJson, ServerProcess, ZONE } from './server-harness.js'

let pg0: PgCluster
const nodes = [new ServerProcess(), new ServerProcess()]
let alice: AccountJson
let carol: AccountJson
const ALICE = `alice.${ZONE}.`

before(async () => {
  pg0 = await PgCluster.start()
  for (const n of nodes) n.store = pg0.url
  alice = await nodes[0]!.addAccount('alice')
  carol = await nodes[0]!.addAccount('carol')
  await Promise.all(nodes.map((n) => n.start(['--log-level', 'warn'], { tls: false })))
})
after(async () => {
  await Promise.all(nodes.map((n) => n.cleanup()))
  await pg0?.destroy()
})

const rnd = (): string => Math.random().toString(36).slice(2, 8)

/** An UPDATE without prerequisites adding one TXT record (RFC 2136 2.5.1). */
function addTxt(id: number, name: string, s: string): Message {
  const rr: RR = { name, type: RRType.TXT, class: RRClass.IN, ttl: 60, data: { strings: [Buffer.from(s)] } }
  return updateMessage({ id, zone: `${ZONE}.`, updates: [rr] })
}

/** Sends one signed UPDATE to `node`; resolves with its RCODE (undefined: no answer within `timeoutMs`). */
async function send(
  node: ServerProcess,
  key: AccountJson,
  msg: Message,
  timeoutMs = 5000,
): Promise<number | undefined> {
  const [o] = await sendAll(node.ports.dns, keyOf(key), [msg], { timeoutMs })
  return o!.rcode
}

const rcode = (r: number | undefined): string => (r === undefined ? 'no answer' : rcodeName(r))

/** A separate connection holding the account's lock in an open transaction (released by COMMIT). */
async function holdLock(domain: string, mode: 'exclusive' | 'shared'): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: pg0.url })
  await c.connect()
  await c.query('BEGIN')
  const fn = mode === 'exclusive' ? 'pg_advisory_xact_lock' : 'pg_advisory_xact_lock_shared'
  await c.query(`SELECT ${fn}($1, hashtext($2))`, [ACCOUNT_LOCK, domain])
  return c
}

/** Resolves once `n` sessions wait for an advisory lock (polling pg_locks; rejects after 10 s). */
async function lockWaiters(n: number): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const [r] = await pg0.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    )
    if (r!.n >= n) return
    if (Date.now() > deadline) throw new Error(`${r!.n} of ${n} lock waiters after 10 s`)
    await new Promise((res) => setTimeout(res, 20))
  }
}

async function rowsOf(name: string): Promise<string[]> {
  return (
    await pg0.query<{ text: string }>('SELECT text FROM autotunnel.rr WHERE name = $1 ORDER BY text', [name])
  ).map((r) => r.text)
}

test("an unconditional UPDATE waits for an in-flight conditional write of its account, not of another account's", async () => {
  const held = await holdLock(ALICE, 'exclusive')
  let released = false
  try {
    const name = `wait-${rnd()}.${ALICE}`
    const answer = send(nodes[0]!, alice, addTxt(1, name, 'after'), 30_000)
    // Not answered while the lock is held: its node waits in PostgreSQL (a lock waiter appears) instead.
    const first = await Promise.race([answer.then((r) => `answered ${rcode(r)}`), lockWaiters(1).then(() => 'waiting')])
    assert.equal(first, 'waiting', 'the UPDATE was answered while a conditional write of its account held the lock')
    assert.deepEqual(await rowsOf(name), [], 'nothing of the waiting UPDATE is in the database yet')
    // Another account's UPDATE, through the other node, is answered meanwhile.
    const other = `other-${rnd()}.carol.${ZONE}.`
    assert.equal(rcode(await send(nodes[1]!, carol, addTxt(2, other, 'x'))), 'NOERROR')
    assert.deepEqual(await rowsOf(other), ['"x"'])
    // Still waiting (a second look at the lock table, after the other UPDATE's round trip).
    const still = await Promise.race([answer.then(() => 'answered'), lockWaiters(1).then(() => 'waiting')])
    assert.equal(still, 'waiting')
    await held.query('COMMIT')
    released = true
    assert.equal(rcode(await answer), 'NOERROR')
    assert.deepEqual(await rowsOf(name), ['"after"'])
  } finally {
    if (!released) await held.query('ROLLBACK').catch(() => {})
    await held.end()
  }
})

test('unconditional UPDATEs of one account do not wait for each other (a shared hold does not block them)', async () => {
  // What an unconditional write holds while its statement runs: the lock, shared.
  const held = await holdLock(ALICE, 'shared')
  try {
    const names = [0, 1].map((i) => `shared${i}-${rnd()}.${ALICE}`)
    const rcodes = await Promise.all(names.map((n, i) => send(nodes[i]!, alice, addTxt(3 + i, n, 'v'))))
    assert.deepEqual(rcodes.map(rcode), ['NOERROR', 'NOERROR'])
    for (const n of names) assert.deepEqual(await rowsOf(n), ['"v"'])
  } finally {
    await held.query('COMMIT')
    await held.end()
  }
})

test('an UPDATE that only deletes a name (RFC 2136 2.5.3) waits for a conditional write of its account too', async () => {
  const name = `gone-${rnd()}.${ALICE}`
  const msg = updateMessage({ id: 6, zone: `${ZONE}.`, updates: [deleteName(name)] })
  const held = await holdLock(ALICE, 'exclusive')
  let released = false
  try {
    const answer = send(nodes[0]!, alice, msg, 30_000)
    const first = await Promise.race([answer.then((r) => `answered ${rcode(r)}`), lockWaiters(1).then(() => 'waiting')])
    assert.equal(first, 'waiting', 'the deletion was answered while a conditional write of its account held the lock')
    await held.query('COMMIT')
    released = true
    assert.equal(rcode(await answer), 'NOERROR')
  } finally {
    if (!released) await held.query('ROLLBACK').catch(() => {})
    await held.end()
  }
})
