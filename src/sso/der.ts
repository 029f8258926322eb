// A minimal DER (ITU-T X.690) reader and writer for the few structures SSO builds or checks by hand: RFC 4556
// 3.2.2's KRB5PrincipalName inside an otherName SAN, and the SAN extension of a CSR. Only definite, minimal
// lengths and single-octet tags are accepted (DER); anything else is a DerError naming the field.

export class DerError extends Error {
  override readonly name = 'DerError'
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`)
  }
}

export const DerTag = {
  INTEGER: 0x02,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  /** Kerberos strings (RFC 4120 5.2.1: KerberosString ::= GeneralString (IA5String)). */
  GENERAL_STRING: 0x1b,
  SEQUENCE: 0x30,
} as const

/** Context-specific constructed tag [n] (EXPLICIT tags, and IMPLICIT SEQUENCEs such as otherName [0]). */
export const ctx = (n: number): number => 0xa0 | n
/** Context-specific primitive tag [n] (GeneralName dNSName [2] and the like). */
export const ctxPrim = (n: number): number => 0x80 | n

const LONG_FORM = 0x80
const MAX_LEN_OCTETS = 3
const HIGH_TAG = 0x1f
const BYTE = 8

export function encodeLength(n: number): Buffer {
  if (n < LONG_FORM) return Buffer.from([n])
  const octets: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) octets.unshift(v % 256)
  return Buffer.from([LONG_FORM | octets.length, ...octets])
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body])
}

/** DER of an OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => Number.parseInt(s, 10))
  const [a, b, ...rest] = arcs
  if (a === undefined || b === undefined || arcs.some((x) => !Number.isSafeInteger(x) || x < 0))
    throw new DerError('oid', `bad OID ${dotted}`)
  const out = [a * 40 + b]
  for (const arc of rest) {
    const bytes = [arc & 0x7f]
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) bytes.unshift((v & 0x7f) | 0x80)
    out.push(...bytes)
  }
  return tlv(DerTag.OID, Buffer.from(out))
}

/** The dotted form of an OBJECT IDENTIFIER's content octets. */
export function oidText(content: Buffer): string {
  if (content.length === 0) throw new DerError('oid', 'empty')
  const first = content[0] ?? 0
  const arcs = [Math.min(2, Math.floor(first / 40)), first - Math.min(2, Math.floor(first / 40)) * 40]
  let v = 0
  for (let i = 1; i < content.length; i++) {
    const c = content[i] ?? 0
    v = v * 128 + (c & 0x7f)
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DerError('oid', 'arc too large')
    if ((c & 0x80) === 0) {
      arcs.push(v)
      v = 0
    } else if (i === content.length - 1) throw new DerError('oid', 'truncated arc')
  }
  return arcs.join('.')
}

export interface Tlv {
  readonly tag: number
  /** The content octets. */
  readonly value: Buffer
  /** Offset just past this element. */
  readonly next: number
}

/** Reads one element at `off` of `buf` (within `end`, default buf.length). */
export function readTlv(buf: Buffer, off: number, field: string, end = buf.length): Tlv {
  if (off + 2 > end) throw new DerError(field, 'truncated header')
  const tag = buf[off] ?? 0
  if ((tag & HIGH_TAG) === HIGH_TAG) throw new DerError(field, 'multi-octet tags are not used here')
  let len = buf[off + 1] ?? 0
  let p = off + 2
  if (len & LONG_FORM) {
    const n = len & ~LONG_FORM
    if (n === 0 || n > MAX_LEN_OCTETS) throw new DerError(field, 'indefinite or oversized length')
    if (p + n > end) throw new DerError(field, 'truncated length')
    len = 0
    for (let i = 0; i < n; i++) len = (len << BYTE) | (buf[p + i] ?? 0)
    if (len < LONG_FORM || (n > 1 && (buf[p] ?? 0) === 0)) throw new DerError(field, 'non-minimal length')
    p += n
  }
  if (p + len > end) throw new DerError(field, `length ${len} runs past the end`)
  return { tag, value: buf.subarray(p, p + len), next: p + len }
}

/** Reads one element with the expected tag. */
export function expectTlv(buf: Buffer, off: number, tag: number, field: string, end = buf.length): Tlv {
  const t = readTlv(buf, off, field, end)
  if (t.tag !== tag) throw new DerError(field, `tag 0x${t.tag.toString(16)}, want 0x${tag.toString(16)}`)
  return t
}

/** The elements of a constructed value's content (a SEQUENCE's members), in order. */
export function children(content: Buffer, field: string): Tlv[] {
  const out: Tlv[] = []
  for (let off = 0; off < content.length; ) {
    const t = readTlv(content, off, field)
    out.push(t)
    off = t.next
  }
  return out
}
