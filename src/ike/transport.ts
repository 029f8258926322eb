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
  local(_to?: Endpoint): Endpoint {
    const a = this.#socket.address()
    return { address: this.#localAddress ?? a.address, port: a.port }
  }
  /** Our address changed (socket bound to the wildcard): NAT-D from now on uses `address`. */
  setLocalAddress(address: string): void {
    this.#localAddress = address
  }
}

/** RFC 7296 2.23: IKE's own port; messages there carry no marker. */
export const IKE_PORT = 500

/**
 * Port 500 (plain IKE) plus the shared encapsulation port (marker, ESP): a message to a peer's port 500,
 * or an answer to one that came in on our port 500, leaves from port 500; everything else from the shared
 * port. Initiators float to the peer's NAT-T port after IKE_SA_INIT (2.23), so ESP and the rest of IKE share
 * one path through any NAT.
 */
export class DualUdpIkeTransport implements IkeTransport {
  readonly #plain: UdpIkeTransport
  readonly #encap: UdpIkeTransport
  readonly natTPort: number

  constructor(plain: UdpIkeTransport, encap: UdpIkeTransport, natTPort = NAT_T_PORT) {
    this.#plain = plain
    this.#encap = encap
    this.natTPort = natTPort
  }
  #viaPlain(to: Endpoint | undefined): boolean {
    return to?.via === 'ike' || (to?.via === undefined && to?.port === IKE_PORT)
  }
  send(buf: Buffer, to: Endpoint): void {
    if (this.#viaPlain(to)) this.#plain.send(buf, to)
    else this.#encap.send(buf, to)
  }
  onMessage(handler: (buf: Buffer, from: Endpoint) => void): void {
    this.#plain.onMessage((buf, from) => handler(buf, { ...from, via: 'ike' }))
    this.#encap.onMessage((buf, from) => handler(buf, { ...from, via: 'encap' }))
  }
  local(to?: Endpoint): Endpoint {
    return this.#viaPlain(to) ? this.#plain.local() : this.#encap.local()
  }
  setLocalAddress(address: string): void {
    this.#plain.setLocalAddress(address)
    this.#encap.setLocalAddress(address)
  }
}

/** RFC 3948: the usual NAT-T port of a peer. */
export const NAT_T_PORT = 4500
