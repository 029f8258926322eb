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

export function formatIPv6(buf: Buffer, off: number): string {
  const g = new Array<number>(GROUPS)
  for (let i = 0; i < GROUPS; i++) g[i] = buf.readUInt16BE(off + 2 * i)
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
  if (bestAt < 0) return g.map((x) => x.toString(16)).join(':')
  const head = g.slice(0, bestAt).map((x) => x.toString(16))
  const tail = g.slice(bestAt + bestLen).map((x) => x.toString(16))
  return `${head.join(':')}::${tail.join(':')}`
}

/** Writes the four octets of a dotted-quad at buf[off]; throws WireError naming `field` when malformed. */
export function parseIPv4Into(s: string, buf: Buffer, off: number, field: string): void {
  const p = typeof s === 'string' ? s.split('.') : []
  if (p.length !== IPV4_LEN) throw new WireError(field, off, `bad IPv4 address '${s}'`)
  for (let i = 0; i < IPV4_LEN; i++) {
    const t = p[i]!
    const v = Number(t)
    if (!/^[0-9]{1,3}$/.test(t) || v > 255) throw new WireError(field, off, `bad IPv4 address '${s}'`)
    buf[off + i] = v
  }
}

/** Writes the 16 octets of an IPv6 address (RFC 4291 2.2 text, optional trailing dotted quad). */
export function parseIPv6Into(s: string, buf: Buffer, off: number, field: string): void {
  const bad = () => new WireError(field, off, `bad IPv6 address '${s}'`)
  if (typeof s !== 'string') throw bad()
  const words: number[] = []
  let tail = s
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  const v4buf = Buffer.alloc(IPV4_LEN)
  if (v4) {
    parseIPv4Into(v4[2]!, v4buf, 0, field)
    tail = v4[1]!.endsWith('::') ? v4[1]! : v4[1]!.slice(0, -1)
  }
  const halves = tail.split('::')
  if (halves.length > 2) throw bad()
  const parse = (h: string): number[] => {
    if (h === '') return []
    return h.split(':').map((x) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(x)) throw bad()
      return Number.parseInt(x, 16)
    })
  }
  const a = parse(halves[0]!)
  const b = halves.length === 2 ? parse(halves[1]!) : []
  if (v4) b.push((v4buf[0]! << 8) | v4buf[1]!, (v4buf[2]! << 8) | v4buf[3]!)
  if (halves.length === 1) {
    if (v4) a.push(...b.splice(0))
    if (a.length !== GROUPS) throw bad()
    words.push(...a)
  } else {
    const fill = GROUPS - a.length - b.length
    if (fill < 1) throw bad()
    words.push(...a, ...new Array<number>(fill).fill(0), ...b)
  }
  for (let i = 0; i < GROUPS; i++) buf.writeUInt16BE(words[i]!, off + 2 * i)
}
