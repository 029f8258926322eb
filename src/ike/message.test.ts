import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../io/leak-check.js'
import { CRITICAL_FLAG, ExchangeType, HeaderFlag, NotifyType, PayloadType, ProtocolId } from './constants.js'
import { IkeWireError } from './errors.js'
import { decodeMessage, decryptMessage, encodeEncryptedMessage, encodeMessage, type HeaderFields } from './message.js'
import { bytesToIp, ipToBytes, type Payload, tsForHost } from './payloads.js'
import { childProposal, DEFAULT_CHILD_POLICY, DEFAULT_IKE_POLICY, ikeProposal } from './proposals.js'

failOnLeakedResources()

const H: HeaderFields = {
  spiI: Buffer.from('0102030405060708', 'hex'),
  spiR: Buffer.from('1112131415161718', 'hex'),
  exchangeType: ExchangeType.IKE_AUTH,
  flags: HeaderFlag.INITIATOR,
  messageId: 1,
}

export const SAMPLE_PAYLOADS: Payload[] = [
  {
    type: PayloadType.SA,
    proposals: [
      ikeProposal(DEFAULT_IKE_POLICY),
      { ...childProposal(DEFAULT_CHILD_POLICY, Buffer.from('cafebabe', 'hex'), true), num: 2 },
    ],
  },
  { type: PayloadType.KE, group: 31, data: Buffer.alloc(32, 0x55) },
  { type: PayloadType.NONCE, data: Buffer.alloc(32, 0x66) },
  { type: PayloadType.IDi, idType: 2, data: Buffer.from('a.alice.example') },
  { type: PayloadType.AUTH, method: 14, data: Buffer.from('0730050603', 'hex') },
  {
    type: PayloadType.NOTIFY,
    protocolId: 0,
    spi: Buffer.alloc(0),
    notifyType: NotifyType.NAT_DETECTION_SOURCE_IP,
    data: Buffer.alloc(20, 1),
  },
  {
    type: PayloadType.NOTIFY,
    protocolId: ProtocolId.ESP,
    spi: Buffer.from('01020304', 'hex'),
    notifyType: NotifyType.REKEY_SA,
    data: Buffer.alloc(0),
  },
  {
    type: PayloadType.DELETE,
    protocolId: ProtocolId.ESP,
    spiSize: 4,
    spis: [Buffer.from('01020304', 'hex'), Buffer.from('0a0b0c0d', 'hex')],
  },
  {
    type: PayloadType.TSi,
    selectors: [
      tsForHost('fd00:a::1'),
      { ...tsForHost('192.0.2.1'), endAddr: '192.0.2.9', ipProtocolId: 17, startPort: 500, endPort: 4500 },
    ],
  },
  { type: PayloadType.TSr, selectors: [{ ...tsForHost('fd00::'), endAddr: 'fd00::ffff:ffff' }] },
  { type: PayloadType.VENDOR, opaque: true, critical: false, body: Buffer.from('strongSwan') },
]

test('every payload type round-trips through encode and decode', () => {
  const raw = encodeMessage(H, SAMPLE_PAYLOADS)
  const m = decodeMessage(raw)
  assert.equal(m.header.length, raw.length)
  assert.equal(m.header.exchangeType, ExchangeType.IKE_AUTH)
  assert.equal(m.header.messageId, 1)
  assert.deepEqual(m.payloads, SAMPLE_PAYLOADS)
  assert.equal(m.unsupportedCritical, undefined)
})

test('SK payload: AEAD round trip for each cipher; a flipped bit fails the ICV', () => {
  for (const [alg, len] of [
    ['aes-128-gcm', 20],
    ['aes-256-gcm', 36],
    ['chacha20-poly1305', 36],
  ] as const) {
    const c = { alg, keymat: Buffer.alloc(len, 3) }
    const raw = encodeEncryptedMessage(H, SAMPLE_PAYLOADS, c, Buffer.alloc(8, 9))
    const m = decodeMessage(raw)
    assert.deepEqual(decryptMessage(m, c)?.payloads, SAMPLE_PAYLOADS)
    for (const at of [0, 20, 30, raw.length - 1]) {
      const bad = Buffer.from(raw)
      bad[at]! ^= 0x10
      let r: ReturnType<typeof decryptMessage> | 'wire' = 'wire'
      try {
        r = decryptMessage(decodeMessage(bad), c)
      } catch (e) {
        assert.ok(e instanceof IkeWireError)
      }
      assert.ok(r === undefined || r === 'wire', `bit flip at ${at} must not decrypt`)
    }
  }
})

