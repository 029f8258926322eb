// RFC 2136 prerequisites and the per-account quota across server nodes sharing one throwaway PostgreSQL
// (docs/cluster.md, Consistency): of two conflicting UPDATEs sent at the same moment to two nodes, exactly one
// succeeds and the database holds exactly its data; an UPDATE acknowledged by one node is seen by the prerequisites
// of the next UPDATE on another node, however soon it follows; two UPDATEs that each fit the quota but not together
// are not both accepted when they race through two nodes.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Opcode, Rcode, rcodeName } from '../../src/dns/wire/header.js'
import { emptyMessage, type Message } from '../../src/dns/wire/message.js'
import { type RR, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { PgCluster } from './pg-cluster.js'
import { keyOf, sendAll } from './server-client.js'
import { type AccountJson, BIN, run, ServerProcess, ZONE } from './server-harness.js'

const ROUNDS = 30
const QUOTA = 4
let pg: PgCluster
const nodes = [new ServerProcess(), new ServerProcess(), new ServerProcess()]
let alice: AccountJson
let carol: AccountJson

before(async () => {
  pg = await PgCluster.start()
  for (const n of nodes) n.store = pg.url
  alice = await nodes[0]!.addAccount('alice')
  carol = await nodes[0]!.addAccount('carol')
  const r = await run(BIN, ['account', 'limit', 'carol', '--max-records', String(QUOTA), '--store', pg.url])
  assert.equal(r.code, 0, r.stderr)
  await Promise.all(nodes.map((n) => n.start(['--log-level', 'warn'], { tls: false })))
})
after(async () => {
  await Promise.all(nodes.map((n) => n.cleanup()))
  await pg?.destroy()
})

const rnd = (): string => Math.random().toString(36).slice(2, 8)

/** An UPDATE of the zone with prerequisites (RFC 2136 2.4) and updates (2.5). */
function update(id: number, prereqs: RR[], updates: RR[]): Message {
  return emptyMessage({
    id,
    opcode: Opcode.UPDATE,
    questions: [{ name: `${ZONE}.`, type: RRType.SOA, class: RRClass.IN }],
    answers: prereqs,
    authorities: updates,
  })
}
/** RFC 2136 2.4.3: RRset does not exist. */
const nxrrset = (name: string, type: number): RR => ({ name, type, class: RRClass.NONE, ttl: 0, data: null })
/** RFC 2136 2.4.1: RRset exists (value independent). */
const yxrrset = (name: string, type: number): RR => ({ name, type, class: RRClass.ANY, ttl: 0, data: null })
const aaaa = (name: string, address: string): RR => ({
  name,
  type: RRType.AAAA,
  class: RRClass.IN,
  ttl: 60,
  data: { address },
})
const txt = (name: string, s: string): RR => ({
  name,
  type: RRType.TXT,
  class: RRClass.IN,
  ttl: 60,
  data: { strings: [Buffer.from(s)] },
})
/** RFC 2136 2.5.3: delete all RRsets from a name. */
const deleteName = (name: string): RR => ({ name, type: RRType.ANY, class: RRClass.ANY, ttl: 0, data: null })

/** Sends one signed UPDATE to `node` and resolves with its RCODE (undefined: no answer in 5 s). */
async function send(node: ServerProcess, key: AccountJson, msg: Message): Promise<number | undefined> {
  const [o] = await sendAll(node.ports.dns, keyOf(key), [msg], { timeoutMs: 5000 })
  return o!.rcode
}

const names = (rcodes: (number | undefined)[]): string =>
  rcodes.map((r) => (r === undefined ? 'no answer' : rcodeName(r))).join(', ')

test('two conflicting prerequisite UPDATEs racing through two nodes: exactly one wins, the database holds its data', async () => {
  const tally = new Map<string, number>()
  const failures: string[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const name = `race${i}-${rnd()}.alice.${ZONE}.`
    const [a, b] = [nodes[i % 3]!, nodes[(i + 1) % 3]!]
    // Both: "only if foo has no AAAA, add mine" (RFC 2136 2.4.3 + 2.5.1), each with its own address.
    const rcodes = await Promise.all([
      send(a, alice, update(1, [nxrrset(name, RRType.AAAA)], [aaaa(name, 'fd00::a')])),
      send(b, alice, update(2, [nxrrset(name, RRType.AAAA)], [aaaa(name, 'fd00::b')])),
    ])
    const k = names(rcodes)
    tally.set(k, (tally.get(k) ?? 0) + 1)
    const rows = await pg.query<{ text: string }>(
      'SELECT text FROM autotunnel.rr WHERE name = $1 AND type = $2 ORDER BY text',
      [name, RRType.AAAA],
    )
    const won = rcodes.indexOf(Rcode.NOERROR)
    const want = won === 0 ? 'fd00::a' : 'fd00::b'
    const held = rows.map((r) => r.text).join(', ')
    if ([...rcodes].sort().join() !== [Rcode.NOERROR, Rcode.YXRRSET].sort().join() || held !== want)
      failures.push(`round ${i}: ${k}; the database holds ${held}`)
  }
  console.log(`# ${ROUNDS} rounds: ${[...tally].map(([k, n]) => `${n} x (${k})`).join('; ')}`)
  assert.deepEqual(failures, [], `${failures.length} of ${ROUNDS} rounds did not have exactly one winner`)
})

test('an UPDATE acknowledged by node 1 is seen by the prerequisites of the next UPDATE through node 2 or 3', async () => {
  const failures: string[] = []
  const ms: [number[], number[]] = [[], []]
  for (let i = 0; i < ROUNDS; i++) {
    const name = `seen${i}-${rnd()}.alice.${ZONE}.`
    const t0 = performance.now()
    assert.equal(await send(nodes[0]!, alice, update(1, [], [txt(name, `v${i}`)])), Rcode.NOERROR)
    // At once, through another node: "only if that TXT exists, add an AAAA beside it".
    const other = nodes[1 + (i % 2)]!
    const t1 = performance.now()
    const r = await send(other, alice, update(2, [yxrrset(name, RRType.TXT)], [aaaa(name, 'fd00::1')]))
    ms[0].push(t1 - t0)
    ms[1].push(performance.now() - t1)
    if (r !== Rcode.NOERROR) failures.push(`round ${i}: ${names([r])}`)
  }
  const median = (xs: number[]): string => [...xs].sort((x, y) => x - y)[xs.length >> 1]!.toFixed(1)
  console.log(`# UPDATE answered in (median ms): without prerequisites ${median(ms[0])}, with ${median(ms[1])}`)
  assert.deepEqual(
    failures,
    [],
    `${failures.length} of ${ROUNDS} prerequisite UPDATEs did not see the acknowledged one`,
  )
})

test("two UPDATEs that fit the account's quota only one at a time, racing through two nodes: one is REFUSED", async () => {
  const tally = new Map<string, number>()
  const failures: string[] = []
  for (let i = 0; i < ROUNDS; i++) {
    // QUOTA 4: each UPDATE adds 3 records to carol's empty domain; both together would hold 6.
    const batch = (tag: string): RR[] =>
      [0, 1, 2].map((j) => txt(`q${i}${tag}${j}-${rnd()}.carol.${ZONE}.`, `${tag}${j}`))
    const [a, b] = [nodes[i % 3]!, nodes[(i + 1) % 3]!]
    const mine = [batch('a'), batch('b')]
    const rcodes = await Promise.all([send(a, carol, update(1, [], mine[0]!)), send(b, carol, update(2, [], mine[1]!))])
    const k = names(rcodes)
    tally.set(k, (tally.get(k) ?? 0) + 1)
    const count = Number(
      (
        await pg.query<{ n: string }>("SELECT count(*) AS n FROM autotunnel.rr WHERE name LIKE '%.carol.' || $1", [
          `${ZONE}.`,
        ])
      )[0]!.n,
    )
    const won = rcodes.indexOf(Rcode.NOERROR)
    if (count > QUOTA || [...rcodes].sort().join() !== [Rcode.NOERROR, Rcode.REFUSED].sort().join())
      failures.push(`round ${i}: ${k}; carol holds ${count} records (quota ${QUOTA})`)
    // Empty carol's domain again, through the nodes that accepted (their index holds the records a deletion names).
    for (const j of [0, 1]) {
      if (rcodes[j] !== Rcode.NOERROR) continue
      const clear = await send(
        [a, b][j]!,
        carol,
        update(
          3,
          [],
          mine[j]!.map((rr) => deleteName(rr.name)),
        ),
      )
      assert.equal(clear, Rcode.NOERROR)
    }
    if (won < 0) break
  }
  console.log(`# ${ROUNDS} rounds: ${[...tally].map(([k, n]) => `${n} x (${k})`).join('; ')}`)
  assert.deepEqual(failures, [], `${failures.length} of ${ROUNDS} rounds did not refuse exactly one UPDATE`)
})
