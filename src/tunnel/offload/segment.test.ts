import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { loadOffloadFixtures, transportChecksumValid, unforward } from '../../../test/vectors/offload-fixtures.js'
import { Segmenter } from './segment.js'
import { VNET_HDR_LEN } from './virtio.js'

const fixtures = loadOffloadFixtures()

function cut(read: Buffer): { err: string | undefined; out: Buffer[] } {
  const out: Buffer[] = []
  const err = new Segmenter().segment(Buffer.from(read), 0, read.length, (b, off, len) =>
    out.push(Buffer.from(b.subarray(off, off + len))),
  )
  return { err, out }
}

test('fixtures: every GSO type and plain packets with and without NEEDS_CSUM were captured', () => {
  const kinds = new Set(fixtures.map((f) => f.what.replace(/ len=.*/, '').replace(/ tcpflags=.*/, '')))
  for (const k of [
    'ipv6 tcp gso=tcpv6 flags=0x1',
    'ipv4 tcp gso=tcpv4 flags=0x1',
    'ipv6 udp gso=udp_l4 flags=0x1',
    'ipv4 udp gso=udp_l4 flags=0x1',
    'ipv6 tcp gso=none flags=0x1',
    'ipv4 tcp gso=none flags=0x1',
  ])
    assert.ok(kinds.has(k), `no fixture of kind ${k}: ${[...kinds].join('; ')}`)
})

for (const f of fixtures) {
  test(`segmentation equals the kernel's, byte for byte: ${f.what}`, () => {
    const { err, out } = cut(f.read)
    assert.equal(err, undefined)
    assert.equal(out.length, f.kernelSegments.length)
    for (const [i, s] of out.entries()) {
      assert.ok(s.length <= 1400, `segment ${i} of ${s.length} octets exceeds the MTU`)
      assert.deepEqual(s, unforward(f.kernelSegments[i]!), `segment ${i} differs`)
      assert.ok(transportChecksumValid(s), `segment ${i}: bad transport checksum`)
    }
  })
}

test('segment of a super-packet: lengths, sequence numbers, FIN/PSH last only, CWR first only', () => {
  const f = fixtures.find((x) => x.what.startsWith('ipv6 tcp gso=tcpv6'))!
  const read = Buffer.from(f.read)
  const tcp = VNET_HDR_LEN + 40
  read[tcp + 13] = 0x10 | 0x08 | 0x01 | 0x80 // ACK PSH FIN CWR
  const gso = read.readUInt16LE(4)
  const { err, out } = cut(read)
  assert.equal(err, undefined)
  const seq0 = read.readUInt32BE(tcp + 4)
  for (const [i, s] of out.entries()) {
    const last = i === out.length - 1
    assert.equal(s.readUInt16BE(4) + 40, s.length)
    assert.equal(s.readUInt32BE(40 + 4), (seq0 + i * gso) >>> 0)
    assert.equal(s[40 + 13], 0x10 | (last ? 0x09 : 0) | (i === 0 ? 0x80 : 0))
    assert.ok(transportChecksumValid(s))
  }
})

test('segment: sequence numbers wrap at 2^32', () => {
  const f = fixtures.find((x) => x.what.startsWith('ipv4 tcp gso=tcpv4'))!
  const read = Buffer.from(f.read)
  const tcp = VNET_HDR_LEN + 20
  read.writeUInt32BE(0xffff_ff00, tcp + 4)
  const { out } = cut(read)
  assert.equal(out[1]!.readUInt32BE(20 + 4), (0xffff_ff00 + read.readUInt16LE(4)) >>> 0)
  for (const s of out) assert.ok(transportChecksumValid(s))
})

test('a plain read without NEEDS_CSUM passes untouched; with it, only the checksum is completed', () => {
  const plain = fixtures.find((x) => x.read[0] === 0)
  if (plain) assert.deepEqual(cut(plain.read).out, [plain.read.subarray(VNET_HDR_LEN)])
  const syn = fixtures.find((x) => x.what.startsWith('ipv6 tcp gso=none flags=0x1'))!
  const [s] = cut(syn.read).out
  assert.ok(transportChecksumValid(s!))
  const before = syn.read.subarray(VNET_HDR_LEN)
  assert.deepEqual(s!.subarray(0, 56), before.subarray(0, 56))
  assert.deepEqual(s!.subarray(58), before.subarray(58))
})

