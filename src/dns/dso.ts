// DNS Stateful Operations (RFC 8490 §5.4): a 12-octet DNS header with OPCODE DSO and all four counts zero,
// then TLVs (DSO-TYPE u16, DSO-LENGTH u16, DSO-DATA). The first TLV of a request or unidirectional message is
// the primary TLV; a response may omit it. Also the TLV bodies of Keepalive and Retry Delay (RFC 8490 §7),
// and of DNS Push (RFC 8765 §6): SUBSCRIBE, PUSH, UNSUBSCRIBE, RECONFIRM. Names inside TLVs are uncompressed.
// Written by the notify engineer because DSO was not yet present; the wire engineer may absorb it.
import { reader } from './wire/buffer.js'
import { WireError } from './wire/errors.js'
import { decodeHeader, encodeFlags, HEADER_SIZE, OFF_FLAGS, OFF_ID, Opcode } from './wire/header.js'
import { nameToWire, readName } from './wire/name.js'

/** DSO-TYPE registry (RFC 8490 §10.3; RFC 8765 §10.2). */
export const DsoType = {
  KEEPALIVE: 0x0001,
  RETRY_DELAY: 0x0002,
  ENCRYPTION_PADDING: 0x0003,
  SUBSCRIBE: 0x0040,
  PUSH: 0x0041,
  UNSUBSCRIBE: 0x0042,
  RECONFIRM: 0x0043,
} as const

const TLV_HEADER = 4
const KEEPALIVE_LEN = 8
const RETRY_DELAY_LEN = 4
const UNSUBSCRIBE_LEN = 2
const TYPE_CLASS_LEN = 4
const RR_FIXED = 10

export interface DsoTlv {
  readonly type: number
  readonly data: Buffer
}

export interface DsoMessage {
  /** 0 for a unidirectional message (RFC 8490 §5.4). */
  readonly id: number
  readonly qr: boolean
  readonly rcode: number
  readonly tlvs: readonly DsoTlv[]
}

export function isDso(buf: Buffer): boolean {
  return buf.length >= HEADER_SIZE && ((buf.readUInt16BE(OFF_FLAGS) >> 11) & 0xf) === Opcode.DSO
}

export function encodeDso(m: DsoMessage): Buffer {
  let len = HEADER_SIZE
  for (const t of m.tlvs) len += TLV_HEADER + t.data.length
  const out = Buffer.alloc(len)
  out.writeUInt16BE(m.id, OFF_ID)
  const flags = encodeFlags({
    id: m.id,
    qr: m.qr,
    opcode: Opcode.DSO,
    aa: false,
    tc: false,
    rd: false,
    ra: false,
    ad: false,
    cd: false,
    rcode: m.rcode & 0xf,
  })
  out.writeUInt16BE(flags, OFF_FLAGS)
  let off = HEADER_SIZE
  for (const t of m.tlvs) {
    out.writeUInt16BE(t.type, off)
    out.writeUInt16BE(t.data.length, off + 2)
    t.data.copy(out, off + TLV_HEADER)
    off += TLV_HEADER + t.data.length
  }
  return out
}

/** Throws WireError unless `buf` is one well-formed DSO message. */
export function decodeDso(buf: Buffer): DsoMessage {
  const h = decodeHeader(buf)
  if (h.opcode !== Opcode.DSO) throw new WireError('DSO', 2, 'not a DSO message')
  if (h.qdcount || h.ancount || h.nscount || h.arcount) throw new WireError('DSO', 4, 'DSO message with RR counts')
  const tlvs: DsoTlv[] = []
  let off = HEADER_SIZE
  while (off < buf.length) {
    if (off + TLV_HEADER > buf.length) throw new WireError('DSO.tlv', off, 'truncated TLV header')
    const type = buf.readUInt16BE(off)
    const n = buf.readUInt16BE(off + 2)
    if (off + TLV_HEADER + n > buf.length) throw new WireError('DSO.tlv', off, 'TLV runs past the message')
    tlvs.push({ type, data: buf.subarray(off + TLV_HEADER, off + TLV_HEADER + n) })
    off += TLV_HEADER + n
  }
  return { id: h.id, qr: h.qr, rcode: h.rcode, tlvs }
}

/** Keepalive TLV (RFC 8490 §7.1): inactivity timeout and keepalive interval, both in ms. */
export function keepaliveTlv(inactivityMs: number, keepaliveMs: number): DsoTlv {
  const data = Buffer.alloc(KEEPALIVE_LEN)
  data.writeUInt32BE(Math.min(inactivityMs, 0xffffffff), 0)
  data.writeUInt32BE(Math.min(keepaliveMs, 0xffffffff), 4)
  return { type: DsoType.KEEPALIVE, data }
}

export function decodeKeepaliveTlv(data: Buffer): { inactivityMs: number; keepaliveMs: number } {
  if (data.length !== KEEPALIVE_LEN) throw new WireError('DSO.keepalive', 0, 'Keepalive TLV must be 8 octets')
  return { inactivityMs: data.readUInt32BE(0), keepaliveMs: data.readUInt32BE(4) }
}

