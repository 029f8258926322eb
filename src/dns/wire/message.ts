// DNS messages (RFC 1035 4.1): header, question, answer, authority, additional. In UPDATE messages
// (RFC 2136 2) the same sections are zone, prerequisite, update and additional; class ANY/NONE and
// empty RDATA (RDLENGTH 0, decoded as `data: null`) are carried as is. EDNS(0) (RFC 6891) and TSIG
// (RFC 8945) records are lifted out of the additional section.
//
// Model, in short:
// - Names are presentation strings with a trailing dot ('alice.members.example.', root '.'), see name.ts.
// - `Message.rcode` is the full 12-bit RCODE: the header's 4 bits plus the OPT extended RCODE << 4.
//   Encoding an rcode above 15 needs `edns`.
// - `edns` is the OPT pseudo-RR (RFC 6891 6.1); on decode a second OPT, an OPT outside the additional
//   section or with a non-root owner is a FORMERR. Encode writes it after `additionals`.
// - `tsig` is the TSIG RR when it is the last additional record (RFC 8945 5.1); a TSIG anywhere else is a
//   FORMERR. Encode writes it last. Signing and verifying live in ../tsig.ts; `tsigOffset` (decode only) is
//   where the TSIG RR starts in the input, which the verifier needs.
// - decodeMessage throws only WireError; tryDecode returns a result with the id/opcode needed to answer
//   FORMERR. Buffers in decoded RDATA and EDNS options alias the input buffer.
// - encodeMessage compresses names by default. With maxSize, records that do not fit are dropped and TC is
//   set if an answer or authority record was dropped (RFC 2181 9); EDNS and TSIG space is kept.
import { type Reader, reader, Writer } from './buffer.js'
import { WireError, WireOverflow } from './errors.js'
import {
  decodeHeader,
  encodeFlags,
  HEADER_SIZE,
  type HeaderFlags,
  OFF_ANCOUNT,
  OFF_ARCOUNT,
  OFF_FLAGS,
  OFF_ID,
  OFF_NSCOUNT,
  OFF_QDCOUNT,
  Opcode,
  RCODE_MASK,
} from './header.js'
import { readName, writeName } from './name.js'
import { type RR, RRType, readRData, type TSIGData, writeRData } from './rr-table.js'

export interface Question {
  name: string
  type: number
  class: number
}

/** One EDNS option (RFC 6891 6.1.2): option code and its raw data. Codecs for known codes: ../edns.ts. */
export interface EdnsOption {
  code: number
  data: Buffer
}

/** The OPT pseudo-RR (RFC 6891 6.1.3). The extended RCODE bits live in `Message.rcode`. */
export interface Edns {
  /** Requestor's UDP payload size (the OPT CLASS field). */
  udpSize: number
  version: number
  /** DNSSEC OK bit (RFC 3225). */
  do: boolean
  options: EdnsOption[]
}

export interface Message extends HeaderFlags {
  /** Question section; in UPDATE the zone section (exactly one entry, type SOA). */
  questions: Question[]
  /** Answer section; in UPDATE the prerequisite section. */
  answers: RR[]
  /** Authority section; in UPDATE the update section. */
  authorities: RR[]
  /** Additional section without OPT and TSIG. */
  additionals: RR[]
  edns?: Edns
  tsig?: RR<TSIGData>
  /** Decode only: offset in the input where the TSIG RR starts. */
  tsigOffset?: number
}

export interface EncodeOptions {
  /** Size limit in octets (for UDP: the requestor's payload size). Default 65535. */
  maxSize?: number
  /** Compress names (RFC 1035 4.1.4). Default true. */
  compress?: boolean
}

