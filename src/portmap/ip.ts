// Address helpers for the mapping codecs: IPv4 in 4 bytes (NAT-PMP), any address in 16 bytes with IPv4
// as IPv4-mapped IPv6 (RFC 6887 5, RFC 4291 2.5.5.2), and the private-range test the PortMapper uses.

import { isIPv4, isIPv6 } from 'node:net'
import { formatIpv6 } from '../tunnel/sa-table.js'
import { PortmapWireError } from './errors.js'

export const IPV4_LEN = 4
export const IP16_LEN = 16
/** RFC 4291 2.5.5.2: ::ffff:a.b.c.d is 80 zero bits, 16 one bits, then the IPv4 address. */
const IPV4_MAPPED_PREFIX_LEN = 12
const IPV4_MAPPED_ZEROS_LEN = 10
const IPV4_MAPPED_ONES = 0xff
const BITS_PER_BYTE = 8
const HEX = 16
const IPV6_GROUPS = 8
const GROUP_LEN = 2

export function readIPv4(buf: Buffer, off: number): string {
  if (buf.length < off + IPV4_LEN) throw new PortmapWireError('ipv4', off, 'short')
  return Array.from(buf.subarray(off, off + IPV4_LEN)).join('.')
}

export function parseIPv4(address: string): number[] {
  if (!isIPv4(address)) throw new RangeError(`not an IPv4 address: ${address}`)
  return address.split('.').map(Number)
}

export function writeIPv4(buf: Buffer, off: number, address: string): void {
  const parts = parseIPv4(address)
  for (let i = 0; i < IPV4_LEN; i++) buf[off + i] = parts[i]!
}

function isV4Mapped(buf: Buffer, off: number): boolean {
  for (let i = 0; i < IPV4_MAPPED_ZEROS_LEN; i++) if (buf[off + i] !== 0) return false
  return (
    buf[off + IPV4_MAPPED_ZEROS_LEN] === IPV4_MAPPED_ONES && buf[off + IPV4_MAPPED_ZEROS_LEN + 1] === IPV4_MAPPED_ONES
  )
}

/** Reads 16 bytes: an IPv4-mapped address comes back as dotted IPv4, anything else as IPv6 text. */
export function readIp16(buf: Buffer, off: number): string {
  if (buf.length < off + IP16_LEN) throw new PortmapWireError('ip16', off, 'short')
  if (isV4Mapped(buf, off)) return readIPv4(buf, off + IPV4_MAPPED_PREFIX_LEN)
  return formatIpv6(buf, off)
}

/** Writes an IPv4 address as IPv4-mapped IPv6, or an IPv6 address as is. */
export function writeIp16(buf: Buffer, off: number, address: string): void {
  buf.fill(0, off, off + IP16_LEN)
  if (isIPv4(address)) {
    buf[off + IPV4_MAPPED_ZEROS_LEN] = IPV4_MAPPED_ONES
    buf[off + IPV4_MAPPED_ZEROS_LEN + 1] = IPV4_MAPPED_ONES
    writeIPv4(buf, off + IPV4_MAPPED_PREFIX_LEN, address)
    return
  }
  if (!isIPv6(address)) throw new RangeError(`not an IP address: ${address}`)
  let text = address
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (isIPv4(tail)) {
    const [a, b, c, d] = parseIPv4(tail) as [number, number, number, number]
    const group = (hi: number, lo: number): string => ((hi << BITS_PER_BYTE) | lo).toString(HEX)
    text = `${text.slice(0, lastColon + 1)}${group(a, b)}:${group(c, d)}`
  }
  const [head, rest] = text.split('::') as [string, string | undefined]
  const h = head ? head.split(':') : []
  const r = rest ? rest.split(':') : []
  const groups = rest === undefined ? h : [...h, ...Array(IPV6_GROUPS - h.length - r.length).fill('0'), ...r]
  for (let i = 0; i < groups.length; i++) buf.writeUInt16BE(Number.parseInt(groups[i]!, HEX), off + i * GROUP_LEN)
}

/**
 * True when an IPv4 address cannot be reached from the internet as is, so a mapping is worth asking for:
 * RFC 1918 (10/8, 172.16/12, 192.168/16), RFC 6598 shared CGNAT space (100.64/10), link-local
 * (169.254/16), and loopback (a host whose primary address is loopback has no public address).
 */
export function isPrivateIPv4(address: string): boolean {
  if (!isIPv4(address)) return false
  const [a, b] = parseIPv4(address) as [number, number]
  if (a === 10 || a === 127) return true
  if (a === 172 && b >= 16 && b <= 31) return true
  if (a === 192 && b === 168) return true
  if (a === 100 && b >= 64 && b <= 127) return true
  return a === 169 && b === 254
}
