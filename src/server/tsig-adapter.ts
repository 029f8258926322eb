// TSIG (RFC 8945) for the service: verify a request against the account keys and encode the response signed
// with the request's key, chained to the request MAC (section 4.3.3), or the section 5.3.2 error response.
// The MAC code is src/dns/tsig.ts.

import {
  DEFAULT_FUDGE_SEC,
  signMessage,
  type TsigErrorName,
  type TsigFailure,
  type TsigKey,
  tsigErrorResponse,
  verifyMessage,
} from '../dns/tsig.js'
import { encodeMessage, type Message } from '../dns/wire/message.js'
import { nameToLowerCanonical } from '../dns/wire/name.js'
import type { Account } from './accounts.js'

export type TsigCheck =
  | { readonly ok: true; readonly account: Account; readonly key: TsigKey; readonly requestMac: Buffer }
  | { readonly ok: false; readonly error: TsigErrorName; readonly failure: TsigFailure }

const keys = new WeakMap<Account, TsigKey>()
/**
 * signMessage's reserve for the TSIG RR undercounts by a few octets (it takes the presentation lengths of the
 * two names, not their wire lengths, and omits the RR header), so a signed answer could exceed a 512-octet
 * UDP limit by 4 octets; keep this much more room.
 */
const TSIG_SIZE_SLACK = 16

/** The account's key in the form the TSIG code takes (cached per Account object). */
export function accountTsigKey(a: Account): TsigKey {
  let k = keys.get(a)
  if (!k) keys.set(a, (k = { name: a.keyName, algorithm: a.algorithm, secret: a.secret }))
  return k
}

/**
 * Verifies the TSIG of `raw` (already decoded as `msg`) with the account key it names, within the server's
 * `maxFudgeSec`. `decoy` gives a key for names that are not (or not yet) accounts but could be: the MAC is then
 * computed and fails as BADSIG, as for a wrong secret, so neither the answer nor its time tells whether the
 * account exists (issue 16 finding 9; RFC 8945 5.2.1 would answer BADKEY).
 */
export function tsigVerify(
  raw: Buffer,
  msg: Message,
  lookup: (keyName: string) => Account | undefined,
  nowMs: number,
  opts: { maxFudgeSec?: number; decoy?: (keyName: string, algorithm: string) => TsigKey | undefined } = {},
): TsigCheck {
  let account: Account | undefined
  const r = verifyMessage(
    raw,
    (name) => {
      const keyName = nameToLowerCanonical(name)
      account = lookup(keyName)
      if (account) return accountTsigKey(account)
      return msg.tsig ? opts.decoy?.(keyName, msg.tsig.data.algorithm) : undefined
    },
    { now: Math.floor(nowMs / 1000), msg, ...(opts.maxFudgeSec !== undefined ? { maxFudge: opts.maxFudgeSec } : {}) },
  )
  if (r.ok && account) return { ok: true, account, key: r.key, requestMac: r.mac }
  if (r.ok) return { ok: false, error: 'BADKEY', failure: { ok: false, error: 'BADKEY', code: 17, peer: false, msg } }
  return { ok: false, error: r.error, failure: r }
}

/**
 * Encodes a response within `maxSize`: signed when the request verified, the TSIG error response when it did
 * not (BADKEY/BADSIG unsigned, BADTIME/BADTRUNC signed), plain otherwise.
 */
export function tsigEncode(
  res: Message,
  check: TsigCheck | undefined,
  nowMs: number,
  maxSize: number,
  fudgeSec = DEFAULT_FUDGE_SEC,
): Buffer {
  if (!check) return encodeMessage(res, { maxSize })
  const now = Math.floor(nowMs / 1000)
  if (check.ok)
    return signMessage(res, check.key, {
      requestMac: check.requestMac,
      timeSigned: now,
      fudge: fudgeSec,
      maxSize: maxSize - TSIG_SIZE_SLACK,
    }).wire
  return tsigErrorResponse(check.failure, { now }) ?? encodeMessage(res, { maxSize })
}