export const MAX_MESSAGE_SIZE = 0xffff
/** Fixed part of an RR after its owner name: TYPE, CLASS, TTL, RDLENGTH (RFC 1035 4.1.3). */
const RR_FIXED = 10
const RR_OFF_TYPE = 0
const RR_OFF_CLASS = 2
const RR_OFF_TTL = 4
const RR_OFF_RDLENGTH = 8
/** QTYPE and QCLASS after the question name (RFC 1035 4.1.2). */
const QUESTION_FIXED = 4
const U16_LEN = 2
const EDNS_VERSION_MASK = 0xff
/** TSIG RDATA fixed fields: time signed (6), fudge, MAC size, original ID, error, other len (2 each). */
const TSIG_FIXED = 16
const EDNS_VERSION_SHIFT = 16
const EDNS_EXT_RCODE_SHIFT = 24
const EDNS_DO = 0x8000
const EXT_RCODE_SHIFT = 4
const MAX_EXT_RCODE = 0xfff
const OPT_OPTION_HEADER = 4
/** Index of the additional section in the encoder's [answer, authority, additional] list. */
const SECTION_ADDITIONAL = 2

/** A message with every field at its zero value; the caller fills in what it needs. */
export function emptyMessage(fields: Partial<Message> = {}): Message {
  return {
    id: 0,
    qr: false,
    opcode: Opcode.QUERY,
    aa: false,
    tc: false,
    rd: false,
    ra: false,
    ad: false,
    cd: false,
    rcode: 0,
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
    ...fields,
  }
}

function readQuestion(r: Reader): Question {
  const name = readName(r, r.end)
  const o = r.off
  if (o + QUESTION_FIXED > r.end) throw new WireError('question', o, 'truncated question')
  r.off = o + QUESTION_FIXED
  return { name, type: r.buf.readUInt16BE(o), class: r.buf.readUInt16BE(o + U16_LEN) }
}

function readRR(r: Reader): RR {
  const name = readName(r, r.end)
  const o = r.off
  if (o + RR_FIXED > r.end) throw new WireError('rr', o, 'truncated RR header')
  const buf = r.buf
  const type = buf.readUInt16BE(o + RR_OFF_TYPE)
  const cls = buf.readUInt16BE(o + RR_OFF_CLASS)
  const ttl = buf.readUInt32BE(o + RR_OFF_TTL)
  const rdlen = buf.readUInt16BE(o + RR_OFF_RDLENGTH)
  const end = o + RR_FIXED + rdlen
  if (end > r.end) throw new WireError('rdata', o + RR_OFF_RDLENGTH, 'RDATA runs past the message')
  r.off = o + RR_FIXED
  if (type === RRType.OPT) {
    const raw = buf.subarray(r.off, end)
    r.off = end
    return { name, type, class: cls, ttl, data: { raw } }
  }
  const data = readRData(r, type, end)
  return { name, type, class: cls, ttl, data }
}

function readOptions(buf: Buffer, off: number, end: number): EdnsOption[] {
  const options: EdnsOption[] = []
  while (off < end) {
    if (off + OPT_OPTION_HEADER > end) throw new WireError('OPT.option', off, 'truncated option header')
    const code = buf.readUInt16BE(off)
    const len = buf.readUInt16BE(off + U16_LEN)
    const s = off + OPT_OPTION_HEADER
    if (s + len > end) throw new WireError('OPT.option', off, 'option runs past RDATA')
    options.push({ code, data: buf.subarray(s, s + len) })
    off = s + len
  }
  return options
}

