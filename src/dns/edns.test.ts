import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import {
  decodeKeepalive,
  EdnsOptionCode,
  encodeKeepalive,
  encodePadding,
  findOption,
  PADDING_BLOCK_QUERY,
  paddingLength,
} from './edns.js'
import { decodeUpdateLease, encodeUpdateLease } from './lease.js'
import { decodeLlq, encodeLlq, LlqError, LlqOpcode } from './llq.js'
import { WireError } from './wire/errors.js'
import { decodeMessage, emptyMessage, encodeMessage } from './wire/message.js'

failOnLeakedResources()

test('LLQ option layout is RFC 8764 3.2 (18 octets)', () => {
  const o = encodeLlq({
    version: 1,
    opcode: LlqOpcode.REFRESH,
    error: LlqError.NO_SUCH_LLQ,
    id: 0x0102030405060708n,
    leaseSec: 7200,
  })
  assert.equal(o.code, 1)
  assert.equal(o.data.toString('hex'), '0001' + '0002' + '0004' + '0102030405060708' + '00001c20')
  assert.deepEqual(decodeLlq(o.data), { version: 1, opcode: 2, error: 4, id: 0x0102030405060708n, leaseSec: 7200 })
  assert.deepEqual(
    decodeLlq(encodeLlq({ version: 1, opcode: 1, error: 0, id: 2n ** 64n - 1n, leaseSec: 0 }).data).id,
    2n ** 64n - 1n,
  )
  for (const n of [0, 17, 19]) assert.throws(() => decodeLlq(Buffer.alloc(n)), WireError)
})

test('Update Lease option: 4-octet and 8-octet forms (RFC 9664 4)', () => {
  const cases = [
    { lease: { leaseSec: 3600 }, hex: '00000e10' },
    { lease: { leaseSec: 3600, keyLeaseSec: 86400 }, hex: '00000e1000015180' },
  ]
  for (const c of cases) {
    const o = encodeUpdateLease(c.lease)
    assert.equal(o.code, EdnsOptionCode.UPDATE_LEASE)
    assert.equal(o.data.toString('hex'), c.hex)
    assert.deepEqual(decodeUpdateLease(o.data), c.lease)
  }
  for (const n of [0, 1, 3, 5, 12]) assert.throws(() => decodeUpdateLease(Buffer.alloc(n)), WireError, `len ${n}`)
})

test('TCP keepalive (RFC 7828) and padding (RFC 7830) options', () => {
  assert.equal(encodeKeepalive().data.length, 0)
  assert.equal(decodeKeepalive(Buffer.alloc(0)), undefined)
  assert.equal(encodeKeepalive(30_000).data.toString('hex'), '012c')
  assert.equal(decodeKeepalive(Buffer.from('012c', 'hex')), 30_000)
  assert.throws(() => decodeKeepalive(Buffer.alloc(1)), WireError)
  assert.deepEqual(encodePadding(3), { code: 12, data: Buffer.alloc(3) })
  const q = emptyMessage({
    questions: [{ name: 'alice.members.example.', type: 28, class: 1 }],
    edns: { udpSize: 1232, version: 0, do: false, options: [] },
  })
  const pad = paddingLength(encodeMessage(q).length, PADDING_BLOCK_QUERY)
  q.edns!.options.push(encodePadding(pad))
  assert.equal(encodeMessage(q).length % PADDING_BLOCK_QUERY, 0)
})

test('options survive a message round-trip and findOption finds them', () => {
  const m = emptyMessage({
    edns: {
      udpSize: 4096,
      version: 0,
      do: false,
      options: [encodeUpdateLease({ leaseSec: 60 }), encodeKeepalive(1000)],
    },
  })
  const back = decodeMessage(encodeMessage(m))
  assert.deepEqual(decodeUpdateLease(findOption(back.edns, EdnsOptionCode.UPDATE_LEASE)!.data), { leaseSec: 60 })
  assert.equal(decodeKeepalive(findOption(back.edns, EdnsOptionCode.TCP_KEEPALIVE)!.data), 1000)
  assert.equal(findOption(back.edns, EdnsOptionCode.LLQ), undefined)
  assert.equal(findOption(undefined, EdnsOptionCode.LLQ), undefined)
})
