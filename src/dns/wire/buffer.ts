// Writer over a caller-supplied buffer, with the name-compression map of RFC 1035 4.1.4.
// Every write checks the limit and throws WireOverflow, so the message encoder can roll back an RR.
import { WireOverflow } from './errors.js'

/** Largest offset a compression pointer can hold (14 bits, RFC 1035 4.1.4). */
export const MAX_POINTER = 0x3fff

export class Writer {
  /** Compression map: presentation suffix (case kept) -> offset from `start`; null when not compressing. */
  readonly names: Map<string, number> | null
  constructor(
    readonly buf: Buffer,
    /** Offset of the message start in `buf` (pointers are relative to it). */
    readonly start: number,
    /** Offset one past the last byte that may be written. */
    public limit: number,
    compress: boolean,
  ) {
    this.off = start
    this.names = compress ? new Map() : null
  }
  off: number

  need(n: number): void {
    if (this.off + n > this.limit) throw new WireOverflow('message', this.off, 'message does not fit its size limit')
  }
  u8(v: number): void {
    this.need(1)
    this.buf[this.off++] = v
  }
  u16(v: number): void {
    this.need(2)
    this.buf.writeUInt16BE(v, this.off)
    this.off += 2
  }
  u32(v: number): void {
    this.need(4)
    this.buf.writeUInt32BE(v, this.off)
    this.off += 4
  }
  u48(v: number): void {
    this.need(6)
    this.buf.writeUIntBE(v, this.off, 6)
    this.off += 6
  }
  bytes(b: Uint8Array): void {
    this.need(b.length)
    this.buf.set(b, this.off)
    this.off += b.length
  }
  /** Drops compression entries that point at or after `mark` (absolute offset), after a rollback. */
  forgetFrom(mark: number): void {
    if (this.names === null) return
    const rel = mark - this.start
    for (const [k, v] of this.names) if (v >= rel) this.names.delete(k)
  }
}

/** Decoding state for one message: the buffer, the message start (pointer base), its end and a name cache. */
export interface Reader {
  readonly buf: Buffer
  readonly start: number
  readonly end: number
  off: number
  /** Decoded suffixes by absolute offset: makes repeated compressed names cheap. */
  names: Map<number, { s: string; w: number }> | undefined
}

export function reader(buf: Buffer, start = 0, end = buf.length): Reader {
  return { buf, start, end, off: start, names: undefined }
}
