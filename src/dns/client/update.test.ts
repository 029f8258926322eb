// The UPDATE client against a scripted DNS server on 127.0.0.1 (real UDP, the project's codec and TSIG): the
// request's shape (RFC 2136 zone section, RFC 9664 lease option, TSIG), and that an unsigned or wrongly signed
// NOERROR answer is ignored while a correctly chained one is taken.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { test } from 'node:test'
import { SystemClock } from '../../io/clock.js'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { MemoryLogger } from '../../io/log.js'
import { FakeRandom } from '../../io/random.fake.js'
import { EdnsOptionCode, findOption } from '../edns.js'
import { decodeUpdateLease, encodeUpdateLease } from '../lease.js'
import { signMessage, type TsigKey, verifyMessage } from '../tsig.js'
import { Opcode, Rcode } from '../wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../wire/message.js'
import { RRClass, RRType } from '../wire/rr-table.js'
import { UpdateClient, type UpdateError } from './update.js'

failOnLeakedResources()

const key: TsigKey = { name: 'alice.members.example.', algorithm: 'hmac-sha256', secret: randomBytes(32) }

type Script = (req: Message, wire: Buffer, reply: (b: Buffer) => void, requestMac: Buffer | undefined) => void

async function server(t: { after: (fn: () => Promise<void>) => void }, script: Script) {
  const s = dgram.createSocket('udp4')
  const seen: Message[] = []
  s.on('message', (wire, rinfo) => {
    const req = decodeMessage(wire)
    seen.push(req)
    const v = req.tsig ? verifyMessage(wire, (n) => (n === key.name ? key : undefined)) : undefined
    const reply = (b: Buffer): void => {
      s.send(b, rinfo.port, rinfo.address)
    }
    if (req.opcode === Opcode.QUERY) {
      reply(
        encodeMessage(
          emptyMessage({ id: req.id, qr: true, aa: true, rcode: Rcode.NXDOMAIN, questions: req.questions }),
        ),
      )
      return
    }
    script(req, wire, reply, v?.ok ? v.mac : undefined)
  })
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))
  t.after(() => new Promise<void>((r) => s.close(() => r())))
  return { port: s.address().port, seen }
}

function answer(req: Message, leaseSec: number | undefined): Message {
  return emptyMessage({
    id: req.id,
    qr: true,
    opcode: Opcode.UPDATE,
    questions: req.questions,
    ...(leaseSec !== undefined
      ? { edns: { udpSize: 1232, version: 0, do: false, options: [encodeUpdateLease({ leaseSec })] } }
      : {}),
  })
}

function client(port: number): UpdateClient {
  return new UpdateClient(
    { clock: new SystemClock(), log: new MemoryLogger() },
    { bootstrap: { host: '127.0.0.1', port }, domain: 'alice.members.example', key, timeoutMs: 300 },
  )
}

const add = {
  name: 'desktop.alice.members.example.',
  type: RRType.AAAA,
  class: RRClass.IN,
  ttl: 60,
  data: { address: 'fd00::1' },
}

test('an UPDATE is signed, names the zone, carries the lease; forged answers are skipped, the signed one is taken', async (t) => {
  const srv = await server(t, (req, _wire, reply, mac) => {
    assert.ok(mac, 'the request verifies with the account key')
    const granted = answer(req, 1800)
    reply(encodeMessage(granted))
    reply(signMessage(granted, { ...key, secret: randomBytes(32) }, { requestMac: mac }).wire)
    reply(signMessage(granted, key, { requestMac: randomBytes(32) }).wire)
    reply(signMessage(granted, key, { requestMac: mac }).wire)
  })
  const c = client(srv.port)
  const r = await c.update({ zone: 'members.example', updates: [add], leaseSec: 5400 })
  assert.deepEqual(r, { rcode: 0, leaseSec: 1800, via: `udp:127.0.0.1:${srv.port}` })
  assert.equal(c.badResponses, 3)
  const up = srv.seen.find((m) => m.opcode === Opcode.UPDATE)!
  assert.deepEqual(up.questions, [{ name: 'members.example.', type: RRType.SOA, class: RRClass.IN }])
  assert.equal(up.authorities.length, 1)
  assert.equal(up.tsig?.name, key.name)
  const lease = findOption(up.edns, EdnsOptionCode.UPDATE_LEASE)
  assert.equal(lease && decodeUpdateLease(lease.data).leaseSec, 5400)
  assert.deepEqual(
    srv.seen
      .filter((m) => m.opcode === Opcode.QUERY)
      .map((m) => m.questions[0]?.name)
      .sort(),
    ['_dns-update._udp.alice.members.example.'],
    'without TLS options only the plain update service is looked up',
  )
})

test('an error answer is taken even unsigned and surfaces its rcode; no answer is a timeout error', async (t) => {
  const refused = await server(t, (req, _w, reply) =>
    reply(encodeMessage({ ...answer(req, undefined), rcode: Rcode.NOTAUTH })),
  )
  await assert.rejects(
    client(refused.port).update({ zone: 'members.example', updates: [add] }),
    (e: UpdateError) => e.code === Rcode.NOTAUTH,
  )
  const silent = await server(t, () => {})
  const c = client(silent.port)
  await assert.rejects(c.update({ zone: 'members.example', updates: [add] }), (e: UpdateError) => e.code === -1)
  assert.equal(c.failures, 1)
})

test('UPDATE message IDs come from the injected Random', async (t) => {
  const srv = await server(t, (req, _wire, reply, mac) =>
    reply(signMessage(answer(req, undefined), key, { requestMac: mac }).wire),
  )
  const ids = (seed: number) => {
    const r = new FakeRandom(seed)
    return [r.int(0x10000), r.int(0x10000)]
  }
  const c = new UpdateClient(
    { clock: new SystemClock(), log: new MemoryLogger(), random: new FakeRandom(7) },
    { bootstrap: { host: '127.0.0.1', port: srv.port }, domain: 'alice.members.example', key, timeoutMs: 300 },
  )
  await c.update({ zone: 'members.example', updates: [add] })
  await c.update({ zone: 'members.example', updates: [add] })
  const sent = srv.seen.filter((m) => m.opcode === Opcode.UPDATE).map((m) => m.id)
  assert.deepEqual(sent, ids(7))
})