/** Decodes one whole message occupying buf[off..]; throws WireError on any malformation. */
export function decodeMessage(buf: Buffer, off = 0): Message {
  const h = decodeHeader(buf, off)
  const r = reader(buf, off)
  r.off = off + HEADER_SIZE
  const msg: Message = {
    id: h.id,
    qr: h.qr,
    opcode: h.opcode,
    aa: h.aa,
    tc: h.tc,
    rd: h.rd,
    ra: h.ra,
    ad: h.ad,
    cd: h.cd,
    rcode: h.rcode,
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
  }
  for (let i = 0; i < h.qdcount; i++) msg.questions.push(readQuestion(r))
  for (let i = 0; i < h.ancount; i++) msg.answers.push(sectionRR(r, 'answer'))
  for (let i = 0; i < h.nscount; i++) msg.authorities.push(sectionRR(r, 'authority'))
  for (let i = 0; i < h.arcount; i++) {
    const start = r.off
    const rr = readRR(r)
    if (rr.type === RRType.OPT) {
      if (msg.edns !== undefined) throw new WireError('OPT', start, 'more than one OPT record')
      if (rr.name !== '.') throw new WireError('OPT', start, 'OPT owner is not the root')
      const raw = (rr.data as { raw: Buffer }).raw
      const rawOff = raw.byteOffset - buf.byteOffset
      msg.edns = {
        udpSize: rr.class,
        version: (rr.ttl >>> EDNS_VERSION_SHIFT) & EDNS_VERSION_MASK,
        do: (rr.ttl & EDNS_DO) !== 0,
        options: readOptions(buf, rawOff, rawOff + raw.length),
      }
      msg.rcode |= (rr.ttl >>> EDNS_EXT_RCODE_SHIFT) << EXT_RCODE_SHIFT
    } else if (rr.type === RRType.TSIG) {
      if (i !== h.arcount - 1) throw new WireError('TSIG', start, 'TSIG is not the last record')
      if (rr.data === null) throw new WireError('TSIG', start, 'empty TSIG RDATA')
      msg.tsig = rr as RR<TSIGData>
      msg.tsigOffset = start
    } else msg.additionals.push(rr)
  }
  if (r.off !== buf.length) throw new WireError('message', r.off, 'trailing octets after the last record')
  return msg
}

function sectionRR(r: Reader, section: string): RR {
  const start = r.off
  const rr = readRR(r)
  if (rr.type === RRType.OPT || rr.type === RRType.TSIG)
    throw new WireError(rr.type === RRType.OPT ? 'OPT' : 'TSIG', start, `meta-RR in the ${section} section`)
  return rr
}

export type DecodeResult =
  | { ok: true; msg: Message }
  | {
      ok: false
      error: WireError
      /** Present when the header was readable, so a FORMERR reply can echo them. */
      id?: number
      opcode?: number
      rd?: boolean
    }

/** Like decodeMessage, but returns the error (with what the header gave) instead of throwing. */
export function tryDecode(buf: Buffer): DecodeResult {
  try {
    return { ok: true, msg: decodeMessage(buf) }
  } catch (e) {
    const error = e instanceof WireError ? e : new WireError('message', 0, String(e), { cause: e })
    if (buf.length < HEADER_SIZE) return { ok: false, error }
    const h = decodeHeader(buf)
    return { ok: false, error, id: h.id, opcode: h.opcode, rd: h.rd }
  }
}

/** Module-wide scratch buffer: encoding is synchronous, so one buffer serves every call. */
const SCRATCH = Buffer.allocUnsafe(MAX_MESSAGE_SIZE)

/** Encodes `msg` into a new Buffer of exactly its length. */
export function encodeMessage(msg: Message, opts: EncodeOptions = {}): Buffer {
  const n = encodeMessageInto(msg, SCRATCH, 0, opts)
  const out = Buffer.allocUnsafe(n)
  SCRATCH.copy(out, 0, 0, n)
  return out
}

