// EDNS(0) options (RFC 6891 6.1.2): the option-code registry and codecs for TCP keepalive (RFC 7828 3.1)
// and padding (RFC 7830 4). LLQ (code 1) lives in llq.ts, Update Lease (code 2) in lease.ts.

import { WireError } from './wire/errors.js'
import type { Edns, EdnsOption } from './wire/message.js'

/** EDNS option codes (IANA "DNS EDNS0 Option Codes (OPT)"). */
export const EdnsOptionCode = {
  LLQ: 1, // RFC 8764 3.2
  UPDATE_LEASE: 2, // RFC 9664 4
  NSID: 3, // RFC 5001
  DAU: 5, // RFC 6975
  DHU: 6, // RFC 6975
  N3U: 7, // RFC 6975
  CLIENT_SUBNET: 8, // RFC 7871
  EXPIRE: 9, // RFC 7314
  COOKIE: 10, // RFC 7873
  TCP_KEEPALIVE: 11, // RFC 7828
  PADDING: 12, // RFC 7830
  CHAIN: 13, // RFC 7901
  KEY_TAG: 14, // RFC 8145
  EXTENDED_ERROR: 15, // RFC 8914
} as const

/** RFC 7828 3.1: TIMEOUT is in units of 100 ms. */
export const KEEPALIVE_UNIT_MS = 100
const U16_LEN = 2
const MAX_U16 = 0xffff

/** The first option with `code`, or undefined. */
export function findOption(edns: Edns | undefined, code: number): EdnsOption | undefined {
  if (edns === undefined) return undefined
  for (const o of edns.options) if (o.code === code) return o
  return undefined
}

/**
 * edns-tcp-keepalive (RFC 7828 3.1): empty in a client query (timeoutMs undefined), a 16-bit TIMEOUT in
 * 100 ms units from a server.
 */
export function encodeKeepalive(timeoutMs?: number): EdnsOption {
  if (timeoutMs === undefined) return { code: EdnsOptionCode.TCP_KEEPALIVE, data: Buffer.alloc(0) }
  const units = Math.round(timeoutMs / KEEPALIVE_UNIT_MS)
  if (!(units >= 0 && units <= MAX_U16)) throw new WireError('keepalive.timeout', 0, `out of range: ${timeoutMs} ms`)
  const data = Buffer.allocUnsafe(U16_LEN)
  data.writeUInt16BE(units)
  return { code: EdnsOptionCode.TCP_KEEPALIVE, data }
}

/** Returns the timeout in ms, or undefined for the empty (client) form; throws WireError for other lengths. */
export function decodeKeepalive(data: Buffer): number | undefined {
  if (data.length === 0) return undefined
  if (data.length !== U16_LEN) throw new WireError('keepalive.timeout', 0, `length ${data.length}, want 0 or 2`)
  return data.readUInt16BE(0) * KEEPALIVE_UNIT_MS
}

/** Padding option of `length` zero octets (RFC 7830 4: the content SHOULD be zero). */
export function encodePadding(length: number): EdnsOption {
  if (!(length >= 0 && length <= MAX_U16)) throw new WireError('padding.length', 0, `out of range: ${length}`)
  return { code: EdnsOptionCode.PADDING, data: Buffer.alloc(length) }
}

/** RFC 8467 4.1 recommended block sizes: queries padded to 128 octets, responses to 468. */
export const PADDING_BLOCK_QUERY = 128
export const PADDING_BLOCK_RESPONSE = 468
const OPTION_HEADER = 4

/** Length of padding data that brings a message of `unpaddedLen` octets (without the option) to a block boundary. */
export function paddingLength(unpaddedLen: number, block: number): number {
  const withHeader = unpaddedLen + OPTION_HEADER
  return (block - (withHeader % block)) % block
}
