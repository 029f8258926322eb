// RR types and classes, and the table that drives the RDATA codec (RFC 1035 3.3, 3.4; RFC 3596 AAAA;
// RFC 2782 SRV; RFC 6891 OPT; RFC 8945 TSIG; RFC 3597 unknown types as opaque RDATA).
//
// Each typed RR is one row: its fields in wire order, named as in its RFC. Names marked NAME_C are
// compressed on encode (the RFC 1035 types, RFC 3597 4); all names accept pointers on decode.
// RDLENGTH 0 decodes to `null` for every type (the "empty RDATA" of RFC 2136 2.4 / 2.5), and `null`
// encodes as RDLENGTH 0. RDATA Buffers returned by the decoder alias the input buffer.
import { formatIPv4, formatIPv6, IPV4_LEN, IPV6_LEN, parseIPv4Into, parseIPv6Into } from './addr.js'
import type { Reader, Writer } from './buffer.js'
import { WireError } from './errors.js'
import { readName, writeName } from './name.js'

/** RR TYPE values (IANA "Resource Record (RR) TYPEs"); each cites its defining RFC. */
export const RRType = {
  A: 1, // RFC 1035 3.4.1
  NS: 2, // RFC 1035 3.3.11
  CNAME: 5, // RFC 1035 3.3.1
  SOA: 6, // RFC 1035 3.3.13
  NULL: 10, // RFC 1035 3.3.10
  PTR: 12, // RFC 1035 3.3.12
  HINFO: 13, // RFC 1035 3.3.2
  MX: 15, // RFC 1035 3.3.9
  TXT: 16, // RFC 1035 3.3.14
  KEY: 25, // RFC 2535, RFC 3445
  AAAA: 28, // RFC 3596 2.1
  SRV: 33, // RFC 2782
  NAPTR: 35, // RFC 3403
  OPT: 41, // RFC 6891 6.1
  DS: 43, // RFC 4034 5
  RRSIG: 46, // RFC 4034 3
  NSEC: 47, // RFC 4034 4
  DNSKEY: 48, // RFC 4034 2
  NSEC3: 50, // RFC 5155
  SVCB: 64, // RFC 9460
  HTTPS: 65, // RFC 9460
  TKEY: 249, // RFC 2930
  TSIG: 250, // RFC 8945 4.2
  IXFR: 251, // RFC 1995
  AXFR: 252, // RFC 1035 3.2.3
  ANY: 255, // RFC 1035 3.2.3, RFC 8482
} as const

/** CLASS values (RFC 1035 3.2.4; NONE from RFC 2136 2.4; ANY RFC 1035 3.2.5). */
export const RRClass = {
  IN: 1,
  CH: 3,
  HS: 4,
  NONE: 254,
  ANY: 255,
} as const

export interface AData {
  /** Dotted quad, e.g. '192.0.2.1'. */
  address: string
}
export interface AAAAData {
  /** RFC 5952 text, e.g. 'fd00::1'. */
  address: string
}
export interface NSData {
  nsdname: string
}
export interface CNAMEData {
  cname: string
}
export interface PTRData {
  ptrdname: string
}
export interface SOAData {
  mname: string
  rname: string
  serial: number
  refresh: number
  retry: number
  expire: number
  minimum: number
}
export interface MXData {
  preference: number
  exchange: string
}
export interface TXTData {
  /** The character-strings, each up to 255 octets. */
  strings: Buffer[]
}
export interface SRVData {
  priority: number
  weight: number
  port: number
  target: string
}
/** RFC 8945 4.2. `timeSigned` is seconds since the epoch (48 bits). */
export interface TSIGData {
  algorithm: string
  timeSigned: number
  fudge: number
  mac: Buffer
  originalId: number
  error: number
  otherData: Buffer
}
/** RFC 3597 opaque RDATA: unknown types and types we do not parse (KEY, DNSKEY, RRSIG, ...). */
export interface OpaqueData {
  raw: Buffer
}

/** RDATA of each typed RR; any other type carries OpaqueData. */
export interface RDataMap {
  [RRType.A]: AData
  [RRType.NS]: NSData
  [RRType.CNAME]: CNAMEData
  [RRType.SOA]: SOAData
  [RRType.PTR]: PTRData
  [RRType.MX]: MXData
  [RRType.TXT]: TXTData
  [RRType.AAAA]: AAAAData
  [RRType.SRV]: SRVData
  [RRType.TSIG]: TSIGData
}

/** `null` is empty RDATA (RDLENGTH 0), as in RFC 2136 deletes and prerequisites. */
export type RData = RDataMap[keyof RDataMap] | OpaqueData | null

export interface RR<D extends RData = RData> {
  /** Owner name, presentation form with trailing dot. */
  name: string
  type: number
  class: number
  /** Unsigned 32-bit TTL in seconds, as on the wire. */
  ttl: number
  data: D
}

