// IKEv2 payload bodies (RFC 7296 sections 3.3-3.13): SA with proposals, transforms and attributes,
// KE, IDi/IDr, AUTH, Nonce, Notify, Delete, TSi/TSr. Generic payload chaining lives in message.ts.
// Decoders take (buf, off, end) and throw only IkeWireError.

import { isIP } from 'node:net'
import {
  ATTRIBUTE_TV_FLAG,
  AttributeType,
  LAST_PROPOSAL,
  LAST_TRANSFORM,
  MORE_PROPOSALS,
  MORE_TRANSFORMS,
  PayloadType,
  TsType,
} from './constants.js'
import { IkeWireError } from './errors.js'

export interface Transform {
  readonly type: number
  readonly id: number
  /** Key Length attribute in bits (RFC 7296 3.3.5), when present. */
  readonly keyLength?: number
}
export interface Proposal {
  readonly num: number
  readonly protocolId: number
  readonly spi: Buffer
  readonly transforms: readonly Transform[]
}
export interface TrafficSelector {
  readonly tsType: number
  readonly ipProtocolId: number
  readonly startPort: number
  readonly endPort: number
  /** Textual addresses (IPv4 dotted or IPv6 compressed). */
  readonly startAddr: string
  readonly endAddr: string
}

export type SaPayload = { readonly type: typeof PayloadType.SA; readonly proposals: readonly Proposal[] }
export type KePayload = { readonly type: typeof PayloadType.KE; readonly group: number; readonly data: Buffer }
export type IdPayload = {
  readonly type: typeof PayloadType.IDi | typeof PayloadType.IDr
  readonly idType: number
  readonly data: Buffer
}
export type AuthPayload = { readonly type: typeof PayloadType.AUTH; readonly method: number; readonly data: Buffer }
export type NoncePayload = { readonly type: typeof PayloadType.NONCE; readonly data: Buffer }
export type NotifyPayload = {
  readonly type: typeof PayloadType.NOTIFY
  readonly protocolId: number
  readonly spi: Buffer
  readonly notifyType: number
  readonly data: Buffer
}
export type DeletePayload = {
  readonly type: typeof PayloadType.DELETE
  readonly protocolId: number
  readonly spiSize: number
  readonly spis: readonly Buffer[]
}
export type TsPayload = {
  readonly type: typeof PayloadType.TSi | typeof PayloadType.TSr
  readonly selectors: readonly TrafficSelector[]
}
/** Encrypted and Authenticated (3.14): `body` is IV || ciphertext || ICV; `innerNext` the first inner type. */
export type SkPayload = { readonly type: typeof PayloadType.SK; readonly innerNext: number; readonly body: Buffer }
/** Vendor ID, CERTREQ, CERT, CP and unknown payloads: carried, not interpreted. */
export type OpaquePayload = {
  readonly type: number
  readonly opaque: true
  readonly critical: boolean
  readonly body: Buffer
}

export type KnownPayload =
  | SaPayload
  | KePayload
  | IdPayload
  | AuthPayload
  | NoncePayload
  | NotifyPayload
  | DeletePayload
  | TsPayload
  | SkPayload
export type Payload = KnownPayload | OpaquePayload

export function isKnown(p: Payload): p is KnownPayload {
  return !('opaque' in p)
}

const PROPOSAL_HDR_LEN = 8
/** RFC 7296 3.3.1 proposal substructure offsets. */
const PROP = { LAST: 0, LENGTH: 2, NUM: 4, PROTOCOL_ID: 5, SPI_SIZE: 6, NUM_TRANSFORMS: 7 } as const
/** RFC 7296 3.3.2 transform substructure offsets. */
const TRANS = { LAST: 0, LENGTH: 2, TYPE: 4, ID: 6 } as const
/** RFC 7296 3.3.5 attribute offsets (TV: value at VALUE; TLV: length at VALUE, data after the header). */
const ATTR = { TYPE: 0, VALUE: 2 } as const
/** RFC 7296 3.10 / 3.11 Notify and Delete offsets. */
const N = { PROTOCOL_ID: 0, SPI_SIZE: 1, TYPE: 2 } as const
const D = { PROTOCOL_ID: 0, SPI_SIZE: 1, NUM_SPIS: 2 } as const
/** RFC 7296 3.13.1 traffic selector offsets. */
const TS = { TYPE: 0, IP_PROTOCOL_ID: 1, LENGTH: 2, START_PORT: 4, END_PORT: 6 } as const
const IP_VERSION_4 = 4
const IP_VERSION_6 = 6
const IPV6_GROUPS = 8
const IPV6_GROUP_LEN = 2
const HEX = 16
const TRANSFORM_HDR_LEN = 8
const ATTRIBUTE_HDR_LEN = 4
const KE_HDR_LEN = 4
const ID_HDR_LEN = 4
const AUTH_HDR_LEN = 4
const NOTIFY_HDR_LEN = 4
const DELETE_HDR_LEN = 4
const TS_PAYLOAD_HDR_LEN = 4
const TS_HDR_LEN = 8
const IPV4_LEN = 4
const IPV6_LEN = 16
const U16_MAX = 0xffff

