import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { WireError } from './errors.js'
import { Opcode, Rcode } from './header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message, tryDecode } from './message.js'
import { dataOf, type RR, RRClass, RRType, type TSIGData } from './rr-table.js'

failOnLeakedResources()

const Z = 'members.example.'
const rr = (name: string, type: number, data: RR['data'], cls: number = RRClass.IN, ttl = 60): RR => ({
  name,
  type,
  class: cls,
  ttl,
  data,
})

const tsig: RR<TSIGData> = rr(
  'key.',
  RRType.TSIG,
  {
    algorithm: 'hmac-sha256.',
    timeSigned: 1_700_000_000,
    fudge: 300,
    mac: Buffer.alloc(32, 7),
    originalId: 4242,
    error: 0,
    otherData: Buffer.alloc(0),
  },
  RRClass.ANY,
  0,
) as RR<TSIGData>

const cases: { name: string; msg: Message }[] = [
  {
    name: 'query with EDNS and the DO bit',
    msg: emptyMessage({
      id: 1,
      rd: true,
      questions: [{ name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN }],
      edns: { udpSize: 1232, version: 0, do: true, options: [] },
    }),
  },
  {
    name: 'answer with every typed RDATA',
    msg: emptyMessage({
      id: 0xffff,
      qr: true,
      aa: true,
      ra: true,
      ad: true,
      cd: true,
      questions: [{ name: `alice.${Z}`, type: RRType.ANY, class: RRClass.IN }],
      answers: [
        rr(`alice.${Z}`, RRType.A, { address: '192.0.2.1' }),
        rr(`alice.${Z}`, RRType.AAAA, { address: 'fdaa:1::1' }),
        rr(`alice.${Z}`, RRType.AAAA, { address: '::ffff:192.0.2.1' }),
        rr(Z, RRType.NS, { nsdname: `ns.${Z}` }),
        rr(`www.${Z}`, RRType.CNAME, { cname: `alice.${Z}` }),
        rr('1.2.0.192.in-addr.arpa.', RRType.PTR, { ptrdname: `alice.${Z}` }),
        rr(Z, RRType.MX, { preference: 10, exchange: `mail.${Z}` }),
        rr(`alice.${Z}`, RRType.TXT, { strings: [Buffer.from('txtvers=1'), Buffer.alloc(0), Buffer.alloc(255, 0x41)] }),
        rr(`_btmm._udp.alice.${Z}`, RRType.SRV, { priority: 0, weight: 5, port: 4500, target: `alice.${Z}` }),
        rr(`alice.${Z}`, 65280, { raw: Buffer.from([0, 1, 2, 0xff]) }),
        rr(`alice.${Z}`, RRType.DNSKEY, { raw: Buffer.from('0101030d', 'hex') }),
      ],
      authorities: [
        rr(Z, RRType.SOA, {
          mname: `ns.${Z}`,
          rname: `host\\.master.${Z}`,
          serial: 0xffffffff,
          refresh: 3600,
          retry: 600,
          expire: 86400,
          minimum: 60,
        }),
      ],
      additionals: [rr(`ns.${Z}`, RRType.A, { address: '198.51.100.53' }, RRClass.IN, 0xffffffff)],
    }),
  },
  {
    name: 'UPDATE with RFC 2136 class ANY / NONE and empty RDATA, EDNS lease option and TSIG',
    msg: emptyMessage({
      id: 4242,
      opcode: Opcode.UPDATE,
      questions: [{ name: Z, type: RRType.SOA, class: RRClass.IN }],
      answers: [rr(`alice.${Z}`, RRType.ANY, null, RRClass.ANY, 0), rr(`bob.${Z}`, RRType.AAAA, null, RRClass.NONE, 0)],
      authorities: [
        rr(`alice.${Z}`, RRType.AAAA, null, RRClass.ANY, 0),
        rr(`alice.${Z}`, RRType.ANY, null, RRClass.ANY, 0),
        rr(`alice.${Z}`, RRType.A, { address: '203.0.113.9' }, RRClass.NONE, 0),
        rr(`alice.${Z}`, RRType.AAAA, { address: 'fdaa::9' }, RRClass.IN, 120),
      ],
      edns: {
        udpSize: 1440,
        version: 0,
        do: false,
        options: [{ code: 2, data: Buffer.from('00000e1000015180', 'hex') }],
      },
      tsig,
    }),
  },
  {
    name: 'extended RCODE BADVERS through EDNS',
    msg: emptyMessage({
      id: 9,
      qr: true,
      rcode: Rcode.BADVERS,
      edns: { udpSize: 512, version: 1, do: false, options: [] },
    }),
  },
  { name: 'empty NOTIFY', msg: emptyMessage({ id: 3, opcode: Opcode.NOTIFY, aa: true }) },
]

test('encode then decode gives the same message', () => {
  for (const c of cases) {
    const wire = encodeMessage(c.msg)
    const back = decodeMessage(wire)
    const { tsigOffset, ...rest } = back
    assert.deepEqual(rest, c.msg, c.name)
    assert.equal(tsigOffset === undefined, c.msg.tsig === undefined, c.name)
    assert.deepEqual(encodeMessage(back), wire, `${c.name}: re-encode is byte-identical`)
    assert.deepEqual(encodeMessage(c.msg, { compress: false }).length >= wire.length, true)
    assert.deepEqual(decodeMessage(encodeMessage(c.msg, { compress: false })).answers, c.msg.answers, c.name)
  }
})

