import assert from 'node:assert/strict'
import { isIPv6 } from 'node:net'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { formatIPv4, formatIPv6, parseIPv4Into, parseIPv6Into } from './addr.js'
import { WireError } from './errors.js'

failOnLeakedResources()

const v6 = (s: string) => {
  const b = Buffer.alloc(16)
  parseIPv6Into(s, b, 0, 'AAAA.address')
  return b.toString('hex')
}

test('IPv6 text parses per RFC 4291 2.2 and formats per RFC 5952', () => {
  const cases: [string, string, string][] = [
    ['::', '00000000000000000000000000000000', '::'],
    ['::1', '00000000000000000000000000000001', '::1'],
    ['1::', '00010000000000000000000000000000', '1::'],
    ['fdaa:1::1', 'fdaa0001000000000000000000000001', 'fdaa:1::1'],
    ['2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201', '::ffff:192.0.2.1'],
    ['::192.0.2.1', '000000000000000000000000c0000201', '::192.0.2.1'],
    ['64:ff9b::192.0.2.1', '0064ff9b0000000000000000c0000201', '64:ff9b::c000:201'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008', '1:2:3:4:5:6:7:8'],
    ['1:0:0:2:0:0:0:3', '00010000000000020000000000000003', '1:0:0:2::3'],
  ]
  for (const [text, hex, canonical] of cases) {
    assert.equal(v6(text), hex, text)
    assert.equal(formatIPv6(Buffer.from(hex, 'hex'), 0), canonical, text)
  }
  const bad = [
    '',
    ':',
    ':1',
    '1:',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '12345::',
    'g::',
    '::1.2.3',
    '::1.2.3.256',
    '1:2:3:4:5:6:7:1.2.3.4',
    '::ffff:1.2.3.4:5',
  ]
  for (const s of bad) assert.throws(() => v6(s), WireError, s)
})

test('IPv6 parse agrees with node:net and round-trips random addresses', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
      const b = Buffer.from(a)
      const text = formatIPv6(b, 0)
      assert.ok(isIPv6(text), text)
      assert.equal(v6(text), b.toString('hex'))
    }),
    { numRuns: 2000 },
  )
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), (s) => {
      let ok = true
      try {
        v6(s)
      } catch {
        ok = false
      }
      assert.equal(ok, isIPv6(s) && !s.includes('%'), s)
    }),
    { numRuns: 3000 },
  )
})

test('IPv4 dotted quads', () => {
  const b = Buffer.alloc(4)
  parseIPv4Into('198.51.100.255', b, 0, 'A.address')
  assert.equal(formatIPv4(b, 0), '198.51.100.255')
  for (const s of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', 'a.b.c.d', '1.2.3.4 ', ''])
    assert.throws(() => parseIPv4Into(s, b, 0, 'A'), WireError, s)
})
