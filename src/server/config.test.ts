import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { parseAddrPort } from './config.js'
import { parseAdvertise } from './run.js'

failOnLeakedResources()

test('ADDR:PORT parsing, IPv6 in brackets', () => {
  const table: [string, { host: string; port: number }][] = [
    ['127.0.0.1:5300', { host: '127.0.0.1', port: 5300 }],
    ['[::1]:53', { host: '::1', port: 53 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
  ]
  for (const [s, want] of table) assert.deepEqual(parseAddrPort(s), want, s)
  assert.deepEqual(parseAddrPort('::', 853), { host: '::', port: 853 })
  assert.throws(() => parseAddrPort('nonsense'), TypeError)
})

test('--advertise: HOST:ADDR (IPv6 too), bare ADDR, relative host names go under the zone', () => {
  assert.deepEqual(
    parseAdvertise(['ns.members.example:203.0.113.5', 'ns.members.example:2001:db8::5'], 'members.example.'),
    {
      host: 'ns.members.example.',
      addrs: ['203.0.113.5', '2001:db8::5'],
    },
  )
  assert.deepEqual(parseAdvertise(['ns1:192.0.2.1'], 'members.example.'), {
    host: 'ns1.members.example.',
    addrs: ['192.0.2.1'],
  })
  assert.deepEqual(parseAdvertise(['192.0.2.1'], 'members.example.'), { host: undefined, addrs: ['192.0.2.1'] })
  assert.throws(() => parseAdvertise(['a.example:192.0.2.1', 'b.example:192.0.2.2'], 'members.example.'), TypeError)
  assert.throws(() => parseAdvertise(['host-without-address'], 'members.example.'), TypeError)
})
