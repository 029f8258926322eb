// Address text for A (RFC 1035 3.4.1) and AAAA (RFC 3596 2.2) RDATA; IPv6 text per RFC 5952
// (lower case, longest run of two or more zero groups shortened to '::', the first if tied; IPv4-mapped
// and IPv4-compatible addresses end in a dotted quad, as BIND and glibc inet_ntop print them).
import { WireError } from './errors.js'

export const IPV4_LEN = 4
export const IPV6_LEN = 16
const GROUPS = 8
const MAPPED = 0xffff

export function formatIPv4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`
}

const HEX_CACHE: string[] = []

function hex16(v: number): string {
  let h = HEX_CACHE[v]
  if (h === undefined) {
    h = v.toString(16)
    HEX_CACHE[v] = h
  }
  return h
}

const FORMAT_SCRATCH = new Uint16Array(GROUPS)

export function formatIPv6(buf: Buffer, off: number): string {
  const g = FORMAT_SCRATCH
  for (let i = 0; i < GROUPS; i++) g[i] = (buf[off + 2 * i]! << 8) | buf[off + 2 * i + 1]!
  let bestAt = -1
  let bestLen = 1
  for (let i = 0; i < GROUPS; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < GROUPS && g[j] === 0) j++
    if (j - i > bestLen) {
      bestAt = i
      bestLen = j - i
    }
    i = j
  }
  if (bestAt === 0 && (bestLen === 6 || (bestLen === 5 && g[5] === MAPPED))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${formatIPv4(buf, off + IPV6_LEN - IPV4_LEN)}`
  }
  let s = ''
  for (let i = 0; i < GROUPS; i++) {
    if (i === bestAt) {
      s += i === 0 ? '::' : ':'
      i += bestLen - 1
      continue
    }
    s += hex16(g[i]!)
    if (i < GROUPS - 1) s += ':'
  }
  return s
}

const DOT = 0x2e
const COLON = 0x3a
const DIGIT_0 = 0x30
const DIGIT_9 = 0x39
const MAX_OCTET = 255
const MAX_HEX_DIGITS = 4

function hexValue(c: number): number {
  if (c >= DIGIT_0 && c <= DIGIT_9) return c - DIGIT_0
  const l = c | 0x20
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1
}

/** Dotted quad starting at s[i] and running to the end of s, as an unsigned 32-bit number; -1 if malformed. */
function ipv4Value(s: string, i: number): number {
  let value = 0
  for (let part = 0; part < IPV4_LEN; part++) {
    const start = i
    let v = 0
    while (i < s.length && i - start < 3) {
      const c = s.charCodeAt(i)
      if (c < DIGIT_0 || c > DIGIT_9) break
      v = v * 10 + c - DIGIT_0
      i++
    }
    if (i === start || v > MAX_OCTET) return -1
    value = value * 256 + v
    if (part < IPV4_LEN - 1) {
      if (i >= s.length || s.charCodeAt(i) !== DOT) return -1
      i++
    }
  }
  return i === s.length ? value : -1
}

/** Writes the four octets of a dotted-quad at buf[off]; throws WireError naming `field` when malformed. */
export function parseIPv4Into(s: string, buf: Buffer, off: number, field: string): void {
  const v = typeof s === 'string' ? ipv4Value(s, 0) : -1
  if (v < 0) throw new WireError(field, off, `bad IPv4 address '${s}'`)
  buf.writeUInt32BE(v, off)
}

const GROUP_SCRATCH = new Uint16Array(GROUPS)

/** Writes the 16 octets of an IPv6 address (RFC 4291 2.2 text, optional trailing dotted quad). */
export function parseIPv6Into(s: string, buf: Buffer, off: number, field: string): void {
  const bad = () => new WireError(field, off, `bad IPv6 address '${s}'`)
  if (typeof s !== 'string') throw bad()
  const g = GROUP_SCRATCH
  const n = s.length
  let count = 0
  let gap = -1
  let i = 0
  if (n >= 2 && s.charCodeAt(0) === COLON) {
    if (s.charCodeAt(1) !== COLON) throw bad()
    gap = 0
    i = 2
  }
  while (i < n) {
    if (count >= GROUPS) throw bad()
    const start = i
    let v = 0
    while (i < n && i - start <= MAX_HEX_DIGITS) {
      const h = hexValue(s.charCodeAt(i))
      if (h < 0) break
      v = v * 16 + h
      i++
    }
    if (i < n && s.charCodeAt(i) === DOT) {
      const v4 = ipv4Value(s, start)
      if (v4 < 0 || count > GROUPS - 2) throw bad()
      g[count++] = v4 >>> 16
      g[count++] = v4 & 0xffff
      i = n
      break
    }
    if (i === start || i - start > MAX_HEX_DIGITS) throw bad()
    g[count++] = v
    if (i === n) break
    if (s.charCodeAt(i) !== COLON) throw bad()
    i++
    if (i < n && s.charCodeAt(i) === COLON) {
      if (gap >= 0) throw bad()
      gap = count
      i++
    } else if (i === n) throw bad()
  }
  if (gap < 0 ? count !== GROUPS : count > GROUPS - 1) throw bad()
  const fill = GROUPS - count
  for (let k = 0; k < GROUPS; k++) {
    const v = gap < 0 || k < gap ? g[k]! : k < gap + fill ? 0 : g[k - fill]!
    buf.writeUInt16BE(v, off + 2 * k)
  }
}