/** RDATA of `rr` as the typed shape of `type`, or undefined when the type differs or RDATA is empty/opaque. */
export function dataOf<K extends keyof RDataMap>(rr: RR, type: K): RDataMap[K] | undefined {
  if (rr.type !== type || rr.data === null || 'raw' in rr.data) return undefined
  return rr.data as RDataMap[K]
}

const U8 = 0
const U16 = 1
const U32 = 2
const U48 = 3
const NAME_C = 4
const NAME = 5
const IPV4 = 6
const IPV6 = 7
const STRINGS = 8
const REST = 9
const BYTES16 = 10

type Kind = typeof U8 | typeof U16 | typeof U32 | typeof U48
type FieldKind =
  | Kind
  | typeof NAME_C
  | typeof NAME
  | typeof IPV4
  | typeof IPV6
  | typeof STRINGS
  | typeof REST
  | typeof BYTES16

interface Field {
  key: string
  kind: FieldKind
  /** 'SRV.port', for errors. */
  label: string
}
export interface RRRow {
  type: number
  mnemonic: string
  rfc: string
  fields: readonly Field[]
}

const ROWS = new Map<number, RRRow>()
const MNEMONICS = new Map<string, number>()

function rr(type: number, mnemonic: string, rfc: string, fields: Record<string, FieldKind>): void {
  const fs = Object.entries(fields).map(([key, kind]) => ({ key, kind, label: `${mnemonic}.${key}` }))
  ROWS.set(type, { type, mnemonic, rfc, fields: fs })
  MNEMONICS.set(mnemonic, type)
}

rr(RRType.A, 'A', 'RFC 1035 3.4.1', { address: IPV4 })
rr(RRType.NS, 'NS', 'RFC 1035 3.3.11', { nsdname: NAME_C })
rr(RRType.CNAME, 'CNAME', 'RFC 1035 3.3.1', { cname: NAME_C })
rr(RRType.SOA, 'SOA', 'RFC 1035 3.3.13', {
  mname: NAME_C,
  rname: NAME_C,
  serial: U32,
  refresh: U32,
  retry: U32,
  expire: U32,
  minimum: U32,
})
rr(RRType.PTR, 'PTR', 'RFC 1035 3.3.12', { ptrdname: NAME_C })
rr(RRType.MX, 'MX', 'RFC 1035 3.3.9', { preference: U16, exchange: NAME_C })
rr(RRType.TXT, 'TXT', 'RFC 1035 3.3.14', { strings: STRINGS })
rr(RRType.AAAA, 'AAAA', 'RFC 3596 2.2', { address: IPV6 })
rr(RRType.SRV, 'SRV', 'RFC 2782', { priority: U16, weight: U16, port: U16, target: NAME })
rr(RRType.TSIG, 'TSIG', 'RFC 8945 4.2', {
  algorithm: NAME,
  timeSigned: U48,
  fudge: U16,
  mac: BYTES16,
  originalId: U16,
  error: U16,
  otherData: BYTES16,
})
for (const [m, t] of Object.entries(RRType)) if (!MNEMONICS.has(m)) MNEMONICS.set(m, t)

/** The codec row of a typed RR, or undefined for opaque types. */
export function rrRow(type: number): RRRow | undefined {
  return ROWS.get(type)
}

/** 'AAAA', or 'TYPE65280' for unnamed types (RFC 3597 5). */
export function typeName(type: number): string {
  for (const [m, t] of MNEMONICS) if (t === type) return m
  return `TYPE${type}`
}

/** Type number from a mnemonic or 'TYPEnnn'; undefined when unknown. */
export function typeFromName(name: string): number | undefined {
  const u = name.toUpperCase()
  const t = MNEMONICS.get(u)
  if (t !== undefined) return t
  const m = /^TYPE([0-9]{1,5})$/.exec(u)
  return m && Number(m[1]) <= 0xffff ? Number(m[1]) : undefined
}

export function className(cls: number): string {
  for (const [m, c] of Object.entries(RRClass)) if (c === cls) return m
  return `CLASS${cls}`
}

const U8_LEN = 1
const U16_LEN = 2
const U32_LEN = 4
const U48_LEN = 6
const MAX_U8 = 0xff
const MAX_U16 = 0xffff
const MAX_U32 = 0xffffffff
const MAX_U48 = 0xffffffffffff

