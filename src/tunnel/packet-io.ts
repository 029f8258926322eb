// How a started tunnel's packets get into send.ts and receive.ts and out of them (Tunnel.start()).
//   UDP side  recvmmsg batches (udp-recv.ts) behind each 'message' event when the socket is a real node:dgram
//             socket; otherwise one datagram per event. With UDP_GRO (and the fdpoll addon) node's reading is
//             stopped and the socket is read only by recvmmsg, whenever the fd is readable (GRO runs need the
//             control message node's reads drop).
//   TUN side  with the send thread: tx-thread.ts reads the TUN device and seals off the main thread, and the
//             receive path writes through the TUN thread's ring; without it: the main thread reads the TUN
//             device into the Sender, which sends with UDP GSO (udp-gso.ts) when it can.
//   offloads  with a TUN device opened with IFF_VNET_HDR (docs/tunnel.md "TUN offloads"): reads are cut into
//             wire-sized packets by whoever reads (LinuxTun itself, the TUN thread or the send thread), and the
//             receive path's packets are merged into TCP super-packets (offload/coalesce.ts) by whoever writes:
//             the TUN thread per ring drain, or here per receive batch without the threads.
// Separate from tunnel.ts (the SA table's public face) because this is the one place that looks behind TunDevice
// and DatagramSocket at sockets and file descriptors, and it changes with the threading and syscall work, not
// with the SA API.

import type dgram from 'node:dgram'
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import type { DatagramSocket, RemoteInfo } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { TunDevice } from '../io/tun.js'
import type { TunnelCounters } from './counters.js'
import { Coalescer } from './offload/coalesce.js'
import type { Receiver } from './receive.js'
import type { Sender, SenderOptions } from './send.js'
import { closeFd, dupFd, TUN_F_USO4, TUN_F_USO6 } from './tun/linux-tun.js'
import type { TunIoStats } from './tun-io-worker.js'
import type { OffloadStats, OffloadTun, ViewTun } from './tunnel-types.js'
import { type TxHooks, TxThread } from './tx-thread.js'
import { stopDgramReading, UdpGso, udpSocketFd } from './udp-gso.js'
import { type BatchHandler, RECV_BATCH, UdpRecvBatch } from './udp-recv.js'

interface FdPollLike {
  stop(): void
}
type FdPollCtor = new (fd: number, onReadable: (status: number) => void) => FdPollLike

/** dist/native/fdpoll.node (src/tunnel/native/fdpoll.cc), when built. */
function loadFdPoll(): FdPollCtor | undefined {
  try {
    return (createRequire(import.meta.url)('../../native/fdpoll.node') as { FdPoll: FdPollCtor }).FdPoll
  } catch {
    return undefined
  }
}

/** Batches read per readiness callback before the event loop gets a turn (the poll is level-triggered). */
const GRO_BATCHES_PER_TURN = 4

/** A TUN device as start() sees it: maybe with a view read (LinuxTun) and a real fd (for the threads). */
export type StartTun = TunDevice & Partial<ViewTun> & Partial<OffloadTun> & { fd?: unknown }

/** The node:dgram socket behind a DatagramSocket, if there is one (fakes have none). */
export function rawUdpSocket(socket: DatagramSocket): dgram.Socket | undefined {
  const raw = (socket as { raw?: unknown }).raw
  return raw instanceof EventEmitter ? (raw as dgram.Socket) : undefined
}

/**
 * Hands every datagram arriving on `socket` to `fromUdp`. With `batchFrom` (the raw socket, when batching is
 * wanted) and recvmmsg available, each 'message' event is followed by up to two batches read from its fd; the
 * batcher is returned for its counts. undefined: one datagram per event.
 */
