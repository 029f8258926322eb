// Batched UDP replies on Linux: the answers produced while one batch of queries is handled (udp-listener.ts
// drains up to RECV_BATCH queued datagrams with recvmmsg) leave in one sendmmsg(2) instead of one sendmsg and one
// libuv send request per answer. Profiling the query path under dnsperf showed the server spending ~60% of its
// CPU in node:dgram's send and most of the rest in libuv's per-datagram receive; the DNS work itself was ~5%.
//
// Synchronous through koffi on the dgram socket's fd (as src/tunnel/udp-gso.ts sends): the kernel has copied the
// data when sendmmsg returns, so the slots are reusable at once. Anything the kernel did not take (EAGAIN: socket
// buffer full) goes out through node:dgram, which queues it. Only x86-64/arm64 Linux struct layouts.

import type dgram from 'node:dgram'
import { createRequire } from 'node:module'
import { SOCKADDR_LEN, udpSocketFd, writeSockaddr } from '../tunnel/udp-gso.js'

/** Replies per sendmmsg call. */
export const SEND_BATCH = 32
/** Room per reply; a longer one is sent on its own. */
export const SEND_SLOT = 4096

// struct mmsghdr = struct msghdr (56) + unsigned msg_len + padding (LP64)
const MMSG_LEN = 64
const MSG_NAME = 0
const MSG_NAMELEN = 8
const MSG_IOV = 16
const MSG_IOVLEN = 24
const IOVEC_LEN = 16
const IOV_LEN = 8
const MSG_DONTWAIT = 0x40

interface KoffiLike {
  load(lib: string): { func(sig: string): (...args: unknown[]) => number }
  address(b: Buffer): bigint
}

export class UdpSendBatch {
  readonly #fd: number
  readonly #v6: boolean
  readonly #sock: dgram.Socket
  readonly #sendmmsg: (fd: number, vec: Buffer, n: number, flags: number) => number
  readonly #vec = Buffer.alloc(MMSG_LEN * SEND_BATCH)
  readonly #names = Buffer.alloc(SOCKADDR_LEN * SEND_BATCH)
  readonly #iovs = Buffer.alloc(IOVEC_LEN * SEND_BATCH)
  readonly #data: Buffer
  /** Where each queued reply goes, for the node:dgram fallback. */
  readonly #to: { address: string; port: number }[] = []
  #count = 0
  /** sendmmsg calls, replies they carried, and replies sent through node:dgram instead (too long, or EAGAIN). */
  calls = 0
  sent = 0
  fallbacks = 0

  private constructor(sock: dgram.Socket, fd: number, v6: boolean, k: KoffiLike) {
    this.#sock = sock
    this.#fd = fd
    this.#v6 = v6
    const libc = k.load('libc.so.6')
    this.#sendmmsg = libc.func('int sendmmsg(int fd, void *vec, unsigned int n, int flags)') as never
    this.#data = Buffer.allocUnsafeSlow(SEND_SLOT * SEND_BATCH)
    // Backing stores of these buffers never move: the pointers are written once.
    const names = k.address(this.#names)
    const iovs = k.address(this.#iovs)
    const data = k.address(this.#data)
    for (let i = 0; i < SEND_BATCH; i++) {
      const m = i * MMSG_LEN
      this.#vec.writeBigUInt64LE(names + BigInt(i * SOCKADDR_LEN), m + MSG_NAME)
      this.#vec.writeBigUInt64LE(iovs + BigInt(i * IOVEC_LEN), m + MSG_IOV)
      this.#vec.writeBigUInt64LE(1n, m + MSG_IOVLEN)
      this.#iovs.writeBigUInt64LE(data + BigInt(i * SEND_SLOT), i * IOVEC_LEN)
    }
  }

  /** A batcher for a bound node:dgram socket, or undefined where that is not possible (not Linux, no koffi). */
  static forSocket(sock: dgram.Socket): UdpSendBatch | undefined {
    if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return undefined
    const s = udpSocketFd(sock)
    if (!s) return undefined
    try {
      const k = createRequire(import.meta.url)('koffi') as KoffiLike
      return new UdpSendBatch(sock, s.fd, s.v6, k)
    } catch {
      return undefined
    }
  }

  /** Queues `msg` for address:port (sent by the next flush(), or now when the batch is full or `msg` too long). */
  queue(msg: Buffer, address: string, port: number): void {
    if (msg.length > SEND_SLOT) {
      this.#sock.send(msg, port, address)
      this.fallbacks++
      return
    }
    const i = this.#count
    const m = i * MMSG_LEN
    this.#vec.writeUInt32LE(writeSockaddr(this.#names, i * SOCKADDR_LEN, address, port, this.#v6), m + MSG_NAMELEN)
    msg.copy(this.#data, i * SEND_SLOT)
    this.#iovs.writeBigUInt64LE(BigInt(msg.length), i * IOVEC_LEN + IOV_LEN)
    this.#to[i] = { address, port }
    this.#count = i + 1
    if (this.#count === SEND_BATCH) this.flush()
  }

  /** Sends what is queued: one sendmmsg, then node:dgram for whatever the kernel did not take. */
  flush(): void {
    const n = this.#count
    if (n === 0) return
    this.#count = 0
    const done = Math.max(0, this.#sendmmsg(this.#fd, this.#vec, n, MSG_DONTWAIT))
    this.calls++
    this.sent += done
    for (let i = done; i < n; i++) {
      const len = Number(this.#iovs.readBigUInt64LE(i * IOVEC_LEN + IOV_LEN))
      const to = this.#to[i]!
      // node:dgram keeps the buffer until its send completes: give it a copy of the slot.
      this.#sock.send(Buffer.from(this.#data.subarray(i * SEND_SLOT, i * SEND_SLOT + len)), to.port, to.address)
      this.fallbacks++
    }
  }
}
