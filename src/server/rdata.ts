// Conversions between the codec's typed records (src/dns/wire/rr-table.ts) and the store's ZoneRR: canonical
// uncompressed RDATA (RFC 4034 section 6.2: embedded names of NS, CNAME, SOA, PTR, MX, SRV in lower case) as the
// record's identity, the RDATA and owner as written (RFC 4343 4.1: comparisons ignore case, data keeps it) for the
// wire, and a presentation string (RFC 1035 section 5.1) for people and the change feed.
import { reader, Writer } from '../dns/wire/buffer.js'
import { nameToLowerCanonical } from '../dns/wire/name.js'
import { dataOf, type RData, type RR, RRType, readRData, writeRData } from '../dns/wire/rr-table.js'
import type { ZoneRR } from './zone-index.js'

const RDLENGTH_SIZE = 2
const MAX_RDATA = 0xffff
const scratch = Buffer.allocUnsafe(MAX_RDATA + RDLENGTH_SIZE)

function lowerNames(type: number, d: RData): RData {
  if (d === null || 'raw' in d) return d
  switch (type) {
    case RRType.NS:
    case RRType.CNAME:
    case RRType.PTR:
    case RRType.MX:
    case RRType.SRV:
    case RRType.SOA: {
      const o: Record<string, unknown> = { ...d }
      for (const k of ['nsdname', 'cname', 'ptrdname', 'exchange', 'target', 'mname', 'rname'])
        if (typeof o[k] === 'string') o[k] = nameToLowerCanonical(o[k] as string)
      return o as unknown as RData
    }
    default:
      return d
  }
}

/** Uncompressed canonical RDATA of a typed record (a fresh Buffer). Empty RDATA gives an empty Buffer. */
export function canonicalRData(type: number, data: RData): Buffer {
  return uncompressedRData(type, lowerNames(type, data))
}

/** Uncompressed RDATA with embedded names in the case they have in `data`. */
export function uncompressedRData(type: number, data: RData): Buffer {
  if (data === null) return Buffer.alloc(0)
  const w = new Writer(scratch, 0, scratch.length, false)
  writeRData(w, type, data, false)
  return Buffer.from(scratch.subarray(RDLENGTH_SIZE, w.off))
}

/** Typed RDATA back from canonical bytes (opaque types come back as { raw }). */
export function decodeRData(type: number, rdata: Buffer): RData {
  const r = reader(rdata)
  return readRData(r, type, rdata.length)
}

function quoteString(b: Buffer): string {
  let s = '"'
  for (const c of b) {
    if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`
    else if (c < 0x20 || c > 0x7e) s += `\\${String(c).padStart(3, '0')}`
    else s += String.fromCharCode(c)
  }
  return `${s}"`
}

/** RDATA in presentation format; RFC 3597 generic form (\# len hex) for types without a typed row. */
export function rdataText(type: number, rdata: Buffer): string {
  const rr: RR = { name: '.', type, class: 1, ttl: 0, data: rdata.length ? decodeRData(type, rdata) : null }
  const d = rr.data
  if (d === null) return '\\# 0'
  const a = dataOf(rr, RRType.A) ?? dataOf(rr, RRType.AAAA)
  if (a) return a.address
  const srv = dataOf(rr, RRType.SRV)
  if (srv) return `${srv.priority} ${srv.weight} ${srv.port} ${srv.target}`
  const txt = dataOf(rr, RRType.TXT)
  if (txt) return txt.strings.map(quoteString).join(' ')
  const ns = dataOf(rr, RRType.NS)
  if (ns) return ns.nsdname
  const cname = dataOf(rr, RRType.CNAME)
  if (cname) return cname.cname
  const ptr = dataOf(rr, RRType.PTR)
  if (ptr) return ptr.ptrdname
  const mx = dataOf(rr, RRType.MX)
  if (mx) return `${mx.preference} ${mx.exchange}`
  const soa = dataOf(rr, RRType.SOA)
  if (soa) return `${soa.mname} ${soa.rname} ${soa.serial} ${soa.refresh} ${soa.retry} ${soa.expire} ${soa.minimum}`
  return `\\# ${rdata.length} ${rdata.toString('hex')}`
}

/**
 * A decoded record as the store keeps it: lower-case owner and canonical RDATA as keys, plus the owner and RDATA
 * as written when their case differs (an SRV target `AutoTunnel-00.alice.members.example.` stays so).
 */
export function toZoneRR(rr: RR): ZoneRR {
  const rdata = canonicalRData(rr.type, rr.data)
  const asWritten = uncompressedRData(rr.type, rr.data)
  const wire = asWritten.equals(rdata) ? undefined : asWritten
  const name = nameToLowerCanonical(rr.name)
  const owner = rr.name.endsWith('.') ? rr.name : `${rr.name}.`
  return {
    name,
    type: rr.type,
    class: rr.class,
    ttl: rr.ttl,
    rdata,
    text: rdataText(rr.type, wire ?? rdata),
    ...(owner !== name ? { owner } : {}),
    ...(wire ? { wire } : {}),
  }
}

/**
 * A stored record as a codec record, owner and RDATA as written; RDATA stays raw bytes, which the encoder writes
 * as they are. `owner` overrides the stored owner (a query answer echoes the question's spelling).
 */
export function fromZoneRR(z: ZoneRR, owner?: string): RR {
  return {
    name: owner ?? z.owner ?? z.name,
    type: z.type,
    class: z.class,
    ttl: z.ttl,
    data: { raw: z.wire ?? z.rdata },
  }
}

/** The owner name as written. */
export function ownerOf(z: ZoneRR): string {
  return z.owner ?? z.name
}
