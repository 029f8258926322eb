// Debian's dnspython 2.3 (/usr/bin/python3) as a second independent implementation: it parses and
// TSIG-verifies messages we encode and sign (all six algorithms, a chained response, a TCP stream), and we
// decode and verify messages it builds and signs. Record text on both sides must agree.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeUpdateLease } from '../../src/dns/lease.js'
import { decodeLlq, encodeLlq, LlqOpcode } from '../../src/dns/llq.js'
import { signMessage, TsigAlgorithm, type TsigKey, verifyMessage } from '../../src/dns/tsig.js'
import { TsigStreamSigner } from '../../src/dns/tsig-stream.js'
import { Opcode } from '../../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../../src/dns/wire/message.js'
import { nameEqual } from '../../src/dns/wire/name.js'
import { type RR, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { rrToText } from '../../src/dns/wire/text.js'
import { dnspython } from './dns-support.js'

const SECRET_B64 = '8xytkfBZByo3GVcUN5W5oeyz5Hwr7x6FuHznXPy3vwo='
const keys: TsigKey[] = Object.values(TsigAlgorithm).map((algorithm) => ({
  name: `key-${algorithm.split('.')[0]}.`,
  algorithm,
  secret: Buffer.from(SECRET_B64, 'base64'),
}))
const lookup = (n: string) => keys.find((k) => nameEqual(k.name, n))

const PY_COMMON = `
import sys, json, struct, dns.message, dns.tsig, dns.name, dns.rdataclass, dns.rdatatype, dns.rcode, dns.opcode, dns.edns, dns.update, dns.flags
SECRET = '${SECRET_B64}'
ALGS = {'hmac-md5.sig-alg.reg.int.': dns.tsig.HMAC_MD5, 'hmac-sha1.': dns.tsig.HMAC_SHA1, 'hmac-sha224.': dns.tsig.HMAC_SHA224,
        'hmac-sha256.': dns.tsig.HMAC_SHA256, 'hmac-sha384.': dns.tsig.HMAC_SHA384, 'hmac-sha512.': dns.tsig.HMAC_SHA512}
KEYRING = {}
for a, alg in ALGS.items():
    n = dns.name.from_text('key-' + a.split('.')[0])
    KEYRING[n] = dns.tsig.Key(n, SECRET, alg)
def lines(section):
    out = []
    for rrset in section:
        cls = dns.rdataclass.to_text(rrset.deleting if rrset.deleting is not None else rrset.rdclass)
        typ = dns.rdatatype.to_text(rrset.rdtype)
        if len(rrset) == 0:
            out.append('%s %d %s %s' % (rrset.name, rrset.ttl, cls, typ))
        for rd in rrset:
            out.append('%s %d %s %s %s' % (rrset.name, rrset.ttl, cls, typ, rd.to_text()))
    return sorted(out)
def describe(m):
    return {'id': m.id, 'opcode': dns.opcode.to_text(m.opcode()), 'rcode': m.rcode(), 'flags': dns.flags.to_text(m.flags),
            'sections': [lines(s) for s in m.sections[1:]],
            'question': [[str(r.name), r.rdtype, r.rdclass] for r in m.sections[0]],
            'edns': m.edns, 'payload': m.payload, 'options': [[o.otype, o.to_wire().hex()] for o in m.options],
            'had_tsig': m.had_tsig, 'keyname': str(m.keyname) if m.keyname else None}
`

const Z = 'members.example.'
const rich: RR[] = [
  { name: `alice.${Z}`, type: RRType.A, class: RRClass.IN, ttl: 60, data: { address: '192.0.2.1' } },
  { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: 'fdaa:1::1' } },
  { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: '::ffff:192.0.2.1' } },
  {
    name: `alice.${Z}`,
    type: RRType.TXT,
    class: RRClass.IN,
    ttl: 60,
    data: { strings: [Buffer.from('a "b" \\c'), Buffer.from('caf\u00e9')] },
  },
  {
    name: `_autotunnel._udp.alice.${Z}`,
    type: RRType.SRV,
    class: RRClass.IN,
    ttl: 60,
    data: { priority: 1, weight: 2, port: 4500, target: `alice.${Z}` },
  },
  { name: `www.${Z}`, type: RRType.CNAME, class: RRClass.IN, ttl: 60, data: { cname: `alice.${Z}` } },
  { name: Z, type: RRType.MX, class: RRClass.IN, ttl: 60, data: { preference: 5, exchange: `mx.${Z}` } },
  { name: Z, type: RRType.NS, class: RRClass.IN, ttl: 60, data: { nsdname: `ns.${Z}` } },
  { name: `sp\\032ce\\.x.${Z}`, type: RRType.PTR, class: RRClass.IN, ttl: 60, data: { ptrdname: `alice.${Z}` } },
  { name: `alice.${Z}`, type: 65280, class: RRClass.IN, ttl: 60, data: { raw: Buffer.from('deadbeef', 'hex') } },
]
const soa: RR = {
  name: Z,
  type: RRType.SOA,
  class: RRClass.IN,
  ttl: 3600,
  data: {
    mname: `ns.${Z}`,
    rname: `host\\.master.${Z}`,
    serial: 7,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    minimum: 60,
  },
}

