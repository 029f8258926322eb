import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { epochValid } from './epoch.js'
import { isPrivateIPv4, readIp16, writeIp16 } from './ip.js'
import { parseProcNetRoute } from './netinfo.js'

failOnLeakedResources()

const ROUTE = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
`

test('/proc/net/route: the lowest-metric default route wins; gateway is little-endian hex', () => {
  assert.deepEqual(parseProcNetRoute(ROUTE), { ifname: 'eth0', gateway: '10.0.0.1', metric: 100 })
  assert.equal(parseProcNetRoute(ROUTE.split('\n').slice(0, 1).join('\n')), undefined)
})

const PRIVATE: [string, boolean][] = [
  ['10.1.2.3', true],
  ['172.16.0.1', true],
  ['172.31.255.255', true],
  ['172.32.0.1', false],
  ['192.168.1.10', true],
  ['100.64.0.1', true],
  ['100.127.255.255', true],
  ['100.128.0.1', false],
  ['169.254.1.1', true],
  ['127.0.0.1', true],
  ['203.0.113.1', false],
  ['198.51.100.20', false],
  ['fd00::1', false],
]
for (const [a, want] of PRIVATE) test(`isPrivateIPv4(${a}) = ${want}`, () => assert.equal(isPrivateIPv4(a), want))

test('16-byte addresses: IPv4-mapped and IPv6 round-trip', () => {
  for (const a of [
    '10.0.1.10',
    '0.0.0.0',
    '::',
    '2001:db8::1',
    'fd12:3456:789a:1::5',
    '::ffff:1.2.3.4'.replace('::ffff:', ''),
  ]) {
    const b = Buffer.alloc(16)
    writeIp16(b, 0, a)
    assert.equal(readIp16(b, 0), a)
  }
})

const EPOCHS: [string, [number, number] | undefined, [number, number], boolean][] = [
  ['first answer is always valid', undefined, [5, 0], true],
  ['advancing with the clock', [100, 0], [160, 60_000], true],
  ['gateway restarted: epoch went back', [100, 0], [3, 60_000], false],
  ['one second back is tolerated', [100, 0], [99, 500], true],
  ['gateway clock stalled for 60 s', [100, 0], [100, 60_000], false],
  ['gateway clock ran 60 s ahead', [100, 0], [200, 40_000], false],
  ['within 2 s + 1/16', [100, 0], [132, 32_000 + 3_000], true],
]
for (const [name, prev, cur, want] of EPOCHS)
  test(`RFC 6887 8.5 epoch check: ${name}`, () =>
    assert.equal(epochValid(prev && { epochSec: prev[0], atMs: prev[1] }, { epochSec: cur[0], atMs: cur[1] }), want))
