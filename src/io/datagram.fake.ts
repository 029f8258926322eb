import type { DatagramHandler, DatagramSocket, RemoteInfo } from './datagram.js'

/**
 * An in-memory UDP "internet": sockets bound on it exchange datagrams on the next microtask.
 * `dropIf` lets a test lose chosen datagrams; `sent` counts every send for exact-count assertions.
 */
export class FakeNetwork {
  readonly #sockets = new Map<string, FakeDatagramSocket>()
  #ephemeral = 40000
  sent = 0
  dropIf: (from: string, to: string, msg: Buffer) => boolean = () => false

  socket(defaultAddress = '127.0.0.1'): FakeDatagramSocket {
    return new FakeDatagramSocket(this, defaultAddress)
  }
  /** @internal */
  register(key: string, s: FakeDatagramSocket): void {
    if (this.#sockets.has(key)) throw Object.assign(new Error(`EADDRINUSE ${key}`), { code: 'EADDRINUSE' })
    this.#sockets.set(key, s)
  }
  /** @internal */
  unregister(key: string): void {
    this.#sockets.delete(key)
  }
  /** @internal */
  nextPort(): number {
    return this.#ephemeral++
  }
  /** @internal */
  deliver(from: RemoteInfo, toAddr: string, toPort: number, msg: Buffer): void {
    this.sent++
    const fromKey = `${from.address}:${from.port}`
    const toKey = `${toAddr}:${toPort}`
    if (this.dropIf(fromKey, toKey, msg)) return
    const dst = this.#sockets.get(toKey) ?? this.#sockets.get(`0.0.0.0:${toPort}`)
    if (!dst) return
    queueMicrotask(() => dst.receive(msg, from))
  }
}

export class FakeDatagramSocket implements DatagramSocket {
  readonly #net: FakeNetwork
  readonly #defaultAddress: string
  #bound: { address: string; port: number } | undefined
  #handler: DatagramHandler = () => {}

  constructor(net: FakeNetwork, defaultAddress: string) {
    this.#net = net
    this.#defaultAddress = defaultAddress
  }
  async bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    const a = { address: address ?? this.#defaultAddress, port: port || this.#net.nextPort() }
    this.#net.register(`${a.address}:${a.port}`, this)
    this.#bound = a
    return a
  }
  send(buf: Buffer, offset: number, length: number, port: number, address: string, done?: (err?: Error) => void): void {
    if (!this.#bound) throw new Error('fake socket: send before bind')
    const copy = Buffer.from(buf.subarray(offset, offset + length))
    this.#net.deliver({ address: this.#bound.address, port: this.#bound.port, family: 'IPv4' }, address, port, copy)
    queueMicrotask(() => done?.())
  }
  onMessage(handler: DatagramHandler): void {
    this.#handler = handler
  }
  /** @internal */
  receive(msg: Buffer, from: RemoteInfo): void {
    this.#handler(msg, from)
  }
  address(): { address: string; port: number } {
    if (!this.#bound) throw new Error('fake socket: not bound')
    return this.#bound
  }
  async close(): Promise<void> {
    if (this.#bound) this.#net.unregister(`${this.#bound.address}:${this.#bound.port}`)
    this.#bound = undefined
  }
}
