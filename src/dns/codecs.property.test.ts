// Arbitrary bytes into every decoder of src/dns outside wire/: each either returns or throws WireError, and
// TSIG verification never throws at all (STYLE 5).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../io/leak-check.js'
import { decodeDso, decodeKeepaliveTlv, decodePushTlv, decodeReconfirmTlv, decodeSubscribeTlv } from './dso.js'
import { decodeKeepalive } from './edns.js'
import { decodeUpdateLease } from './lease.js'
import { decodeLlq } from './llq.js'
import { TcpDeframer } from './tcp-framing.js'
import { signMessage, verifyMessage } from './tsig.js'
import { WireError } from './wire/errors.js'
import { emptyMessage } from './wire/message.js'

failOnLeakedResources()

const bytes = fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a))
const decoders: [string, (b: Buffer) => unknown][] = [
  ['decodeDso', decodeDso],
  ['decodeKeepaliveTlv', decodeKeepaliveTlv],
  ['decodePushTlv', decodePushTlv],
  ['decodeReconfirmTlv', decodeReconfirmTlv],
  ['decodeSubscribeTlv', decodeSubscribeTlv],
  ['decodeKeepalive', decodeKeepalive],
  ['decodeUpdateLease', decodeUpdateLease],
  ['decodeLlq', decodeLlq],
]

test('option and DSO decoders return or throw WireError on arbitrary bytes', () => {
  for (const [label, decode] of decoders) {
    fc.assert(
      fc.property(bytes, (b) => {
        try {
          decode(b)
        } catch (e) {
          assert.ok(e instanceof WireError, `${label}: ${String(e)}`)
        }
      }),
      { numRuns: 1000 },
    )
  }
})

test('verifyMessage never throws, on garbage or on mutated signed messages', () => {
  const key = { name: 'k.', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
  const signed = signMessage(emptyMessage({ id: 1, questions: [{ name: 'a.example.', type: 1, class: 1 }] }), key).wire
  const mutated = fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, v]) => {
    const b = Buffer.from(signed)
    b[at % b.length] = v
    return b
  })
  fc.assert(
    fc.property(fc.oneof(bytes, mutated), (b) => {
      const r = verifyMessage(b, () => key, { now: 0 })
      assert.equal(typeof r.ok, 'boolean')
    }),
    { numRuns: 3000 },
  )
})

test('TcpDeframer yields exactly the framed messages for any chunking', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }),
      (msgs, cuts) => {
        const stream = Buffer.concat(msgs.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])))
        const d = new TcpDeframer()
        const got: Buffer[] = []
        let at = 0
        for (let i = 0; at < stream.length; i++) {
          const n = cuts[i % cuts.length]!
          got.push(...d.push(stream.subarray(at, at + n)))
          at += n
        }
        assert.deepEqual(
          got.map((g) => Buffer.from(g)),
          msgs.map((m) => Buffer.from(m)),
        )
      },
    ),
    { numRuns: 500 },
  )
})

test('TcpDeframer: a 65,535-octet message sent one octet at a time costs linear work (no re-joining per chunk)', (t) => {
  const msg = Buffer.alloc(0xffff, 7)
  const stream = Buffer.concat([Buffer.from([0xff, 0xff]), msg])
  const d = new TcpDeframer()
  const got: Buffer[] = []
  // Count what the deframer allocates and copies rather than timing it: re-joining the pending octets with every
  // chunk (the quadratic deframer) made a new buffer per chunk and copied 2 GiB; linear work allocates the message
  // once and copies each octet once.
  const allocs = [
    t.mock.method(Buffer, 'concat'),
    t.mock.method(Buffer, 'alloc'),
    t.mock.method(Buffer, 'allocUnsafe'),
    t.mock.method(Buffer, 'allocUnsafeSlow'),
    t.mock.method(Buffer, 'from'),
  ]
  let copied = 0
  const copy = Buffer.prototype.copy
  t.mock.method(Buffer.prototype, 'copy', function (this: Buffer, ...args: Parameters<Buffer['copy']>) {
    const n = copy.apply(this, args)
    copied += n
    return n
  })
  for (let i = 0; i < stream.length; i++) got.push(...d.push(stream.subarray(i, i + 1)))
  const allocations = allocs.reduce((n, m) => n + m.mock.callCount(), 0)
  t.mock.restoreAll()
  assert.equal(got.length, 1)
  assert.ok(got[0]!.equals(msg))
  assert.equal(d.buffered, 0)
  assert.ok(allocations <= 2, `${allocations} buffers allocated for one message`)
  assert.ok(copied <= msg.length, `${copied} octets copied for a ${msg.length}-octet message`)
  d.push(Buffer.from([0x00]))
  assert.equal(d.buffered, 1, 'half a length prefix is held')
  d.push(Buffer.from([0x03, 1]))
  assert.equal(d.buffered, 3, 'prefix and one octet of a three-octet message')
})
