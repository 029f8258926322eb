import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  loadOffloadFixtures,
  perFlow,
  transportChecksumValid,
  unforward,
} from '../../../test/vectors/offload-fixtures.js'
import { COALESCE_MAX_FLOWS, Coalescer } from './coalesce.js'
import { Segmenter } from './segment.js'
import { VNET_HDR_LEN } from './virtio.js'

const fixtures = loadOffloadFixtures()
const tcpGso = fixtures.filter((f) => f.read[1] === 1 || f.read[1] === 4)
const udpGso = fixtures.filter((f) => f.read[1] === 5)

/** Everything the coalescer writes, each as virtio header + packet (plain writes get an all-zero header). */
function run(packets: Buffer[], flushEvery = Number.POSITIVE_INFINITY, udp = true): Buffer[] {
  const out: Buffer[] = []
  const c = new Coalescer(
    (b, off, len) => out.push(Buffer.from(b.subarray(off, off + len))),
    (b, off, len) => out.push(Buffer.concat([Buffer.alloc(VNET_HDR_LEN), b.subarray(off, off + len)])),
    { udp },
  )
  for (const [i, p] of packets.entries()) {
    c.push(Buffer.from(p), 0, p.length)
    if ((i + 1) % flushEvery === 0) c.flush()
  }
  c.flush()
  return out
}

/** The packets a write stands for: what the kernel's GSO would make of it (our segmenter, checked above). */
function resegment(w: Buffer): Buffer[] {
  const out: Buffer[] = []
  const err = new Segmenter().segment(Buffer.from(w), 0, w.length, (b, off, len) =>
    out.push(Buffer.from(b.subarray(off, off + len))),
  )
  assert.equal(err, undefined, 'the coalescer wrote something the segmenter refuses')
  return out
}

for (const f of tcpGso) {
  test(`the kernel's segments coalesce back into the kernel's super-packet: ${f.what}`, () => {
    const segs = f.kernelSegments.map(unforward)
    const out = run(segs)
    assert.equal(out.length, 1, 'one write')
    const [w] = out
    const want = f.read
    // Virtio header: flags, GSO type, gso_size, csum_start, csum_offset as the kernel's; hdr_len is the headers'
    // length (the kernel's read gives skb_headlen there, which is not a header length).
    for (const at of [0, 1, 4, 5, 6, 7, 8, 9]) assert.equal(w![at], want[at], `virtio header octet ${at}`)
    const iphl = w![VNET_HDR_LEN]! >> 4 === 6 ? 40 : 20
    assert.equal(w!.readUInt16LE(2), iphl + (w![VNET_HDR_LEN + iphl + 12]! >> 4) * 4)
    assert.deepEqual(w!.subarray(VNET_HDR_LEN), want.subarray(VNET_HDR_LEN), 'packet')
  })
}

for (const f of udpGso) {
  test(`with USO, the kernel's UDP segments coalesce back into the kernel's USO super-packet: ${f.what}`, () => {
    const out = run(f.kernelSegments.map(unforward))
    assert.equal(out.length, 1, 'one write')
    for (const at of [0, 1, 4, 5, 6, 7, 8, 9]) assert.equal(out[0]![at], f.read[at], `virtio header octet ${at}`)
    assert.equal(out[0]!.readUInt16LE(2), (f.read[VNET_HDR_LEN]! >> 4 === 6 ? 40 : 20) + 8)
    assert.deepEqual(out[0]!.subarray(VNET_HDR_LEN), f.read.subarray(VNET_HDR_LEN), 'packet')
  })
}

test('without USO, UDP is written as it came', () => {
  const segs = udpGso[0]!.kernelSegments.map(unforward)
  assert.deepEqual(
    run(segs, Number.POSITIVE_INFINITY, false).map((w) => w.subarray(VNET_HDR_LEN)),
    segs,
  )
})

test('plain, ACK-only and non-TCP packets are written as they came, in flow order', () => {
  const plain = fixtures.filter((f) => f.read[1] === 0).flatMap((f) => f.kernelSegments.map(unforward))
  const out = run(plain)
  assert.equal(out.length, plain.length)
  for (const [i, w] of out.entries()) {
    assert.deepEqual(w.subarray(0, VNET_HDR_LEN), Buffer.alloc(VNET_HDR_LEN))
    assert.deepEqual(w.subarray(VNET_HDR_LEN), plain[i])
  }
})

test('out-of-order, duplicate and gap segments are never merged out of order', () => {
  const segs = tcpGso[0]!.kernelSegments.map(unforward)
  assert.ok(segs.length >= 3)
  for (const order of [
    [1, 0, 2],
    [0, 2, 1],
    [0, 0, 1],
    [0, 2],
    [2, 1, 0],
  ]) {
    const input = order.map((i) => segs[i]!)
    const out = run(input)
    assert.deepEqual(
      out.flatMap(resegment).map((b) => b.toString('hex')),
      input.map((b) => b.toString('hex')),
      `${order}`,
    )
  }
})

