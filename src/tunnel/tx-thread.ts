// Main-thread side of the send-path worker (tx-worker.ts). With a real TUN device and a node:dgram socket the
// tunnel runs its send path on a second thread, so sealing and sending one direction and receiving the other
// use two cores (a one-thread tunnel gets one scheduler share; charon and wireguard-go run many threads).
// Messages are FIFO: a peer is announced before its SA, and an SA before the packets that wait for it.

import { Worker } from 'node:worker_threads'
import type { Logger } from '../io/log.js'
import type { TunnelCounters } from './counters.js'
import type { EspAlg } from './esp.js'
import type { Endpoint, Peer } from './sa-table.js'
import type { SenderOptions } from './send.js'

export interface TxInit {
  readonly tunFd: number
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

export class TxThread {
  readonly #w: Worker
  readonly #log: Logger
  #exited: Promise<void>
  last: TxStats | undefined
  gso: boolean | undefined

  constructor(init: TxInit, hooks: TxHooks, log: Logger) {
    this.#log = log
    this.#w = new Worker(new URL('./tx-worker.js', import.meta.url), { workerData: init })
    this.#exited = new Promise((resolve) => this.#w.once('exit', () => resolve()))
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
  requestStats(): void {
    this.#post({ op: 'stats' })
  }

  async close(): Promise<void> {
    this.#post({ op: 'stop' })
    const t = setTimeout(() => void this.#w.terminate(), 2000)
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
