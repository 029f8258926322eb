// The TUN offload coalescer (src/tunnel/offload/coalesce.ts): opened packets merged into TCP super-packets for one
// TUN write (UDP too, as with a USO device). Input: octet 0 = after how many packets to flush (0: only at the end), then packets as
// [length (2, big-endian)][packet]. Nothing may throw, and nothing corrupt may come out: cutting every write back
// into packets (the segmenter, itself checked against the kernel's GSO) must give the input packets exactly, in
// order within each flow.
import { Coalescer } from '../../../src/tunnel/offload/coalesce.js'
import { Segmenter } from '../../../src/tunnel/offload/segment.js'
import { perFlow } from '../../vectors/offload-fixtures.js'

const VNET = 10

export function fuzz(data: Buffer): void {
  const every = data[0] ?? 0
  const input: Buffer[] = []
  for (let at = 1; at + 2 <= data.length; ) {
    const n = data.readUInt16BE(at)
    at += 2
    input.push(Buffer.from(data.subarray(at, at + n)))
    at += n
  }
  const writes: Buffer[] = []
  const c = new Coalescer(
    (b, off, len) => writes.push(Buffer.from(b.subarray(off, off + len))),
    (b, off, len) => writes.push(Buffer.concat([Buffer.alloc(VNET), b.subarray(off, off + len)])),
    { udp: true },
  )
  for (const [i, p] of input.entries()) {
    c.push(p, 0, p.length)
    if (every > 0 && (i + 1) % every === 0) c.flush()
  }
  c.flush()
  const seg = new Segmenter()
  const back: Buffer[] = []
  for (const w of writes) {
    const err = seg.segment(Buffer.from(w), 0, w.length, (b, off, len) =>
      back.push(Buffer.from(b.subarray(off, off + len))),
    )
    if (err !== undefined) throw new Error(`coalescer wrote what the segmenter refuses: ${err}`)
  }
  const a = perFlow(back)
  const b = perFlow(input)
  if (a.size !== b.size) throw new Error('coalescer lost or invented a flow')
  for (const [k, v] of b) {
    const got = a.get(k)
    if (!got || got.length !== v.length || got.some((x, i) => x !== v[i]))
      throw new Error(`coalescer changed flow ${k}: ${v.length} packets in, ${got?.length ?? 0} out or different`)
  }
}
