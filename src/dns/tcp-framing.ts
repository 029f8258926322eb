// DNS over TCP (and TLS) framing (RFC 1035 4.2.2, RFC 7766 8): each message is preceded by a two-octet
// length. The deframer collects stream chunks and yields whole messages; it never buffers more than one
// partial message.
import { WireError } from './wire/errors.js'

const LEN_PREFIX = 2

/** The message with its two-octet length prefix. */
export function frameTcp(msg: Uint8Array): Buffer {
  if (msg.length > 0xffff) throw new WireError('tcp.length', 0, 'message longer than 65535 octets')
  const out = Buffer.allocUnsafe(LEN_PREFIX + msg.length)
  out.writeUInt16BE(msg.length, 0)
  out.set(msg, LEN_PREFIX)
  return out
}

export class TcpDeframer {
  private pending: Buffer = Buffer.alloc(0)

  /** Appends a stream chunk and returns every message it completes (possibly none). */
  push(chunk: Buffer): Buffer[] {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const out: Buffer[] = []
    let o = 0
    while (buf.length - o >= LEN_PREFIX) {
      const len = buf.readUInt16BE(o)
      if (buf.length - o - LEN_PREFIX < len) break
      out.push(buf.subarray(o + LEN_PREFIX, o + LEN_PREFIX + len))
      o += LEN_PREFIX + len
    }
    this.pending = o === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(o))
    return out
  }

  /** Octets held for an incomplete message. */
  get buffered(): number {
    return this.pending.length
  }
}
