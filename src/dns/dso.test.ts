import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import {
  DsoType,
  decodeDso,
  decodeKeepaliveTlv,
  decodePushTlv,
  decodeReconfirmTlv,
  decodeRetryDelayTlv,
  decodeSubscribeTlv,
  decodeUnsubscribeTlv,
  encodeDso,
  isDso,
  keepaliveTlv,
  pushTlv,
  reconfirmTlv,
  retryDelayTlv,
  subscribeTlv,
  unsubscribeTlv,
} from './dso.js'
import { frameTcp, TcpDeframer } from './tcp-framing.js'
import { WireError } from './wire/errors.js'

failOnLeakedResources()

test('DSO keepalive request has the RFC 8490 layout', () => {
  const wire = encodeDso({
    id: 0x1234,
    qr: false,
    rcode: 0,
    tlvs: [keepaliveTlv(15000, 3600000)],
  })
  assert.equal(wire.toString('hex'), '1234' + '3000' + '0000000000000000' + '0001' + '0008' + '00003a98' + '0036ee80')
  assert.ok(isDso(wire))
  const m = decodeDso(wire)
  assert.deepEqual(m, { id: 0x1234, qr: false, rcode: 0, tlvs: [{ type: DsoType.KEEPALIVE, data: m.tlvs[0]!.data }] })
  assert.deepEqual(decodeKeepaliveTlv(m.tlvs[0]!.data), { inactivityMs: 15000, keepaliveMs: 3600000 })
})

test('DSO response with rcode and several TLVs round-trips', () => {
  const msg = {
    id: 7,
    qr: true,
    rcode: 11,
    tlvs: [retryDelayTlv(5000), { type: DsoType.ENCRYPTION_PADDING, data: Buffer.alloc(5) }],
  }
  const back = decodeDso(encodeDso(msg))
  assert.deepEqual(back, msg)
  assert.equal(decodeRetryDelayTlv(back.tlvs[0]!.data), 5000)
})

test('DSO decode rejects malformed messages', () => {
  const ok = encodeDso({ id: 1, qr: false, rcode: 0, tlvs: [unsubscribeTlv(9)] })
  const counts = Buffer.from(ok)
  counts.writeUInt16BE(1, 4)
  const query = Buffer.from(ok)
  query.writeUInt16BE(0, 2)
  for (const bad of [counts, query, ok.subarray(0, ok.length - 1), ok.subarray(0, 14), ok.subarray(0, 5)])
    assert.throws(() => decodeDso(bad), WireError)
})

test('RFC 8765 TLVs: SUBSCRIBE, PUSH, UNSUBSCRIBE, RECONFIRM', () => {
  const q = { name: 'alice.members.example.', type: 28, class: 1 }
  const sub = subscribeTlv(q)
  assert.equal(sub.type, 0x40)
  assert.equal(sub.data.toString('hex'), '05616c696365076d656d62657273076578616d706c6500001c0001')
  assert.deepEqual(decodeSubscribeTlv(sub.data), q)
  assert.throws(() => decodeSubscribeTlv(Buffer.concat([sub.data, Buffer.from([0])])), WireError)

  const rrs = [
    {
      name: 'alice.members.example.',
      type: 28,
      class: 1,
      ttl: 60,
      rdata: Buffer.from('fdaa0000000000000000000000000001', 'hex'),
    },
    {
      name: 'alice.members.example.',
      type: 28,
      class: 1,
      ttl: 0xffffffff,
      rdata: Buffer.from('fdaa0000000000000000000000000002', 'hex'),
    },
    { name: 'alice.members.example.', type: 255, class: 255, ttl: 0xfffffffe, rdata: Buffer.alloc(0) },
  ]
  const push = pushTlv(rrs)
  assert.equal(push.type, 0x41)
  assert.ok(!push.data.includes(Buffer.from([0xc0])), 'no compression pointers')
  assert.deepEqual(decodePushTlv(push.data), rrs)
  assert.throws(() => decodePushTlv(push.data.subarray(0, push.data.length - 1)), WireError)

  assert.equal(decodeUnsubscribeTlv(unsubscribeTlv(0xbeef).data), 0xbeef)
  const q2 = { name: 'bob.members.example.', type: 1, class: 1 }
  const t = reconfirmTlv(q2, Buffer.from('c0000207', 'hex'))
  assert.equal(t.data.toString('hex'), '03626f62076d656d62657273076578616d706c6500' + '00010001' + 'c0000207')
  assert.deepEqual(decodeReconfirmTlv(t.data), { q: q2, rdata: Buffer.from('c0000207', 'hex') })
})

test('TCP framing: prefix and a deframer that handles split and coalesced chunks', () => {
  const msgs = [Buffer.from('hello'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('x')]
  const stream = Buffer.concat(msgs.map(frameTcp))
  assert.equal(frameTcp(msgs[0]!).toString('hex'), '000568656c6c6f')
  for (const step of [1, 2, 3, 7, 1000]) {
    const d = new TcpDeframer()
    const got: Buffer[] = []
    for (let i = 0; i < stream.length; i += step) got.push(...d.push(stream.subarray(i, i + step)))
    assert.deepEqual(got, msgs, `chunk ${step}`)
    assert.equal(d.buffered, 0)
  }
})
