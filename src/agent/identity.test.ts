import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { isIPv6 } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { FakeRandom } from '../io/random.fake.js'
import {
  autoTunnelLabel,
  createIdentity,
  eui64FromMac,
  formatIpv6,
  loadIdentity,
  parseMac,
  saveIdentity,
} from './identity.js'

failOnLeakedResources()

test('EUI-64 and label of the RFC 6281 section 3 example MAC', () => {
  const eui = eui64FromMac(parseMac('00:22:69:8e:34:2a')!)
  assert.equal(eui.toString('hex'), '002269fffe8e342a')
  assert.equal(autoTunnelLabel(eui), 'AutoTunnel-00-22-69-FF-FE-8E-34-2A')
})

test('parseMac rejects what cannot name an interface', () => {
  const cases: [string, boolean][] = [
    ['00:22:69:8e:34:2a', true],
    ['00-22-69-8E-34-2A', true],
    ['00:00:00:00:00:00', false],
    ['01:00:5e:00:00:01', false],
    ['00:22:69:8e:34', false],
    ['zz:22:69:8e:34:2a', false],
    ['', false],
  ]
  for (const [mac, ok] of cases) assert.equal(parseMac(mac) !== undefined, ok, mac)
})

test('formatIpv6 agrees with the WHATWG URL host serializer (RFC 5952 form)', () => {
  const cases: [string, string][] = [
    ['fd000000000000000000000000000001', 'fd00::1'],
    ['00000000000000000000000000000000', '::'],
    ['20010db8000000010000000000000001', '2001:db8:0:1::1'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
  ]
  for (const [hex, want] of cases) assert.equal(formatIpv6(Buffer.from(hex, 'hex')), want)
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.boolean(), (bytes, zeroes) => {
      const b = Buffer.from(bytes)
      if (zeroes) b.fill(0, 4, 10)
      const oracle = new URL(`http://[${formatIpv6(b)}]/`).hostname.slice(1, -1)
      assert.equal(formatIpv6(b), oracle)
    }),
  )
})

test('the ULA is fd + 7 random octets + the EUI-64, and a new start makes a new one', () => {
  const clock = new FakeClock()
  const random = new FakeRandom(7)
  const primary = { name: 'eth0', mac: '00:22:69:8E:34:2A' }
  const a = createIdentity({ random, clock }, primary)
  const b = createIdentity({ random, clock }, primary)
  for (const id of [a, b]) {
    assert.ok(isIPv6(id.ula))
    assert.match(id.ula, /^fd/)
    assert.match(id.ula, /:22:69ff:fe8e:342a$/)
    assert.equal(id.label, 'AutoTunnel-00-22-69-FF-FE-8E-34-2A')
    assert.equal(id.interface, 'eth0')
    assert.equal(id.mac, '00:22:69:8e:34:2a')
  }
  assert.notEqual(a.ula, b.ula)
})

test('without a MAC the EUI-64 is random, locally administered and unicast', () => {
  const id = createIdentity({ random: new FakeRandom(3), clock: new FakeClock() }, { name: 'tun0', mac: '' })
  const first = Number.parseInt(id.eui64.slice(0, 2), 16)
  assert.equal(first & 0x02, 0x02)
  assert.equal(first & 0x01, 0)
  assert.equal(id.interface, '')
  assert.match(id.label, /^AutoTunnel-([0-9A-F]{2}-){7}[0-9A-F]{2}$/)
})

test('identity persists in the state directory', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'at-id-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  assert.equal(await loadIdentity(dir), undefined)
  const id = createIdentity(
    { random: new FakeRandom(), clock: new FakeClock() },
    { name: 'eth0', mac: '02:00:00:00:00:01' },
  )
  await saveIdentity(dir, id)
  assert.deepEqual(await loadIdentity(dir), id)
})
