// dig (BIND 9.18) and kdig (Knot 3.2), two independent decoders, query a tiny UDP responder in this test that
// answers with records we encode. What they print must match what we decoded/encoded, record for record, and
// the queries they send must decode to the question they were asked.
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'
import { test } from 'node:test'
import { frameTcp, TcpDeframer } from '../../src/dns/tcp-framing.js'
import { Rcode } from '../../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../../src/dns/wire/message.js'
import { nameEqual } from '../../src/dns/wire/name.js'
import { type RR, RRClass, RRType, typeFromName } from '../../src/dns/wire/rr-table.js'
import { rrToText } from '../../src/dns/wire/text.js'
import { LOOPBACK, runAsync } from './dns-support.js'

const Z = 'ex.test.'
const rr = (name: string, type: number, data: RR['data'], ttl = 60): RR => ({
  name,
  type,
  class: RRClass.IN,
  ttl,
  data,
})
const zone: RR[] = [
  rr(Z, RRType.SOA, {
    mname: `ns.${Z}`,
    rname: `host\\.master.${Z}`,
    serial: 2026112101,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    minimum: 60,
  }),
  rr(Z, RRType.NS, { nsdname: `ns.${Z}` }),
  rr(Z, RRType.MX, { preference: 10, exchange: `mx.${Z}` }),
  rr(`a.${Z}`, RRType.A, { address: '192.0.2.1' }),
  rr(`a.${Z}`, RRType.A, { address: '198.51.100.255' }, 4294967295),
  rr(`a.${Z}`, RRType.AAAA, { address: 'fdaa:1::1' }),
  rr(`a.${Z}`, RRType.AAAA, { address: '2001:db8:0:1:1:1:1:1' }),
  rr(`a.${Z}`, RRType.AAAA, { address: '::ffff:192.0.2.1' }),
  rr(`a.${Z}`, RRType.TXT, {
    strings: [Buffer.from('hello world'), Buffer.from('q"b\\s'), Buffer.from('caf\u00e9'), Buffer.from([9, 0])],
  }),
  rr(`a.${Z}`, RRType.TXT, { strings: [Buffer.alloc(0)] }),
  rr(`a.${Z}`, 65280, { raw: Buffer.from([1, 2, 3]) }),
  rr(`www.${Z}`, RRType.CNAME, { cname: `a.${Z}` }),
  rr(`_x._udp.a.${Z}`, RRType.SRV, { priority: 0, weight: 5, port: 4500, target: `a.${Z}` }),
  rr('1.2.0.192.in-addr.arpa.', RRType.PTR, { ptrdname: `a.${Z}` }),
  rr(`sp\\032ce.${Z}`, RRType.A, { address: '192.0.2.9' }),
  rr(`dot\\.in.${Z}`, RRType.A, { address: '192.0.2.10' }),
]

function answer(q: Message, maxSize: number): Buffer {
  const question = q.questions[0]!
  const answers = zone.filter(
    (r) => nameEqual(r.name, question.name) && (r.type === question.type || question.type === RRType.ANY),
  )
  const reply = emptyMessage({
    id: q.id,
    qr: true,
    aa: true,
    rd: q.rd,
    rcode: answers.length > 0 ? Rcode.NOERROR : Rcode.NXDOMAIN,
    questions: q.questions,
    answers,
    ...(q.edns ? { edns: { udpSize: 1232, version: 0, do: false, options: [] } } : {}),
  })
  return encodeMessage(reply, { maxSize })
}

async function responder(t: import('node:test').TestContext) {
  const sock = createSocket('udp4')
  const queries: Message[] = []
  sock.on('message', (wire, rinfo) => {
    const q = decodeMessage(wire)
    queries.push(q)
    sock.send(answer(q, q.edns?.udpSize ?? 512), rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => sock.bind(0, LOOPBACK, resolve))
  t.after(() => sock.close())
  const tcp = createServer((conn) => {
    const de = new TcpDeframer()
    conn.on('data', (chunk) => {
      for (const wire of de.push(chunk)) {
        const q = decodeMessage(wire)
        queries.push(q)
        conn.write(frameTcp(answer(q, 65535)))
      }
    })
    conn.on('error', () => conn.destroy())
  })
  await new Promise<void>((resolve) => tcp.listen(sock.address().port, LOOPBACK, resolve))
  t.after(() => new Promise<void>((resolve) => tcp.close(() => resolve())))
  return { port: sock.address().port, queries }
}

/** 'name ttl class type rdata' with runs of blanks between the first five fields collapsed. */
function normalize(line: string): string {
  const m = /^(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s*(.*)$/.exec(line.trim())
  return m ? `${m[1]} ${m[2]} ${m[3]} ${m[4]}${m[5] ? ` ${m[5].replace(/\t/g, ' ')}` : ''}` : line
}

const questions: [string, string][] = [
  [Z, 'SOA'],
  [Z, 'NS'],
  [Z, 'MX'],
  [`a.${Z}`, 'A'],
  [`a.${Z}`, 'AAAA'],
  [`a.${Z}`, 'TXT'],
  [`a.${Z}`, 'TYPE65280'],
  [`www.${Z}`, 'CNAME'],
  [`_x._udp.a.${Z}`, 'SRV'],
  ['1.2.0.192.in-addr.arpa.', 'PTR'],
  [`sp\\032ce.${Z}`, 'A'],
  [`dot\\.in.${Z}`, 'A'],
]

for (const tool of ['dig', 'kdig'] as const) {
  test(`${tool} prints exactly the records we encoded, and its queries decode`, async (t) => {
    const r = await responder(t)
    for (const [qname, qtype] of questions) {
      const type = typeFromName(qtype)!
      const out = await runAsync(tool, [
        `@${LOOPBACK}`,
        '-p',
        String(r.port),
        '+noall',
        '+answer',
        '+norec',
        ...(tool === 'kdig' ? ['+edns'] : []),
        qname,
        qtype,
      ])
      assert.equal(out.status, 0, `${tool} ${qname} ${qtype}: ${out.stderr}`)
      const printed = out.stdout
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith(';'))
        .map(normalize)
      const expected = zone.filter((x) => nameEqual(x.name, qname) && x.type === type).map(rrToText)
      assert.ok(expected.length > 0)
      assert.deepEqual(printed, expected, `${tool} ${qname} ${qtype}`)
      const q = r.queries[r.queries.length - 1]!
      assert.equal(q.questions.length, 1)
      assert.ok(nameEqual(q.questions[0]!.name, qname), `${tool} asked ${q.questions[0]!.name}`)
      assert.equal(q.questions[0]!.type, type)
      assert.equal(q.rd, false)
      assert.ok(
        q.edns !== undefined && q.edns.udpSize >= 512,
        `${tool} sends EDNS (${qname} ${qtype}, ${r.queries.length} queries)`,
      )
    }
  })
}

for (const tool of ['dig', 'kdig'] as const) {
  test(`${tool} +tcp: length-framed answers through TcpDeframer/frameTcp`, async (t) => {
    const r = await responder(t)
    const out = await runAsync(tool, [
      `@${LOOPBACK}`,
      '-p',
      String(r.port),
      '+tcp',
      '+noall',
      '+answer',
      `a.${Z}`,
      'AAAA',
    ])
    assert.equal(out.status, 0, out.stderr)
    const printed = out.stdout
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith(';'))
      .map(normalize)
    assert.deepEqual(printed, zone.filter((x) => x.name === `a.${Z}` && x.type === RRType.AAAA).map(rrToText))
    assert.equal(r.queries.length, 1)
  })
}