function need(buf: Buffer, off: number, n: number, end: number, field: string): void {
  if (n < 0 || off + n > end || off + n > buf.length) throw new IkeWireError(field, off, 'truncated')
}

// ---- SA (3.3) ----

export function decodeSa(buf: Buffer, off: number, end: number): SaPayload {
  const proposals: Proposal[] = []
  let last = MORE_PROPOSALS
  while (last === MORE_PROPOSALS) {
    need(buf, off, PROPOSAL_HDR_LEN, end, 'SA.proposal')
    last = buf.readUInt8(off + PROP.LAST)
    if (last !== LAST_PROPOSAL && last !== MORE_PROPOSALS) throw new IkeWireError('SA.proposal.last', off)
    const len = buf.readUInt16BE(off + PROP.LENGTH)
    if (len < PROPOSAL_HDR_LEN) throw new IkeWireError('SA.proposal.length', off + PROP.LENGTH)
    need(buf, off, len, end, 'SA.proposal')
    const pEnd = off + len
    const num = buf.readUInt8(off + PROP.NUM)
    const protocolId = buf.readUInt8(off + PROP.PROTOCOL_ID)
    const spiSize = buf.readUInt8(off + PROP.SPI_SIZE)
    const nTransforms = buf.readUInt8(off + PROP.NUM_TRANSFORMS)
    let p = off + PROPOSAL_HDR_LEN
    need(buf, p, spiSize, pEnd, 'SA.proposal.spi')
    const spi = Buffer.from(buf.subarray(p, p + spiSize))
    p += spiSize
    const transforms: Transform[] = []
    for (let i = 0; i < nTransforms; i++) {
      need(buf, p, TRANSFORM_HDR_LEN, pEnd, 'SA.transform')
      const tLast = buf.readUInt8(p + TRANS.LAST)
      const tLen = buf.readUInt16BE(p + TRANS.LENGTH)
      if (tLen < TRANSFORM_HDR_LEN) throw new IkeWireError('SA.transform.length', p + TRANS.LENGTH)
      need(buf, p, tLen, pEnd, 'SA.transform')
      const type = buf.readUInt8(p + TRANS.TYPE)
      const id = buf.readUInt16BE(p + TRANS.ID)
      let keyLength: number | undefined
      let a = p + TRANSFORM_HDR_LEN
      const tEnd = p + tLen
      while (a < tEnd) {
        need(buf, a, ATTRIBUTE_HDR_LEN, tEnd, 'SA.transform.attribute')
        const at = buf.readUInt16BE(a + ATTR.TYPE)
        if (at & ATTRIBUTE_TV_FLAG) {
          if ((at & ~ATTRIBUTE_TV_FLAG) === AttributeType.KEY_LENGTH) keyLength = buf.readUInt16BE(a + ATTR.VALUE)
          a += ATTRIBUTE_HDR_LEN
        } else {
          const vLen = buf.readUInt16BE(a + ATTR.VALUE)
          need(buf, a + ATTRIBUTE_HDR_LEN, vLen, tEnd, 'SA.transform.attribute.value')
          a += ATTRIBUTE_HDR_LEN + vLen
        }
      }
      transforms.push(keyLength === undefined ? { type, id } : { type, id, keyLength })
      p = tEnd
      if (tLast === LAST_TRANSFORM) {
        if (i !== nTransforms - 1) throw new IkeWireError('SA.transform.last', p - tLen)
      } else if (tLast !== MORE_TRANSFORMS) throw new IkeWireError('SA.transform.last', p - tLen)
    }
    if (p !== pEnd)
      throw new IkeWireError('SA.proposal.length', off + PROP.LENGTH, 'transforms do not fill the proposal')
    proposals.push({ num, protocolId, spi, transforms })
    off = pEnd
  }
  if (off !== end) throw new IkeWireError('SA.length', off, 'trailing bytes')
  return { type: PayloadType.SA, proposals }
}

