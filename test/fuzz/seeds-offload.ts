// Seeds of the TUN offload targets (see seeds.ts): reads captured from Linux (test/vectors/offload-linux.json) for
// tun-segment, and short in-order TCP runs built from the captured segments for tun-coalesce (kept under the
// fuzzer's 4096-octet inputs).
import { IpProto, writeIpv4HeaderChecksum, writeL4Checksum } from '../../src/tunnel/offload/checksum.js'
import { loadOffloadFixtures, unforward } from '../vectors/offload-fixtures.js'

const MAX = 4096

/** A captured segment cut down to `payload` octets, moved `seqAdd` on, lengths and checksums fixed. */
function shrink(p: Buffer, payload: number, seqAdd: number): Buffer {
  const v6 = p[0]! >> 4 === 6
  const iphl = v6 ? 40 : (p[0]! & 15) * 4
  const thl = (p[iphl + 12]! >> 4) * 4
  const q = Buffer.from(p.subarray(0, iphl + thl + payload))
  if (v6) q.writeUInt16BE(q.length - 40, 4)
  else {
    q.writeUInt16BE(q.length, 2)
    q.writeUInt16BE((q.readUInt16BE(4) + seqAdd / payload) & 0xffff, 4)
    writeIpv4HeaderChecksum(q, 0, iphl)
  }
  q.writeUInt32BE((q.readUInt32BE(iphl + 4) + seqAdd) >>> 0, iphl + 4)
  q[iphl + 13] = 0x10
  writeL4Checksum(q, 0, iphl, q.length, IpProto.TCP)
  return q
}

function frame(every: number, packets: Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from([every])]
  for (const p of packets) {
    const l = Buffer.alloc(2)
    l.writeUInt16BE(p.length)
    parts.push(l, p)
  }
  return Buffer.concat(parts)
}

function segmentSeeds(): Record<string, Buffer> {
  const out: Record<string, Buffer> = {}
  for (const [i, f] of loadOffloadFixtures().entries())
    if (f.read.length <= MAX) out[`linux-${i}-${f.what.replace(/[^a-z0-9]+/g, '-')}`] = f.read
  return out
}

function coalesceSeeds(): Record<string, Buffer> {
  const fx = loadOffloadFixtures()
  const v6 = unforward(fx.find((f) => f.read[1] === 4)!.kernelSegments[0]!)
  const v4 = unforward(fx.find((f) => f.read[1] === 1)!.kernelSegments[0]!)
  const run = (p: Buffer, n: number, size: number) => Array.from({ length: n }, (_, i) => shrink(p, size, i * size))
  const syn = unforward(
    fx.find((f) => f.what.startsWith('ipv6 tcp gso=none flags=0x1 tcpflags=0x2'))!.kernelSegments[0]!,
  )
  const udp = unforward(fx.find((f) => f.read[1] === 5)!.kernelSegments[0]!).subarray(0, 200)
  return {
    'tcp6-run': frame(0, run(v6, 6, 200)),
    'tcp4-run': frame(0, run(v4, 6, 200)),
    'tcp6-run-short-last': frame(0, [...run(v6, 3, 200), shrink(v6, 50, 600)]),
    'two-flows-interleaved': frame(
      0,
      run(v6, 4, 150).flatMap((p, i) => [p, run(v4, 4, 150)[i]!]),
    ),
    'out-of-order': frame(0, [...run(v6, 4, 100)].reverse()),
    'flush-every-2': frame(2, run(v6, 6, 100)),
    'syn-then-run-udp': frame(0, [syn, ...run(v6, 3, 100), udp]),
  }
}

export const offloadSeeds: Record<string, () => Record<string, Buffer>> = {
  'tun-segment': segmentSeeds,
  'tun-coalesce': coalesceSeeds,
}
