import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeLlq, LlqOpcode } from '../dns/llq.js'
import { signMessage, type TsigKey, verifyMessage } from '../dns/tsig.js'
import { decodeMessage } from '../dns/wire/message.js'
import { fanoutNative } from './fanout-native.js'
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

for (const mode of ['native HMAC', 'node:crypto'] as const)
  test(`every patched and signed LLQ event equals signMessage of the fresh event, and verifies (${mode})`, {
    skip: mode === 'native HMAC' && !fanoutNative ? 'fanout.node not built' : false,
  }, () => {
    const w = new LlqEventWire(mode === 'node:crypto' ? { hmac: null } : {})
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

test('the native HMAC equals node:crypto for every TSIG algorithm and refuses bad arguments', {
  skip: fanoutNative ? false : 'fanout.node not built',
}, async () => {
  const { createHmac } = await import('node:crypto')
  const h = fanoutNative!.hmac
  const data = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff))
  const out = Buffer.alloc(64)
  for (const digest of ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512'])
    for (const end of [0, 1, 63, 64, 65, 300]) {
      const key = Buffer.alloc(digest === 'sha512' ? 200 : 17, end + 1)
      const n = h(digest, key, data, end, out)
      assert.deepEqual(out.subarray(0, n), createHmac(digest, key).update(data.subarray(0, end)).digest(), digest)
    }
  assert.throws(() => h('sha256', Buffer.alloc(1), data, 301, out), RangeError)
  assert.throws(() => h('no-such-digest', Buffer.alloc(1), data, 1, out), RangeError)
  assert.throws(() => h('sha512', Buffer.alloc(1), data, 1, Buffer.alloc(63)), RangeError)
})
