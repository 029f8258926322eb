// bench/offload: the TUN offload code on one thread: cutting 10^6 wire-sized TCP segments out of TSO super-packets
// (offload/segment.ts, as read from the device: 44 segments of 1348 octets per read) and merging 10^6 opened segments
// back into super-packets (offload/coalesce.ts), the per-packet CPU cost of each and the heap growth after GC (must
// stay under 1 MiB: nothing is allocated per packet). The packets are the kernel's, from test/vectors/offload-linux.json,
// grown to full size. Re-executes itself with --expose-gc. Environment: OFFLOAD_BENCH_PACKETS (1000000).
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { IpProto, writeL4Checksum } from '../src/tunnel/offload/checksum.js'
import { Coalescer } from '../src/tunnel/offload/coalesce.js'
import { Segmenter } from '../src/tunnel/offload/segment.js'
import { VNET_HDR_LEN } from '../src/tunnel/offload/virtio.js'
import { loadOffloadFixtures } from '../test/vectors/offload-fixtures.js'

const N = Number(process.env.OFFLOAD_BENCH_PACKETS ?? 1_000_000)
const HEAP_LIMIT = 1 << 20
const g = globalThis as { gc?: () => void }
if (!g.gc) {
  execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url)], { stdio: 'inherit' })
  process.exit(0)
}
const gc = g.gc

// A full-size TSO6 read: the captured super-packet's headers, gso_size kept, payload grown to 44 segments.
const f = loadOffloadFixtures().find((x) => x.read[1] === 4)!
const gso = f.read.readUInt16LE(4)
const hdr = VNET_HDR_LEN + 40 + (f.read[VNET_HDR_LEN + 40 + 12]! >> 4) * 4
const SEGS = Math.min(44, Math.floor((65_535 - (hdr - VNET_HDR_LEN)) / gso))
const read = Buffer.alloc(hdr + SEGS * gso, 0x5a)
f.read.copy(read, 0, 0, hdr)
read.writeUInt16BE(read.length - VNET_HDR_LEN - 40, VNET_HDR_LEN + 4)

function measure(name: string, packets: number, run: () => void): void {
  run() // warm-up
  gc()
  const heap0 = process.memoryUsage().heapUsed
  const cpu0 = process.cpuUsage()
  run()
  const cpu = process.cpuUsage(cpu0)
  gc()
  const growth = process.memoryUsage().heapUsed - heap0
  const us = (cpu.user + cpu.system) / packets
  const gbps = (packets * gso * 8) / ((cpu.user + cpu.system) * 1e3)
  console.log(
    `${name.padEnd(10)} ${packets} packets: ${us.toFixed(3)} us CPU per packet (${gbps.toFixed(1)} Gbit/s of payload per core), heap +${(growth / 1024).toFixed(0)} KiB`,
  )
  if (growth > HEAP_LIMIT) {
    console.error(`${name}: heap grew by ${growth} bytes (limit ${HEAP_LIMIT})`)
    process.exitCode = 1
  }
}

const seg = new Segmenter()
const segs: Buffer[] = []
seg.segment(Buffer.from(read), 0, read.length, (b, off, len) => segs.push(Buffer.from(b.subarray(off, off + len))))
for (const s of segs) writeL4Checksum(s, 0, 40, s.length, IpProto.TCP)
const reads = Math.ceil(N / SEGS)
let out = 0
measure('segment', reads * SEGS, () => {
  for (let i = 0; i < reads; i++) seg.segment(read, 0, read.length, () => out++)
})
let writes = 0
const co = new Coalescer(
  () => writes++,
  () => writes++,
)
measure('coalesce', reads * SEGS, () => {
  for (let i = 0; i < reads; i++) {
    for (const s of segs) co.push(s, 0, s.length)
    co.flush()
  }
})
console.log(`segments per read ${SEGS}, gso_size ${gso}; writes per flush ${(writes / (2 * reads)).toFixed(2)}`)
