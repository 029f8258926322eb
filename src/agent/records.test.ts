import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RRType } from '../dns/wire/rr-table.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { hostRecords, parseServiceSpec, ServiceSpecError } from './records.js'

failOnLeakedResources()

test('parseServiceSpec', () => {
  const ok: [string, string, number][] = [
    ['_ssh._tcp:22', '_ssh._tcp', 22],
    ['ssh:22', '_ssh._tcp', 22],
    ['_SSH:22', '_ssh._tcp', 22],
    ['_dns._udp:53', '_dns._udp', 53],
    ['_http._tcp:8080', '_http._tcp', 8080],
  ]
  for (const [s, type, port] of ok) assert.deepEqual(parseServiceSpec(s), { type, port }, s)
  for (const bad of ['ssh', ':22', 'ssh:0', 'ssh:65536', 'ssh:2x', '_ssh._sctp:22', '_a._b._tcp:1', 'ss h:22'])
    assert.throws(() => parseServiceSpec(bad), ServiceSpecError, bad)
})

test('hostRecords: names and types per seed 002 section 5.2, with the SRV target holding AAAA, A and TXT', () => {
  const rrs = hostRecords({
    hostname: 'laptop',
    domain: 'bob.zone.test.',
    ula: 'fd00::1',
    label: 'AutoTunnel-02-00-00-FF-FE-00-00-01',
    endpoint: { address: '192.0.2.9', port: 4500 },
    nat: 'unmapped',
    services: [
      { type: '_ssh._tcp', port: 22 },
      { type: '_ssh._tcp', port: 22 },
    ],
    ttlSec: 30,
    agentVersion: 'x',
  })
  const names = rrs.map((p) => `${p.rr.name} ${p.rr.type} ${p.sharing}`)
  const target = 'AutoTunnel-02-00-00-FF-FE-00-00-01.bob.zone.test.'
  assert.deepEqual(names, [
    `${target} ${RRType.AAAA} owned`,
    `${target} ${RRType.A} owned`,
    `${target} ${RRType.TXT} owned`,
    `_autotunnel._udp.laptop.bob.zone.test. ${RRType.SRV} owned`,
    `laptop.bob.zone.test. ${RRType.AAAA} owned`,
    `_autotunnel._udp.bob.zone.test. ${RRType.PTR} shared`,
    `_ssh._tcp.bob.zone.test. ${RRType.PTR} shared`,
    `laptop._ssh._tcp.bob.zone.test. ${RRType.SRV} owned`,
    `laptop._ssh._tcp.bob.zone.test. ${RRType.TXT} owned`,
    `_services._dns-sd._udp.bob.zone.test. ${RRType.PTR} persistent`,
  ])
  assert.ok(rrs.every((p) => p.rr.ttl === 30))
})
