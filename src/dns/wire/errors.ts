// Errors of the DNS wire codec. A malformed message is reported as one WireError naming the field and
// the byte offset where decoding stopped; a server answers it with RCODE FORMERR (RFC 1035 4.1.1).

/** RCODE a server returns for a message that does not parse (RFC 1035 4.1.1). */
export const FORMERR = 1

export class WireError extends Error {
  override readonly name: string = 'WireError'
  /** RCODE that describes the failure (FORMERR for every decode error). */
  readonly code: number = FORMERR
  constructor(
    /** Field being decoded or encoded, e.g. 'SOA.rname', 'header', 'name'. */
    readonly field: string,
    /** Byte offset in the buffer where the problem was found. */
    readonly offset: number,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(`${field} at offset ${offset}: ${message ?? 'malformed'}`, options)
  }
}

/** Thrown by the encoder when the output does not fit its limit; the message encoder uses it to truncate. */
export class WireOverflow extends WireError {
  override readonly name: string = 'WireOverflow'
}
