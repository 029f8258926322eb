import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeLlq, LlqOpcode } from '../dns/llq.js'
import { signMessage, type TsigKey, verifyMessage } from '../dns/tsig.js'
import { decodeMessage } from '../dns/wire/message.js'
import { encodeLlqEvent, type LlqEventFields, LlqEventWire } from './llq-event-wire.js'
import type { ZoneRR } from './zone-index.js'

const ZONE = 'members.example.'
const KEYS: TsigKey[] = [
  { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 7) },
  { name: `Bob.${ZONE}`, algorithm: 'hmac-sha512', secret: Buffer.alloc(64, 9) },
  { name: `carol.${ZONE}`, algorithm: 'hmac-sha1', secret: Buffer.alloc(20, 3) },
]
const aaaa = (name: string, last: number, ttl = 60): ZoneRR => {
  const rdata = Buffer.alloc(16)
  rdata[0] = 0xfd
  rdata[15] = last
  return { name, type: 28, class: 1, ttl, rdata, text: `fd00::${last}` }
}

/** LLQs of one change: same added/removed arrays (as the fan-out hands them), own IDs, msg IDs, leases, cases. */
function events(): LlqEventFields[] {
  const name = `host.alice.${ZONE}`
  const added = [aaaa(name, 2), aaaa(name, 3, 120)]
  const removed = [aaaa(name, 1)]
  const out: LlqEventFields[] = []
  for (let i = 0; i < 12; i++) {
    const qname = i % 3 === 0 ? name.toUpperCase() : name
    out.push({
      msgId: (i * 7919) & 0xffff,
      question: { name: qname, type: i % 4 === 3 ? 255 : 28, class: 1 },
      opt: { version: 1, opcode: LlqOpcode.EVENT, error: 0, id: 0x0123456789abcdefn + BigInt(i), leaseSec: 7200 - i },
      added,
      removed,
    })
  }
  return out
}

test('every patched LLQ event equals the event encoded from scratch, octet for octet', () => {
  const w = new LlqEventWire()
  for (const ev of events()) {
    const got = w.event(ev)
    assert.deepEqual(got, encodeLlqEvent(ev))
    const llq = decodeLlq(decodeMessage(got).edns!.options.at(-1)!.data)
    assert.equal(llq.id, ev.opt.id)
    assert.equal(llq.leaseSec, ev.opt.leaseSec)
  }
})

test('every patched and signed LLQ event equals signMessage of the fresh event, and verifies', () => {
  const w = new LlqEventWire()
  let n = 0
  for (const timeSigned of [1_800_000_000, 1_800_000_001]) {
    for (const ev of events()) {
      const key = KEYS[n++ % KEYS.length]!
      const got = w.event(ev, key, timeSigned, 300)
      const want = signMessage(encodeLlqEvent(ev), key, { timeSigned, fudge: 300 }).wire
      assert.deepEqual(got, want, `event ${n} (${key.algorithm})`)
      const v = verifyMessage(got, (name) => (name.toLowerCase() === key.name.toLowerCase() ? key : undefined), {
        now: timeSigned,
      })
      assert.equal(v.ok, true)
    }
  }
})

test('copies are independent: a copy handed out is never changed by the next', () => {
  const w = new LlqEventWire()
  const [a, b] = events()
  const first = w.event(a!, KEYS[0], 1_800_000_000, 300)
  const snapshot = Buffer.from(first)
  w.event(b!, KEYS[0], 1_800_000_000, 300)
  assert.deepEqual(first, snapshot)
})
