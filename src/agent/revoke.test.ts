import assert from 'node:assert/strict'
import { test } from 'node:test'
import { emptyMessage, type Message } from '../dns/wire/message.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { hostKeyRecord, hostRecords, rrKey } from './records.js'
import { RevokeError, revokeHost, revokeUpdates } from './revoke.js'

failOnLeakedResources()

const D = 'alice.members.example'

function host(hostname: string, label: string, services: { type: string; port: number }[] = []): RR[] {
  return [
    ...hostRecords({
      hostname,
      domain: D,
      ula: 'fd00::1',
      label,
      endpoint: { address: '203.0.113.11', port: 4500 },
      nat: 'pcp',
      services,
      ttlSec: 60,
      agentVersion: 'test',
    }),
    hostKeyRecord({ hostname, domain: D, record: 'v=at-ike1; k=ed25519; p=AAAA', ttlSec: 60 }),
  ].map((p) => p.rr)
}

/** RFC 2136 3.4.2 applied to a record list: class ANY type ANY deletes a name, class NONE one record. */
function apply(zone: RR[], updates: readonly RR[]): RR[] {
  let out = zone
  for (const u of updates) {
    const n = u.name.toLowerCase()
    if (u.class === RRClass.ANY && u.type === RRType.ANY) out = out.filter((r) => r.name.toLowerCase() !== n)
    else if (u.class === RRClass.NONE) {
      const k = rrKey({ ...u, class: RRClass.IN })
      out = out.filter((r) => rrKey(r) !== k)
    } else throw new Error(`unexpected update form ${u.class}/${u.type}`)
  }
  return out
}

function zoneOf(rrs: RR[]) {
  const queries: string[] = []
  return {
    queries,
    query: async (name: string, type: number): Promise<Message> => {
      queries.push(`${name} ${type}`)
      const n = name.toLowerCase()
      return emptyMessage({ qr: true, answers: rrs.filter((r) => r.name.toLowerCase() === n && r.type === type) })
    },
  }
}

test('revokeUpdates deletes every record of the host (key, SRV, target, list PTR, DNS-SD) and nothing else', async () => {
  const desktop = host('desktop', 'AutoTunnel-AA', [{ type: '_ssh._tcp', port: 22 }])
  const laptop = host('laptop', 'AutoTunnel-BB', [{ type: '_ssh._tcp', port: 22 }])
  const zone = [...desktop, ...laptop]
  const { updates, deleted } = await revokeUpdates(zoneOf(zone), D, 'Laptop')
  const left = apply(zone, updates)
  const keys = (rrs: RR[]) => rrs.map(rrKey).sort()
  // What stays is exactly the desktop's records (the shared type-enumeration PTR is identical for both).
  assert.deepEqual([...new Set(keys(left))], [...new Set(keys(desktop))])
  assert.ok(deleted.includes(`laptop.${D}.`))
  assert.ok(deleted.includes(`autotunnel-bb.${D}.`))
  assert.ok(deleted.includes(`_ssh._tcp.${D}. PTR laptop._ssh._tcp.${D}.`))
})

test('revokeHost sends the deletions, then the SSO revocation (ATREVOKE), in the provider zone; a refused UPDATE is an error; bad names are refused', async () => {
  const zone = host('laptop', 'AutoTunnel-BB')
  const sent: { zone: string; updates: readonly RR[] }[] = []
  const ok = await revokeHost(
    {
      query: zoneOf(zone),
      sink: {
        update: async (r) => {
          sent.push(r)
          return { rcode: 0, leaseSec: undefined, via: 'udp:x' }
        },
      },
    },
    { domain: D, zone: 'members.example', host: 'laptop' },
  )
  assert.equal(sent.length, 2)
  assert.equal(sent[0]?.zone, 'members.example.')
  assert.deepEqual(
    sent[1]?.updates.map((u) => `${u.name} ${u.type}`),
    [`_autotunnel-enrol.laptop.${D}. 65302`],
    'the SSO revocation marker names the host',
  )
  assert.equal(ok.via, 'udp:x')
  await assert.rejects(
    revokeHost(
      { query: zoneOf(zone), sink: { update: async () => ({ rcode: 5, leaseSec: undefined, via: 'udp:x' }) } },
      { domain: D, zone: 'members.example', host: 'laptop' },
    ),
    RevokeError,
  )
  await assert.rejects(revokeUpdates(zoneOf(zone), D, 'a.b'), RevokeError)
})
