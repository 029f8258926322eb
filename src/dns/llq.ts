// LLQ option (RFC 8764 3.2): EDNS option code 1, 18 octets:
// LLQ-VERSION u16, LLQ-OPCODE u16, LLQ-ERROR u16, LLQ-ID u64, LLQ-LEASE u32 (seconds).
import { EdnsOptionCode } from './edns.js'
import { WireError } from './wire/errors.js'
import type { EdnsOption } from './wire/message.js'

/** The only protocol version (RFC 8764 3.2). */
export const LLQ_VERSION = 1
export const LLQ_OPTION_LEN = 18
const OFF_VERSION = 0
const OFF_OPCODE = 2
const OFF_ERROR = 4
const OFF_ID = 6
const OFF_LEASE = 14

/** LLQ-OPCODE (RFC 8764 3.2). */
export const LlqOpcode = {
  SETUP: 1,
  REFRESH: 2,
  EVENT: 3,
} as const

/** LLQ-ERROR (RFC 8764 3.2). */
export const LlqError = {
  NO_ERROR: 0,
  SERV_FULL: 1,
  STATIC: 2,
  FORMAT_ERR: 3,
  NO_SUCH_LLQ: 4,
  BAD_VERS: 5,
  UNKNOWN_ERR: 6,
} as const

export interface LlqOption {
  version: number
  opcode: number
  error: number
  /** 64-bit LLQ-ID; 0 in an initial setup request. */
  id: bigint
  leaseSec: number
}

export function encodeLlq(o: LlqOption): EdnsOption {
  const data = Buffer.allocUnsafe(LLQ_OPTION_LEN)
  data.writeUInt16BE(o.version, OFF_VERSION)
  data.writeUInt16BE(o.opcode, OFF_OPCODE)
  data.writeUInt16BE(o.error, OFF_ERROR)
  data.writeBigUInt64BE(o.id, OFF_ID)
  data.writeUInt32BE(o.leaseSec, OFF_LEASE)
  return { code: EdnsOptionCode.LLQ, data }
}

/** Throws WireError unless `data` is exactly 18 octets (RFC 8764 3.2). */
export function decodeLlq(data: Buffer): LlqOption {
  if (data.length !== LLQ_OPTION_LEN) throw new WireError('LLQ', 0, `option length ${data.length}, want 18`)
  return {
    version: data.readUInt16BE(OFF_VERSION),
    opcode: data.readUInt16BE(OFF_OPCODE),
    error: data.readUInt16BE(OFF_ERROR),
    id: data.readBigUInt64BE(OFF_ID),
    leaseSec: data.readUInt32BE(OFF_LEASE),
  }
}
