// DNS messages as the server and the clients receive them (RFC 1035 4.1, RFC 6891 EDNS, RFC 8945 TSIG,
// RFC 2136 UPDATE): decode; on success re-encode and decode to the same message, verify TSIG (which must not
// throw), decode every EDNS option we understand, and classify UPDATE prerequisites and updates.
import { decodeKeepalive, EdnsOptionCode } from '../../../src/dns/edns.js'
import { decodeUpdateLease } from '../../../src/dns/lease.js'
import { decodeLlq } from '../../../src/dns/llq.js'
import { TsigAlgorithm, tsigErrorResponse, verifyMessage } from '../../../src/dns/tsig.js'
import { classifyPrereq, classifyUpdate } from '../../../src/dns/update.js'
import { WireError } from '../../../src/dns/wire/errors.js'
import { Opcode } from '../../../src/dns/wire/header.js'
import { decodeMessage, encodeMessage, type Message } from '../../../src/dns/wire/message.js'
import { assertRoundTrip, expectOnly } from './harness.js'

const KEY = { name: 'key.example.', algorithm: TsigAlgorithm.HMAC_SHA256, secret: Buffer.alloc(32, 7) }
const NOW_SEC = 1_700_000_000

function strip(m: Message): Message {
  const { tsigOffset: _t, ...rest } = m
  return rest as Message
}

export function fuzz(data: Buffer): void {
  const msg = expectOnly([WireError], () => decodeMessage(data))
  const r = verifyMessage(data, () => KEY, { now: NOW_SEC, msg })
  if (!r.ok) expectOnly([WireError], () => tsigErrorResponse(r, { now: NOW_SEC, key: KEY }))
  if (msg === undefined) return
  for (const o of msg.edns?.options ?? []) {
    if (o.code === EdnsOptionCode.TCP_KEEPALIVE) expectOnly([WireError], () => decodeKeepalive(o.data))
    if (o.code === EdnsOptionCode.UPDATE_LEASE) expectOnly([WireError], () => decodeUpdateLease(o.data))
    if (o.code === EdnsOptionCode.LLQ) expectOnly([WireError], () => decodeLlq(o.data))
  }
  if (msg.opcode === Opcode.UPDATE) {
    for (const rr of msg.answers) classifyPrereq(rr)
    for (const rr of msg.authorities) classifyUpdate(rr)
  }
  // Encoding may refuse what decoding accepted (e.g. a name that grows past 255 octets when re-compressed
  // differently); it must do so with WireError, and whatever it produces must decode to the same message.
  const wire = expectOnly([WireError], () => encodeMessage(msg))
  if (wire === undefined) return
  assertRoundTrip('dns message', strip(msg), strip(decodeMessage(wire)))
}
