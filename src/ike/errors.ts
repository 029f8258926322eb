// IKEv2 error types (STYLE.md section 7): decoders throw only IkeWireError; protocol failures carry
// the Notify type (RFC 7296 3.10.1) that the peer should receive.

import { NotifyType } from './constants.js'

/** Malformed bytes: `field` names what was being read, `offset` where. Maps to INVALID_SYNTAX. */
export class IkeWireError extends Error {
  override readonly name = 'IkeWireError'
  readonly code: number = NotifyType.INVALID_SYNTAX
  constructor(
    readonly field: string,
    readonly offset: number,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(`${field} at ${offset}${message ? `: ${message}` : ''}`, options)
  }
}

/** A protocol-level failure; `code` is the Notify type to report (or 0 when nothing is sent). */
export class IkeError extends Error {
  override readonly name = 'IkeError'
  constructor(
    readonly code: number,
    message: string,
    readonly data: Buffer = Buffer.alloc(0),
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** The peer answered with an error Notify. */
export class IkePeerError extends Error {
  override readonly name = 'IkePeerError'
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message)
  }
}

export class IkeTimeoutError extends Error {
  override readonly name = 'IkeTimeoutError'
  readonly code = 0
}