function mutate(read: Buffer, at: number, v: number, le16 = false): Buffer {
  const b = Buffer.from(read)
  if (le16) b.writeUInt16LE(v, at)
  else b[at] = v
  return b
}

test('malformed virtio headers and packets are refused whole, with the reason', () => {
  const v6 = fixtures.find((x) => x.what.startsWith('ipv6 tcp gso=tcpv6'))!.read
  const v4 = fixtures.find((x) => x.what.startsWith('ipv4 tcp gso=tcpv4'))!.read
  const udp = fixtures.find((x) => x.what.startsWith('ipv6 udp gso=udp_l4'))!.read
  const syn = fixtures.find((x) => x.what.startsWith('ipv6 tcp gso=none flags=0x1'))!.read
  const cases: [string, Buffer, string][] = [
    ['shorter than the header', v6.subarray(0, 9), 'short'],
    ['GSO without NEEDS_CSUM', mutate(v6, 0, 0), 'bad_csum_fields'],
    ['UFO (type 3)', mutate(v6, 1, 3), 'bad_gso'],
    ['unknown GSO type', mutate(v6, 1, 9), 'bad_gso'],
    ['TCPV4 on an IPv6 packet', mutate(v6, 1, 1), 'bad_gso'],
    ['TCPV6 on an IPv4 packet', mutate(v4, 1, 4), 'bad_gso'],
    ['UDP_L4 on TCP', mutate(v6, 1, 5), 'bad_gso'],
    ['ECN with UDP_L4', mutate(udp, 1, 0x85), 'bad_gso'],
    ['ECN without GSO', mutate(syn, 1, 0x80), 'bad_gso'],
    ['gso_size 0', mutate(v6, 4, 0, true), 'bad_gso'],
    ['csum_start not the transport header', mutate(v6, 6, 48, true), 'bad_csum_fields'],
    ['csum_offset not TCP', mutate(v6, 8, 6, true), 'bad_csum_fields'],
    ['csum_offset beyond the packet', mutate(syn, 8, 0xfff0, true), 'bad_csum_fields'],
    ['csum_start in the IP header', mutate(syn, 6, 4, true), 'bad_csum_fields'],
    ['csum_start inside the IPv6 header', mutate(syn, 6, 24, true), 'bad_csum_fields'],
    ['NEEDS_CSUM on a packet of IP version 5', mutate(syn, VNET_HDR_LEN, 0x50), 'bad_csum_fields'],
    ['IPv6 payload length wrong', mutate(v6, VNET_HDR_LEN + 5, v6[VNET_HDR_LEN + 5]! ^ 1), 'bad_ip'],
    ['IPv4 total length wrong', mutate(v4, VNET_HDR_LEN + 3, v4[VNET_HDR_LEN + 3]! ^ 1), 'bad_ip'],
    ['IPv4 fragment', mutate(v4, VNET_HDR_LEN + 6, 0x20), 'bad_ip'],
    ['IP version 5', mutate(v6, VNET_HDR_LEN, 0x50), 'bad_ip'],
    ['TCP data offset below 5', mutate(v6, VNET_HDR_LEN + 40 + 12, 0x40), 'bad_ip'],
    ['headers only, no payload', v6.subarray(0, VNET_HDR_LEN + 40 + 32), 'bad_ip'],
    ['UDP length wrong', mutate(udp, VNET_HDR_LEN + 40 + 5, udp[VNET_HDR_LEN + 45]! ^ 1), 'bad_ip'],
  ]
  for (const [name, read, want] of cases) {
    const { err, out } = cut(read)
    assert.equal(err, want, name)
    assert.deepEqual(out, [], `${name}: nothing may be sent`)
  }
})

test('property: any mutation of a captured read is refused or gives consistent, checksummed segments', () => {
  const reads = fixtures.map((f) => f.read)
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: reads.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.nat(),
      (which, edits, cutAt) => {
        const r = Buffer.from(reads[which]!)
        for (const [at, v] of edits) r[at % r.length] = v
        const read = cutAt % 4 === 0 ? r.subarray(0, cutAt % r.length) : r
        const { err, out } = cut(read)
        if (err !== undefined) return out.length === 0
        const gso = read[1]! !== 0
        for (const s of out) {
          if (!gso) continue
          const v6 = s[0]! >> 4 === 6
          if (v6 ? s.readUInt16BE(4) + 40 !== s.length : s.readUInt16BE(2) !== s.length) return false
          if (!transportChecksumValid(s)) return false
        }
        return true
      },
    ),
    { numRuns: 3000 },
  )
})