export function encodeSa(p: SaPayload): Buffer {
  const parts: Buffer[] = []
  p.proposals.forEach((prop, pi) => {
    const ts = prop.transforms.map((t, ti) => {
      const attrLen = t.keyLength === undefined ? 0 : ATTRIBUTE_HDR_LEN
      const b = Buffer.alloc(TRANSFORM_HDR_LEN + attrLen)
      b.writeUInt8(ti === prop.transforms.length - 1 ? LAST_TRANSFORM : MORE_TRANSFORMS, TRANS.LAST)
      b.writeUInt16BE(b.length, TRANS.LENGTH)
      b.writeUInt8(t.type, TRANS.TYPE)
      b.writeUInt16BE(t.id, TRANS.ID)
      if (t.keyLength !== undefined) {
        b.writeUInt16BE(ATTRIBUTE_TV_FLAG | AttributeType.KEY_LENGTH, TRANSFORM_HDR_LEN + ATTR.TYPE)
        b.writeUInt16BE(t.keyLength, TRANSFORM_HDR_LEN + ATTR.VALUE)
      }
      return b
    })
    const h = Buffer.alloc(PROPOSAL_HDR_LEN)
    const len = PROPOSAL_HDR_LEN + prop.spi.length + ts.reduce((n, b) => n + b.length, 0)
    h.writeUInt8(pi === p.proposals.length - 1 ? LAST_PROPOSAL : MORE_PROPOSALS, PROP.LAST)
    h.writeUInt16BE(len, PROP.LENGTH)
    h.writeUInt8(prop.num, PROP.NUM)
    h.writeUInt8(prop.protocolId, PROP.PROTOCOL_ID)
    h.writeUInt8(prop.spi.length, PROP.SPI_SIZE)
    h.writeUInt8(ts.length, PROP.NUM_TRANSFORMS)
    parts.push(h, prop.spi, ...ts)
  })
  return Buffer.concat(parts)
}

// ---- KE (3.4), ID (3.5), AUTH (3.8), Nonce (3.9) ----

export function decodeKe(buf: Buffer, off: number, end: number): KePayload {
  need(buf, off, KE_HDR_LEN, end, 'KE')
  return { type: PayloadType.KE, group: buf.readUInt16BE(off), data: Buffer.from(buf.subarray(off + KE_HDR_LEN, end)) }
}
export function encodeKe(p: KePayload): Buffer {
  const h = Buffer.alloc(KE_HDR_LEN)
  h.writeUInt16BE(p.group, 0)
  return Buffer.concat([h, p.data])
}

export function decodeId(
  type: typeof PayloadType.IDi | typeof PayloadType.IDr,
  buf: Buffer,
  off: number,
  end: number,
): IdPayload {
  need(buf, off, ID_HDR_LEN, end, 'ID')
  return { type, idType: buf.readUInt8(off), data: Buffer.from(buf.subarray(off + ID_HDR_LEN, end)) }
}
/** The ID payload body (IDType | RESERVED | data): also "RestOfInitIDPayload" in RFC 7296 2.15. */
export function encodeId(p: { idType: number; data: Buffer }): Buffer {
  const h = Buffer.alloc(ID_HDR_LEN)
  h.writeUInt8(p.idType, 0)
  return Buffer.concat([h, p.data])
}

export function decodeAuth(buf: Buffer, off: number, end: number): AuthPayload {
  need(buf, off, AUTH_HDR_LEN, end, 'AUTH')
  return {
    type: PayloadType.AUTH,
    method: buf.readUInt8(off),
    data: Buffer.from(buf.subarray(off + AUTH_HDR_LEN, end)),
  }
}
export function encodeAuth(p: AuthPayload): Buffer {
  const h = Buffer.alloc(AUTH_HDR_LEN)
  h.writeUInt8(p.method, 0)
  return Buffer.concat([h, p.data])
}

// ---- Notify (3.10), Delete (3.11) ----