/** Encodes `msg` into out[off..]; returns its length. Throws WireError when it does not fit. */
export function encodeMessageInto(msg: Message, out: Buffer, off = 0, opts: EncodeOptions = {}): number {
  const maxSize = Math.min(opts.maxSize ?? MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE, out.length - off)
  const w = new Writer(out, off, off + maxSize, opts.compress ?? true)
  if (msg.rcode > RCODE_MASK && msg.edns === undefined && msg.rcode <= MAX_EXT_RCODE)
    throw new WireError('rcode', off, `RCODE ${msg.rcode} needs EDNS`)
  if (msg.rcode > MAX_EXT_RCODE || msg.rcode < 0) throw new WireError('rcode', off, `bad RCODE ${msg.rcode}`)
  w.need(HEADER_SIZE)
  out.writeUInt16BE(msg.id, off + OFF_ID)
  out.writeUInt16BE(encodeFlags(msg), off + OFF_FLAGS)
  w.off = off + HEADER_SIZE
  for (const q of msg.questions) {
    writeName(w, q.name, true)
    w.u16(q.type)
    w.u16(q.class)
  }
  const reserve = metaSize(msg)
  const limit = w.limit
  w.limit = limit - reserve
  let dropped = false
  let droppedRequired = false
  const counts = [0, 0, 0]
  const sections = [msg.answers, msg.authorities, msg.additionals]
  for (let s = 0; s < sections.length && !dropped; s++) {
    for (const rr of sections[s]!) {
      const mark = w.off
      try {
        writeName(w, rr.name, true)
        w.u16(rr.type)
        w.u16(rr.class)
        w.u32(rr.ttl)
        writeRData(w, rr.type, rr.data, true)
      } catch (e) {
        if (!(e instanceof WireOverflow) || opts.maxSize === undefined) throw e
        w.off = mark
        w.forgetFrom(mark)
        dropped = true
        droppedRequired = s < SECTION_ADDITIONAL
        break
      }
      counts[s]!++
    }
  }
  w.limit = limit
  let arcount = counts[SECTION_ADDITIONAL]!
  if (msg.edns !== undefined) {
    writeOpt(w, msg)
    arcount++
  }
  if (msg.tsig !== undefined) {
    const t = msg.tsig
    writeName(w, t.name, false)
    w.u16(RRType.TSIG)
    w.u16(t.class)
    w.u32(t.ttl)
    writeRData(w, RRType.TSIG, t.data, false)
    arcount++
  }
  if (msg.questions.length > MAX_MESSAGE_SIZE) throw new WireError('header', off, 'too many questions')
  out.writeUInt16BE(msg.questions.length, off + OFF_QDCOUNT)
  out.writeUInt16BE(counts[0]!, off + OFF_ANCOUNT)
  out.writeUInt16BE(counts[1]!, off + OFF_NSCOUNT)
  out.writeUInt16BE(arcount, off + OFF_ARCOUNT)
  if (droppedRequired) out.writeUInt16BE(encodeFlags({ ...msg, tc: true }), off + OFF_FLAGS)
  return w.off - off
}

/** Octets the OPT and TSIG records need (an upper bound for TSIG: its names are never compressed). */
function metaSize(msg: Message): number {
  let n = 0
  if (msg.edns !== undefined) {
    n += 1 + RR_FIXED
    for (const o of msg.edns.options) n += OPT_OPTION_HEADER + o.data.length
  }
  if (msg.tsig !== undefined) {
    const t = msg.tsig.data
    n +=
      Buffer.byteLength(msg.tsig.name) +
      U16_LEN +
      RR_FIXED +
      Buffer.byteLength(t.algorithm) +
      U16_LEN +
      TSIG_FIXED +
      t.mac.length +
      t.otherData.length
  }
  return n
}

function writeOpt(w: Writer, msg: Message): void {
  const e = msg.edns!
  w.u8(0)
  w.u16(RRType.OPT)
  w.u16(e.udpSize)
  const ext = msg.rcode >>> EXT_RCODE_SHIFT
  w.u32(
    ((ext << EDNS_EXT_RCODE_SHIFT) | ((e.version & EDNS_VERSION_MASK) << EDNS_VERSION_SHIFT) | (e.do ? EDNS_DO : 0)) >>>
      0,
  )
  const lenAt = w.off
  w.u16(0)
  for (const o of e.options) {
    w.u16(o.code)
    w.u16(o.data.length)
    w.bytes(o.data)
  }
  w.buf.writeUInt16BE(w.off - lenAt - U16_LEN, lenAt)
}