export function receiveFromUdp(
  socket: DatagramSocket,
  batchFrom: dgram.Socket | undefined,
  fromUdp: (msg: Buffer, from: RemoteInfo) => void,
  drops: TunnelCounters['drops'],
  afterBatch: () => void = () => {},
  groWanted = false,
): { rb: UdpRecvBatch | undefined; stop: () => void } {
  const rb = batchFrom ? UdpRecvBatch.forSocket(batchFrom) : undefined
  const stop = (): void => {}
  if (!rb) {
    socket.onMessage((msg, from) => {
      fromUdp(msg, from)
      afterBatch()
    })
    return { rb: undefined, stop }
  }
  const onBatch: BatchHandler = (b, off, len, from, truncated) => {
    if (truncated) {
      drops.truncated++
      return
    }
    // ESP is opened in place and leaves before fromUdp returns: a view. IKE (or anything not ESP) may be
    // kept by its handler: a copy.
    const esp = len > 4 && (b[off]! | b[off + 1]! | b[off + 2]! | b[off + 3]!) !== 0
    const view = b.subarray(off, off + len)
    fromUdp(esp ? view : Buffer.from(view), from)
  }
  const gro = groWanted && batchFrom ? startGro(batchFrom, rb, onBatch, afterBatch) : undefined
  if (gro) return { rb, stop: gro }
  socket.onMessage((msg, from) => {
    fromUdp(msg, from)
    // At most two batches per delivered datagram: libuv reads what remains and calls again.
    if (rb.drain(onBatch) === RECV_BATCH) rb.drain(onBatch)
    afterBatch()
  })
  return { rb, stop }
}

/**
 * UDP_GRO on `sock`, read only through `rb` whenever the fd is readable; returns the function that stops the
 * poll (before the socket closes). undefined: not possible here (no fdpoll addon, kernel refused, or node's
 * reading could not be stopped), and nothing was changed except, harmlessly, the GRO option when the last step
 * failed (then the receive path stays node's, see below).
 */
function startGro(
  sock: dgram.Socket,
  rb: UdpRecvBatch,
  onBatch: BatchHandler,
  afterBatch: () => void,
): (() => void) | undefined {
  if (process.env.AUTOTUNNEL_UDP_GRO === '0') return undefined
  const FdPoll = loadFdPoll()
  const fd = udpSocketFd(sock)?.fd
  if (!FdPoll || fd === undefined) return undefined
  // Node's reading stops first: from here on no read may miss the segment size.
  if (!stopDgramReading(sock)) return undefined
  if (!rb.enableGro()) {
    // Kernel without UDP_GRO: the fd is polled all the same, without GRO (node's reading cannot be restarted
    // from here without its internals).
  }
  const pfd = dupFd(fd)
  const poll = new FdPoll(pfd, (status) => {
    if (status < 0) return
    for (let i = 0; i < GRO_BATCHES_PER_TURN; i++) if (rb.drain(onBatch) < RECV_BATCH) break
    afterBatch()
  })
  let stopped = false
  return () => {
    if (stopped) return
    stopped = true
    poll.stop()
    closeFd(pfd)
  }
}

/** What the offloads did, from the device (main-thread reads), the TUN thread's stats and the main coalescer. */
export function offloadStatsOf(tun: StartTun, io: TunIoStats | undefined, co: Coalescer | undefined): OffloadStats {
  const main = tun.segmentStats?.() ?? { superPackets: 0, segments: 0 }
  return {
    vnetHdr: tun.vnetHdr === true,
    segmentedReads: main.superPackets + (io?.segmentedReads ?? 0),
    segments: main.segments + (io?.segments ?? 0),
    coalescedWrites: (co?.superPackets ?? 0) + (io?.coalescedWrites ?? 0),
    merged: (co?.merged ?? 0) + (io?.merged ?? 0),
  }
}

/** Whether a device's offload flags include USO for both families (then UDP is merged too). */
export function usoOn(flags: number): boolean {
  return (flags & TUN_F_USO4) !== 0 && (flags & TUN_F_USO6) !== 0
}

/**
 * Without the threads, on a device with offloads: the receive path's packets are merged (offload/coalesce.ts) and
 * the merged runs written after each receive batch (`flush`). undefined: the device has no offloads.
 */
export function coalesceOnMain(
  tun: StartTun,
  receiver: Receiver,
  drops: TunnelCounters['drops'],
): Coalescer | undefined {
  const writeVnet = tun.writeVnet
  if (tun.vnetHdr !== true || typeof writeVnet !== 'function') return undefined
  const guard =
    (w: (b: Buffer, off: number, len: number) => void) =>
    (b: Buffer, off: number, len: number): void => {
      try {
        w.call(tun, b, off, len)
      } catch {
        drops.tun_write_error++
      }
    }
  const co = new Coalescer(guard(writeVnet), guard(tun.write), { udp: usoOn(tun.offload?.flags ?? 0) })
  receiver.write = (b, off, len) => {
    co.push(b, off, len)
    return true
  }
  return co
}

