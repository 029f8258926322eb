// DNS over UDP (RFC 1035 4.2.1). One socket per --listen address; each datagram is one message. Size limits
// and truncation are the dispatcher's (it knows the EDNS payload size); this file only moves datagrams.
//
// On Linux the syscalls are batched (they, not the DNS work, were the query path's cost: udp-send-batch.ts): when
// node:dgram delivers a datagram, recvmmsg takes whatever else is queued (up to RECV_BATCH, a few rounds), every
// message is handled, and the answers produced meanwhile leave in one sendmmsg. Answers given later (UPDATE,
// after its commit) are sent at once. Unsolicited messages (`send`: LLQ events, thousands in one synchronous
// fan-out) join a batch flushed when the current run of JavaScript ends (a microtask), so a 10,000-watcher fan-out
// is about 300 sendmmsg calls instead of 10,000 sends through node:dgram.
import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { RemoteInfo } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import { RECV_BATCH, UdpRecvBatch } from '../tunnel/udp-recv.js'
import type { InboundContext, MessageSink, PeerInfo } from './transport.js'
import { UdpSendBatch } from './udp-send-batch.js'

const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
/** recvmmsg rounds after one delivered datagram before the event loop gets a turn (TCP and timers wait meanwhile). */
const MAX_DRAIN_ROUNDS = 4

/** The socket and, while a batch of datagrams is being handled, the send batch its answers join. */
interface UdpOut {
  readonly sock: Socket
  batch: UdpSendBatch | undefined
  /** For unsolicited sends, once bound (Linux); flushed by a microtask queued with the first one. */
  unsolicited: UdpSendBatch | undefined
  flushQueued: boolean
  readonly flush: () => void
}

/** Per-datagram context as a class (methods on the prototype, no closures per packet). Sends carry no
 * callback: a failed send surfaces as the socket's 'error' event. */
class UdpContext implements InboundContext {
  readonly peer: PeerInfo
  constructor(
    readonly out: UdpOut,
    readonly address: string,
    readonly port: number,
    local: string,
  ) {
    this.peer = { transport: 'udp', address, port, local }
  }
  reply(out: Buffer | undefined): void {
    if (!out) return
    const b = this.out.batch
    if (b) b.queue(out, this.address, this.port)
    else this.out.sock.send(out, this.port, this.address)
  }
  send(out: Buffer): void {
    const o = this.out
    const b = o.unsolicited
    if (!b) {
      o.sock.send(out, this.port, this.address)
      return
    }
    b.queue(out, this.address, this.port)
    if (!o.flushQueued) {
      o.flushQueued = true
      queueMicrotask(o.flush)
    }
  }
}

export class UdpListener {
  readonly #log: Logger
  readonly #sink: MessageSink
  #socket: Socket | undefined
  #local = ''
  #recv: UdpRecvBatch | undefined
  #send: UdpSendBatch | undefined
  #out: UdpOut | undefined

  constructor(deps: { log: Logger; sink: MessageSink }) {
    this.#log = deps.log
    this.#sink = deps.sink
  }

  /** Binds; resolves with the bound "ADDR:PORT" (the real port when 0 was asked). */
  listen(host: string, port: number, opts: { reuseAddr?: boolean } = {}): Promise<string> {
    const family = isIPv6(host) ? 6 : 4
    const sock = createSocket({
      type: family === 6 ? 'udp6' : 'udp4',
      // A wildcard socket and one socket per local address on the same port (run.ts, advertising the address a
      // query arrived on): Linux delivers each datagram to the most specific bound socket.
      ...(opts.reuseAddr ? { reuseAddr: true } : {}),
      recvBufferSize: SOCKET_BUFFER_BYTES,
      sendBufferSize: SOCKET_BUFFER_BYTES,
      // Destinations are always the IP literals a datagram came from: resolve them synchronously instead of
      // through dns.lookup, which defers every send by a process.nextTick.
      lookup: ((address: string, _opts: unknown, cb: (err: null, address: string, family: number) => void) =>
        cb(null, address, family)) as never,
    })
    this.#socket = sock
    const sink = this.#sink
    const out: UdpOut = {
      sock,
      batch: undefined,
      unsolicited: undefined,
      flushQueued: false,
      flush: () => {
        out.flushQueued = false
        out.unsolicited?.flush()
      },
    }
    this.#out = out
    // A batched datagram is a view into the batcher's buffer, valid during the call only: the sink gets a copy
    // (an UPDATE is answered after its commit, long after).
    const onBatched = (buf: Buffer, off: number, len: number, from: RemoteInfo, truncated: boolean): void => {
      if (truncated) return
      sink(Buffer.from(buf.subarray(off, off + len)), new UdpContext(out, from.address, from.port, this.#local))
    }
    sock.on('message', (msg, rinfo) => {
      const recv = this.#recv
      const send = this.#send
      if (!recv || !send) {
        sink(msg, new UdpContext(out, rinfo.address, rinfo.port, this.#local))
        return
      }
      out.batch = send
      try {
        sink(msg, new UdpContext(out, rinfo.address, rinfo.port, this.#local))
        for (let round = 0; round < MAX_DRAIN_ROUNDS && recv.drain(onBatched) === RECV_BATCH; round++) {}
      } finally {
        out.batch = undefined
        send.flush()
      }
    })
    return new Promise((resolve, reject) => {
      sock.once('error', reject)
      sock.bind({ address: host, port, exclusive: true }, () => {
        this.#recv = UdpRecvBatch.forSocket(sock)
        this.#send = this.#recv ? UdpSendBatch.forSocket(sock) : undefined
        out.unsolicited = this.#send
        sock.off('error', reject)
        sock.on('error', (err) => this.#log.warn('udp.error', { local: this.#local, err: err.message }))
        this.#local = `${isIPv6(host) ? `[${host}]` : host}:${sock.address().port}`
        resolve(this.#local)
      })
    })
  }

  /** Batching figures (undefined where the syscalls are not batched): recvmmsg calls and datagrams, sendmmsg calls
   * and answers, answers that fell back to node:dgram. */
  get batching():
    | { recvCalls: number; recvDatagrams: number; sendCalls: number; sent: number; fallbacks: number }
    | undefined {
    const r = this.#recv
    const b = this.#send
    if (!r || !b) return undefined
    return { recvCalls: r.calls, recvDatagrams: r.datagrams, sendCalls: b.calls, sent: b.sent, fallbacks: b.fallbacks }
  }

  get port(): number {
    return this.#socket?.address().port ?? 0
  }

  close(): Promise<void> {
    const s = this.#socket
    this.#socket = undefined
    // A flush after close would write to a descriptor number the kernel may have given to another socket.
    if (this.#out) this.#out.unsolicited = undefined
    return new Promise((resolve) => {
      if (!s) return resolve()
      try {
        s.close(() => resolve())
      } catch {
        resolve()
      }
    })
  }
}