test('a segment with a bad checksum is not merged (written as it came, for the kernel to drop)', () => {
  const segs = tcpGso[0]!.kernelSegments.map(unforward)
  const bad = Buffer.from(segs[1]!)
  bad[bad.length - 1]! ^= 0xff
  const out = run([segs[0]!, bad, segs[2]!])
  assert.equal(out.length, 3)
  assert.deepEqual(out[1]!.subarray(VNET_HDR_LEN), bad)
  assert.equal(out[0]![1], 0)
  assert.equal(out[2]![1], 0)
})

test('different ACK number, window or TCP options, or a hop limit change, start a new run', () => {
  const segs = tcpGso.find((f) => f.read[1] === 4)!.kernelSegments.map(unforward)
  const tcp = 40
  const edits: [string, (b: Buffer) => void][] = [
    ['ack', (b) => b.writeUInt32BE(b.readUInt32BE(tcp + 8) + 1, tcp + 8)],
    ['window', (b) => b.writeUInt16BE(b.readUInt16BE(tcp + 14) ^ 1, tcp + 14)],
    ['option', (b) => (b[tcp + 20 + 11]! ^= 1)],
    ['hop limit', (b) => (b[7]! -= 1)],
    ['flow label', (b) => (b[3]! ^= 1)],
  ]
  for (const [name, edit] of edits) {
    const second = Buffer.from(segs[1]!)
    edit(second)
    // Keep the checksum right so only the edited field stops the merge.
    second.writeUInt16BE(0, tcp + 16)
    let s = 0
    const l4 = second.subarray(tcp)
    const pseudo = Buffer.concat([
      second.subarray(8, 40),
      Buffer.from([0, 0, l4.length >> 8, l4.length & 255, 0, 0, 0, 6]),
    ])
    const all = Buffer.concat([pseudo, l4, Buffer.alloc(1)])
    for (let i = 0; i + 1 < all.length; i += 2) s += all.readUInt16BE(i)
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16)
    second.writeUInt16BE(~s & 0xffff, tcp + 16)
    assert.ok(transportChecksumValid(second))
    const out = run([segs[0]!, second])
    assert.equal(out.length, 2, name)
  }
})

test('a short segment or a PSH closes a run; at most 64 KiB; more flows than slots all arrive', () => {
  const segs = tcpGso.find((f) => f.read[1] === 4)!.kernelSegments.map(unforward)
  // The fixture's last segment is short and has PSH: nothing may follow it in the same run.
  const again = run([...segs, ...segs])
  assert.deepEqual(
    again.flatMap(resegment).map((b) => b.toString('hex')),
    [...segs, ...segs].map((b) => b.toString('hex')),
  )
  // Many flows (source port varied), interleaved: merged while they fit the slots; beyond, nothing is lost and
  // each flow keeps its order.
  for (const flows of [COALESCE_MAX_FLOWS, COALESCE_MAX_FLOWS + 3]) {
    const many: Buffer[] = []
    for (let i = 0; i < segs.length; i++)
      for (let fl = 0; fl < flows; fl++) {
        const p = Buffer.from(segs[i]!)
        p.writeUInt16BE(p.readUInt16BE(40) + fl, 40)
        p.writeUInt16BE((p.readUInt16BE(56) - fl + 0xffff * 2) % 0xffff || 0xffff, 56)
        many.push(p)
      }
    for (const p of many) assert.ok(transportChecksumValid(p))
    const out = run(many)
    if (flows === COALESCE_MAX_FLOWS) assert.equal(out.length, flows, 'one write per flow')
    assert.deepEqual(perFlow(out.flatMap(resegment)), perFlow(many))
  }
})

test('property: re-segmenting what the coalescer writes gives back the input, per flow in order', () => {
  const pool = fixtures.flatMap((f) => f.kernelSegments.map(unforward))
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          pick: fc.nat({ max: pool.length - 1 }),
          edit: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { freq: 4 }),
        }),
        { maxLength: 40 },
      ),
      fc.integer({ min: 1, max: 50 }),
      (picks, flushEvery) => {
        const input = picks.map(({ pick, edit }) => {
          const p = Buffer.from(pool[pick]!)
          if (edit) p[edit[0] % p.length] = edit[1]
          return p
        })
        const out = run(input, flushEvery)
        const back = out.flatMap(resegment)
        assert.deepEqual(perFlow(back), perFlow(input))
      },
    ),
    { numRuns: 2000 },
  )
})
