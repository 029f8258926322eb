// The TUN device's I/O on its own thread: packets read from the device go into a ring to the send thread
// (tx-worker.ts); decrypted packets from the receive path (main thread) come through a ring and are written
// to the device. Writing a packet into the TUN device runs the kernel's receive processing (TCP, sockets) in
// that write() call, and reading is one syscall per packet: with this thread, neither sits on the threads that
// seal or open.

import { writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import { consumeRing, PacketRing, type RingInit } from './ring.js'
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
}

export interface TunIoStats {
  readonly op: 'tunStats'
  /** Read packets dropped because the send thread's ring was full. */
  readonly toTxDropped: number
  readonly writeErrors: number
}

const init = workerData as TunIoInit
const port = parentPort!
const toTx = new PacketRing(init.toTx)
const fromRx = new PacketRing(init.fromRx)
const wfd = dupFd(init.tunFd)
let toTxDropped = 0
let writeErrors = 0
let stopping = false

const reader = init.read
  ? new TunReader(dupFd(init.tunFd), (b, off, len) => {
      if (!toTx.push(b, off, len)) toTxDropped++
      toTx.publish()
    })
  : undefined

const writer = consumeRing(
  fromRx,
  (b, off, len) => {
    try {
      writeSync(wfd, b, off, len)
    } catch {
      writeErrors++
    }
  },
  () => {},
  () => stopping,
)

const stats = (): TunIoStats => ({ op: 'tunStats', toTxDropped, writeErrors })
let lastKey = ''
// Only when a figure changed (an idle tunnel does not wake the main thread: issue 17's idle cost).
const timer = setInterval(() => {
  const key = `${toTxDropped}/${writeErrors}`
  if (key === lastKey) return
  lastKey = key
  port.postMessage(stats())
}, init.statsIntervalMs)

port.postMessage({ op: 'ready' })

port.on('message', (m: { op: string }) => {
  if (m.op !== 'stop') return
  stopping = true
  clearInterval(timer)
  fromRx.wake()
  void Promise.all([reader?.close(), writer]).then(() => {
    closeFd(wfd)
    port.postMessage(stats())
    port.close()
  })
})
