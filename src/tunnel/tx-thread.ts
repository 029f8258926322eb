// Main-thread side of the tunnel's worker threads: the send path (tx-worker.ts) and the TUN device's I/O
// (tun-io-worker.ts). With a real TUN device and a node:dgram socket the packet path spreads over three
// threads (a one-thread tunnel gets one scheduler share; charon and wireguard-go run many threads).
// Messages are FIFO: a peer is announced before its SA, both before 'go' lets the send thread consume.

import { Worker } from 'node:worker_threads'
import type { Logger } from '../io/log.js'
import type { TunnelCounters } from './counters.js'
import type { EspAlg } from './esp.js'
import { createRing, PacketRing, type RingInit } from './ring.js'
import type { Endpoint, Peer } from './sa-table.js'
import type { SenderOptions } from './send.js'
import type { TunIoInit, TunIoStats } from './tun-io-worker.js'

/** Packets each ring between the threads holds. */
const RING_SLOTS = 4096

export interface TxInit {
  /** TUN -> this thread (filled by the TUN I/O thread) */
  readonly fromTun: RingInit
  /** When set, the send thread reads the TUN device (a dup of this fd) instead of the ring. */
  readonly readTunFd?: number
  /** Reads carry a virtio_net_hdr (offloads): the send thread, when it reads, cuts them (offload/segment.ts). */
  readonly vnetHdr: boolean
  readonly udpFd: number
  readonly udpV6: boolean
  readonly mtu: number
  readonly maxSlabs: number
  /** 16 octets as latin1 */
  readonly localUla: string
  readonly sender: SenderOptions
  readonly statsIntervalMs: number
}

export type TxToWorker =
  | { op: 'peer'; key: string; ula: string; endpoint: Endpoint | undefined }
  | { op: 'removePeer'; key: string }
  | { op: 'outbound'; key: string; sa: { spi: number; alg: EspAlg; key: Uint8Array; esn: boolean } | undefined }
  | { op: 'stats' }
  | { op: 'go' }
  | { op: 'stop' }

export interface TxPeerStats {
  readonly key: string
  readonly txPackets: number
  readonly txBytes: number
  /** ms since the last send, -1 for never */
  readonly txAgoMs: number
  readonly queued: number
}

export interface TxStats {
  readonly op: 'stats'
  readonly counters: TunnelCounters
  readonly peers: TxPeerStats[]
}

type FromWorker =
  | TxStats
  | { op: 'ready'; gso: boolean }
  | { op: 'noSa'; ula: string; packet: Uint8Array }
  | { op: 'saExpiring'; ula: string; spi: number }

export interface TxHooks {
  onNoSa(ula: string, packet: Buffer): void
  onSaExpiring(ula: string, spi: number): void
  onStats(s: TxStats): void
}

/**
 * The tunnel's extra threads: the send path (tx-worker.ts) and the TUN device's reads and writes
 * (tun-io-worker.ts), joined by SharedArrayBuffer rings: TUN -> send thread, receive path -> TUN.
 */
export class TxThread {
  readonly #w: Worker
  readonly #io: Worker
  readonly #toTun: PacketRing
  readonly #log: Logger
  #exited: Promise<void>
  last: TxStats | undefined
  lastIo: TunIoStats | undefined
  gso: boolean | undefined
  /** Resolves when both threads run: the send thread consumes, the TUN thread reads. */
  readonly ready: Promise<void>
  #readyTx: () => void = () => {}
  #readyIo: () => void = () => {}

  constructor(
    init: Omit<TxInit, 'fromTun' | 'readTunFd'> & { tunFd: number; tunReadIn: 'send' | 'io'; uso: boolean },
    hooks: TxHooks,
    log: Logger,
  ) {
    this.#log = log
    const slotSize = init.mtu
    const fromTun = createRing(RING_SLOTS, slotSize)
    const toTun = createRing(RING_SLOTS, slotSize)
    this.#toTun = new PacketRing(toTun)
    const { tunFd, tunReadIn, uso, ...rest } = init
    const readInTx = tunReadIn === 'send'
    const txInit: TxInit = { ...rest, fromTun, ...(readInTx ? { readTunFd: tunFd } : {}) }
    this.#w = new Worker(new URL('./tx-worker.js', import.meta.url), { workerData: txInit })
    const ioInit: TunIoInit = {
      tunFd,
      toTx: fromTun,
      fromRx: toTun,
      statsIntervalMs: init.statsIntervalMs,
      read: !readInTx,
      vnetHdr: init.vnetHdr,
      uso,
    }
    this.#io = new Worker(new URL('./tun-io-worker.js', import.meta.url), { workerData: ioInit })
    this.#io.on('error', (e) => log.error('tunnel.tun_io_worker_failed', { err: String(e) }))
    this.ready = Promise.all([
      new Promise<void>((r) => {
        this.#readyTx = r
      }),
      new Promise<void>((r) => {
        this.#readyIo = r
      }),
    ]).then(() => {})
    this.#io.on('message', (m: TunIoStats | { op: 'ready' }) => {
      if (m.op === 'tunStats') this.lastIo = m
      else if (m.op === 'ready') this.#readyIo()
    })
    this.#exited = Promise.all([
      new Promise<void>((resolve) => this.#w.once('exit', () => resolve())),
      new Promise<void>((resolve) => this.#io.once('exit', () => resolve())),
    ]).then(() => {})
    this.#w.on('error', (e) => log.error('tunnel.tx_worker_failed', { err: String(e) }))
    this.#w.on('message', (m: FromWorker) => {
      switch (m.op) {
        case 'stats':
          this.last = m
          hooks.onStats(m)
          return
        case 'ready':
          this.gso = m.gso
          log.info('tunnel.tx_worker_ready', { udpGso: m.gso })
          this.#readyTx()
          return
        case 'noSa':
          hooks.onNoSa(m.ula, Buffer.from(m.packet))
          return
        case 'saExpiring':
          hooks.onSaExpiring(m.ula, m.spi)
          return
      }
    })
  }

  peer(p: Peer): void {
    this.#post({ op: 'peer', key: p.key, ula: p.ula, endpoint: p.endpoint })
  }
  removePeer(p: Peer): void {
    this.#post({ op: 'removePeer', key: p.key })
  }
  outbound(p: Peer, sa: { spi: number; alg: EspAlg; key: Buffer; esn: boolean } | undefined): void {
    this.#post({ op: 'outbound', key: p.key, sa: sa && { ...sa, key: new Uint8Array(sa.key) } })
  }
  /** Lets the send thread start consuming; post after the initial peers and SAs. */
  go(): void {
    this.#post({ op: 'go' })
  }

  requestStats(): void {
    this.#post({ op: 'stats' })
  }

  /** True when the TUN thread has written every packet handed to it (a direct write keeps the order). */
  tunRingDrained(): boolean {
    return this.#toTun.drained()
  }

  /** Hands a decrypted packet to the TUN thread; false when its ring is full. */
  writeTun(buf: Buffer, off: number, len: number): boolean {
    if (!this.#toTun.push(buf, off, len)) return false
    this.#toTun.publish()
    return true
  }

  async close(): Promise<void> {
    this.#post({ op: 'stop' })
    this.#io.postMessage({ op: 'stop' })
    const t = setTimeout(() => {
      void this.#w.terminate()
      void this.#io.terminate()
    }, 2000)
    await this.#exited
    clearTimeout(t)
  }

  #post(m: TxToWorker): void {
    try {
      this.#w.postMessage(m)
    } catch (e) {
      this.#log.warn('tunnel.tx_worker_post_failed', { err: String(e) })
    }
  }
}
