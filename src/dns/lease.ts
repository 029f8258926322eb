// Update Lease option (RFC 9664 4): EDNS option code 2, either 4 octets (LEASE) or 8 octets
// (LEASE then KEY-LEASE), unsigned seconds.
import { EdnsOptionCode } from './edns.js'
import { WireError } from './wire/errors.js'
import type { EdnsOption } from './wire/message.js'

const SHORT_LEN = 4
const LONG_LEN = 8

export interface UpdateLease {
  leaseSec: number
  /** Lease of KEY records; absent in the 4-octet form (then it equals leaseSec, RFC 9664 4). */
  keyLeaseSec?: number
}

export function encodeUpdateLease(l: UpdateLease): EdnsOption {
  const long = l.keyLeaseSec !== undefined
  const data = Buffer.allocUnsafe(long ? LONG_LEN : SHORT_LEN)
  data.writeUInt32BE(l.leaseSec, 0)
  if (long) data.writeUInt32BE(l.keyLeaseSec!, SHORT_LEN)
  return { code: EdnsOptionCode.UPDATE_LEASE, data }
}

/** Throws WireError unless `data` is 4 or 8 octets (RFC 9664 4: other lengths are a FORMERR). */
export function decodeUpdateLease(data: Buffer): UpdateLease {
  if (data.length === SHORT_LEN) return { leaseSec: data.readUInt32BE(0) }
  if (data.length === LONG_LEN) return { leaseSec: data.readUInt32BE(0), keyLeaseSec: data.readUInt32BE(SHORT_LEN) }
  throw new WireError('UPDATE-LEASE', 0, `option length ${data.length}, want 4 or 8`)
}
