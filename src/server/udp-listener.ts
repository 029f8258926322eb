// DNS over UDP (RFC 1035 4.2.1). One socket per --listen address; each datagram is one message. Size limits
// and truncation are the dispatcher's (it knows the EDNS payload size); this file only moves datagrams.
import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Logger } from '../io/log.js'
import type { InboundContext, MessageSink, PeerInfo } from './transport.js'

const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

/** Per-datagram context as a class (methods on the prototype, no closures per packet). Sends carry no
 * callback: a failed send surfaces as the socket's 'error' event. */
class UdpContext implements InboundContext {
  readonly peer: PeerInfo
  constructor(
    readonly sock: Socket,
    readonly address: string,
    readonly port: number,
    local: string,
  ) {
    this.peer = { transport: 'udp', address, port, local }
  }
  reply(out: Buffer | undefined): void {
    if (out) this.sock.send(out, this.port, this.address)
  }
  send(out: Buffer): void {
    this.sock.send(out, this.port, this.address)
  }
}

export class UdpListener {
  readonly #log: Logger
  readonly #sink: MessageSink
  #socket: Socket | undefined
  #local = ''

  constructor(deps: { log: Logger; sink: MessageSink }) {
    this.#log = deps.log
    this.#sink = deps.sink
  }

  /** Binds; resolves with the bound "ADDR:PORT" (the real port when 0 was asked). */
  listen(host: string, port: number): Promise<string> {
    const family = isIPv6(host) ? 6 : 4
    const sock = createSocket({
      type: family === 6 ? 'udp6' : 'udp4',
      recvBufferSize: SOCKET_BUFFER_BYTES,
      sendBufferSize: SOCKET_BUFFER_BYTES,
      // Destinations are always the IP literals a datagram came from: resolve them synchronously instead of
      // through dns.lookup, which defers every send by a process.nextTick.
      lookup: ((address: string, _opts: unknown, cb: (err: null, address: string, family: number) => void) =>
        cb(null, address, family)) as never,
    })
    this.#socket = sock
    const sink = this.#sink
    sock.on('message', (msg, rinfo) => sink(msg, new UdpContext(sock, rinfo.address, rinfo.port, this.#local)))
    return new Promise((resolve, reject) => {
      sock.once('error', reject)
      sock.bind({ address: host, port, exclusive: true }, () => {
        sock.off('error', reject)
        sock.on('error', (err) => this.#log.warn('udp.error', { local: this.#local, err: err.message }))
        this.#local = `${isIPv6(host) ? `[${host}]` : host}:${sock.address().port}`
        resolve(this.#local)
      })
    })
  }

  get port(): number {
    return this.#socket?.address().port ?? 0
  }

  close(): Promise<void> {
    const s = this.#socket
    this.#socket = undefined
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