/** Decodes RDATA of `type` occupying [r.off, end); leaves r.off at end. */
export function readRData(r: Reader, type: number, end: number): RData {
  const buf = r.buf
  if (end === r.off) return null
  const o = r.off
  if (type === RRType.AAAA && end - o === IPV6_LEN) {
    r.off = end
    return { address: formatIPv6(buf, o) }
  }
  if (type === RRType.A && end - o === IPV4_LEN) {
    r.off = end
    return { address: formatIPv4(buf, o) }
  }
  const row = ROWS.get(type)
  if (row === undefined) {
    const raw = buf.subarray(r.off, end)
    r.off = end
    return { raw }
  }
  const d: Record<string, unknown> = {}
  for (const f of row.fields) {
    const o = r.off
    switch (f.kind) {
      case U8:
        if (o + U8_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        d[f.key] = buf[o]
        r.off = o + U8_LEN
        break
      case U16:
        if (o + U16_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        d[f.key] = buf.readUInt16BE(o)
        r.off = o + U16_LEN
        break
      case U32:
        if (o + U32_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        d[f.key] = buf.readUInt32BE(o)
        r.off = o + U32_LEN
        break
      case U48:
        if (o + U48_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        d[f.key] = buf.readUIntBE(o, U48_LEN)
        r.off = o + U48_LEN
        break
      case NAME_C:
      case NAME:
        d[f.key] = readName(r, end)
        break
      case IPV4:
        if (o + IPV4_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        d[f.key] = formatIPv4(buf, o)
        r.off = o + IPV4_LEN
        break
      case IPV6:
        if (o + IPV6_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        d[f.key] = formatIPv6(buf, o)
        r.off = o + IPV6_LEN
        break
      case STRINGS: {
        const strings: Buffer[] = []
        let p = o
        while (p < end) {
          const n = buf[p]!
          if (p + 1 + n > end) throw new WireError(f.label, p, 'character-string runs past RDATA')
          strings.push(buf.subarray(p + 1, p + 1 + n))
          p += 1 + n
        }
        d[f.key] = strings
        r.off = end
        break
      }
      case REST:
        d[f.key] = buf.subarray(o, end)
        r.off = end
        break
      case BYTES16: {
        if (o + U16_LEN > end) throw new WireError(f.label, o, 'RDATA too short')
        const n = buf.readUInt16BE(o)
        if (o + U16_LEN + n > end) throw new WireError(f.label, o, 'field runs past RDATA')
        d[f.key] = buf.subarray(o + U16_LEN, o + U16_LEN + n)
        r.off = o + U16_LEN + n
        break
      }
    }
  }
  if (r.off !== end) throw new WireError(`${row.mnemonic}`, r.off, 'RDATA longer than its fields')
  return d as unknown as RData
}

function uint(v: unknown, max: number, label: string, w: Writer): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw new WireError(label, w.off, `not an integer in 0..${max}: ${String(v)}`)
  return v
}

function bytesOf(v: unknown, label: string, w: Writer): Uint8Array {
  if (v instanceof Uint8Array) return v
  throw new WireError(label, w.off, 'expected a Buffer')
}

/** Writes RDLENGTH and RDATA of `type`. Data with a `raw` Buffer is written as is for any type. */
export function writeRData(w: Writer, type: number, data: RData, compress: boolean): void {
  const lenAt = w.off
  w.u16(0)
  if (data === null) return
  const start = w.off
  const row = ROWS.get(type)
  if (row === undefined || 'raw' in data) {
    const raw = (data as OpaqueData).raw
    w.bytes(bytesOf(raw, `${typeName(type)}.raw`, w))
  } else {
    const d = data as unknown as Record<string, unknown>
    for (const f of row.fields) {
      const v = d[f.key]
      switch (f.kind) {
        case U8:
          w.u8(uint(v, MAX_U8, f.label, w))
          break
        case U16:
          w.u16(uint(v, MAX_U16, f.label, w))
          break
        case U32:
          w.u32(uint(v, MAX_U32, f.label, w))
          break
        case U48:
          w.u48(uint(v, MAX_U48, f.label, w))
          break
        case NAME_C:
        case NAME:
          if (typeof v !== 'string') throw new WireError(f.label, w.off, 'expected a name')
          writeName(w, v, compress && f.kind === NAME_C)
          break
        case IPV4:
          w.need(IPV4_LEN)
          parseIPv4Into(v as string, w.buf, w.off, f.label)
          w.off += IPV4_LEN
          break
        case IPV6:
          w.need(IPV6_LEN)
          parseIPv6Into(v as string, w.buf, w.off, f.label)
          w.off += IPV6_LEN
          break
        case STRINGS: {
          if (!Array.isArray(v)) throw new WireError(f.label, w.off, 'expected an array of character-strings')
          for (const s of v) {
            const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : bytesOf(s, f.label, w)
            if (b.length > MAX_U8) throw new WireError(f.label, w.off, 'character-string longer than 255 octets')
            w.u8(b.length)
            w.bytes(b)
          }
          break
        }
        case REST:
          w.bytes(bytesOf(v, f.label, w))
          break
        case BYTES16: {
          const b = bytesOf(v, f.label, w)
          if (b.length > MAX_U16) throw new WireError(f.label, w.off, 'field longer than 65535 octets')
          w.u16(b.length)
          w.bytes(b)
          break
        }
      }
    }
  }
  const len = w.off - start
  if (len > MAX_U16) throw new WireError(`${typeName(type)}`, lenAt, 'RDATA longer than 65535 octets')
  w.buf.writeUInt16BE(len, lenAt)
}
