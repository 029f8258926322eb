import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import {
  badTimeServerTime,
  parseTsigAlgorithm,
  signMessage,
  TsigAlgorithm,
  type TsigKey,
  tsigErrorResponse,
  tsigHmac,
  verifyMessage,
} from './tsig.js'
import { TsigStreamSigner, TsigStreamVerifier } from './tsig-stream.js'
import { Opcode, Rcode } from './wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from './wire/message.js'
import { nameEqual } from './wire/name.js'
import { RRClass, RRType } from './wire/rr-table.js'

failOnLeakedResources()

interface Vector {
  name: string
  key: string
  data: string
  truncationBytes?: number
  [alg: string]: string | number | undefined
}
const vectors = JSON.parse(
  readFileSync(new URL('../../../test/vectors/rfc4231-hmac.json', import.meta.url), 'utf8'),
) as {
  cases: Vector[]
}

test('RFC 4231 HMAC vectors through the TSIG algorithm table', () => {
  assert.equal(vectors.cases.length, 7)
  for (const c of vectors.cases) {
    for (const alg of ['hmac-sha224', 'hmac-sha256', 'hmac-sha384', 'hmac-sha512']) {
      const h = tsigHmac(alg, Buffer.from(c.key, 'hex'))
      h.update(Buffer.from(c.data, 'hex'))
      const mac = h.digest().toString('hex')
      const want = c[alg] as string
      assert.equal(c.truncationBytes ? mac.slice(0, c.truncationBytes * 2) : mac, want, `${c.name} ${alg}`)
    }
  }
})

test('parseTsigAlgorithm accepts the spellings of BIND and dnspython', () => {
  assert.equal(parseTsigAlgorithm('hmac-md5'), TsigAlgorithm.HMAC_MD5)
  assert.equal(parseTsigAlgorithm('HMAC-MD5.SIG-ALG.REG.INT.'), TsigAlgorithm.HMAC_MD5)
  assert.equal(parseTsigAlgorithm('hmac-sha256.'), TsigAlgorithm.HMAC_SHA256)
  assert.equal(parseTsigAlgorithm('gss-tsig'), undefined)
})

const secret = Buffer.from('8xytkfBZByo3GVcUN5W5oeyz5Hwr7x6FuHznXPy3vwo=', 'base64')
const keys: TsigKey[] = Object.values(TsigAlgorithm).map((algorithm) => ({ name: `k-${algorithm}`, algorithm, secret }))
const lookupIn = (ks: TsigKey[]) => (n: string) => ks.find((k) => nameEqual(k.name, n))
const T0 = 1_795_261_264

function update(id: number): Message {
  return emptyMessage({
    id,
    opcode: Opcode.UPDATE,
    questions: [{ name: 'members.example.', type: RRType.SOA, class: RRClass.IN }],
    authorities: [
      { name: 'alice.members.example.', type: RRType.AAAA, class: RRClass.ANY, ttl: 0, data: null },
      { name: 'alice.members.example.', type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: 'fdaa::1' } },
    ],
    edns: { udpSize: 1232, version: 0, do: false, options: [{ code: 2, data: Buffer.from('00000e10', 'hex') }] },
  })
}

test('sign then verify for every algorithm, request and chained response', () => {
  for (const key of keys) {
    const req = signMessage(update(77), key, { timeSigned: T0 })
    const v = verifyMessage(req.wire, lookupIn(keys), { now: T0 + 10 })
    assert.ok(v.ok, `${key.algorithm}: ${JSON.stringify(!v.ok && v.error)}`)
    assert.deepEqual(v.mac, req.mac)
    assert.equal(v.msg.tsig?.data.timeSigned, T0)
    assert.deepEqual(v.msg.edns?.options[0]?.data, Buffer.from('00000e10', 'hex'))

    const resp = signMessage(emptyMessage({ id: 77, qr: true, opcode: Opcode.UPDATE }), key, {
      requestMac: v.mac,
      timeSigned: T0 + 1,
    })
    const rv = verifyMessage(resp.wire, lookupIn([key]), { requestMac: req.mac, now: T0 + 1 })
    assert.ok(rv.ok, key.algorithm)
    const unchained = verifyMessage(resp.wire, lookupIn([key]), { now: T0 + 1 })
    assert.equal(unchained.ok ? 'ok' : unchained.error, 'BADSIG', 'response MAC covers the request MAC')
  }
})

