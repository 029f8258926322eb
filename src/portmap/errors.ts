// Errors of the port-mapping clients (STYLE.md section 7): one class per failure kind, each carrying the
// protocol and, when the gateway answered, its result code (RFC 6886 3.5, RFC 6887 7.4, UPnP IGD errorCode).

import type { PortmapProtocol } from './types.js'

/** A packet from the gateway that does not parse: the receive loop drops and counts it. */
export class PortmapWireError extends Error {
  override readonly name = 'PortmapWireError'
  readonly field: string
  readonly offset: number
  constructor(field: string, offset: number, message?: string) {
    super(`${field} at ${offset}: ${message ?? 'malformed'}`)
    this.field = field
    this.offset = offset
  }
}

/** The gateway answered with a non-success result code. */
export class PortmapResultError extends Error {
  override readonly name = 'PortmapResultError'
  readonly protocol: PortmapProtocol
  readonly code: number
  constructor(protocol: PortmapProtocol, code: number, what: string, options?: { cause?: unknown }) {
    super(`${protocol}: ${what} (result ${code})`, options)
    this.protocol = protocol
    this.code = code
  }
}

/** No usable answer after the whole retransmission schedule (or the HTTP timeout). */
export class PortmapTimeoutError extends Error {
  override readonly name = 'PortmapTimeoutError'
  readonly protocol: PortmapProtocol
  readonly tries: number
  constructor(protocol: PortmapProtocol, tries: number, options?: { cause?: unknown }) {
    super(`${protocol}: no answer after ${tries} tries`, options)
    this.protocol = protocol
    this.tries = tries
  }
}

/** The request was abandoned because the client was closed or the network changed. */
export class PortmapAbortedError extends Error {
  override readonly name = 'PortmapAbortedError'
  readonly protocol: PortmapProtocol
  constructor(protocol: PortmapProtocol) {
    super(`${protocol}: aborted`)
    this.protocol = protocol
  }
}
