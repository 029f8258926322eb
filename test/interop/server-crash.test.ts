// Durability: SIGKILL the server while a client streams 1,000 signed updates; after a restart every update that
// was answered NOERROR must be in the zone (an update is answered only after its COMMIT, db.ts).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Rcode } from '../../src/dns/wire/header.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { keyOf, queryMessage, sendAll, updateMessage } from './server-client.js'
import { ServerProcess, ZONE } from './server-harness.js'

const N = 1000

test('SIGKILL in the middle of 1,000 signed updates loses none that were answered NOERROR', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  const key = keyOf(alice)
  // 1,000 updates of two records each: above the default per-account quota (1,000 records, docs/security.md).
  const quota = ['--max-records', String(4 * N)]
  await srv.start(quota, { tls: false })
  const name = (i: number) => `n${i}.alice.${ZONE}.`
  const msgs = Array.from({ length: N }, (_, i) =>
    updateMessage(i + 1, `${ZONE}.`, [
      { name: name(i), type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: `10.0.${i >> 8}.${i & 255}` } },
      { name: name(i), type: RRType.TXT, class: RRClass.IN, ttl: 60, data: { strings: [Buffer.from(`update ${i}`)] } },
    ]),
  )
  const killAt = 300 + Math.floor(Math.random() * 400)
  let acked = 0
  let killed = false
  const results = await sendAll(srv.ports.dns, key, msgs, {
    window: 32,
    timeoutMs: 1500,
    onAnswer: (o, stop) => {
      if (o.rcode === Rcode.NOERROR) acked++
      if (acked >= killAt && !killed) {
        killed = true
        srv.proc!.kill('SIGKILL')
        // Updates still in flight may or may not have committed; sending more would only time out.
        stop()
      }
    },
  })
  assert.ok(killed, `server killed after ${acked} acknowledged updates`)
  const ok = results.filter((r) => r?.rcode === Rcode.NOERROR).map((r) => r.index)
  assert.ok(ok.length >= killAt && ok.length < N, `${ok.length} acknowledged before the kill`)
  await new Promise<void>((r) =>
    srv.proc!.exitCode !== null || srv.proc!.signalCode !== null ? r() : srv.proc!.once('exit', () => r()),
  )

  await srv.start(quota, { tls: false })
  const check = await sendAll(
    srv.ports.dns,
    key,
    ok.map((i, j) => queryMessage(j + 1, name(i), RRType.TXT)),
    { window: 64, timeoutMs: 3000 },
  )
  const missing = check.filter((c) => c.rcode !== Rcode.NOERROR || c.msg?.answers.length !== 1).map((c) => ok[c.index])
  assert.deepEqual(missing, [], 'every acknowledged update survived')
  // And each one is complete: both records of the update are there (atomicity).
  const a = await sendAll(
    srv.ports.dns,
    key,
    ok.map((i, j) => queryMessage(j + 1, name(i), RRType.A)),
    { window: 64, timeoutMs: 3000 },
  )
  assert.equal(a.filter((c) => c.msg?.answers.length === 1).length, ok.length)
  t.diagnostic(`killed after ${acked} acks; ${ok.length} acknowledged, all present after restart`)
})