test('verification failures map to RFC 8945 errors', () => {
  const key = keys[3]!
  const signed = signMessage(update(5), key, { timeSigned: T0 })
  const tampered = Buffer.from(signed.wire)
  const at = tampered.indexOf(Buffer.from('00000e10', 'hex')) + 3
  tampered[at] = tampered[at]! ^ 1
  const wrongSecret = { ...key, secret: Buffer.alloc(32) }
  const otherAlg = { ...key, algorithm: TsigAlgorithm.HMAC_SHA512 }
  const cases: { name: string; wire: Buffer; keys: TsigKey[]; now?: number; want: string }[] = [
    { name: 'tampered body', wire: tampered, keys, want: 'BADSIG' },
    { name: 'wrong secret', wire: signed.wire, keys: [wrongSecret], want: 'BADSIG' },
    { name: 'unknown key', wire: signed.wire, keys: [], want: 'BADKEY' },
    { name: 'key has another algorithm', wire: signed.wire, keys: [otherAlg], want: 'BADKEY' },
    { name: 'clock 301 s ahead', wire: signed.wire, keys, now: T0 + 301, want: 'BADTIME' },
    { name: 'clock 301 s behind', wire: signed.wire, keys, now: T0 - 301, want: 'BADTIME' },
    { name: 'within fudge', wire: signed.wire, keys, now: T0 - 300, want: 'ok' },
    { name: 'unsigned', wire: encodeMessage(update(5)), keys, want: 'UNSIGNED' },
    { name: 'garbage', wire: Buffer.from('00'), keys, want: 'FORMERR' },
  ]
  for (const c of cases) {
    const r = verifyMessage(c.wire, lookupIn(c.keys), { now: c.now ?? T0 })
    assert.equal(r.ok ? 'ok' : r.error, c.want, c.name)
    if (!r.ok && c.want.startsWith('BAD')) assert.equal(r.code, Rcode[c.want as 'BADSIG'], c.name)
  }
})

test('original ID: a forwarder may change the ID without breaking the MAC', () => {
  const key = keys[3]!
  const signed = signMessage(update(0x1111), key, { timeSigned: T0 })
  const fwd = Buffer.from(signed.wire)
  fwd.writeUInt16BE(0x2222, 0)
  const r = verifyMessage(fwd, lookupIn(keys), { now: T0 })
  assert.ok(r.ok)
  assert.equal(r.msg.id, 0x2222)
  assert.equal(r.tsig.originalId, 0x1111)
})

test('truncated MACs: allowed lengths, FORMERR below the floor, BADTRUNC below local policy', () => {
  const sha256 = keys[3]!
  const t = signMessage(update(9), sha256, { timeSigned: T0, macSize: 16 })
  assert.equal(t.sentMac.length, 16)
  assert.deepEqual(t.sentMac, t.mac.subarray(0, 16))
  const ok = verifyMessage(t.wire, lookupIn([{ ...sha256, minMacSize: 16 }]), { now: T0 })
  assert.ok(ok.ok)
  const strict = verifyMessage(t.wire, lookupIn([sha256]), { now: T0 })
  assert.equal(strict.ok ? 'ok' : strict.error, 'BADTRUNC')
  assert.throws(() => signMessage(update(9), sha256, { macSize: 15 }), /MAC size 15/)
  assert.throws(() => signMessage(update(9), keys[0]!, { macSize: 9 }), /MAC size 9/)
  assert.ok(signMessage(update(9), keys[0]!, { macSize: 10 }).wire.length > 0, 'hmac-md5 may truncate to 10')
  // A MAC cut to 15 octets on the wire (below half of SHA-256) is a FORMERR (RFC 8945 5.2.2.1).
  const m = decodeMessage(t.wire)
  const short = encodeMessage({ ...m, tsig: { ...m.tsig!, data: { ...m.tsig!.data, mac: t.mac.subarray(0, 15) } } })
  const r = verifyMessage(short, lookupIn([{ ...sha256, minMacSize: 10 }]), { now: T0 })
  assert.equal(r.ok ? 'ok' : r.error, 'FORMERR')
  const long = encodeMessage({ ...m, tsig: { ...m.tsig!, data: { ...m.tsig!.data, mac: Buffer.alloc(33) } } })
  const r2 = verifyMessage(long, lookupIn([sha256]), { now: T0 })
  assert.equal(r2.ok ? 'ok' : r2.error, 'FORMERR')
})

test('error responses: BADSIG/BADKEY unsigned, BADTIME signed with the server time', () => {
  const key = keys[3]!
  const req = signMessage(update(42), key, { timeSigned: T0 })

  const badsig = verifyMessage(req.wire, lookupIn([{ ...key, secret: Buffer.alloc(1) }]), { now: T0 })
  assert.ok(!badsig.ok)
  const r1 = tsigErrorResponse(badsig, { now: T0 })!
  const m1 = decodeMessage(r1)
  assert.equal(m1.rcode, Rcode.NOTAUTH)
  assert.equal(m1.id, 42)
  assert.equal(m1.tsig?.data.error, Rcode.BADSIG)
  assert.equal(m1.tsig?.data.mac.length, 0)
  const c1 = verifyMessage(r1, lookupIn([key]), { requestMac: req.mac, now: T0 })
  assert.deepEqual(c1.ok ? 'ok' : [c1.error, c1.peer], ['BADSIG', true])

  const badkey = verifyMessage(req.wire, lookupIn([]), { now: T0 })
  assert.ok(!badkey.ok)
  const c2 = verifyMessage(tsigErrorResponse(badkey, { now: T0 })!, lookupIn([key]), { requestMac: req.mac, now: T0 })
  assert.deepEqual(c2.ok ? 'ok' : [c2.error, c2.peer], ['BADKEY', true])

  const late = T0 + 1000
  const badtime = verifyMessage(req.wire, lookupIn([key]), { now: late })
  assert.ok(!badtime.ok && badtime.error === 'BADTIME')
  const r3 = tsigErrorResponse(badtime, { now: late })!
  const c3 = verifyMessage(r3, lookupIn([key]), { requestMac: req.mac, now: T0 })
  assert.ok(!c3.ok)
  assert.deepEqual([c3.error, c3.peer], ['BADTIME', true], 'signed BADTIME verifies and reports the peer error')
  assert.equal(badTimeServerTime(c3.tsig!), late)
  assert.equal(c3.tsig?.timeSigned, T0)
  assert.equal(tsigErrorResponse({ ok: false, error: 'FORMERR', code: 1, peer: false }), undefined)
})

