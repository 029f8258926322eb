import dgram from 'node:dgram'

// The UDP edge (after wireguard-go's conn.Bind): the agent's one shared port carries ESP-in-UDP, IKE
// and NAT keepalives; DNS and port-mapping clients use their own. Everything above this talks to
// the interface, so two endpoints can be joined by FakeNetwork in tests.

export interface RemoteInfo {
  readonly address: string
  readonly port: number
  readonly family: 'IPv4' | 'IPv6'
}

export type DatagramHandler = (msg: Buffer, from: RemoteInfo) => void

export interface DatagramSocket {
  bind(port: number, address?: string): Promise<{ address: string; port: number }>
  /** `done` runs when the kernel has taken the bytes: only then may `buf` be reused (Node's documented contract). */
  send(buf: Buffer, offset: number, length: number, port: number, address: string, done?: (err?: Error) => void): void
  onMessage(handler: DatagramHandler): void
  address(): { address: string; port: number }
  close(): Promise<void>
}

export class UdpSocket implements DatagramSocket {
  readonly #s: dgram.Socket
  #handler: DatagramHandler = () => {}

  constructor(
    opts: { type?: 'udp4' | 'udp6'; reuseAddr?: boolean; recvBufferSize?: number; sendBufferSize?: number } = {},
  ) {
    const o: dgram.SocketOptions = { type: opts.type ?? 'udp4', reuseAddr: opts.reuseAddr ?? false }
    if (opts.recvBufferSize) o.recvBufferSize = opts.recvBufferSize
    if (opts.sendBufferSize) o.sendBufferSize = opts.sendBufferSize
    this.#s = dgram.createSocket(o)
    this.#s.on('message', (m, r) => this.#handler(m, r as RemoteInfo))
    // ICMP errors surface as 'error' events on an unconnected socket; they must never kill the process.
    this.#s.on('error', () => {})
  }
  get raw(): dgram.Socket {
    return this.#s
  }
  bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e)
      this.#s.once('error', onErr)
      this.#s.bind(port, address, () => {
        this.#s.off('error', onErr)
        resolve(this.#s.address())
      })
    })
  }
  send(buf: Buffer, offset: number, length: number, port: number, address: string, done?: (err?: Error) => void): void {
    this.#s.send(buf, offset, length, port, address, (err) => done?.(err ?? undefined))
  }
  onMessage(handler: DatagramHandler): void {
    this.#handler = handler
  }
  address(): { address: string; port: number } {
    return this.#s.address()
  }
  close(): Promise<void> {
    return new Promise((resolve) => {
      try {
        this.#s.close(() => resolve())
      } catch {
        resolve()
      }
    })
  }
}