test('unknown payloads: non-critical skipped, critical reported for UNSUPPORTED_CRITICAL_PAYLOAD (3.2)', () => {
  const p: Payload[] = [
    { type: 200, opaque: true, critical: false, body: Buffer.from('x') },
    { type: 201, opaque: true, critical: true, body: Buffer.from('y') },
  ]
  const m = decodeMessage(encodeMessage(H, p))
  assert.equal(m.unsupportedCritical, 201)
  // a known payload with the critical bit set is understood, not reported
  const raw = encodeMessage(H, [{ type: PayloadType.NONCE, data: Buffer.alloc(16) }])
  raw[28 + 1]! |= CRITICAL_FLAG
  assert.equal(decodeMessage(raw).unsupportedCritical, undefined)
})

test('table: malformed messages give IkeWireError naming the field', () => {
  const good = encodeMessage(H, SAMPLE_PAYLOADS)
  const cases: [string, Buffer, RegExp][] = [
    ['short header', good.subarray(0, 20), /IKE.header/],
    ['length field mismatch', Buffer.concat([good, Buffer.alloc(1)]), /IKE.length/],
    [
      'payload longer than message',
      (() => {
        const b = Buffer.from(good)
        b.writeUInt16BE(0xffff, 30)
        return b
      })(),
      /length/,
    ],
    [
      'payload length below 4',
      (() => {
        const b = Buffer.from(good)
        b.writeUInt16BE(2, 30)
        return b
      })(),
      /length/,
    ],
  ]
  for (const [name, buf, field] of cases)
    assert.throws(
      () => decodeMessage(buf),
      (e: unknown) => e instanceof IkeWireError && field.test(e.field),
      name,
    )
})

// Fuzzer: corpus/ike/crash-timeout-359d9131, 4 KiB of such payloads ran the heap out (60 s, then abort).
test('a Delete payload claiming SPIs of size 0 is refused, so its count cannot make work without octets', () => {
  const del = (numSpis: number): Buffer => {
    const body = Buffer.from([ProtocolId.IKE, 0, numSpis >> 8, numSpis & 0xff])
    const payload = Buffer.concat([Buffer.from([PayloadType.NONE, 0, 0, 4 + body.length]), body])
    const h = encodeMessage(H, [])
    h.writeUInt8(PayloadType.DELETE, 16)
    h.writeUInt32BE(h.length + payload.length, 24)
    return Buffer.concat([h, payload])
  }
  const ok = decodeMessage(del(0)).payloads[0]
  assert.deepEqual(ok, { type: PayloadType.DELETE, protocolId: ProtocolId.IKE, spiSize: 0, spis: [] })
  assert.throws(
    () => decodeMessage(del(0xffff)),
    (e: unknown) => e instanceof IkeWireError && e.field === 'D.numSpis',
  )
})

test('IPv6 and IPv4 address text <-> bytes (RFC 5952 output)', () => {
  for (const a of ['fd00:a::1', '::', '::1', 'fe80::1:2:3:4', '2001:db8::', '1:2:3:4:5:6:7:8', '192.0.2.1'])
    assert.equal(bytesToIp(ipToBytes(a)), a)
  assert.equal(bytesToIp(ipToBytes('::ffff:192.0.2.1')), '::ffff:c000:201')
  assert.equal(bytesToIp(ipToBytes('1:0:0:2:0:0:0:3')), '1:0:0:2::3')
})

test('property: arbitrary bytes decode or throw IkeWireError; decoded messages re-encode to equal payloads', () => {
  const withHeader = fc.uint8Array({ minLength: 0, maxLength: 300 }).map((b) => {
    const body = Buffer.from(b)
    const h = encodeMessage(H, [])
    const out = Buffer.concat([h, body])
    out.writeUInt32BE(out.length, 24)
    if (body.length > 0) out[16] = [33, 34, 35, 39, 40, 41, 42, 44, 46, 43, 200][body[0]! % 11]!
    return out
  })
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
        withHeader,
      ),
      (buf) => {
        let m: ReturnType<typeof decodeMessage>
        try {
          m = decodeMessage(buf)
        } catch (e) {
          assert.ok(e instanceof IkeWireError, String(e))
          return
        }
        if (m.payloads.some((p) => p.type === PayloadType.SK)) return
        const again = decodeMessage(encodeMessage(H, m.payloads))
        assert.deepEqual(
          again.payloads,
          m.payloads.map((p) => ('opaque' in p ? { ...p, critical: p.critical } : p)),
        )
      },
    ),
    { numRuns: 3000 },
  )
})
