// The Internet checksum (RFC 1071) and the TCP/UDP pseudo-headers (RFC 793 section 3.1, RFC 768, RFC 8200
// section 8.1), for the offload code: segments cut from a TSO super-packet get their checksums computed here, and
// segments are verified here before they are coalesced (a coalesced packet is handed to the kernel with
// NEEDS_CSUM, which the kernel trusts: a corrupt segment merged in would never be caught).

import { createRequire } from 'node:module'
import { TCP_CSUM_OFFSET, UDP_CSUM_OFFSET } from './virtio.js'

/** IANA protocol numbers of the transports the offloads know. */
export const IpProto = { TCP: 6, UDP: 17 } as const

export const IPV4_SRC = 12
export const IPV6_SRC = 8

type Sum16 = (b: Buffer, start: number, end: number, sum: number) => number

/** dist/native/csum.node (src/tunnel/native/csum.cc) when built, unless AUTOTUNNEL_CSUM=js. */
function loadNative(): Sum16 | undefined {
  if (process.env.AUTOTUNNEL_CSUM === 'js') return undefined
  try {
    return (createRequire(import.meta.url)('../../../native/csum.node') as { sum16: Sum16 }).sum16
  } catch {
    return undefined
  }
}

const nativeSum16 = loadNative()

/** Which implementation sum16 is. */
export const checksumBackend: 'native' | 'js' = nativeSum16 ? 'native' : 'js'

/**
 * Adds the 16-bit big-endian words of `b[start .. end)` to `sum` (an odd last octet is padded with zero) and
 * returns the sum, folded by the native backend (the same value modulo 0xffff: callers fold before use).
 */
export const sum16: Sum16 = nativeSum16 ?? sum16Js

/** sum16 in JS: the unfolded sum, exact below 2^53 (fine for any packet). */
export function sum16Js(b: Buffer, start: number, end: number, sum: number): number {
  let i = start
  const even = end - ((end - start) & 1)
  let s = sum
  // Two words per step: the loop is the hot part of segmenting and coalescing.
  for (; i + 3 < even; i += 4) s += ((b[i]! << 8) | b[i + 1]!) + ((b[i + 2]! << 8) | b[i + 3]!)
  for (; i < even; i += 2) s += (b[i]! << 8) | b[i + 1]!
  if (i < end) s += b[i]! << 8
  return s
}

/** Folds a sum to 16 bits (end-around carry). */
export function fold(sum: number): number {
  let s = sum
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000)
  return s
}

/**
 * The pseudo-header sum for an L4 segment of `l4Len` octets of protocol `proto`, with the addresses taken from the
 * IP header at `b[ip]` (version from its first nibble). Unfolded.
 */
export function pseudoSum(b: Buffer, ip: number, proto: number, l4Len: number): number {
  if (b[ip]! >> 4 === 4) return sum16(b, ip + IPV4_SRC, ip + IPV4_SRC + 8, proto + l4Len)
  // RFC 8200 8.1: upper-layer length as 32 bits, next header as 32 bits.
  return sum16(b, ip + IPV6_SRC, ip + IPV6_SRC + 32, proto + (l4Len >>> 16) + (l4Len & 0xffff))
}

/** Computes and stores the full TCP or UDP checksum of the L4 segment `b[l4 .. end)`, whose IP header is at `ip`. */
export function writeL4Checksum(b: Buffer, ip: number, l4: number, end: number, proto: number): void {
  const at = l4 + (proto === IpProto.TCP ? TCP_CSUM_OFFSET : UDP_CSUM_OFFSET)
  b[at] = 0
  b[at + 1] = 0
  let c = ~fold(sum16(b, l4, end, pseudoSum(b, ip, proto, end - l4))) & 0xffff
  // RFC 768: a computed UDP checksum of zero is sent as all ones (zero means none).
  if (c === 0 && proto === IpProto.UDP) c = 0xffff
  b.writeUInt16BE(c, at)
}

/** True when the TCP or UDP segment `b[l4 .. end)` carries a correct checksum (pseudo-header from `ip`). */
export function l4ChecksumOk(b: Buffer, ip: number, l4: number, end: number, proto: number): boolean {
  return fold(sum16(b, l4, end, pseudoSum(b, ip, proto, end - l4))) === 0xffff
}

/** Recomputes the IPv4 header checksum of the header at `b[ip ..+ ihl]`. */
export function writeIpv4HeaderChecksum(b: Buffer, ip: number, ihl: number): void {
  b[ip + 10] = 0
  b[ip + 11] = 0
  b.writeUInt16BE(~fold(sum16(b, ip, ip + ihl, 0)) & 0xffff, ip + 10)
}
