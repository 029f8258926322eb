// Our TSIG against BIND 9 `named` (an independent RFC 8945 implementation) on a random loopback port:
// queries and UPDATEs signed by our code are accepted, named's signed answers verify with our code (request-MAC
// chaining), wrong secrets and skewed clocks come back as BADSIG / BADTIME, and a multi-message AXFR over TCP
// verifies message by message (RFC 8945 5.3.1).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeUpdateLease } from '../../src/dns/lease.js'
import { badTimeServerTime, signMessage, type TsigKey, verifyMessage } from '../../src/dns/tsig.js'
import { TsigStreamVerifier } from '../../src/dns/tsig-stream.js'
import { Opcode, Rcode } from '../../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../../src/dns/wire/message.js'
import { nameEqual } from '../../src/dns/wire/name.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { rrToText } from '../../src/dns/wire/text.js'
import { type BindKey, run, startNamed, tcpExchange, udpExchange } from './dns-support.js'

const ZONE = 'rp.test.'
const bindKeys: BindKey[] = [
  ['hmac-md5', '19Mwqb+fR/hqBvq2UNKd/A=='],
  ['hmac-sha1', 'hXcRsdJ0kwXcwXyG3TjLdXdTzE8='],
  ['hmac-sha224', 'ZXS0Ij0LZVaRvtCl5ZbTp2gwyJArZ6Ds8ld+oQ=='],
  ['hmac-sha256', '8xytkfBZByo3GVcUN5W5oeyz5Hwr7x6FuHznXPy3vwo='],
  ['hmac-sha384', 'kJ1mYlD3dw0JEbDK1FbZL7dM9d3IRGQDlEnjW1r9UTbU2fnhXB3YzM0bN5mTZ3Lx'],
  ['hmac-sha512', 'q0OqYy8cLD0TfQ4dH1gHmnT0KQx2dBL+3DdJr7V7f3N0o3m8WlbQJ0JkzOeQYz0gkqzhWSS7hL6uD2Cq3JbI7g=='],
].map(([algorithm, secretB64]) => ({ name: `k-${algorithm}`, algorithm: algorithm!, secretB64: secretB64! }))

const keys: TsigKey[] = bindKeys.map((k) => ({
  name: `${k.name}.`,
  algorithm: k.algorithm,
  secret: Buffer.from(k.secretB64, 'base64'),
}))
const lookup = (n: string) => keys.find((k) => nameEqual(k.name, n))

const records = Array.from({ length: 1500 }, (_, i) => `big${i} IN TXT "${'x'.repeat(60)}" "${i}"`).join('\n')

function query(id: number, name: string, type: number): Message {
  return emptyMessage({
    id,
    questions: [{ name, type, class: RRClass.IN }],
    edns: { udpSize: 1232, version: 0, do: false, options: [] },
  })
}

test('BIND accepts queries and UPDATEs signed by us, and its signed answers verify', async (t) => {
  const named = await startNamed(t, ZONE.slice(0, -1), bindKeys, records)
  for (const [i, key] of keys.entries()) {
    const q = signMessage(query(100 + i, `ns.${ZONE}`, RRType.A), key)
    const wire = await udpExchange(named.port, q.wire)
    const v = verifyMessage(wire, lookup, { requestMac: q.mac })
    assert.ok(v.ok, `${key.algorithm}: named's answer did not verify: ${!v.ok && v.error}\n${named.log()}`)
    assert.equal(v.msg.rcode, Rcode.NOERROR, key.algorithm)
    assert.equal(v.key, key)
    assert.deepEqual(v.msg.answers.map(rrToText), [`ns.${ZONE} 60 IN A 127.0.0.1`])
    const unchained = verifyMessage(wire, lookup)
    assert.equal(unchained.ok ? 'ok' : unchained.error, 'BADSIG', 'the answer MAC covers our request MAC')

    const host = `h${i}.${ZONE}`
    const up = emptyMessage({
      id: 200 + i,
      opcode: Opcode.UPDATE,
      questions: [{ name: ZONE, type: RRType.SOA, class: RRClass.IN }],
      authorities: [
        { name: host, type: RRType.ANY, class: RRClass.ANY, ttl: 0, data: null },
        { name: host, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: `fdaa::${i + 1}` } },
        {
          name: `_autotunnel._udp.${host}`,
          type: RRType.SRV,
          class: RRClass.IN,
          ttl: 60,
          data: { priority: 0, weight: 0, port: 4500, target: host },
        },
        {
          name: host,
          type: RRType.TXT,
          class: RRClass.IN,
          ttl: 60,
          data: { strings: [Buffer.from('signed by autotunnel')] },
        },
      ],
      edns: {
        udpSize: 1232,
        version: 0,
        do: false,
        options: [encodeUpdateLease({ leaseSec: 3600, keyLeaseSec: 86400 })],
      },
    })
    const s = signMessage(up, key)
    const uw = await udpExchange(named.port, s.wire)
    const uv = verifyMessage(uw, lookup, { requestMac: s.mac })
    assert.ok(uv.ok, `${key.algorithm}: update reply did not verify`)
    assert.equal(uv.msg.rcode, Rcode.NOERROR, `${key.algorithm}: update refused\n${named.log()}`)
    const dig = run('dig', ['@127.0.0.1', '-p', String(named.port), '+short', host, 'AAAA'])
    assert.equal(dig.stdout.trim(), `fdaa::${i + 1}`)
  }
})