test('TCP stream signing (RFC 8945 5.3.1): timers-only MACs, unsigned messages in between', () => {
  const key = keys[5]!
  const requestMac = Buffer.alloc(64, 3)
  const msgs = [1, 2, 3, 4].map((i) =>
    encodeMessage(
      emptyMessage({
        id: 500,
        qr: true,
        answers: [
          {
            name: `h${i}.members.example.`,
            type: RRType.A,
            class: RRClass.IN,
            ttl: 60,
            data: { address: `192.0.2.${i}` },
          },
        ],
      }),
    ),
  )
  const signer = new TsigStreamSigner(key, requestMac)
  const sent = [
    signer.next(msgs[0]!, { timeSigned: T0 }),
    signer.next(msgs[1]!, { sign: false }),
    signer.next(msgs[2]!, { timeSigned: T0 + 1 }),
    signer.next(msgs[3]!, { timeSigned: T0 + 2 }),
  ]
  assert.deepEqual(sent[1], msgs[1])
  const verifier = new TsigStreamVerifier(key, requestMac)
  const results = sent.map((w) => verifier.next(w, T0 + 2))
  assert.deepEqual(
    results.map((r) => (r.ok ? 'ok' : r.error)),
    ['ok', 'UNSIGNED', 'ok', 'ok'],
  )
  const tampered = sent.map((b) => Buffer.from(b))
  const last = tampered[1]!
  last[last.length - 1] = last[last.length - 1]! ^ 1
  const v2 = new TsigStreamVerifier(key, requestMac)
  const r2 = tampered.map((w) => v2.next(w, T0 + 2))
  assert.deepEqual(
    r2.map((r) => (r.ok ? 'ok' : r.error)),
    ['ok', 'UNSIGNED', 'BADSIG', 'BADSIG'],
  )
})

test('signMessage(Message, {maxSize}) keeps the signed message within a UDP payload size, TC set', () => {
  const key = keys[5]!
  const answers = Array.from({ length: 60 }, (_, i) => ({
    name: `host${i}.members.example.`,
    type: RRType.AAAA,
    class: RRClass.IN,
    ttl: 60,
    data: { address: `fdaa::${i + 1}` },
  }))
  const resp = emptyMessage({ id: 3, qr: true, answers, edns: { udpSize: 1232, version: 0, do: false, options: [] } })
  const s = signMessage(resp, key, { maxSize: 1232, timeSigned: T0 })
  assert.ok(s.wire.length <= 1232, `${s.wire.length} octets`)
  const v = verifyMessage(s.wire, lookupIn(keys), { now: T0 })
  assert.ok(v.ok)
  assert.equal(v.msg.tc, true)
  assert.ok(v.msg.answers.length > 10 && v.msg.answers.length < 60)
  assert.deepEqual(v.msg.edns, resp.edns)
  const full = signMessage(resp, key, { timeSigned: T0 })
  assert.ok(full.wire.length > 1232)
  assert.equal(decodeMessage(full.wire).answers.length, 60)
})

test('signMessage(Message, {maxSize}) never exceeds maxSize (the TSIG RR is sized exactly)', () => {
  for (const key of keys) {
    for (let maxSize = 200; maxSize <= 700; maxSize += 7) {
      const answers = Array.from({ length: 40 }, (_, i) => ({
        name: `h${i}.members.example.`,
        type: RRType.A,
        class: RRClass.IN,
        ttl: 60,
        data: { address: `192.0.2.${i}` },
      }))
      const s = signMessage(emptyMessage({ id: 1, qr: true, answers }), key, { maxSize, timeSigned: T0 })
      assert.ok(s.wire.length <= maxSize, `${key.algorithm} maxSize ${maxSize}: ${s.wire.length}`)
      assert.ok(s.wire.length > maxSize - 30, `${key.algorithm} maxSize ${maxSize}: only ${s.wire.length} used`)
    }
  }
})
