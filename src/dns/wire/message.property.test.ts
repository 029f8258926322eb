// Property tests (STYLE 5): generated messages round-trip through encode/decode, and arbitrary bytes either
// throw WireError or decode to a message that round-trips. Failing seeds become named cases in message.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { formatIPv4, formatIPv6 } from './addr.js'
import { WireError } from './errors.js'
import { decodeMessage, encodeMessage, type Message } from './message.js'
import { labelsToName } from './name.js'
import { type RData, type RR, RRType, rrRow } from './rr-table.js'

failOnLeakedResources()

const label = fc.uint8Array({ minLength: 1, maxLength: 20 }).map((a) => Buffer.from(a))
const plainLabel = fc.stringMatching(/^[a-z0-9-]{1,12}$/).map((s) => Buffer.from(s))
const name = fc
  .array(fc.oneof({ weight: 3, arbitrary: plainLabel }, { weight: 1, arbitrary: label }), { maxLength: 6 })
  .map(labelsToName)
const u16 = fc.integer({ min: 0, max: 0xffff })
const u32 = fc.integer({ min: 0, max: 0xffffffff })
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a))

const typed: fc.Arbitrary<{ type: number; data: RData }>[] = [
  bytes(4, 4).map((b) => ({ type: RRType.A, data: { address: formatIPv4(b, 0) } })),
  fc
    .oneof(
      bytes(16, 16),
      fc.constant(Buffer.alloc(16)),
      bytes(4, 4).map((b) => Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), b])),
    )
    .map((b) => ({ type: RRType.AAAA, data: { address: formatIPv6(b, 0) } })),
  name.map((n) => ({ type: RRType.NS, data: { nsdname: n } })),
  name.map((n) => ({ type: RRType.CNAME, data: { cname: n } })),
  name.map((n) => ({ type: RRType.PTR, data: { ptrdname: n } })),
  fc.tuple(name, name, u32, u32, u32, u32, u32).map(([mname, rname, serial, refresh, retry, expire, minimum]) => ({
    type: RRType.SOA,
    data: { mname, rname, serial, refresh, retry, expire, minimum },
  })),
  fc.tuple(u16, name).map(([preference, exchange]) => ({ type: RRType.MX, data: { preference, exchange } })),
  fc.array(bytes(0, 255), { minLength: 1, maxLength: 4 }).map((strings) => ({ type: RRType.TXT, data: { strings } })),
  fc.tuple(u16, u16, u16, name).map(([priority, weight, port, target]) => ({
    type: RRType.SRV,
    data: { priority, weight, port, target },
  })),
  fc
    .tuple(
      u16.filter((t) => rrRow(t) === undefined && t !== RRType.OPT),
      bytes(1, 40),
    )
    .map(([type, raw]) => ({ type, data: { raw } })),
  fc.constantFrom(RRType.ANY, RRType.A, RRType.AAAA, RRType.SRV, RRType.TXT).map((type) => ({ type, data: null })),
]

const rr: fc.Arbitrary<RR> = fc
  .tuple(name, fc.oneof(...typed), fc.constantFrom(1, 3, 254, 255), u32)
  .map(([n, td, cls, ttl]) => ({ name: n, type: td.type, class: cls, ttl, data: td.data }))

const question = fc.tuple(name, u16, u16).map(([n, type, cls]) => ({ name: n, type, class: cls }))

const edns = fc
  .tuple(u16, fc.integer({ min: 0, max: 255 }), fc.boolean(), fc.array(fc.tuple(u16, bytes(0, 20)), { maxLength: 3 }))
  .map(([udpSize, version, d, opts]) => ({
    udpSize,
    version,
    do: d,
    options: opts.map(([code, data]) => ({ code, data })),
  }))

const tsig = fc
  .tuple(name, name, fc.integer({ min: 0, max: 2 ** 48 - 1 }), u16, bytes(0, 64), u16, u16, bytes(0, 6))
  .map(([owner, algorithm, timeSigned, fudge, mac, originalId, error, otherData]) => ({
    name: owner,
    type: RRType.TSIG,
    class: 255,
    ttl: 0,
    data: { algorithm, timeSigned, fudge, mac, originalId, error, otherData },
  }))

const message: fc.Arbitrary<Message> = fc
  .record({
    id: u16,
    qr: fc.boolean(),
    opcode: fc.integer({ min: 0, max: 15 }),
    aa: fc.boolean(),
    tc: fc.boolean(),
    rd: fc.boolean(),
    ra: fc.boolean(),
    ad: fc.boolean(),
    cd: fc.boolean(),
    questions: fc.array(question, { maxLength: 2 }),
    answers: fc.array(rr, { maxLength: 5 }),
    authorities: fc.array(rr, { maxLength: 3 }),
    additionals: fc.array(rr, { maxLength: 3 }),
    edns: fc.option(edns, { nil: undefined }),
    tsig: fc.option(tsig, { nil: undefined }),
    rcode: fc.integer({ min: 0, max: 0xfff }),
  })
  .map((m) => {
    const out: Message = { ...m, rcode: m.edns === undefined ? m.rcode & 0xf : m.rcode }
    if (out.edns === undefined) delete out.edns
    if (out.tsig === undefined) delete out.tsig
    return out
  })

function strip(m: Message): Message {
  const { tsigOffset: _t, ...rest } = m
  return rest
}

test('decode(encode(m)) equals m for generated messages, with and without compression', () => {
  fc.assert(
    fc.property(message, fc.boolean(), (m, compress) => {
      const wire = encodeMessage(m, { compress })
      assert.deepEqual(strip(decodeMessage(wire)), m)
    }),
    { numRuns: 2000 },
  )
})

test('arbitrary bytes throw WireError or decode to a message that round-trips', () => {
  const header = fc
    .tuple(
      u16,
      u16,
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 3 }),
    )
    .map(([id, flags, qd, an, ns, ar]) => {
      const b = Buffer.alloc(12)
      b.writeUInt16BE(id, 0)
      b.writeUInt16BE(flags, 2)
      b.writeUInt16BE(qd, 4)
      b.writeUInt16BE(an, 6)
      b.writeUInt16BE(ns, 8)
      b.writeUInt16BE(ar, 10)
      return b
    })
  const input = fc.oneof(
    bytes(0, 300),
    fc.tuple(header, bytes(0, 200)).map(([h, b]) => Buffer.concat([h, b])),
    fc.tuple(message, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([m, at, v]) => {
      const w = Buffer.from(encodeMessage(m))
      w[at % w.length] = v
      return w
    }),
  )
  fc.assert(
    fc.property(input, (buf) => {
      let m: Message
      try {
        m = decodeMessage(buf)
      } catch (e) {
        assert.ok(e instanceof WireError, String(e))
        return
      }
      const again = decodeMessage(encodeMessage(m))
      assert.deepEqual(strip(again), strip(m))
    }),
    { numRuns: 5000 },
  )
})