export function decodeNotify(buf: Buffer, off: number, end: number): NotifyPayload {
  need(buf, off, NOTIFY_HDR_LEN, end, 'N')
  const spiSize = buf.readUInt8(off + N.SPI_SIZE)
  need(buf, off + NOTIFY_HDR_LEN, spiSize, end, 'N.spi')
  const s = off + NOTIFY_HDR_LEN
  return {
    type: PayloadType.NOTIFY,
    protocolId: buf.readUInt8(off + N.PROTOCOL_ID),
    notifyType: buf.readUInt16BE(off + N.TYPE),
    spi: Buffer.from(buf.subarray(s, s + spiSize)),
    data: Buffer.from(buf.subarray(s + spiSize, end)),
  }
}
export function encodeNotify(p: NotifyPayload): Buffer {
  const h = Buffer.alloc(NOTIFY_HDR_LEN)
  h.writeUInt8(p.protocolId, N.PROTOCOL_ID)
  h.writeUInt8(p.spi.length, N.SPI_SIZE)
  h.writeUInt16BE(p.notifyType, N.TYPE)
  return Buffer.concat([h, p.spi, p.data])
}

export function decodeDelete(buf: Buffer, off: number, end: number): DeletePayload {
  need(buf, off, DELETE_HDR_LEN, end, 'D')
  const protocolId = buf.readUInt8(off + D.PROTOCOL_ID)
  const spiSize = buf.readUInt8(off + D.SPI_SIZE)
  const n = buf.readUInt16BE(off + D.NUM_SPIS)
  // Zero-size SPIs (IKE SA deletes, 3.11) take no octets, so without this check a 4-octet body could claim
  // 65535 of them: the count would size the work, not the octets (found by fuzzing: 4 KiB of such payloads,
  // unauthenticated, ran the heap out).
  if (spiSize === 0 && n !== 0) throw new IkeWireError('D.numSpis', off + D.NUM_SPIS, 'SPIs of size 0')
  const spis: Buffer[] = []
  let p = off + DELETE_HDR_LEN
  for (let i = 0; i < n; i++) {
    need(buf, p, spiSize, end, 'D.spi')
    spis.push(Buffer.from(buf.subarray(p, p + spiSize)))
    p += spiSize
  }
  if (p !== end) throw new IkeWireError('D.length', p, 'trailing bytes')
  return { type: PayloadType.DELETE, protocolId, spiSize, spis }
}
export function encodeDelete(p: DeletePayload): Buffer {
  const h = Buffer.alloc(DELETE_HDR_LEN)
  h.writeUInt8(p.protocolId, D.PROTOCOL_ID)
  h.writeUInt8(p.spiSize, D.SPI_SIZE)
  h.writeUInt16BE(p.spis.length, D.NUM_SPIS)
  return Buffer.concat([h, ...p.spis])
}

// ---- Traffic selectors (3.13) ----

function addrLen(tsType: number): number {
  return tsType === TsType.TS_IPV4_ADDR_RANGE ? IPV4_LEN : IPV6_LEN
}

export function ipToBytes(addr: string): Buffer {
  const v = isIP(addr)
  if (v === IP_VERSION_4) return Buffer.from(addr.split('.').map((x) => Number(x)))
  if (v !== IP_VERSION_6) throw new RangeError(`not an IP address: ${addr}`)
  let s = addr.split('%')[0]!
  const lastColon = s.lastIndexOf(':')
  const tail = s.slice(lastColon + 1)
  if (tail.includes('.')) {
    const b4 = ipToBytes(tail)
    s = `${s.slice(0, lastColon + 1)}${b4.readUInt16BE(0).toString(HEX)}:${b4.readUInt16BE(IPV6_GROUP_LEN).toString(HEX)}`
  }
  const [h, t] = s.split('::') as [string, string | undefined]
  const hp = h ? h.split(':') : []
  const tp = t ? t.split(':') : []
  const groups =
    t === undefined ? hp : [...hp, ...new Array<string>(IPV6_GROUPS - hp.length - tp.length).fill('0'), ...tp]
  const b = Buffer.alloc(IPV6_LEN)
  groups.forEach((g, i) => {
    b.writeUInt16BE(Number.parseInt(g, HEX), i * IPV6_GROUP_LEN)
  })
  return b
}

