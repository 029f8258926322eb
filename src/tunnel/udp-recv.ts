// Batched receives on Linux: after node:dgram hands the receive path one datagram, one recvmmsg(2) with
// MSG_DONTWAIT takes whatever else is queued on the socket (up to RECV_BATCH datagrams) in one system call,
// instead of one recvmsg, one Buffer, one rinfo object and one JS callback per datagram in libuv and node.
// libuv's next recvmsg on the socket then finds it empty (EAGAIN) and waits for the next readiness event.
//
// Called synchronously through koffi on the dgram socket's fd (as udp-gso.ts sends): the datagrams land in one
// reused buffer, so the handler gets views that are valid only during its call (the receive path decrypts in
// place and copies into the TUN ring or writes the TUN device before returning; IKE messages are copied).
// Only x86-64/arm64 Linux struct layouts; elsewhere, or without koffi, there is no batcher.
//
// With UDP_GRO (udp(7), Linux >= 5.0; `enableGro()`): the kernel may hand one slot a run of datagrams from one
// sender, all of one size but the last, with that segment size in a UDP_GRO control message; a run of our own
// peer's UDP GSO sends arrives that way without ever being cut into datagrams in the kernel. drain() cuts it and
// calls the handler once per datagram, as before. node:dgram's own reads cannot carry the control message, so a
// GRO socket must be read only here (packet-io.ts stops node's reading and polls the fd: native/fdpoll.cc).

import type dgram from 'node:dgram'
import { createRequire } from 'node:module'
import type { RemoteInfo } from '../io/datagram.js'
import { formatIpv6 } from './sa-table.js'
import { udpSocketFd } from './udp-gso.js'

/** Datagrams per recvmmsg call. */
export const RECV_BATCH = 32
/** Room per datagram: the largest UDP payload, so no IKE message is ever cut (2 MiB in all, touched as used). */
export const RECV_SLOT = 65_536
const MSG_DONTWAIT = 0x40
const MSG_TRUNC = 0x20
const SOL_UDP = 17
const UDP_GRO = 104
// struct cmsghdr { size_t len; int level; int type; } then the int segment size: CMSG_SPACE(4) = 24
const CMSG_LEVEL = 8
const CMSG_TYPE = 12
const CMSG_DATA = 16
const CMSG_SPACE_INT = 24
const MSG_CONTROL = 32
const MSG_CONTROLLEN = 40
const AF_INET = 2
const AF_INET6 = 10

// struct mmsghdr = struct msghdr (56) + unsigned msg_len + padding (LP64)
const MMSG_LEN = 64
const MSG_NAME = 0
const MSG_NAMELEN = 8
const MSG_IOV = 16
const MSG_IOVLEN = 24
const MSG_FLAGS = 48
const MMSG_MSGLEN = 56
const IOVEC_LEN = 16
const SOCKADDR_LEN = 28

interface KoffiLike {
  load(lib: string): { func(sig: string): (...args: unknown[]) => number }
  address(b: Buffer): bigint
}

/** Linux's per-datagram limit for one GRO run: segments are at least 1 octet, so a run is at most a slot. */
const GRO_MIN_SEGMENT = 1

/** A received datagram: `buf[off ..+ len]`, valid only during the call. `truncated`: longer than its slot. */
export type BatchHandler = (buf: Buffer, off: number, len: number, from: RemoteInfo, truncated: boolean) => void

export class UdpRecvBatch {
  readonly #fd: number
  readonly #recvmmsg: (fd: number, vec: Buffer, n: number, flags: number, timeout: null) => number
  readonly #vec = Buffer.alloc(MMSG_LEN * RECV_BATCH)
  readonly #names = Buffer.alloc(SOCKADDR_LEN * RECV_BATCH)
  readonly #iovs = Buffer.alloc(IOVEC_LEN * RECV_BATCH)
  readonly #ctl = Buffer.alloc(CMSG_SPACE_INT * RECV_BATCH)
  readonly #data: Buffer
  readonly #setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number
  #gro = false
  // The last sender's address, so a run of datagrams from one peer shares one RemoteInfo.
  readonly #lastName = Buffer.alloc(SOCKADDR_LEN)
  #lastFrom: RemoteInfo | undefined
  /** recvmmsg calls and the datagrams they returned (for the benchmark and tests); GRO runs among the slots. */
  calls = 0
  datagrams = 0
  groRuns = 0

