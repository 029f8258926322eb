// Public types of the tunnel data plane (tunnel.ts re-exports them): dependencies, options, the Child SA
// parameters IKE passes to installChildSa, per-peer status, and the API's error class.

import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import type { TunDevice } from '../io/tun.js'
import { type EspAlg, EspCrypto } from './esp.js'
import type { Endpoint } from './sa-table.js'

export interface TunnelDeps {
  readonly tun: TunDevice
  /** The shared UDP socket, already bound (the agent's mapped port). */
  readonly socket: DatagramSocket
  readonly clock: Clock
  readonly log: Logger
  readonly random: Random
}

export interface TunnelOptions {
  /** This host's ULA (the TUN device's /128). Required. */
  readonly localUla: string
  /** @default 20000 (RFC 3948 section 4) */
  readonly keepaliveIntervalMs?: number
  /** Packets kept per peer while waiting for an SA. @default 32 */
  readonly noSaQueueLen?: number
  /** How long a packet may wait for an SA. @default 5000 */
  readonly noSaQueueMs?: number
  /** Minimum interval between two onNoSa calls for one peer. @default 1000 */
  readonly noSaRetryMs?: number
  /** Send queue length (packets). @default 512 */
  readonly txQueueLen?: number
  /** Slabs in the pool: bounds the packets queued plus in flight. @default 1024 */
  readonly maxSlabs?: number
  /** Replay window blocks of 32; window = (blocks - 1) * 32. @default 64 (2016 packets) */
  readonly replayBlocks?: number
  /** onSaExpiring fires when this fraction of the sequence space is used. @default 0.9 */
  readonly seqSoftLimit?: number
  /**
   * Run the send path and the TUN device's I/O on two worker threads (tx-thread.ts) when the TUN device has an
   * fd (LinuxTun) and the socket is a node:dgram UdpSocket; otherwise, or when false, everything runs on this
   * thread. @default false
   */
  readonly txThread?: boolean
  /**
   * With txThread: which thread reads the TUN device. 'io' (a third thread; most throughput, about 0.5 ms more
   * round-trip time on the lab VM) or 'send' (the send thread; latency close to one thread). The environment
   * variable AUTOTUNNEL_TUN_READ=send|io overrides. @default 'io'
   */
  readonly tunReadIn?: 'send' | 'io'
  /** Batch sends with UDP GSO when the socket is a node:dgram UdpSocket on Linux. @default true */
  readonly udpGso?: boolean
  /**
   * Batch receives: after each datagram node:dgram delivers, one recvmmsg takes what else is queued
   * (udp-recv.ts), when the socket is a node:dgram UdpSocket on Linux. AUTOTUNNEL_RECVMMSG=0 turns it off.
   * @default true
   */
  readonly recvBatch?: boolean
  /**
   * With recvBatch: UDP_GRO on the socket, read only by recvmmsg whenever it is readable (needs the fdpoll addon,
   * src/tunnel/native/fdpoll.cc); one read then takes a peer's whole GSO send. AUTOTUNNEL_UDP_GRO=0 turns it off.
   * @default true
   */
  readonly udpGro?: boolean
  /** Fill released slabs with 0xdb (tests). @default false */
  readonly poisonSlabs?: boolean
}

export interface ChildSaParams {
  readonly peerUla: string
  readonly spiIn: number
  readonly spiOut: number
  readonly alg: EspAlg
  /** Inbound key material: key || 4-octet salt (RFC 4106 section 8.1, RFC 7634 section 2), as IKEv2 derives it. */
  readonly keyIn: Buffer
  readonly keyOut: Buffer
  /** Extended sequence numbers (RFC 4303 section 2.2.1). */
  readonly esn: boolean
  /** Switch outbound traffic to this SA now. @default true. false installs only the inbound half (rekey, responder side). */
  readonly outbound?: boolean
}

export interface PeerStatus {
  readonly ula: string
  readonly endpoint: Endpoint | undefined
  readonly keepalive: boolean
  readonly spiOut: number | undefined
  readonly spisIn: number[]
  readonly alg: EspAlg | undefined
  readonly txPackets: number
  readonly txBytes: number
  readonly rxPackets: number
  readonly rxBytes: number
  /** Wall-clock ms of the last authenticated packet from this peer. */
  readonly lastRxMs: number | undefined
  /** Packets waiting for an SA. */
  readonly queued: number
}

/** Errors of the SA table API (bad parameters from IKE or the manual config), never raised by packets. */
export class TunnelError extends Error {
  override readonly name = 'TunnelError'
  constructor(
    message: string,
    readonly code: 'unknown_peer' | 'spi_in_use' | 'bad_param',
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** Optional TUN read that lends a view of a reused buffer (LinuxTun): the tunnel copies it into a slab. */
export interface ViewTun {
  onPacketView(handler: (buf: Buffer, off: number, len: number) => void): void
}

/** A TUN device with offloads (LinuxTun opened with IFF_VNET_HDR): its reads are cut, its writes may be merged. */
export interface OffloadTun {
  readonly vnetHdr: boolean
  /** TUN_F_* flags the device accepted (USO decides whether UDP is merged too). */
  readonly offload: { readonly flags: number }
  /** Reads its own reader refused (malformed virtio header). */
  readonly vnetDrops: number
  /** Writes a packet that starts with its virtio header. */
  writeVnet(buf: Buffer, off: number, len: number): void
  segmentStats(): { superPackets: number; segments: number }
}

/** What the offloads did (all 0 without them). */
export interface OffloadStats {
  readonly vnetHdr: boolean
  /** TSO/USO super-packets read from the device, and the packets cut from them (plain reads included). */
  readonly segmentedReads: number
  readonly segments: number
  /** Super-packets written to the device, and the packets merged into them beyond each one's first. */
  readonly coalescedWrites: number
  readonly merged: number
}

/** `e` checked as an outer endpoint; bad_param otherwise. */
export function checkEndpoint(e: Endpoint): Endpoint {
  if (typeof e?.address !== 'string' || !Number.isInteger(e.port) || e.port < 1 || e.port > 65535)
    throw new TunnelError(`bad endpoint ${JSON.stringify(e)}`, 'bad_param')
  return { address: e.address, port: e.port }
}

/** An ESP context, with a bad key or algorithm reported as the API's bad_param. */
export function espCrypto(alg: EspAlg, spi: number, key: Buffer, esn: boolean): EspCrypto {
  try {
    return new EspCrypto(alg, spi, key, esn)
  } catch (e) {
    throw new TunnelError((e as Error).message, 'bad_param', { cause: e })
  }
}

/** An SPI as 8 hex digits, for logs and errors. */
export function hex(spi: number): string {
  return spi.toString(16).padStart(8, '0')
}
