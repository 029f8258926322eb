// TURN wire pieces (RFC 8656 on RFC 8489's message format, whose codec is stun.ts): method and class numbers,
// ChannelData framing, the long-term credential key, and the `--relay` argument. The client is turn.ts.
import { createHash } from 'node:crypto'
import { splitHostPort } from '../io/host-port.js'
import { CHANNEL_DATA_HEADER_LEN, CHANNEL_DATA_LEN_OFFSET, writeChannelDataHeader } from '../tunnel/sa-table.js'

/** Methods (RFC 8656 18.1) and classes (RFC 8489 5): type = method | class for methods below 0x10. */
export const TurnMethod = {
  ALLOCATE: 0x003,
  REFRESH: 0x004,
  SEND: 0x006,
  DATA: 0x007,
  CREATE_PERMISSION: 0x008,
  CHANNEL_BIND: 0x009,
} as const
export const StunClass = { REQUEST: 0x0000, INDICATION: 0x0010, SUCCESS: 0x0100, ERROR: 0x0110 } as const
export const CLASS_MASK = 0x0110
export const METHOD_MASK = 0x3eef

/** RFC 8656 14.7: REQUESTED-TRANSPORT value, protocol 17 (UDP) then 3 RFFU octets. */
export const TRANSPORT_UDP = 17
export const TURN_DEFAULT_PORT = 3478
/** RFC 8656 12: channel numbers 0x4000 through 0x4FFF. */
export const CHANNEL_MIN = 0x4000
export const CHANNEL_MAX = 0x4fff
/** RFC 8656 9: permissions last 300 s; refreshed well before. */
export const PERMISSION_REFRESH_MS = 4 * 60_000
/** RFC 8656 11: channel bindings last 600 s; refreshed well before. */
export const CHANNEL_REFRESH_MS = 9 * 60_000
/** Requested allocation lifetime (RFC 8656 7: default 600 s). */
export const TURN_LIFETIME_SEC = 600
export const TURN_RTO_MS = 500
export const TURN_GIVE_UP_MS = 5000

/** A 32-bit attribute value (LIFETIME). */
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}
export const epKey = (address: string, port: number): string => `${address}:${port}`

/** A TURN server and the long-term credentials for it. */
export interface TurnServer {
  readonly address: string
  readonly port: number
  readonly username: string
  readonly password: string
}

export const ErrorCode = { UNAUTHORIZED: 401, STALE_NONCE: 438, ALLOCATION_MISMATCH: 437 } as const

export class TurnError extends Error {
  override readonly name = 'TurnError'
  constructor(
    message: string,
    /** The STUN error code, or 0 for a timeout / closed client. */
    readonly code: number,
  ) {
    super(message)
  }
}

/** RFC 8489 9.2.2: key = MD5(username ":" realm ":" password) (OpaqueString processing of ASCII is the identity). */
export function longTermKey(username: string, realm: string, password: string): Buffer {
  return createHash('md5').update(`${username}:${realm}:${password}`, 'utf8').digest()
}

/** ChannelData (RFC 8656 12.4): header then `data[off, off+len)`, no padding (UDP). */
export function encodeChannelData(channel: number, data: Buffer, off = 0, len = data.length - off): Buffer {
  const b = Buffer.allocUnsafe(CHANNEL_DATA_HEADER_LEN + len)
  writeChannelDataHeader(b, 0, channel, len)
  data.copy(b, CHANNEL_DATA_HEADER_LEN, off, off + len)
  return b
}

/** The channel and payload of a ChannelData message, or undefined when `b` is not one (padding tolerated). */
export function decodeChannelData(b: Buffer): { channel: number; data: Buffer } | undefined {
  if (b.length < CHANNEL_DATA_HEADER_LEN) return undefined
  const channel = b.readUInt16BE(0)
  if (channel < CHANNEL_MIN || channel > CHANNEL_MAX) return undefined
  const len = b.readUInt16BE(CHANNEL_DATA_LEN_OFFSET)
  if (CHANNEL_DATA_HEADER_LEN + len > b.length) return undefined
  return { channel, data: b.subarray(CHANNEL_DATA_HEADER_LEN, CHANNEL_DATA_HEADER_LEN + len) }
}

/** The method's name for logs and errors. */
export function methodName(method: number): string {
  for (const [k, v] of Object.entries(TurnMethod)) if (v === method) return k
  return `0x${method.toString(16)}`
}

/** "HOST[:PORT]" of `--relay`. */
export function parseTurnServer(s: string): { host: string; port: number } {
  const hp = splitHostPort(s, TURN_DEFAULT_PORT)
  if (!hp) throw new TypeError(`--relay wants HOST[:PORT], got ${JSON.stringify(s)}`)
  return hp
}