export function bytesToIp(b: Buffer): string {
  if (b.length === IPV4_LEN) return [...b].join('.')
  const g: number[] = []
  for (let i = 0; i < IPV6_LEN; i += IPV6_GROUP_LEN) g.push(b.readUInt16BE(i))
  // RFC 5952: compress the longest run of two or more zero groups, first one on ties.
  let best = -1
  let bestLen = 1
  for (let i = 0; i < g.length; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < g.length && g[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  const hex = g.map((x) => x.toString(HEX))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

export function decodeTs(
  type: typeof PayloadType.TSi | typeof PayloadType.TSr,
  buf: Buffer,
  off: number,
  end: number,
): TsPayload {
  need(buf, off, TS_PAYLOAD_HDR_LEN, end, 'TS')
  const n = buf.readUInt8(off)
  const selectors: TrafficSelector[] = []
  let p = off + TS_PAYLOAD_HDR_LEN
  for (let i = 0; i < n; i++) {
    need(buf, p, TS_HDR_LEN, end, 'TS.selector')
    const tsType = buf.readUInt8(p + TS.TYPE)
    const len = buf.readUInt16BE(p + TS.LENGTH)
    if (tsType !== TsType.TS_IPV4_ADDR_RANGE && tsType !== TsType.TS_IPV6_ADDR_RANGE)
      throw new IkeWireError('TS.selector.type', p)
    const al = addrLen(tsType)
    if (len !== TS_HDR_LEN + 2 * al) throw new IkeWireError('TS.selector.length', p + TS.LENGTH)
    need(buf, p, len, end, 'TS.selector')
    const a = p + TS_HDR_LEN
    selectors.push({
      tsType,
      ipProtocolId: buf.readUInt8(p + TS.IP_PROTOCOL_ID),
      startPort: buf.readUInt16BE(p + TS.START_PORT),
      endPort: buf.readUInt16BE(p + TS.END_PORT),
      startAddr: bytesToIp(buf.subarray(a, a + al)),
      endAddr: bytesToIp(buf.subarray(a + al, a + 2 * al)),
    })
    p += len
  }
  if (p !== end) throw new IkeWireError('TS.length', p, 'trailing bytes')
  return { type, selectors }
}
export function encodeTs(p: TsPayload): Buffer {
  const h = Buffer.alloc(TS_PAYLOAD_HDR_LEN)
  h.writeUInt8(p.selectors.length, 0)
  const parts = [h]
  for (const s of p.selectors) {
    const al = addrLen(s.tsType)
    const b = Buffer.alloc(TS_HDR_LEN + 2 * al)
    b.writeUInt8(s.tsType, TS.TYPE)
    b.writeUInt8(s.ipProtocolId, TS.IP_PROTOCOL_ID)
    b.writeUInt16BE(b.length, TS.LENGTH)
    b.writeUInt16BE(s.startPort, TS.START_PORT)
    b.writeUInt16BE(s.endPort, TS.END_PORT)
    ipToBytes(s.startAddr).copy(b, TS_HDR_LEN)
    ipToBytes(s.endAddr).copy(b, TS_HDR_LEN + al)
    parts.push(b)
  }
  return Buffer.concat(parts)
}

/** A selector for exactly one address, any protocol and port (our ULA/128 <-> ULA/128 tunnels). */
export function tsForHost(addr: string): TrafficSelector {
  const v6 = isIP(addr) === IP_VERSION_6
  return {
    tsType: v6 ? TsType.TS_IPV6_ADDR_RANGE : TsType.TS_IPV4_ADDR_RANGE,
    ipProtocolId: 0,
    startPort: 0,
    endPort: U16_MAX,
    startAddr: addr,
    endAddr: addr,
  }
}

/** True when `sel` covers every address and port of the single-host selector `host`. */
export function tsCovers(sel: TrafficSelector, host: TrafficSelector): boolean {
  if (sel.tsType !== host.tsType) return false
  if (sel.ipProtocolId !== 0 && sel.ipProtocolId !== host.ipProtocolId) return false
  if (sel.startPort > host.startPort || sel.endPort < host.endPort) return false
  const s = ipToBytes(sel.startAddr)
  const e = ipToBytes(sel.endAddr)
  const a = ipToBytes(host.startAddr)
  const b = ipToBytes(host.endAddr)
  return Buffer.compare(s, a) <= 0 && Buffer.compare(b, e) <= 0
}

/** True when one of the offered selectors (a TSi or TSr payload) covers all traffic of the single address `host`. */
export function tsOfferCoversHost(offered: readonly TrafficSelector[] | undefined, host: string): boolean {
  return !!offered && offered.some((s) => tsCovers(s, tsForHost(host)))
}