  private constructor(fd: number, k: KoffiLike) {
    this.#fd = fd
    const libc = k.load('libc.so.6')
    this.#recvmmsg = libc.func('int recvmmsg(int fd, void *vec, unsigned int n, int flags, void *timeout)') as never
    this.#setsockopt = libc.func('int setsockopt(int fd, int level, int name, void *val, int len)') as never
    this.#ctlAddr = k.address(this.#ctl)
    this.#data = Buffer.allocUnsafeSlow(RECV_SLOT * RECV_BATCH)
    // Backing stores of these buffers never move: the pointers are written once.
    const names = k.address(this.#names)
    const iovs = k.address(this.#iovs)
    const data = k.address(this.#data)
    for (let i = 0; i < RECV_BATCH; i++) {
      const m = i * MMSG_LEN
      this.#vec.writeBigUInt64LE(names + BigInt(i * SOCKADDR_LEN), m + MSG_NAME)
      this.#vec.writeBigUInt64LE(iovs + BigInt(i * IOVEC_LEN), m + MSG_IOV)
      this.#vec.writeBigUInt64LE(1n, m + MSG_IOVLEN)
      this.#iovs.writeBigUInt64LE(data + BigInt(i * RECV_SLOT), i * IOVEC_LEN)
      this.#iovs.writeBigUInt64LE(BigInt(RECV_SLOT), i * IOVEC_LEN + 8)
    }
  }

  /** A batcher for a bound node:dgram socket, or undefined where that is not possible (not Linux, no koffi). */
  static forSocket(sock: dgram.Socket): UdpRecvBatch | undefined {
    if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return undefined
    const s = udpSocketFd(sock)
    if (!s) return undefined
    try {
      const k = createRequire(import.meta.url)('koffi') as KoffiLike
      return new UdpRecvBatch(s.fd, k)
    } catch {
      return undefined
    }
  }

  readonly #ctlAddr: bigint

  /**
   * Turns UDP_GRO on for the socket and asks for its control message from now on. False when the kernel refuses
   * (then nothing changed). The caller must make sure nobody else reads the socket (see the header).
   */
  enableGro(): boolean {
    const one = Buffer.alloc(4)
    one.writeInt32LE(1, 0)
    if (this.#setsockopt(this.#fd, SOL_UDP, UDP_GRO, one, 4) < 0) return false
    for (let i = 0; i < RECV_BATCH; i++)
      this.#vec.writeBigUInt64LE(this.#ctlAddr + BigInt(i * CMSG_SPACE_INT), i * MMSG_LEN + MSG_CONTROL)
    this.#gro = true
    return true
  }

  get gro(): boolean {
    return this.#gro
  }

  /**
   * Takes up to RECV_BATCH queued slots without blocking and hands each datagram to `fn`, in arrival order (a GRO
   * run cut into its datagrams). Returns how many slots (0 when the socket was empty or on an error).
   */
  drain(fn: BatchHandler): number {
    const vec = this.#vec
    const gro = this.#gro
    for (let i = 0; i < RECV_BATCH; i++) {
      vec.writeUInt32LE(SOCKADDR_LEN, i * MMSG_LEN + MSG_NAMELEN)
      // The kernel overwrites msg_controllen with what it wrote: reset it every time.
      if (gro) vec.writeBigUInt64LE(BigInt(CMSG_SPACE_INT), i * MMSG_LEN + MSG_CONTROLLEN)
    }
    const n = this.#recvmmsg(this.#fd, vec, RECV_BATCH, MSG_DONTWAIT, null)
    this.calls++
    if (n <= 0) return 0
    for (let i = 0; i < n; i++) {
      const m = i * MMSG_LEN
      const len = Math.min(vec.readUInt32LE(m + MMSG_MSGLEN), RECV_SLOT)
      const truncated = (vec.readInt32LE(m + MSG_FLAGS) & MSG_TRUNC) !== 0
      const from = this.#from(i * SOCKADDR_LEN)
      if (!from) continue
      const seg = gro ? this.#groSegment(i, m) : 0
      if (seg === 0 || seg >= len || truncated) {
        this.datagrams++
        fn(this.#data, i * RECV_SLOT, len, from, truncated)
        continue
      }
      this.groRuns++
      const base = i * RECV_SLOT
      for (let at = 0; at < len; at += seg) {
        this.datagrams++
        fn(this.#data, base + at, Math.min(seg, len - at), from, false)
      }
    }
    return n
  }

  /** The UDP_GRO segment size of slot i, or 0 when its control message has none. */
  #groSegment(i: number, m: number): number {
    const clen = Number(this.#vec.readBigUInt64LE(m + MSG_CONTROLLEN))
    if (clen < CMSG_DATA + 4) return 0
    const c = this.#ctl
    const at = i * CMSG_SPACE_INT
    if (c.readInt32LE(at + CMSG_LEVEL) !== SOL_UDP || c.readInt32LE(at + CMSG_TYPE) !== UDP_GRO) return 0
    const seg = c.readInt32LE(at + CMSG_DATA)
    return seg >= GRO_MIN_SEGMENT ? seg : 0
  }

  #from(at: number): RemoteInfo | undefined {
    const nm = this.#names
    const fam = nm.readUInt16LE(at)
    const n = fam === AF_INET ? 8 : 24
    if (this.#lastFrom && nm.compare(this.#lastName, 0, n, at, at + n) === 0) return this.#lastFrom
    let from: RemoteInfo
    const port = nm.readUInt16BE(at + 2)
    if (fam === AF_INET) {
      from = { address: `${nm[at + 4]}.${nm[at + 5]}.${nm[at + 6]}.${nm[at + 7]}`, port, family: 'IPv4' }
    } else if (fam === AF_INET6) {
      from = { address: ipv6String(nm, at + 8), port, family: 'IPv6' }
    } else return undefined
    nm.copy(this.#lastName, 0, at, at + n)
    this.#lastFrom = from
    return from
  }
}

/** RFC 5952 text of 16 octets (IPv4-mapped as ::ffff:a.b.c.d, as node:dgram reports them). */
function ipv6String(b: Buffer, at: number): string {
  let mapped = true
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) mapped = false
  if (mapped && b[at + 10] === 0xff && b[at + 11] === 0xff)
    return `::ffff:${b[at + 12]}.${b[at + 13]}.${b[at + 14]}.${b[at + 15]}`
  return formatIpv6(b, at)
}
