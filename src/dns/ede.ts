// Extended DNS Errors (RFC 8914): an INFO-CODE and a UTF-8 EXTRA-TEXT in an EDNS option, so a REFUSED can say
// why and what to do (SSO enrolment refusals, UPDATEs for a revoked host). The text is for people; clients show it.
import { EdnsOptionCode, findOption } from './edns.js'
import type { Edns, EdnsOption } from './wire/message.js'

/** RFC 8914 4: the INFO-CODEs we send. */
export const ExtendedError = { OTHER: 0, PROHIBITED: 18, NOT_AUTHORITATIVE: 20 } as const

const INFO_CODE_LEN = 2

/** RFC 8914 2: INFO-CODE then UTF-8 EXTRA-TEXT. */
export function encodeExtendedError(infoCode: number, text: string): EdnsOption {
  const t = Buffer.from(text, 'utf8')
  const data = Buffer.alloc(INFO_CODE_LEN + t.length)
  data.writeUInt16BE(infoCode)
  t.copy(data, INFO_CODE_LEN)
  return { code: EdnsOptionCode.EXTENDED_ERROR, data }
}

export function decodeExtendedError(o: EdnsOption): { infoCode: number; text: string } | undefined {
  if (o.code !== EdnsOptionCode.EXTENDED_ERROR || o.data.length < INFO_CODE_LEN) return undefined
  return { infoCode: o.data.readUInt16BE(0), text: o.data.subarray(INFO_CODE_LEN).toString('utf8') }
}

/** The EXTRA-TEXT of the first Extended DNS Error in `edns`, if it has one. */
export function extendedErrorText(edns: Edns | undefined): string | undefined {
  const o = findOption(edns, EdnsOptionCode.EXTENDED_ERROR)
  const e = o ? decodeExtendedError(o) : undefined
  return e?.text ? e.text : undefined
}
