import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hostKeyRecord, hostRecords } from '../agent/records.js'
import { type RR, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { revokeHostInDb } from './account-cli.js'
import { addAccount } from './accounts.js'
import { toZoneRR } from './rdata.js'
import { openStore, tempDir, ZONE } from './test-helpers.js'

failOnLeakedResources()

const D = `alice.${ZONE}`

function host(hostname: string, label: string): RR[] {
  return [
    ...hostRecords({
      hostname,
      domain: D,
      ula: 'fd00::1',
      label,
      endpoint: { address: '203.0.113.11', port: 4500 },
      nat: 'pcp',
      services: [{ type: '_ssh._tcp', port: 22 }],
      ttlSec: 60,
      agentVersion: 'test',
    }),
    hostKeyRecord({ hostname, domain: D, record: 'v=at-ike1; k=ed25519; p=AAAA', ttlSec: 60 }),
  ].map((p) => p.rr)
}

test('revoke-host deletes the host records in the store; a running server picks it up as an external change', (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  const clock = new FakeClock()
  const store = openStore(dir, clock)
  t.after(() => store.close())
  addAccount(store.db, ZONE, {
    user: 'alice',
    algorithm: 'hmac-sha256',
    secret: Buffer.alloc(32, 1),
    derived: false,
    nowMs: 0,
  })
  const desktop = host('desktop', 'AutoTunnel-AA')
  store.write((tx) => {
    for (const r of [...desktop, ...host('laptop', 'AutoTunnel-BB')]) tx.add(toZoneRR(r), null)
    tx.bumpSerial()
  })
  const serial = store.serial
  const changes: string[] = []
  store.onChange((cs) => changes.push(...cs.filter((c) => c.removed.length).map((c) => `${c.name} ${c.type}`)))

  // Another connection, as the CLI process has.
  const cli = openStore(dir, clock)
  const touched = revokeHostInDb(cli.db, ZONE, 'alice', 'LAPTOP')
  cli.close()
  assert.ok(touched.includes(`laptop.${D}`))
  assert.ok(touched.includes(`_autotunnel._udp.${D} PTR _autotunnel._udp.laptop.${D}`))

  assert.equal(store.checkExternal(), true)
  assert.ok(store.serial !== serial || changes.length > 0)
  assert.ok(changes.includes(`laptop.${D} ${RRType.TXT}`), `watchers told: ${changes.join(', ')}`)
  assert.ok(changes.includes(`_autotunnel._udp.${D} ${RRType.PTR}`))
  const names = new Set(store.recordsAtOrBelow(D).map((r) => r.rr.name))
  for (const r of desktop) assert.ok(names.has(r.name.toLowerCase()), `kept ${r.name}`)
  assert.ok(![...names].some((n) => n.includes('laptop') || n.includes('autotunnel-bb')), [...names].join(' '))
  assert.throws(() => revokeHostInDb(store.db, ZONE, 'bob', 'laptop'), /no account bob/)
})
