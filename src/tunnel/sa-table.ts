// The SA table, bound to pairs of ULAs (RFC 6281 section 7.3.2): a peer is its ULA; its outer address is an
// attribute that may change (DNS, roaming) while the SAs stay. Tunnel mode with traffic selectors
// local ULA/128 <-> peer ULA/128 (RFC 4301 section 4.4.1), as strongSwan negotiates them.
// Make-before-break rekeying (RFC 7296 section 2.8): up to two inbound SAs per peer are live at once, and the
// outbound SA is replaced in one assignment.

import { isIPv6 } from 'node:net'
import type { EspAlg, EspCrypto } from './esp.js'
import type { ReplayWindow } from './replay.js'

export const IPV6_HDR_LEN = 40
export const IPV6_PAYLOAD_LEN_OFFSET = 4
export const IPV6_SRC_OFFSET = 8
export const IPV6_DST_OFFSET = 24
export const IPV6_ADDR_LEN = 16
export const IPV6_VERSION = 6

/** Inbound SAs a peer keeps at once: the current one and the one being replaced. */
export const MAX_INBOUND_PER_PEER = 2

export interface Endpoint {
  readonly address: string
  readonly port: number
  /**
   * Set when this peer is reached through our TURN allocation (docs/relay.md): datagrams for it go to the TURN
   * server as ChannelData on `channel` (RFC 8656 12), `address:port` above staying the peer's own.
   */
  readonly relay?: RelayRoute
}

/** A TURN server and the channel bound there to one peer address. */
export interface RelayRoute {
  readonly address: string
  readonly port: number
  readonly channel: number
}

/** RFC 8656 12.4: ChannelData header, channel number then length (no padding over UDP); the TURN client
 * (src/traversal/turn-wire.ts) frames with the same. */
export const CHANNEL_DATA_HEADER_LEN = 4
export const CHANNEL_DATA_LEN_OFFSET = 2

export function writeChannelDataHeader(b: Buffer, at: number, channel: number, len: number): void {
  b.writeUInt16BE(channel, at)
  b.writeUInt16BE(len, at + CHANNEL_DATA_LEN_OFFSET)
}

export interface OutboundSa {
  readonly spi: number
  readonly alg: EspAlg
  readonly crypto: EspCrypto
  /** Last sequence number used; the next packet gets seq + 1. */
  seq: number
  /** Set once `onSaExpiring` fired for this SA. */
  expiringSignalled: boolean
}

export interface InboundSa {
  readonly spi: number
  readonly alg: EspAlg
  readonly crypto: EspCrypto
  readonly replay: ReplayWindow
  readonly peer: Peer
  readonly installedAt: number
}

export interface QueuedPacket {
  readonly packet: Buffer
  readonly atMs: number
}

export interface Peer {
  readonly ula: string
  /** The ULA's 16 octets as a latin1 string: the key of the fast-path maps. */
  readonly key: string
  readonly ulaBytes: Buffer
  endpoint: Endpoint | undefined
  keepalive: boolean
  outbound: OutboundSa | undefined
  inbound: InboundSa[]
  /** Packets waiting for an SA (bounded, drop-oldest). */
  noSaQueue: QueuedPacket[]
  lastNoSaCallMs: number
  rxPackets: number
  rxBytes: number
  txPackets: number
  txBytes: number
  lastRxMs: number | undefined
  lastTxMonoMs: number
}

/** A peer with no SA and zeroed counters; `ulaBytes` are the ULA's 16 octets (`key` is their latin1 form). */
export function newPeer(ula: string, ulaBytes: Buffer, endpoint: Endpoint | undefined, keepalive: boolean): Peer {
  return {
    ula,
    key: ulaBytes.toString('latin1'),
    ulaBytes,
    endpoint,
    keepalive,
    outbound: undefined,
    inbound: [],
    noSaQueue: [],
    lastNoSaCallMs: Number.NEGATIVE_INFINITY,
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    lastRxMs: undefined,
    lastTxMonoMs: Number.NEGATIVE_INFINITY,
  }
}

/** Canonical (RFC 5952) text form and 16 octets of an IPv6 address; throws TypeError for anything else. */
export function parseIpv6(text: string): { canonical: string; bytes: Buffer } {
  if (!isIPv6(text)) throw new TypeError(`not an IPv6 address: ${text}`)
  // The WHATWG URL parser compresses the address and turns an embedded dotted quad into hex groups.
  const canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1)
  const [head = '', tail] = canonical.split('::')
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'))
  const h = groups(head)
  const t = tail === undefined ? [] : groups(tail)
  const all = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  const bytes = Buffer.alloc(IPV6_ADDR_LEN)
  all.forEach((g, i) => {
    bytes.writeUInt16BE(Number.parseInt(g, 16), i * 2)
  })
  return { canonical, bytes }
}

/** RFC 5952 text form of the 16 octets at `buf[off]`. */
export function formatIpv6(buf: Buffer, off: number): string {
  const g: number[] = []
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + i * 2))
  let bestAt = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) {
      bestAt = i
      bestLen = j - i
    }
    i = j
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':')
  if (bestAt < 0) return hex(g)
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`
}

export function ulaKeyOf(bytes: Buffer, off: number): string {
  return bytes.toString('latin1', off, off + IPV6_ADDR_LEN)
}

export function sameAddr16(a: Buffer, aOff: number, b: Buffer, bOff: number): boolean {
  for (let i = 0; i < IPV6_ADDR_LEN; i++) if (a[aOff + i] !== b[bOff + i]) return false
  return true
}