test('known wire bytes decode to the expected fields (dig-generated query)', () => {
  // dig +qr -p 5353 @127.0.0.1 mac1.rp.test AAAA (id 0x1234, RD, AD, EDNS 1232 with a cookie option)
  const wire = Buffer.from(
    '12340120000100000000000104' +
      '6d616331027270047465737400001c0001' +
      '0000290 4d0 000000 00 000c 000a 0008 0102030405060708'.replace(/ /g, ''),
    'hex',
  )
  const m = decodeMessage(wire)
  assert.equal(m.id, 0x1234)
  assert.equal(m.rd, true)
  assert.equal(m.ad, true)
  assert.deepEqual(m.questions, [{ name: 'mac1.rp.test.', type: RRType.AAAA, class: RRClass.IN }])
  assert.equal(m.edns?.udpSize, 1232)
  assert.deepEqual(m.edns?.options, [{ code: 10, data: Buffer.from('0102030405060708', 'hex') }])
})

test('dataOf narrows typed RDATA', () => {
  const a = rr('x.', RRType.SRV, { priority: 1, weight: 2, port: 3, target: 'y.' })
  assert.equal(dataOf(a, RRType.SRV)?.port, 3)
  assert.equal(dataOf(a, RRType.A), undefined)
  assert.equal(dataOf(rr('x.', RRType.SRV, null), RRType.SRV), undefined)
})

const enc = (m: Partial<Message>) => encodeMessage(emptyMessage(m))

test('malformed messages throw WireError and tryDecode reports id and opcode', () => {
  const opt = { udpSize: 512, version: 0, do: false, options: [] }
  const twoOpt = Buffer.concat([
    enc({ id: 5, opcode: Opcode.UPDATE, edns: opt }),
    Buffer.from('0000290200000000000000', 'hex'),
  ])
  twoOpt.writeUInt16BE(2, 10)
  const tsigFirst = Buffer.concat([enc({ id: 6, tsig }), Buffer.from('00000100010000000000', 'hex')])
  tsigFirst.writeUInt16BE(2, 10)
  const cases: { name: string; wire: Buffer; field: string; id?: number }[] = [
    { name: 'short header', wire: Buffer.from('0001', 'hex'), field: 'header' },
    { name: 'question count too high', wire: Buffer.from('000701000001000000000000', 'hex'), field: 'name', id: 7 },
    { name: 'trailing octets', wire: Buffer.concat([enc({ id: 8 }), Buffer.from([0])]), field: 'message', id: 8 },
    { name: 'two OPT records', wire: twoOpt, field: 'OPT', id: 5 },
    { name: 'TSIG not last', wire: tsigFirst, field: 'TSIG', id: 6 },
    {
      name: 'A with 3-octet RDATA',
      wire: Buffer.from('000981800000000100000000' + '00 0001 0001 00000000 0003 010203'.replace(/ /g, ''), 'hex'),
      field: 'A.address',
      id: 9,
    },
    {
      name: 'RDATA past the end',
      wire: Buffer.from('000a81800000000100000000' + '00 0001 0001 00000000 0004 0102'.replace(/ /g, ''), 'hex'),
      field: 'rdata',
      id: 10,
    },
    {
      name: 'OPT in the answer section',
      wire: Buffer.from('000b81800000000100000000' + '00 0029 0200 00000000 0000'.replace(/ /g, ''), 'hex'),
      field: 'OPT',
      id: 11,
    },
  ]
  for (const c of cases) {
    assert.throws(
      () => decodeMessage(c.wire),
      (e: unknown) => e instanceof WireError && e.field === c.field,
      c.name,
    )
    const r = tryDecode(c.wire)
    assert.equal(r.ok, false, c.name)
    if (!r.ok) {
      assert.equal(r.error.code, Rcode.FORMERR)
      assert.equal(r.id, c.id, c.name)
    }
  }
})

test('maxSize truncation drops records, sets TC for answers, keeps EDNS and TSIG', () => {
  const answers = Array.from({ length: 40 }, (_, i) => rr(`h${i}.${Z}`, RRType.AAAA, { address: `fdaa::${i + 1}` }))
  const edns = { udpSize: 512, version: 0, do: false, options: [] }
  const msg = emptyMessage({
    id: 1,
    qr: true,
    questions: [{ name: Z, type: RRType.AAAA, class: 1 }],
    answers,
    edns,
    tsig,
  })
  const wire = encodeMessage(msg, { maxSize: 512 })
  assert.ok(wire.length <= 512)
  const back = decodeMessage(wire)
  assert.equal(back.tc, true)
  assert.ok(back.answers.length > 5 && back.answers.length < 40)
  assert.deepEqual(back.answers, answers.slice(0, back.answers.length))
  assert.deepEqual(back.edns, edns)
  assert.deepEqual(back.tsig, tsig)

  const extra = emptyMessage({ id: 2, qr: true, answers: answers.slice(0, 2), additionals: answers })
  const back2 = decodeMessage(encodeMessage(extra, { maxSize: 512 }))
  assert.equal(back2.tc, false, 'dropping additional data does not set TC')
  assert.equal(back2.answers.length, 2)
  assert.throws(() => encodeMessage(emptyMessage({ answers: Array(3000).fill(answers[0]) })), WireError)
})

test('encoder rejects bad field values with WireError', () => {
  const bad: RR[] = [
    rr('x.', RRType.A, { address: '1.2.3' }),
    rr('x.', RRType.AAAA, { address: '1::2::3' }),
    rr('x.', RRType.SRV, { priority: 1, weight: 2, port: 70000, target: 'y.' }),
    rr('x.', RRType.MX, { preference: 1 } as never),
    rr('x..', RRType.A, { address: '1.2.3.4' }),
    rr('x.', RRType.TXT, { strings: [Buffer.alloc(256)] }),
  ]
  for (const r of bad) assert.throws(() => enc({ answers: [r] }), WireError, JSON.stringify(r))
  assert.throws(() => enc({ rcode: Rcode.BADVERS }), WireError)
})
