// UDP encapsulation of ESP, RFC 3948: one UDP port carries ESP (first four octets = a non-zero SPI),
// IKE (preceded by the four-octet non-ESP marker, all zero; section 2.2) and NAT keepalives (a single 0xFF
// octet; section 2.3). Keepalives are sent only when nothing else went to that peer during the interval (section 4).

import type { Clock, TimerHandle } from '../io/clock.js'
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
  slackMs = 0,
): void {
  for (const p of peers) {
    const ep = p.endpoint
    if (!p.keepalive || !ep || nowMs - p.lastTxMonoMs < intervalMs - slackMs) continue
    p.lastTxMonoMs = nowMs
    counters.keepaliveTx++
    try {
      socket.send(NAT_KEEPALIVE, 0, 1, ep.port, ep.address)
    } catch {
      counters.drops.send_error++
    }
  }
}

/** A timer that fires a hair early finds nothing due; it comes back at least this much later. */
const KEEPALIVE_MIN_REARM_MS = 50
/**
 * A keepalive this close to due goes with the one being sent: libuv measures timers from the loop's cached time,
 * so under load a timer fires up to tens of ms before its due time by our monotonic clock (seen in the lab: 70-80 ms),
 * and would wake again for the rest.
 */
const KEEPALIVE_SLACK_MS = 250

/**
 * When keepalives are due: one timer, armed for the earliest peer that wants keepalives (last packet sent to it, or
 * when it started wanting them, plus the interval), and none at all when no peer wants them. A fixed 20 s tick woke
 * an idle agent 3 times a minute with nothing to send, and sent up to 2 intervals after the last packet (a tick just
 * before the interval was up skipped the peer until the next one); this sends at the interval.
 */
export class NatKeepaliveTimer {
  readonly #d: NatKeepaliveTimerDeps
  readonly #intervalMs: number
  /** When each peer started wanting keepalives: the first is due one interval later. */
  readonly #since = new WeakMap<Peer, number>()
  #timer: TimerHandle | undefined
  #started = false
  #closed = false

  constructor(d: NatKeepaliveTimerDeps, intervalMs: number) {
    this.#d = d
    this.#intervalMs = intervalMs
  }

  /** The tunnel runs: keepalives from now on. */
  start(): void {
    this.#started = true
    this.changed()
  }

  /** Peers, their endpoints or keepalive flags changed: when the next keepalive is due may have changed. */
  changed(): void {
    if (this.#closed || !this.#started) return
    const now = this.#d.clock.monotonic()
    this.#d.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    let next = Number.POSITIVE_INFINITY
    for (const p of this.#d.peers()) {
      if (!p.keepalive) {
        this.#since.delete(p)
        continue
      }
      if (!this.#since.has(p)) this.#since.set(p, now)
      if (p.endpoint) next = Math.min(next, Math.max(p.lastTxMonoMs, this.#since.get(p)!) + this.#intervalMs)
    }
    if (next === Number.POSITIVE_INFINITY) return
    this.#timer = this.#d.clock.setTimeout(
      () => {
        this.#timer = undefined
        sendNatKeepalives(
          this.#d.peers(),
          this.#d.clock.monotonic(),
          this.#intervalMs,
          this.#d.socket,
          this.#d.counters,
          KEEPALIVE_SLACK_MS,
        )
        this.changed()
      },
      next > now ? next - now : KEEPALIVE_MIN_REARM_MS,
    )
  }

  close(): void {
    this.#closed = true
    this.#d.clock.clearTimeout(this.#timer)
  }
}

export interface NatKeepaliveTimerDeps {
  readonly clock: Clock
  readonly socket: DatagramSocket
  readonly counters: TunnelCounters
  readonly peers: () => Iterable<Peer>
}
