// Two tunnels joined by FakeTun and FakeNetwork, and the sockets the tests wrap around FakeNetwork's
// (a socket that moves to another address, one that copies only when the send completes). Test support only.

import { randomBytes } from 'node:crypto'
import { FakeClock } from '../io/clock.fake.js'
import { type FakeDatagramSocket, FakeNetwork } from '../io/datagram.fake.js'
import type { DatagramHandler, DatagramSocket } from '../io/datagram.js'
import { nullLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { FakeTun } from '../io/tun.fake.js'
import type { EspAlg } from './esp.js'
import { parseIpv6 } from './sa-table.js'
import { Tunnel, type TunnelOptions } from './tunnel.js'

export const ULA_A = 'fd00:aaaa::1'
export const ULA_B = 'fd00:bbbb::2'
export const ADDR_A = { address: '198.51.100.1', port: 4500 }
export const ADDR_B = { address: '203.0.113.2', port: 4500 }

export const tick = (): Promise<void> => new Promise((r) => setImmediate(r))
export async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await tick()
}

/** An IPv6 packet (UDP next header, checksum not needed by the tunnel) from `src` to `dst`. */
export function ipv6(src: string, dst: string, payload: Buffer): Buffer {
  const p = Buffer.alloc(40 + payload.length)
  p[0] = 0x60
  p.writeUInt16BE(payload.length, 4)
  p[6] = 17
  p[7] = 64
  parseIpv6(src).bytes.copy(p, 8)
  parseIpv6(dst).bytes.copy(p, 24)
  payload.copy(p, 40)
  return p
}

/** Wraps a socket so the test can move it to another address (a host that roams to a new network). */
export class MovableSocket implements DatagramSocket {
  #inner: FakeDatagramSocket
  #handler: DatagramHandler = () => {}
  constructor(inner: FakeDatagramSocket) {
    this.#inner = inner
  }
  async moveTo(s: FakeDatagramSocket, address: string, port: number): Promise<void> {
    await this.#inner.close()
    await s.bind(port, address)
    s.onMessage((m, r) => this.#handler(m, r))
    this.#inner = s
  }
  bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    return this.#inner.bind(port, address)
  }
  send(buf: Buffer, off: number, len: number, port: number, addr: string, done?: (err?: Error) => void): void {
    this.#inner.send(buf, off, len, port, addr, done)
  }
  onMessage(h: DatagramHandler): void {
    this.#handler = h
    this.#inner.onMessage(h)
  }
  address(): { address: string; port: number } {
    return this.#inner.address()
  }
  close(): Promise<void> {
    return this.#inner.close()
  }
}

/** Copies the datagram only when the send completes, as the kernel may: a slab reused early would show poison. */
export class LateCopySocket implements DatagramSocket {
  constructor(readonly inner: FakeDatagramSocket) {}
  bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    return this.inner.bind(port, address)
  }
  send(buf: Buffer, off: number, len: number, port: number, addr: string, done?: (err?: Error) => void): void {
    setImmediate(() => {
      this.inner.send(buf, off, len, port, addr)
      done?.()
    })
  }
  onMessage(h: DatagramHandler): void {
    this.inner.onMessage(h)
  }
  address(): { address: string; port: number } {
    return this.inner.address()
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}

export interface Side {
  tunnel: Tunnel
  tun: FakeTun
  socket: DatagramSocket
}

export async function pair(
  t: { after: (fn: () => Promise<void>) => void },
  opts: {
    alg?: EspAlg
    esn?: boolean
    keys?: boolean
    clock?: FakeClock
    tunnelOpts?: Partial<TunnelOptions>
    wrapB?: (s: FakeDatagramSocket) => DatagramSocket
    wrapA?: (s: FakeDatagramSocket) => DatagramSocket
  } = {},
): Promise<{ net: FakeNetwork; a: Side; b: Side; keys: { ab: Buffer; ba: Buffer } }> {
  const net = new FakeNetwork()
  const clock = opts.clock ?? new FakeClock()
  const mk = async (
    ula: string,
    addr: { address: string; port: number },
    wrap?: (s: FakeDatagramSocket) => DatagramSocket,
  ): Promise<Side> => {
    const raw = net.socket(addr.address)
    const socket = wrap ? wrap(raw) : raw
    await socket.bind(addr.port, addr.address)
    const tun = new FakeTun()
    const tunnel = new Tunnel(
      { tun, socket, clock, log: nullLogger, random: new FakeRandom(ula.length) },
      { localUla: ula, poisonSlabs: true, ...opts.tunnelOpts },
    )
    tunnel.start()
    t.after(() => tunnel.close())
    return { tunnel, tun, socket }
  }
  const a = await mk(ULA_A, ADDR_A, opts.wrapA)
  const b = await mk(ULA_B, ADDR_B, opts.wrapB)
  const alg = opts.alg ?? 'aes128gcm16'
  const len = alg === 'aes128gcm16' ? 20 : 36
  const keys = { ab: randomBytes(len), ba: randomBytes(len) }
  a.tunnel.addPeer({ ula: ULA_B, endpoint: ADDR_B })
  b.tunnel.addPeer({ ula: ULA_A, endpoint: ADDR_A })
  if (opts.keys !== false) {
    const esn = opts.esn ?? true
    a.tunnel.installChildSa({
      peerUla: ULA_B,
      spiIn: 0xb0a0,
      spiOut: 0xa0b0,
      alg,
      keyIn: keys.ba,
      keyOut: keys.ab,
      esn,
    })
    b.tunnel.installChildSa({
      peerUla: ULA_A,
      spiIn: 0xa0b0,
      spiOut: 0xb0a0,
      alg,
      keyIn: keys.ab,
      keyOut: keys.ba,
      esn,
    })
  }
  return { net, a, b, keys }
}
