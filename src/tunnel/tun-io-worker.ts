// The TUN device's I/O on its own thread: packets read from the device go into a ring to the send thread
// (tx-worker.ts); decrypted packets from the receive path (main thread) come through a ring and are written
// to the device. Writing a packet into the TUN device runs the kernel's receive processing (TCP, sockets) in
// that write() call, and reading is one syscall per packet: with this thread, neither sits on the threads that
// seal or open.
// With offloads (the device opened with IFF_VNET_HDR, docs/tunnel.md "TUN offloads") a read is cut into wire-sized
// packets here (offload/segment.ts) before the ring, and the packets of one ring drain are coalesced into TCP
// super-packets (offload/coalesce.ts) before they are written: one write per up to 64 KiB.

import { writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import { Coalescer } from './offload/coalesce.js'
import { Segmenter } from './offload/segment.js'
import { VNET_HDR_LEN } from './offload/virtio.js'
import { consumeRing, PacketRing, type RingInit } from './ring.js'
import { statsTimer } from './stats-timer.js'
import { closeFd, dupFd, TunReader } from './tun/linux-tun.js'

export interface TunIoInit {
  readonly tunFd: number
  /** TUN -> send thread */
  readonly toTx: RingInit
  /** receive path -> TUN */
  readonly fromRx: RingInit
  readonly statsIntervalMs: number
  /** Read the device here (else the send thread reads it). */
  readonly read: boolean
  /** The device carries a virtio_net_hdr on every read and write (offloads on). */
  readonly vnetHdr: boolean
  /** The device accepted USO: UDP datagrams are merged too. */
  readonly uso: boolean
}

export interface TunIoStats {
  readonly op: 'tunStats'
  /** Read packets dropped because the send thread's ring was full. */
  readonly toTxDropped: number
  readonly writeErrors: number
  /** Reads refused by the segmenter (malformed virtio header or packet). */
  readonly vnetDrops: number
  /** Super-packets read and the segments cut from them; super-packets written and the packets merged into them. */
  readonly segmentedReads: number
  readonly segments: number
  readonly coalescedWrites: number
  readonly merged: number
}

const init = workerData as TunIoInit
const port = parentPort!
const toTx = new PacketRing(init.toTx)
const fromRx = new PacketRing(init.fromRx)
const wfd = dupFd(init.tunFd)
let toTxDropped = 0
let writeErrors = 0
let vnetDrops = 0
let stopping = false
let lastKey = ''
// Only after work and only when a figure changed (stats-timer.ts): an idle tunnel wakes neither this thread nor the
// main thread (issue 17's idle cost).
const timer = statsTimer(init.statsIntervalMs, () => {
  const s = stats()
  const key = `${s.toTxDropped}/${s.writeErrors}/${s.vnetDrops}/${s.segmentedReads}/${s.segments}/${s.coalescedWrites}/${s.merged}`
  if (key === lastKey) return
  lastKey = key
  port.postMessage(s)
})

const toTxOne = (b: Buffer, off: number, len: number): void => {
  if (!toTx.push(b, off, len)) toTxDropped++
}
const seg = init.vnetHdr ? new Segmenter() : undefined
const reader = init.read
  ? new TunReader(dupFd(init.tunFd), (b, off, len) => {
      if (seg) {
        if (seg.segment(b, off, len, toTxOne) !== undefined) vnetDrops++
      } else toTxOne(b, off, len)
      toTx.publish()
      timer.mark()
    })
  : undefined

const writeRaw = (b: Buffer, off: number, len: number): void => {
  try {
    writeSync(wfd, b, off, len)
  } catch {
    writeErrors++
  }
}
// A plain packet goes out behind an all-zero virtio header, copied into one buffer: one write(2), no writev
// arrays per packet.
const plain = Buffer.alloc(VNET_HDR_LEN + 65_535)
const writePlain = (b: Buffer, off: number, len: number): void => {
  b.copy(plain, VNET_HDR_LEN, off, off + len)
  writeRaw(plain, 0, VNET_HDR_LEN + len)
}
const co = init.vnetHdr ? new Coalescer(writeRaw, writePlain, { udp: init.uso }) : undefined
const writer = co
  ? consumeRing(
      fromRx,
      (b, off, len) => co.push(b, off, len),
      () => {
        co.flush()
        timer.mark()
      },
      () => stopping,
    )
  : consumeRing(
      fromRx,
      writeRaw,
      () => timer.mark(),
      () => stopping,
    )

const stats = (): TunIoStats => ({
  op: 'tunStats',
  toTxDropped,
  writeErrors,
  vnetDrops,
  segmentedReads: seg?.superPackets ?? 0,
  segments: seg?.segments ?? 0,
  coalescedWrites: co?.superPackets ?? 0,
  merged: co?.merged ?? 0,
})
port.postMessage({ op: 'ready' })

port.on('message', (m: { op: string }) => {
  if (m.op !== 'stop') return
  stopping = true
  timer.stop()
  fromRx.wake()
  void Promise.all([reader?.close(), writer]).then(() => {
    closeFd(wfd)
    port.postMessage(stats())
    port.close()
  })
})
