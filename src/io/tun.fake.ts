import type { PacketHandler, TunDevice } from './tun.js'

/** A TUN device whose "kernel side" is the test: `inject` plays a packet sent by an app, `written` holds what the agent delivered. */
export class FakeTun implements TunDevice {
  readonly name: string
  readonly mtu: number
  readonly written: Buffer[] = []
  #handler: PacketHandler = () => {}
  #closed = false
  onWrite: (pkt: Buffer) => void = () => {}

  constructor(name = 'faketun0', mtu = 1400) {
    this.name = name
    this.mtu = mtu
  }
  onPacket(handler: PacketHandler): void {
    this.#handler = handler
  }
  inject(pkt: Buffer): void {
    if (!this.#closed) this.#handler(Buffer.from(pkt))
  }
  write(buf: Buffer, offset: number, length: number): void {
    if (this.#closed) return
    const p = Buffer.from(buf.subarray(offset, offset + length))
    this.written.push(p)
    this.onWrite(p)
  }
  async close(): Promise<void> {
    this.#closed = true
  }
}
