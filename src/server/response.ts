// The header of every answer the service builds (service.ts, update-handler.ts).
import type { Edns, Message } from '../dns/wire/message.js'
import { emptyMessage } from '../dns/wire/message.js'

/** Our UDP payload size in responses (RFC 6891 6.2.5; 1232 per DNS Flag Day 2020). */
export const SERVER_UDP_PAYLOAD = 1232

/** Header echo: id, opcode, RD, the question/zone section, and OPT when the request had one. */
export function baseResponse(msg: Message): Message {
  const res = emptyMessage({
    id: msg.id,
    qr: true,
    opcode: msg.opcode,
    rd: msg.rd,
    cd: msg.cd,
    questions: msg.questions,
  })
  if (msg.edns) res.edns = { udpSize: SERVER_UDP_PAYLOAD, version: 0, do: false, options: [] } satisfies Edns
  return res
}
