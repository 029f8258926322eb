// IKE over UDP (RFC 7296 2.11, 2.23) and on the shared NAT-T-style port (RFC 3948 2.2): there every
// IKE message carries the four-octet non-ESP marker; datagrams with a non-zero first word are ESP and
// a single 0xFF octet is a NAT keepalive (RFC 3948 2.3).

import type { DatagramSocket } from '../io/datagram.js'
import { NON_ESP_MARKER_LEN } from './constants.js'
import type { Endpoint, IkeTransport } from './types.js'

const NAT_KEEPALIVE = 0xff
const MARKER = Buffer.alloc(NON_ESP_MARKER_LEN)

export interface UdpIkeTransportOpts {
  /** Prepend/expect the non-ESP marker (the shared encapsulation port). @default true */
  readonly nonEspMarker?: boolean
  /** ESP-in-UDP datagrams arriving on the same port (only with the marker). */
  readonly onEsp?: (buf: Buffer, from: Endpoint) => void
  /** Our address as peers should see it (for NAT-D) when the socket is bound to the wildcard. */
  readonly localAddress?: string
}

export class UdpIkeTransport implements IkeTransport {
  readonly #socket: DatagramSocket
  readonly #marker: boolean
  readonly #opts: UdpIkeTransportOpts
  #localAddress: string | undefined
  #handler: (buf: Buffer, from: Endpoint) => void = () => {}
  /** Datagrams that were neither IKE, ESP nor keepalive. */
  dropped = 0

  constructor(socket: DatagramSocket, opts: UdpIkeTransportOpts = {}) {
    this.#socket = socket
    this.#marker = opts.nonEspMarker ?? true
    this.#opts = opts
    this.#localAddress = opts.localAddress
    socket.onMessage((msg, from) => this.#receive(msg, { address: from.address, port: from.port }))
  }

  #receive(msg: Buffer, from: Endpoint): void {
    if (!this.#marker) {
      this.#handler(msg, from)
      return
    }
    if (msg.length === 1 && msg[0] === NAT_KEEPALIVE) return
    if (msg.length < NON_ESP_MARKER_LEN) {
      this.dropped++
      return
    }
    if (msg.readUInt32BE(0) === 0) this.#handler(msg.subarray(NON_ESP_MARKER_LEN), from)
    else if (this.#opts.onEsp) this.#opts.onEsp(msg, from)
    else this.dropped++
  }

  send(buf: Buffer, to: Endpoint): void {
    const out = this.#marker ? Buffer.concat([MARKER, buf]) : buf
    this.#socket.send(out, 0, out.length, to.port, to.address)
  }
  onMessage(handler: (buf: Buffer, from: Endpoint) => void): void {
    this.#handler = handler
  }
  local(): Endpoint {
    const a = this.#socket.address()
    return { address: this.#localAddress ?? a.address, port: a.port }
  }
  /** Our address changed (socket bound to the wildcard): NAT-D from now on uses `address`. */
  setLocalAddress(address: string): void {
    this.#localAddress = address
  }
}
