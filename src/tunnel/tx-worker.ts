// The send path (send.ts) on its own thread: takes the packets the TUN thread read (tun-io-worker.ts) from a
// shared ring, seals and sends them with UDP GSO on the main thread's socket fd. The main thread keeps the receive path, IKE and the API, and mirrors
// every change of a peer's endpoint or outbound SA here by message (tx-thread.ts). Sequence numbers live only
// here, so numbering and sending stay one synchronous run on one thread.

import { parentPort, workerData } from 'node:worker_threads'
import { SystemClock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import { nullLogger } from '../io/log.js'
import { newCounters } from './counters.js'
import { EspCrypto } from './esp.js'
import { Segmenter } from './offload/segment.js'
import { SlabPool } from './pool.js'
import { consumeRing, PacketRing } from './ring.js'
import { newPeer, type Peer } from './sa-table.js'
import { Sender } from './send.js'
import { statsTimer } from './stats-timer.js'
import { dupFd, TunReader } from './tun/linux-tun.js'
import type { TxInit, TxStats, TxToWorker } from './tx-thread.js'
import { UdpGso } from './udp-gso.js'

const init = workerData as TxInit
const port = parentPort!
const clock = new SystemClock()
const counters = newCounters()
const peersByKey = new Map<string, Peer>()
const gso = UdpGso.forFd(init.udpFd, init.udpV6)

// Only used when a batched send fails (socket buffer full): the datagram is dropped and counted.
const refuse: DatagramSocket = {
  bind: () => Promise.reject(new Error('tx worker socket')),
  send: (_b, _o, _l, _p, _a, done) => done?.(new Error('socket buffer full')),
  onMessage: () => {},
  address: () => ({ address: '', port: 0 }),
  close: () => Promise.resolve(),
}

const sender = new Sender(
  {
    socket: refuse,
    clock,
    log: nullLogger,
    pool: new SlabPool({ mtu: init.mtu, maxSlabs: init.maxSlabs }),
    counters,
    peersByKey,
    localUla: Buffer.from(init.localUla, 'latin1'),
  },
  init.sender,
)
sender.gso = gso
sender.onNoSa = (ula, packet) => port.postMessage({ op: 'noSa', ula, packet })
sender.onSaExpiring = (ula, spi) => port.postMessage({ op: 'saExpiring', ula, spi })

let stopping = false
// Consuming starts with the 'go' message, which the main thread posts after the initial peers and SAs (messages
// are FIFO), so no packet read at startup meets an empty peer table.
let consumer: Promise<void> = Promise.resolve()
let stopReader = (): void => {}

function stats(): TxStats {
  const now = clock.monotonic()
  return {
    op: 'stats',
    counters,
    peers: [...peersByKey.values()].map((p) => ({
      key: p.key,
      txPackets: p.txPackets,
      txBytes: p.txBytes,
      txAgoMs: Number.isFinite(p.lastTxMonoMs) ? now - p.lastTxMonoMs : -1,
      queued: p.noSaQueue.length,
    })),
  }
}
/** What a stats message says that can change (txAgoMs follows from the unchanged send time). */
const statsKey = (s: TxStats): string =>
  JSON.stringify([s.counters, s.peers.map((p) => [p.key, p.txPackets, p.txBytes, p.queued])])
let lastKey = ''
// Only after work and only when something changed (stats-timer.ts): an idle tunnel wakes neither this thread nor the
// main thread (issue 17's idle cost); the main thread already holds the last figures.
const timer = statsTimer(init.statsIntervalMs, () => {
  const s = stats()
  const key = statsKey(s)
  if (key === lastKey) return
  lastKey = key
  port.postMessage(s)
})
const fromTun = (b: Buffer, off: number, len: number): void => {
  sender.fromTun(b, off, len)
  timer.mark()
}

port.on('message', (m: TxToWorker) => {
  // A peer or SA change may flush queued packets (counters change): post the figures after it too.
  if (m.op === 'peer' || m.op === 'outbound') timer.mark()
  switch (m.op) {
    case 'peer': {
      let p = peersByKey.get(m.key)
      if (!p) {
        p = newPeer(m.ula, Buffer.from(m.key, 'latin1'), m.endpoint, false)
        peersByKey.set(m.key, p)
      } else p.endpoint = m.endpoint
      if (p.outbound && p.endpoint) sender.flushNoSaQueue(p)
      return
    }
    case 'removePeer':
      peersByKey.delete(m.key)
      return
    case 'outbound': {
      const p = peersByKey.get(m.key)
      if (!p) return
      if (!m.sa) {
        p.outbound = undefined
        return
      }
      const crypto = new EspCrypto(m.sa.alg, m.sa.spi, Buffer.from(m.sa.key), m.sa.esn)
      p.outbound = { spi: m.sa.spi, alg: m.sa.alg, crypto, seq: 0, expiringSignalled: false }
      sender.flushNoSaQueue(p)
      return
    }
    case 'stats':
      port.postMessage(stats())
      return
    case 'go':
      if (init.readTunFd !== undefined) {
        // This thread reads the TUN device itself: one thread wake-up less per packet.
        const seg = init.vnetHdr ? new Segmenter() : undefined
        const reader = new TunReader(
          dupFd(init.readTunFd),
          seg
            ? (b, off, len) => {
                if (seg.segment(b, off, len, fromTun) !== undefined) {
                  counters.drops.bad_vnet_hdr++
                  timer.mark()
                }
              }
            : fromTun,
        )
        consumer = new Promise<void>((resolve) => {
          stopReader = () => void reader.close().then(resolve)
        })
      } else
        consumer = consumeRing(
          new PacketRing(init.fromTun),
          fromTun,
          () => {},
          () => stopping,
        )
      port.postMessage({ op: 'ready', gso: gso !== undefined })
      return
    case 'stop':
      stopping = true
      timer.stop()
      new PacketRing(init.fromTun).wake()
      stopReader()
      void consumer.then(() => {
        sender.close()
        port.postMessage(stats())
        port.close()
      })
      return
  }
})