const sorted = (rrs: RR[]) => rrs.map(rrToText).sort()

test('dnspython parses and TSIG-verifies what we encode and sign', () => {
  const llq = encodeLlq({ version: 1, opcode: LlqOpcode.SETUP, error: 0, id: 0x1122334455667788n, leaseSec: 7200 })
  const response = emptyMessage({
    id: 4321,
    qr: true,
    aa: true,
    questions: [{ name: `alice.${Z}`, type: RRType.ANY, class: RRClass.IN }],
    answers: rich,
    authorities: [soa],
    edns: { udpSize: 1232, version: 0, do: true, options: [llq] },
  })
  const update = (id: number): Message =>
    emptyMessage({
      id,
      opcode: Opcode.UPDATE,
      questions: [{ name: Z, type: RRType.SOA, class: RRClass.IN }],
      answers: [{ name: `alice.${Z}`, type: RRType.ANY, class: RRClass.NONE, ttl: 0, data: null }],
      authorities: [
        { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.ANY, ttl: 0, data: null },
        { name: `alice.${Z}`, type: RRType.A, class: RRClass.NONE, ttl: 0, data: { address: '203.0.113.7' } },
        { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN, ttl: 120, data: { address: 'fdaa::7' } },
      ],
      edns: {
        udpSize: 1440,
        version: 0,
        do: false,
        options: [encodeUpdateLease({ leaseSec: 3600, keyLeaseSec: 86400 })],
      },
    })
  const inputs = [
    { wire: encodeMessage(response).toString('hex') },
    ...keys.map((k, i) => ({ wire: signMessage(update(100 + i), k).wire.toString('hex') })),
  ]
  const out = dnspython(
    `${PY_COMMON}
res = []
for c in json.load(sys.stdin):
    m = dns.message.from_wire(bytes.fromhex(c['wire']), keyring=KEYRING)
    res.append(describe(m))
print(json.dumps(res))`,
    JSON.stringify(inputs),
  ) as {
    id: number
    opcode: string
    flags: string
    sections: string[][]
    options: [number, string][]
    had_tsig: boolean
    keyname: string | null
    payload: number
  }[]
  const r0 = out[0]!
  assert.equal(r0.id, 4321)
  assert.equal(r0.flags, 'QR AA')
  assert.deepEqual(r0.sections[0], sorted(rich))
  assert.deepEqual(r0.sections[1], sorted([soa]))
  assert.deepEqual(r0.options, [[1, llq.data.toString('hex')]])
  assert.equal(r0.had_tsig, false)
  for (const [i, k] of keys.entries()) {
    const r = out[i + 1]!
    assert.equal(r.had_tsig, true, k.algorithm)
    assert.equal(r.keyname, k.name)
    assert.equal(r.opcode, 'UPDATE')
    assert.deepEqual(r.sections[0], [`alice.${Z} 0 NONE ANY`])
    assert.deepEqual(r.sections[1], sorted(update(0).authorities))
    assert.deepEqual(r.options, [[2, '00000e1000015180']])
    assert.equal(r.payload, 1440)
  }
})

