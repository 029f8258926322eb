// The TUN offload segmenter (src/tunnel/offload/segment.ts): one read from a TUN device with IFF_VNET_HDR
// (virtio_net_hdr + packet) cut into wire-sized packets. Nothing may throw, and nothing corrupt may come out: a
// read is refused whole (a reason, no output) or every segment of a GSO read is a consistent packet (IP lengths,
// checksums verified independently here) carrying, in order, exactly the super-packet's payload.
import { Segmenter } from '../../../src/tunnel/offload/segment.js'
import { transportChecksumValid } from '../../vectors/offload-fixtures.js'

const VNET = 10
const seg = new Segmenter()

function fail(what: string): never {
  throw new Error(`segmenter delivered a corrupt packet: ${what}`)
}

export function fuzz(data: Buffer): void {
  const read = Buffer.from(data)
  const out: Buffer[] = []
  const err = seg.segment(read, 0, read.length, (b, off, len) => out.push(Buffer.from(b.subarray(off, off + len))))
  if (err !== undefined) {
    if (out.length !== 0) fail(`refused (${err}) after delivering ${out.length}`)
    return
  }
  if ((data[1] ?? 0) === 0) {
    // Plain read: the packet itself, at most its checksum field completed.
    if (out.length !== 1 || out[0]!.length !== data.length - VNET) fail('plain read changed length')
    return
  }
  const p = data.subarray(VNET)
  const v6 = p[0]! >> 4 === 6
  const iphl = v6 ? 40 : (p[0]! & 15) * 4
  const tcp = p[v6 ? 6 : 9] === 6
  const hdr = iphl + (tcp ? (p[iphl + 12]! >> 4) * 4 : 8)
  const payload: Buffer[] = []
  for (const s of out) {
    if (v6 ? s.readUInt16BE(4) + 40 !== s.length : s.readUInt16BE(2) !== s.length) fail('IP length')
    if (!tcp && s.readUInt16BE(iphl + 4) !== s.length - iphl) fail('UDP length')
    if (!transportChecksumValid(s)) fail('transport checksum')
    if (s.length - hdr > data.readUInt16LE(4)) fail('segment above gso_size')
    payload.push(s.subarray(hdr))
  }
  if (!Buffer.concat(payload).equals(p.subarray(hdr))) fail('payload not carried exactly once, in order')
}
