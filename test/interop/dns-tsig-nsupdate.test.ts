// BIND's nsupdate (an independent RFC 2136 + RFC 8945 client) sends TSIG-signed UPDATEs to a small UDP
// listener in this test. Our verifyMessage must accept them (hmac-sha256 and hmac-md5), reject a wrong secret
// with BADSIG, and our signed response must satisfy nsupdate's own verification (it exits 0 only then).
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { test } from 'node:test'
import { signMessage, type TsigKey, type TsigResult, tsigErrorResponse, verifyMessage } from '../../src/dns/tsig.js'
import { Opcode, Rcode } from '../../src/dns/wire/header.js'
import { emptyMessage, encodeMessage } from '../../src/dns/wire/message.js'
import { nameEqual } from '../../src/dns/wire/name.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { rrToText } from '../../src/dns/wire/text.js'
import { LOOPBACK, runAsync } from './dns-support.js'

const ZONE = 'rp.test.'
const keys: (TsigKey & { bind: string; b64: string })[] = [
  {
    name: 'upd-sha256.',
    algorithm: 'hmac-sha256',
    bind: 'hmac-sha256',
    b64: '8xytkfBZByo3GVcUN5W5oeyz5Hwr7x6FuHznXPy3vwo=',
    secret: Buffer.from('8xytkfBZByo3GVcUN5W5oeyz5Hwr7x6FuHznXPy3vwo=', 'base64'),
  },
  {
    name: 'upd-md5.',
    algorithm: 'hmac-md5',
    bind: 'hmac-md5',
    b64: '19Mwqb+fR/hqBvq2UNKd/A==',
    secret: Buffer.from('19Mwqb+fR/hqBvq2UNKd/A==', 'base64'),
  },
]

/** UDP listener that verifies each UPDATE, answers NOERROR signed (or the TSIG error response), and records results. */
async function listener(t: import('node:test').TestContext) {
  const sock = createSocket('udp4')
  const results: TsigResult[] = []
  sock.on('message', (wire, rinfo) => {
    const r = verifyMessage(wire, (n) => keys.find((k) => nameEqual(k.name, n)))
    results.push(r)
    let reply: Buffer | undefined
    if (r.ok) {
      const resp = emptyMessage({ id: r.msg.id, qr: true, opcode: Opcode.UPDATE, questions: r.msg.questions })
      reply = signMessage(encodeMessage(resp), r.key, { requestMac: r.mac }).wire
    } else reply = tsigErrorResponse(r)
    if (reply !== undefined) sock.send(reply, rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => sock.bind(0, LOOPBACK, resolve))
  t.after(() => sock.close())
  return { port: sock.address().port, results }
}

const script = (port: number, host: string) => `server ${LOOPBACK} ${port}
zone ${ZONE}
update delete ${host}.${ZONE} AAAA
update add ${host}.${ZONE} 60 IN AAAA fdaa:1::1
update add _autotunnel._udp.${host}.${ZONE} 60 IN SRV 0 0 4500 ${host}.${ZONE}
update add ${host}.${ZONE} 60 IN TXT "via nsupdate" "k=v"
send
`

for (const key of keys) {
  test(`nsupdate -y ${key.bind}: our listener verifies the UPDATE and nsupdate accepts our signed reply`, async (t) => {
    const l = await listener(t)
    const r = await runAsync(
      'nsupdate',
      ['-t', '4', '-r', '0', '-y', `${key.bind}:${key.name.slice(0, -1)}:${key.b64}`],
      script(l.port, 'mac1'),
    )
    assert.equal(l.results.length, 1, r.stderr)
    const v = l.results[0]!
    assert.ok(v.ok, `verify failed: ${!v.ok && v.error}`)
    assert.equal(r.status, 0, `nsupdate rejected our reply: ${r.stdout}${r.stderr}`)
    assert.equal(v.key.name, key.name)
    assert.equal(v.msg.opcode, Opcode.UPDATE)
    assert.deepEqual(v.msg.questions, [{ name: ZONE, type: RRType.SOA, class: RRClass.IN }])
    assert.deepEqual(v.msg.authorities.map(rrToText), [
      `mac1.${ZONE} 0 ANY AAAA`,
      `mac1.${ZONE} 60 IN AAAA fdaa:1::1`,
      `_autotunnel._udp.mac1.${ZONE} 60 IN SRV 0 0 4500 mac1.${ZONE}`,
      `mac1.${ZONE} 60 IN TXT "via nsupdate" "k=v"`,
    ])
    assert.equal(v.msg.authorities[0]!.data, null, 'RFC 2136 delete RRset: class ANY, RDLENGTH 0')
  })
}

test('nsupdate with a wrong secret: BADSIG, and nsupdate reports NOTAUTH(BADSIG)', async (t) => {
  const l = await listener(t)
  const key = keys[0]!
  const wrong = Buffer.alloc(32, 0x41).toString('base64')
  const r = await runAsync(
    'nsupdate',
    ['-t', '4', '-r', '0', '-y', `${key.bind}:${key.name.slice(0, -1)}:${wrong}`],
    script(l.port, 'bad'),
  )
  assert.equal(l.results.length, 1)
  const v = l.results[0]!
  assert.ok(!v.ok)
  assert.equal(v.error, 'BADSIG')
  assert.equal(v.code, Rcode.BADSIG)
  assert.notEqual(r.status, 0)
  assert.match(r.stdout + r.stderr, /BADSIG/)
})
