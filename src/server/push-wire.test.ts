import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DsoType, decodeDso, decodePushTlv, encodeDso, pushTlv } from '../dns/dso.js'
import type { RRsetChange } from './notify-types.js'
import { FRAME_PREFIX, PushFrames } from './push-wire.js'
import type { ZoneRR } from './zone-index.js'

const ZONE = 'members.example.'
const aaaa = (name: string, last: number, ttl = 60): ZoneRR => {
  const rdata = Buffer.alloc(16)
  rdata[0] = 0xfd
  rdata[15] = last
  return { name, type: 28, class: 1, ttl, rdata, text: `fd00::${last}` }
}

/** The PUSH message RFC 8765 §6.3.1 asks for, built by hand from the DSO codec. */
function expected(c: RRsetChange<ZoneRR>): Buffer {
  const rrs = [
    ...c.removed.map((z) => ({ name: z.name, type: z.type, class: z.class, ttl: 0xffffffff, rdata: z.rdata })),
    ...c.added.map((z) => ({ name: z.name, type: z.type, class: z.class, ttl: z.ttl, rdata: z.rdata })),
  ]
  const msg = encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [pushTlv(rrs)] })
  const f = Buffer.alloc(FRAME_PREFIX + msg.length)
  f.writeUInt16BE(msg.length, 0)
  msg.copy(f, FRAME_PREFIX)
  return f
}

test('the shared PUSH frame of a change equals a freshly encoded, length-prefixed PUSH message', () => {
  const name = `host.alice.${ZONE}`
  const changes: RRsetChange<ZoneRR>[] = [
    { name, type: 28, added: [aaaa(name, 2)], removed: [aaaa(name, 1)] },
    { name, type: 28, added: [aaaa(name, 3, 120), aaaa(name, 4)], removed: [] },
    { name, type: 28, added: [], removed: [aaaa(name, 2), aaaa(name, 3)] },
  ]
  const frames = new PushFrames()
  for (const c of changes) {
    const f = frames.frame(c)
    assert.deepEqual(f, expected(c))
    const m = decodeDso(f.subarray(FRAME_PREFIX))
    assert.equal(m.id, 0, 'a PUSH is a unidirectional message, ID 0 (RFC 8490 §5.4)')
    assert.equal(m.qr, false)
    assert.equal(m.tlvs[0]!.type, DsoType.PUSH)
    assert.equal(decodePushTlv(m.tlvs[0]!.data).length, c.added.length + c.removed.length)
  }
})

test('every session of one change gets the very same Buffer; the next change gets a new one', () => {
  const name = `pub.${ZONE}`
  const c1: RRsetChange<ZoneRR> = { name, type: 28, added: [aaaa(name, 2)], removed: [] }
  const c2: RRsetChange<ZoneRR> = { name, type: 28, added: [aaaa(name, 2)], removed: [] }
  const frames = new PushFrames()
  const first = frames.frame(c1)
  const copy = Buffer.from(first)
  for (let i = 0; i < 1000; i++) assert.equal(frames.frame(c1), first)
  const second = frames.frame(c2)
  assert.notEqual(second, first, 'another change object is encoded anew')
  assert.deepEqual(second, first, 'to the same octets when it says the same')
  assert.deepEqual(first, copy, 'a frame handed out is never changed')
})

test('a change too large for one DSO message throws (the caller counts it), and the next one works', () => {
  const name = `big.${ZONE}`
  const many = Array.from({ length: 3000 }, (_, i) => aaaa(name, i & 0xff))
  const frames = new PushFrames()
  assert.throws(() => frames.frame({ name, type: 28, added: many, removed: [] }))
  const ok: RRsetChange<ZoneRR> = { name, type: 28, added: [aaaa(name, 1)], removed: [] }
  assert.deepEqual(frames.frame(ok), expected(ok))
})
