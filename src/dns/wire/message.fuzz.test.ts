// Fuzz (STYLE 5): 100,000 random and mutated packets through tryDecode. Nothing may escape as an exception;
// every packet that decodes must re-encode and decode to the same message. Deterministic (seeded xorshift),
// so a failure names its iteration and can be replayed.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { Opcode } from './header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message, tryDecode } from './message.js'
import { RRClass, RRType } from './rr-table.js'

failOnLeakedResources()

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s
  }
}

const Z = 'members.example.'
const seeds: Buffer[] = [
  emptyMessage({
    id: 1,
    rd: true,
    questions: [{ name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN }],
    edns: { udpSize: 1232, version: 0, do: true, options: [] },
  }),
  emptyMessage({
    id: 2,
    qr: true,
    aa: true,
    questions: [{ name: `alice.${Z}`, type: RRType.ANY, class: RRClass.IN }],
    answers: [
      { name: `alice.${Z}`, type: RRType.AAAA, class: 1, ttl: 60, data: { address: 'fdaa::1' } },
      {
        name: `_x._udp.alice.${Z}`,
        type: RRType.SRV,
        class: 1,
        ttl: 60,
        data: { priority: 0, weight: 0, port: 4500, target: `alice.${Z}` },
      },
      { name: `alice.${Z}`, type: RRType.TXT, class: 1, ttl: 60, data: { strings: [Buffer.from('a=b')] } },
      { name: `www.${Z}`, type: RRType.CNAME, class: 1, ttl: 60, data: { cname: `alice.${Z}` } },
    ],
    authorities: [
      {
        name: Z,
        type: RRType.SOA,
        class: 1,
        ttl: 60,
        data: { mname: `ns.${Z}`, rname: `h.${Z}`, serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 },
      },
    ],
    additionals: [{ name: `ns.${Z}`, type: RRType.A, class: 1, ttl: 60, data: { address: '192.0.2.1' } }],
  }),
  emptyMessage({
    id: 3,
    opcode: Opcode.UPDATE,
    questions: [{ name: Z, type: RRType.SOA, class: RRClass.IN }],
    answers: [{ name: `alice.${Z}`, type: RRType.ANY, class: RRClass.NONE, ttl: 0, data: null }],
    authorities: [
      { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.ANY, ttl: 0, data: null },
      { name: `alice.${Z}`, type: RRType.MX, class: 1, ttl: 60, data: { preference: 1, exchange: `mx.${Z}` } },
    ],
    edns: {
      udpSize: 1440,
      version: 0,
      do: false,
      options: [{ code: 2, data: Buffer.from('00000e1000015180', 'hex') }],
    },
    tsig: {
      name: 'key.',
      type: RRType.TSIG,
      class: RRClass.ANY,
      ttl: 0,
      data: {
        algorithm: 'hmac-sha256.',
        timeSigned: 1,
        fudge: 300,
        mac: Buffer.alloc(32, 1),
        originalId: 3,
        error: 0,
        otherData: Buffer.alloc(0),
      },
    },
  }),
].map((m) => encodeMessage(m))

function strip(m: Message): Message {
  const { tsigOffset: _t, ...rest } = m
  return rest
}

const ITERATIONS = 100_000

test(`${ITERATIONS} random and mutated packets decode without an uncaught exception`, () => {
  const rnd = xorshift(0x5eed)
  let decoded = 0
  let rejected = 0
  for (let i = 0; i < ITERATIONS; i++) {
    let buf: Buffer
    const kind = rnd() % 4
    if (kind === 0) {
      buf = Buffer.allocUnsafe(rnd() % 120)
      for (let j = 0; j < buf.length; j++) buf[j] = rnd() & 0xff
      if (buf.length >= 12) for (let o = 4; o < 12; o += 2) buf.writeUInt16BE(rnd() % 4, o)
    } else {
      buf = Buffer.from(seeds[rnd() % seeds.length]!)
      const flips = 1 + (rnd() % 4)
      for (let f = 0; f < flips; f++) {
        const at = rnd() % buf.length
        if (kind === 1) buf[at] = rnd() & 0xff
        else if (kind === 2) buf[at] = buf[at]! ^ (1 << (rnd() % 8))
        else buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + (rnd() % 4))])
      }
    }
    const r = tryDecode(buf)
    if (!r.ok) {
      rejected++
      continue
    }
    decoded++
    try {
      assert.deepEqual(strip(decodeMessage(encodeMessage(r.msg))), strip(r.msg))
    } catch (e) {
      assert.fail(`iteration ${i} (${buf.toString('hex')}): ${String(e)}`)
    }
  }
  assert.equal(decoded + rejected, ITERATIONS)
  assert.ok(decoded > 1000 && rejected > 1000, `decoded ${decoded}, rejected ${rejected}`)
})