/** Retry Delay TLV (RFC 8490 §7.2), ms. */
export function retryDelayTlv(ms: number): DsoTlv {
  const data = Buffer.alloc(RETRY_DELAY_LEN)
  data.writeUInt32BE(ms, 0)
  return { type: DsoType.RETRY_DELAY, data }
}

export function decodeRetryDelayTlv(data: Buffer): number {
  if (data.length !== RETRY_DELAY_LEN) throw new WireError('DSO.retry-delay', 0, 'Retry Delay TLV must be 4 octets')
  return data.readUInt32BE(0)
}

export interface PushQuestion {
  readonly name: string
  readonly type: number
  readonly class: number
}

/** SUBSCRIBE TLV (RFC 8765 §6.2): NAME, TYPE, CLASS. */
export function subscribeTlv(q: PushQuestion): DsoTlv {
  const n = nameToWire(q.name)
  const data = Buffer.alloc(n.length + TYPE_CLASS_LEN)
  n.copy(data, 0)
  data.writeUInt16BE(q.type, n.length)
  data.writeUInt16BE(q.class, n.length + 2)
  return { type: DsoType.SUBSCRIBE, data }
}

function readQuestionAt(data: Buffer, field: string): { q: PushQuestion; off: number } {
  const r = reader(data)
  const name = readName(r, data.length)
  if (r.off + TYPE_CLASS_LEN > data.length) throw new WireError(field, r.off, 'truncated TYPE/CLASS')
  return { q: { name, type: data.readUInt16BE(r.off), class: data.readUInt16BE(r.off + 2) }, off: r.off + 4 }
}

export function decodeSubscribeTlv(data: Buffer): PushQuestion {
  const { q, off } = readQuestionAt(data, 'DSO.subscribe')
  if (off !== data.length) throw new WireError('DSO.subscribe', off, 'trailing octets')
  return q
}

/** UNSUBSCRIBE TLV (RFC 8765 §6.4): the message ID of the SUBSCRIBE it ends. */
export function unsubscribeTlv(subscribeId: number): DsoTlv {
  const data = Buffer.alloc(UNSUBSCRIBE_LEN)
  data.writeUInt16BE(subscribeId, 0)
  return { type: DsoType.UNSUBSCRIBE, data }
}

export function decodeUnsubscribeTlv(data: Buffer): number {
  if (data.length !== UNSUBSCRIBE_LEN) throw new WireError('DSO.unsubscribe', 0, 'UNSUBSCRIBE TLV must be 2 octets')
  return data.readUInt16BE(0)
}

/** RECONFIRM TLV (RFC 8765 §6.5): NAME, TYPE, CLASS, RDATA (the rest of the TLV). */
export function reconfirmTlv(q: PushQuestion, rdata: Buffer): DsoTlv {
  const s = subscribeTlv(q)
  return { type: DsoType.RECONFIRM, data: Buffer.concat([s.data, rdata]) }
}

export function decodeReconfirmTlv(data: Buffer): { q: PushQuestion; rdata: Buffer } {
  const { q, off } = readQuestionAt(data, 'DSO.reconfirm')
  return { q, rdata: data.subarray(off) }
}

/** One change notification in a PUSH TLV (RFC 8765 §6.3.1): an RR with raw (uncompressed) RDATA. */
export interface PushRR {
  readonly name: string
  readonly type: number
  readonly class: number
  /** < 0x80000000: add; 0xFFFFFFFF: remove this RR; 0xFFFFFFFE (CLASS ANY, no RDATA): remove an RRset or all. */
  readonly ttl: number
  readonly rdata: Buffer
}

export function pushTlv(rrs: readonly PushRR[]): DsoTlv {
  const parts: Buffer[] = []
  for (const rr of rrs) {
    const n = nameToWire(rr.name)
    const fixed = Buffer.alloc(RR_FIXED)
    fixed.writeUInt16BE(rr.type, 0)
    fixed.writeUInt16BE(rr.class, 2)
    fixed.writeUInt32BE(rr.ttl >>> 0, 4)
    fixed.writeUInt16BE(rr.rdata.length, 8)
    parts.push(n, fixed, rr.rdata)
  }
  return { type: DsoType.PUSH, data: Buffer.concat(parts) }
}

export function decodePushTlv(data: Buffer): PushRR[] {
  const out: PushRR[] = []
  const r = reader(data)
  while (r.off < data.length) {
    const name = readName(r, data.length)
    const o = r.off
    if (o + RR_FIXED > data.length) throw new WireError('DSO.push', o, 'truncated RR')
    const len = data.readUInt16BE(o + 8)
    if (o + RR_FIXED + len > data.length) throw new WireError('DSO.push', o, 'RDATA runs past the TLV')
    out.push({
      name,
      type: data.readUInt16BE(o),
      class: data.readUInt16BE(o + 2),
      ttl: data.readUInt32BE(o + 4),
      rdata: data.subarray(o + RR_FIXED, o + RR_FIXED + len),
    })
    r.off = o + RR_FIXED + len
  }
  return out
}