test('BIND reports BADSIG for a wrong secret and BADTIME (with its clock) for a skewed one', async (t) => {
  const named = await startNamed(t, ZONE.slice(0, -1), bindKeys)
  const key = keys[3]!
  const wrong = { ...key, secret: Buffer.alloc(32, 7) }
  const q = signMessage(query(1, `ns.${ZONE}`, RRType.A), wrong)
  const v = verifyMessage(await udpExchange(named.port, q.wire), lookup, { requestMac: q.mac })
  assert.ok(!v.ok)
  assert.deepEqual([v.error, v.peer, v.msg?.rcode], ['BADSIG', true, Rcode.NOTAUTH])

  const now = Math.floor(Date.now() / 1000)
  const skewed = signMessage(query(2, `ns.${ZONE}`, RRType.A), key, { timeSigned: now - 3600 })
  const bv = verifyMessage(await udpExchange(named.port, skewed.wire), lookup, { requestMac: skewed.mac })
  assert.ok(!bv.ok)
  assert.deepEqual([bv.error, bv.peer, bv.msg?.rcode], ['BADTIME', true, Rcode.NOTAUTH], 'signed BADTIME that verifies')
  const serverTime = badTimeServerTime(bv.tsig!)
  assert.ok(serverTime !== undefined && Math.abs(serverTime - now) < 30, `server time ${serverTime}`)
  assert.equal(bv.tsig!.timeSigned, now - 3600, 'BIND echoes the request Time Signed, as tsigErrorResponse does')

  const unknown = signMessage(query(3, `ns.${ZONE}`, RRType.A), {
    name: 'nobody.',
    algorithm: 'hmac-sha256',
    secret: Buffer.alloc(32),
  })
  const kv = verifyMessage(await udpExchange(named.port, unknown.wire), () => undefined, { requestMac: unknown.mac })
  assert.ok(!kv.ok)
  assert.deepEqual([kv.error, kv.peer], ['BADKEY', true])
})

test('truncated MACs: BIND answers BADTRUNC under a full-length policy, accepts them for hmac-sha256-128', async (t) => {
  const trunc: BindKey = { name: 'k-trunc', algorithm: 'hmac-sha256-128', secretB64: bindKeys[3]!.secretB64 }
  const named = await startNamed(t, ZONE.slice(0, -1), [...bindKeys, trunc])
  const full = keys[3]!
  const q = signMessage(query(9, `ns.${ZONE}`, RRType.A), full, { macSize: 16 })
  const r1 = verifyMessage(await udpExchange(named.port, q.wire), lookup, { requestMac: q.sentMac })
  assert.ok(!r1.ok)
  assert.deepEqual(
    [r1.error, r1.peer, r1.msg?.rcode],
    ['BADTRUNC', true, Rcode.NOTAUTH],
    'signed BADTRUNC that verifies',
  )

  const tkey: TsigKey = { name: 'k-trunc.', algorithm: 'hmac-sha256', secret: full.secret, minMacSize: 16 }
  const q2 = signMessage(query(10, `ns.${ZONE}`, RRType.A), tkey, { macSize: 16 })
  const reply = await udpExchange(named.port, q2.wire)
  const v = verifyMessage(reply, () => tkey, { requestMac: q2.sentMac })
  assert.ok(v.ok, `truncated exchange: ${!v.ok && v.error}`)
  assert.equal(v.msg.rcode, Rcode.NOERROR)
  assert.equal(v.mac.length, 16, 'BIND truncates its answer MAC too')
  const strict = verifyMessage(reply, () => ({ ...tkey, minMacSize: undefined }), { requestMac: q2.sentMac })
  assert.deepEqual(strict.ok ? 'ok' : [strict.error, strict.peer], ['BADTRUNC', false], 'our full-length policy')

  const whole = signMessage(query(11, `ns.${ZONE}`, RRType.A), tkey)
  const m = decodeMessage(whole.wire)
  const cut = encodeMessage({ ...m, tsig: { ...m.tsig!, data: { ...m.tsig!.data, mac: whole.mac.subarray(0, 12) } } })
  const r3 = decodeMessage(await udpExchange(named.port, cut))
  assert.notEqual(r3.rcode, Rcode.NOERROR, 'a 12-octet SHA-256 MAC is below max(10, 16) octets')
})

test('a TSIG-signed multi-message AXFR from BIND verifies message by message', async (t) => {
  const named = await startNamed(t, ZONE.slice(0, -1), bindKeys, records)
  const key = keys[3]!
  const q = signMessage(
    emptyMessage({ id: 77, questions: [{ name: ZONE, type: RRType.AXFR, class: RRClass.IN }] }),
    key,
  )
  let soas = 0
  let seen = 0
  let failed = false
  const msgs = await tcpExchange(named.port, q.wire, (got) => {
    for (; seen < got.length; seen++) {
      const m = decodeMessage(got[seen]!)
      soas += m.answers.filter((r) => r.type === RRType.SOA).length
      failed ||= m.rcode !== Rcode.NOERROR
    }
    return soas >= 2 || failed
  })
  assert.ok(msgs.length >= 2, `AXFR came in ${msgs.length} message(s)`)
  const verifier = new TsigStreamVerifier(key, q.mac)
  let rrCount = 0
  let signed = 0
  for (const [i, w] of msgs.entries()) {
    const r = verifier.next(w)
    if (r.ok) signed++
    else assert.equal(r.error, 'UNSIGNED', `message ${i}: ${r.error}`)
    rrCount += decodeMessage(w).answers.length
  }
  assert.ok(signed >= 2, `${signed} signed messages`)
  assert.ok(verifier.next(msgs[msgs.length - 1]!).ok === false, 'replaying the last message breaks the chain')
  assert.equal(rrCount, 3 + 1500 + 1, 'SOA, NS, ns A, 1500 TXT, closing SOA')
})