test('we decode and verify what dnspython builds and signs, including a response chained to our request', () => {
  const requests = keys.map((k, i) => {
    const q = emptyMessage({
      id: 900 + i,
      rd: true,
      questions: [{ name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN }],
      edns: { udpSize: 1232, version: 0, do: false, options: [] },
    })
    return signMessage(q, k)
  })
  const out = dnspython(
    `${PY_COMMON}
res = []
for i, c in enumerate(json.load(sys.stdin)):
    q = dns.message.from_wire(bytes.fromhex(c), keyring=KEYRING)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    r.answer.append(dns.rrset.from_text(q.question[0].name, 60, 'IN', 'AAAA', 'fdaa::%d' % (i + 1), '2001:db8::1'))
    r.authority.append(dns.rrset.from_text('${Z}', 3600, 'IN', 'SOA', 'ns.${Z} host\\\\.master.${Z} 7 3600 600 86400 60'))
    u = dns.update.UpdateMessage('${Z}', keyring=KEYRING, keyname=q.keyname, keyalgorithm=q.keyalgorithm)
    u.use_edns(edns=0, payload=1440, options=[dns.edns.GenericOption(2, struct.pack('!I', 600))])
    u.delete('bob', 'A')
    u.add('bob', 60, 'TXT', '"hello world" "x=1"')
    u.add('_autotunnel._udp.bob', 60, 'SRV', '0 0 4500 bob.${Z}')
    u.present('alice', 'AAAA')
    res.append({'response': r.to_wire().hex(), 'update': u.to_wire().hex()})
print(json.dumps(res))`,
    JSON.stringify(requests.map((r) => r.wire.toString('hex'))),
  ) as { response: string; update: string }[]
  assert.equal(out.length, keys.length)
  for (const [i, k] of keys.entries()) {
    const resp = Buffer.from(out[i]!.response, 'hex')
    const v = verifyMessage(resp, lookup, { requestMac: requests[i]!.mac })
    assert.ok(v.ok, `${k.algorithm}: ${!v.ok && v.error}`)
    assert.equal(v.key, k)
    assert.equal(v.msg.id, 900 + i)
    assert.deepEqual(v.msg.answers.map(rrToText).sort(), [
      `alice.${Z} 60 IN AAAA 2001:db8::1`,
      `alice.${Z} 60 IN AAAA fdaa::${i + 1}`,
    ])
    assert.deepEqual(v.msg.authorities.map(rrToText), [rrToText(soa)])
    assert.equal(verifyMessage(resp, lookup).ok, false, 'not valid without the request MAC')

    const up = verifyMessage(Buffer.from(out[i]!.update, 'hex'), lookup)
    assert.ok(up.ok, `${k.algorithm} update: ${!up.ok && up.error}`)
    assert.equal(up.msg.opcode, Opcode.UPDATE)
    assert.deepEqual(up.msg.questions, [{ name: Z, type: RRType.SOA, class: RRClass.IN }])
    assert.deepEqual(up.msg.answers.map(rrToText), [`alice.${Z} 0 ANY AAAA`])
    assert.deepEqual(up.msg.authorities.map(rrToText), [
      `bob.${Z} 0 ANY A`,
      `bob.${Z} 60 IN TXT "hello world" "x=1"`,
      `_autotunnel._udp.bob.${Z} 60 IN SRV 0 0 4500 bob.${Z}`,
    ])
    assert.deepEqual(up.msg.edns?.options, [{ code: 2, data: Buffer.from('00000258', 'hex') }])
  }
  assert.throws(() => decodeLlq(Buffer.alloc(3)))
})

test('dnspython verifies a TCP message stream we sign (RFC 8945 5.3.1), unsigned middle message included', () => {
  const key = keys[3]!
  const req = signMessage(emptyMessage({ id: 55, questions: [{ name: Z, type: RRType.AXFR, class: RRClass.IN }] }), key)
  const signer = new TsigStreamSigner(key, req.mac)
  const part = (n: number) =>
    encodeMessage(
      emptyMessage({
        id: 55,
        qr: true,
        aa: true,
        answers: Array.from({ length: 3 }, (_, j) => ({
          name: `h${n}-${j}.${Z}`,
          type: RRType.A,
          class: RRClass.IN,
          ttl: 60,
          data: { address: `192.0.2.${n * 10 + j}` },
        })),
      }),
    )
  const stream = [
    signer.next(part(1)),
    signer.next(part(2), { sign: false }),
    signer.next(part(3)),
    signer.next(part(4)),
  ]
  const out = dnspython(
    `${PY_COMMON}
inp = json.load(sys.stdin)
ctx = None
res = []
for w in inp['stream']:
    m = dns.message.from_wire(bytes.fromhex(w), keyring=KEYRING, request_mac=bytes.fromhex(inp['mac']), multi=True, tsig_ctx=ctx)
    ctx = m.tsig_ctx
    res.append({'had_tsig': m.had_tsig, 'n': len(m.answer)})
print(json.dumps(res))`,
    JSON.stringify({ stream: stream.map((b) => b.toString('hex')), mac: req.mac.toString('hex') }),
  )
  assert.deepEqual(out, [
    { had_tsig: true, n: 3 },
    { had_tsig: false, n: 3 },
    { had_tsig: true, n: 3 },
    { had_tsig: true, n: 3 },
  ])
  assert.ok(decodeMessage(stream[0]!).tsig)
})
