// Presentation format of RRs (RFC 1035 5.1; RFC 3597 5 for opaque RDATA), in the layout dig and kdig print,
// for logs, the CLI and interop tests. Character-strings escape '"' and '\' and write bytes outside
// 0x20..0x7e as \DDD, as BIND does.
import { className, type RData, type RR, RRClass, RRType, typeName } from './rr-table.js'

function charString(b: Uint8Array): string {
  let s = '"'
  for (const c of b) {
    if (c === 0x22 || c === 0x5c) s += '\\' + String.fromCharCode(c)
    else if (c < 0x20 || c > 0x7e) s += '\\' + String(c).padStart(3, '0')
    else s += String.fromCharCode(c)
  }
  return s + '"'
}

/** RDATA text; '' for empty RDATA, '\# n hex' for opaque (RFC 3597 5). */
export function rdataToText(type: number, data: RData): string {
  if (data === null) return ''
  if ('raw' in data) return data.raw.length === 0 ? '\\# 0' : `\\# ${data.raw.length} ${data.raw.toString('hex')}`
  const d = data as unknown as Record<string, unknown>
  switch (type) {
    case RRType.A:
    case RRType.AAAA:
      return String(d.address)
    case RRType.NS:
      return String(d.nsdname)
    case RRType.CNAME:
      return String(d.cname)
    case RRType.PTR:
      return String(d.ptrdname)
    case RRType.MX:
      return `${d.preference} ${d.exchange}`
    case RRType.SRV:
      return `${d.priority} ${d.weight} ${d.port} ${d.target}`
    case RRType.SOA:
      return `${d.mname} ${d.rname} ${d.serial} ${d.refresh} ${d.retry} ${d.expire} ${d.minimum}`
    case RRType.TXT:
      return (d.strings as Uint8Array[]).map(charString).join(' ')
    case RRType.TSIG: {
      const mac = d.mac as Buffer
      const other = d.otherData as Buffer
      return `${d.algorithm} ${d.timeSigned} ${d.fudge} ${mac.length} ${mac.toString('base64')} ${d.originalId} ${d.error} ${other.length}${other.length > 0 ? ` ${other.toString('base64')}` : ''}`
    }
    default:
      return ''
  }
}

/** 'name TTL CLASS TYPE RDATA', fields separated by single spaces. */
export function rrToText(rr: RR): string {
  const cls = rr.class === RRClass.IN ? 'IN' : className(rr.class)
  const rdata = rdataToText(rr.type, rr.data)
  return `${rr.name} ${rr.ttl} ${cls} ${typeName(rr.type)}${rdata === '' ? '' : ` ${rdata}`}`
}