/**
 * Starts the send thread and the TUN thread, and points the receive path's TUN writes at them. The caller
 * mirrors its peers and SAs into the returned thread, then calls go().
 */
export function startTxThread(
  init: ConstructorParameters<typeof TxThread>[0],
  hooks: TxHooks,
  receiver: Receiver,
  tun: TunDevice,
  log: Logger,
): TxThread {
  const tx = new TxThread(init, hooks, log)
  // The first packet of a receive burst is written here when the TUN thread has nothing pending (order
  // kept, one thread hop less: pings stay fast); the rest of a burst goes to the TUN thread.
  let burst = 0
  const endBurst = (): void => {
    burst = 0
  }
  receiver.write = (b, off, len) => {
    if (burst++ === 0) {
      setImmediate(endBurst)
      if (tx.tunRingDrained()) {
        tun.write(b, off, len)
        return true
      }
    }
    return tx.writeTun(b, off, len)
  }
  return tx
}

/** Without the threads: the main thread reads the TUN device into the send path; UDP GSO when `gsoFrom` allows. */
export function sendFromTun(tun: StartTun, sender: Sender, gsoFrom: dgram.Socket | undefined): void {
  if (typeof tun.onPacketView === 'function') tun.onPacketView((b, off, len) => sender.fromTun(b, off, len))
  else tun.onPacket((p) => sender.fromTun(p, 0, p.length))
  if (gsoFrom) sender.gso = UdpGso.forSocket(gsoFrom)
}

/** How often the send thread reports its counters. */
export const TX_STATS_INTERVAL_MS = 200

/** What Tunnel.start() hands to startPacketPath. */
export interface PacketPathInit {
  tun: StartTun
  socket: DatagramSocket
  log: Logger
  receiver: Receiver
  sender: Sender
  drops: TunnelCounters['drops']
  /** The send and TUN threads wanted (used only with a real TUN fd and a real UDP socket). */
  threads: boolean
  tunReadIn: 'send' | 'io'
  recvBatch: boolean
  udpGro: boolean
  udpGso: boolean
  mtu: number
  maxSlabs: number
  localUla: Buffer
  senderOpts: SenderOptions
  hooks: TxHooks
}

/** The running packet path: the threads (if any), the main-thread coalescer, the receive batcher. */
export interface PacketPath {
  tx: TxThread | undefined
  coalescer: Coalescer | undefined
  recvBatch: UdpRecvBatch | undefined
  stopRecv: () => void
}

/**
 * Connects the TUN device and the socket to the send and receive paths: receive batching (and GRO) on the UDP
 * side; on the TUN side either the threads (returned not yet going: the caller mirrors its peers and SAs into
 * them, then calls go()) or the main thread's reads into the Sender.
 */
export function startPacketPath(i: PacketPathInit): PacketPath {
  const raw = rawUdpSocket(i.socket)
  const udp = raw ? udpSocketFd(raw) : undefined
  const tunFd = typeof i.tun.fd === 'number' ? i.tun.fd : undefined
  const threads = i.threads && tunFd !== undefined && udp !== undefined
  // Without threads the main thread writes the device: it merges what one receive batch brought.
  const coalescer = threads ? undefined : coalesceOnMain(i.tun, i.receiver, i.drops)
  const { rb, stop } = receiveFromUdp(
    i.socket,
    i.recvBatch ? raw : undefined,
    i.receiver.fromUdp,
    i.drops,
    coalescer ? () => coalescer.flush() : undefined,
    i.udpGro,
  )
  let tx: TxThread | undefined
  if (threads && tunFd !== undefined && udp) {
    tx = startTxThread(
      {
        tunFd,
        tunReadIn: i.tunReadIn,
        vnetHdr: i.tun.vnetHdr === true,
        uso: usoOn(i.tun.offload?.flags ?? 0),
        udpFd: udp.fd,
        udpV6: udp.v6,
        mtu: i.mtu,
        maxSlabs: i.maxSlabs,
        localUla: i.localUla.toString('latin1'),
        sender: i.senderOpts,
        statsIntervalMs: TX_STATS_INTERVAL_MS,
      },
      i.hooks,
      i.receiver,
      i.tun,
      i.log,
    )
  } else sendFromTun(i.tun, i.sender, i.udpGso ? raw : undefined)
  return { tx, coalescer, recvBatch: rb, stopRecv: stop }
}
