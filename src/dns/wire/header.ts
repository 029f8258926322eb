// DNS message header (RFC 1035 4.1.1; AD/CD bits RFC 4035 3.2; opcodes and RCODEs from the IANA
// "Domain Name System (DNS) Parameters" registry).
import { WireError } from './errors.js'

/** OPCODE values (RFC 1035 4.1.1, RFC 1996 NOTIFY, RFC 2136 UPDATE, RFC 8490 DSO). */
export const Opcode = {
  QUERY: 0,
  IQUERY: 1,
  STATUS: 2,
  NOTIFY: 4,
  UPDATE: 5,
  DSO: 6,
} as const

/**
 * RCODE values. 0-15 fit the header (RFC 1035 4.1.1, RFC 2136 2.2 for 6-10, RFC 8490 for DSOTYPENI);
 * 16 and above need EDNS (RFC 6891 6.1.3) or appear only in the TSIG error field (RFC 8945 3:
 * BADSIG 16, BADKEY 17, BADTIME 18, BADTRUNC 22). BADVERS (EDNS) and BADSIG (TSIG) share 16.
 */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
  DSOTYPENI: 11,
  BADVERS: 16,
  BADSIG: 16,
  BADKEY: 17,
  BADTIME: 18,
  BADMODE: 19,
  BADNAME: 20,
  BADALG: 21,
  BADTRUNC: 22,
  BADCOOKIE: 23,
} as const

export const HEADER_SIZE = 12
export const OFF_ID = 0
export const OFF_FLAGS = 2
export const OFF_QDCOUNT = 4
export const OFF_ANCOUNT = 6
export const OFF_NSCOUNT = 8
export const OFF_ARCOUNT = 10

const QR = 0x8000
const OPCODE_SHIFT = 11
const OPCODE_MASK = 0xf
const AA = 0x0400
const TC = 0x0200
const RD = 0x0100
const RA = 0x0080
const AD = 0x0020
const CD = 0x0010
/** The low four RCODE bits carried in the header. */
export const RCODE_MASK = 0xf

/** Header flag fields; counts are derived from the sections when encoding. */
export interface HeaderFlags {
  id: number
  qr: boolean
  opcode: number
  aa: boolean
  tc: boolean
  rd: boolean
  ra: boolean
  ad: boolean
  cd: boolean
  /** Full RCODE: the 4 header bits, plus EDNS extended bits << 4 once the OPT record is applied. */
  rcode: number
}

export interface Header extends HeaderFlags {
  qdcount: number
  ancount: number
  nscount: number
  arcount: number
}

export function decodeHeader(buf: Buffer, off = 0): Header {
  if (buf.length - off < HEADER_SIZE) throw new WireError('header', off, 'shorter than 12 octets')
  const flags = buf.readUInt16BE(off + OFF_FLAGS)
  return {
    id: buf.readUInt16BE(off + OFF_ID),
    qr: (flags & QR) !== 0,
    opcode: (flags >> OPCODE_SHIFT) & OPCODE_MASK,
    aa: (flags & AA) !== 0,
    tc: (flags & TC) !== 0,
    rd: (flags & RD) !== 0,
    ra: (flags & RA) !== 0,
    ad: (flags & AD) !== 0,
    cd: (flags & CD) !== 0,
    rcode: flags & RCODE_MASK,
    qdcount: buf.readUInt16BE(off + OFF_QDCOUNT),
    ancount: buf.readUInt16BE(off + OFF_ANCOUNT),
    nscount: buf.readUInt16BE(off + OFF_NSCOUNT),
    arcount: buf.readUInt16BE(off + OFF_ARCOUNT),
  }
}

/** The 16-bit flags word; only the low four bits of `rcode` are used. */
export function encodeFlags(h: HeaderFlags): number {
  return (
    (h.qr ? QR : 0) |
    ((h.opcode & OPCODE_MASK) << OPCODE_SHIFT) |
    (h.aa ? AA : 0) |
    (h.tc ? TC : 0) |
    (h.rd ? RD : 0) |
    (h.ra ? RA : 0) |
    (h.ad ? AD : 0) |
    (h.cd ? CD : 0) |
    (h.rcode & RCODE_MASK)
  )
}

/** Sets the TC bit of an encoded message in place. */
export function setTruncatedInPlace(buf: Buffer, off = 0): void {
  buf.writeUInt16BE(buf.readUInt16BE(off + OFF_FLAGS) | TC, off + OFF_FLAGS)
}

/** Name of an RCODE for logs and presentation ('NOERROR', 'BADSIG'...); numeric text when unknown. */
export function rcodeName(rcode: number, tsig = false): string {
  if (rcode === Rcode.BADSIG) return tsig ? 'BADSIG' : 'BADVERS'
  for (const [k, v] of Object.entries(Rcode)) if (v === rcode) return k
  return `RCODE${rcode}`
}

export function opcodeName(opcode: number): string {
  for (const [k, v] of Object.entries(Opcode)) if (v === opcode) return k
  return `OPCODE${opcode}`
}
