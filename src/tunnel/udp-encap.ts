// UDP encapsulation of ESP, RFC 3948: one UDP port carries ESP (first four octets = a non-zero SPI),
// IKE (preceded by the four-octet non-ESP marker, all zero; section 2.2) and NAT keepalives (a single 0xFF
// octet; section 2.3). Keepalives are sent only when nothing else went to that peer during the interval (section 4).

import type { DatagramSocket } from '../io/datagram.js'
import type { TunnelCounters } from './counters.js'
import type { Peer } from './sa-table.js'

export const NON_ESP_MARKER_LEN = 4
export const NAT_KEEPALIVE_BYTE = 0xff
/** RFC 3948 section 4 suggests 20 seconds. */
export const NAT_KEEPALIVE_INTERVAL_MS = 20_000

export const UdpKind = { ESP: 0, IKE: 1, KEEPALIVE: 2, SHORT: 3 } as const
export type UdpKind = (typeof UdpKind)[keyof typeof UdpKind]

export function classifyUdp(msg: Buffer): UdpKind {
  if (msg.length === 1 && msg[0] === NAT_KEEPALIVE_BYTE) return UdpKind.KEEPALIVE
  if (msg.length < NON_ESP_MARKER_LEN) return UdpKind.SHORT
  if (msg.readUInt32BE(0) === 0) return UdpKind.IKE
  return UdpKind.ESP
}

/** The one-octet keepalive. Never written to, so it is safe to hand to any number of pending sends. */
export const NAT_KEEPALIVE = Buffer.from([NAT_KEEPALIVE_BYTE])

/** An IKE message with the non-ESP marker in front (RFC 3948 section 2.2). */
export function withNonEspMarker(ike: Buffer): Buffer {
  const b = Buffer.allocUnsafe(NON_ESP_MARKER_LEN + ike.length)
  b.writeUInt32BE(0, 0)
  ike.copy(b, NON_ESP_MARKER_LEN)
  return b
}

/**
 * One keepalive to each peer that wants them (a NAT is between us) and was sent nothing for `intervalMs`
 * (section 4). Counted as sent; a send that throws is a send_error drop.
 */
export function sendNatKeepalives(
  peers: Iterable<Peer>,
  nowMs: number,
  intervalMs: number,
  socket: DatagramSocket,
  counters: TunnelCounters,
): void {
  for (const p of peers) {
    const ep = p.endpoint
    if (!p.keepalive || !ep || nowMs - p.lastTxMonoMs < intervalMs) continue
    p.lastTxMonoMs = nowMs
    counters.keepaliveTx++
    try {
      socket.send(NAT_KEEPALIVE, 0, 1, ep.port, ep.address)
    } catch {
      counters.drops.send_error++
    }
  }
}
