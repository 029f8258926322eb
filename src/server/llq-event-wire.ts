// LLQ (RFC 8764) messages on the wire, server side: the answers to LLQ requests, and events.
//
// An event (RFC 8764 §6.2) is a gratuitous response listing the removed records with TTL -1 and the added ones;
// every LLQ of one question gets the same message except for the header ID, the LLQ option's LLQ-ID and LEASE
// (the option is the last thing in an unsigned event, at a known offset from its end), and, for an LLQ set up with
// TSIG, the TSIG RR's MAC and Original ID. So a change is encoded once (`LlqEventWire` keeps the template of the
// last change and question), each LLQ's copy is patched in place, and signing a copy costs one HMAC over it and
// the TSIG variables of that key and second, which are built once: the TSIG RR itself comes from signMessage on
// the template, so its layout is the library's. The MAC input is made contiguous in the copy itself (the TSIG
// variables written where the TSIG RR then goes: the RR is longer), so one HMAC call covers it: the fanout
// addon's one-shot OpenSSL HMAC when built (node's createHmac costs several times the HMAC: bench/notify),
// node:crypto otherwise. Tests check every copy against a freshly encoded and signed message, octet for octet,
// both ways (llq-event-wire.test.ts).

import { createHmac, createSecretKey, type KeyObject } from 'node:crypto'
import { encodeLlq, LLQ_OPTION_LEN } from '../dns/llq.js'
import { keyInfo, signMessage, type TsigKey, tsigVariables } from '../dns/tsig.js'
import { OFF_ARCOUNT, OFF_ID, Opcode, Rcode } from '../dns/wire/header.js'
import { emptyMessage, encodeMessage, type Message } from '../dns/wire/message.js'
import type { RR } from '../dns/wire/rr-table.js'
import { fanoutNative, type Hmac } from './fanout-native.js'
import { LLQ_REMOVED_TTL } from './llq.js'
import type { LlqOptionData } from './notify-llq-service.js'
import type { NotifyQuestion } from './notify-types.js'
import { fromZoneRR } from './rdata.js'
import type { ZoneRR } from './zone-index.js'

/** EDNS payload size the server advertises in LLQ responses and events. */
export const LLQ_RESPONSE_UDP_PAYLOAD = 1232
/** Offsets inside the 18-octet LLQ option data (RFC 8764 §3.2), counted from the option's start. */
const OPT_DATA = 4
const LLQ_ID_OFFSET = OPT_DATA + 6
const LLQ_LEASE_OFFSET = OPT_DATA + 14
/** The option (code, length, 18 octets of data): the last octets of an unsigned event. */
const LLQ_OPTION_WIRE = OPT_DATA + LLQ_OPTION_LEN
/** After the MAC in the TSIG RDATA: Original ID, Error, Other Len (RFC 8945 §4.2), no Other Data. */
const TSIG_AFTER_MAC = 6

/** What an event for one LLQ needs (an LlqOutboundEvent). */
export interface LlqEventFields {
  readonly msgId: number
  readonly question: NotifyQuestion
  readonly opt: LlqOptionData
  readonly added: readonly ZoneRR[]
  readonly removed: readonly ZoneRR[]
}

/** A response to an LLQ request: the request's question, the option (none for a bare RCODE). */
export function llqResponse(req: Message, opt: LlqOptionData | undefined): Message {
  return emptyMessage({
    id: req.id,
    qr: true,
    opcode: Opcode.QUERY,
    aa: true,
    rd: req.rd,
    rcode: Rcode.NOERROR,
    questions: req.questions.slice(0, 1),
    edns: { udpSize: LLQ_RESPONSE_UDP_PAYLOAD, version: 0, do: false, options: opt ? [encodeLlq(opt)] : [] },
  })
}

/** The event as the codec encodes it from scratch (the template, and what tests compare copies with). */
export function encodeLlqEvent(ev: LlqEventFields): Buffer {
  const answers: RR[] = []
  for (const z of ev.removed) answers.push({ ...fromZoneRR(z), ttl: LLQ_REMOVED_TTL })
  for (const z of ev.added) answers.push(fromZoneRR(z))
  return encodeMessage(
    emptyMessage({
      id: ev.msgId,
      qr: true,
      opcode: Opcode.QUERY,
      aa: true,
      questions: [ev.question],
      answers,
      edns: { udpSize: LLQ_RESPONSE_UDP_PAYLOAD, version: 0, do: false, options: [encodeLlq(ev.opt)] },
    }),
  )
}

interface Signer {
  readonly key: TsigKey
  readonly timeSigned: number
  readonly fudge: number
  readonly hash: string
  /** The secret as a KeyObject: createHmac with one costs about half of createHmac with the raw octets. */
  readonly secret: KeyObject
  /** The secret's octets, for the native HMAC. */
  readonly secretBytes: Buffer
  /** The TSIG variables (RFC 8945 §4.3.3) that follow the message in the MAC input. */
  readonly variables: Buffer
  /** The TSIG RR as signMessage appends it, MAC and Original ID to be overwritten. */
  readonly rr: Buffer
  readonly macOffset: number
}

interface Template {
  readonly added: readonly ZoneRR[]
  readonly removed: readonly ZoneRR[]
  readonly question: NotifyQuestion
  readonly wire: Buffer
  signer: Signer | undefined
}

export class LlqEventWire {
  #t: Template | undefined
  readonly #hmac: Hmac | undefined
  /** The native HMAC's output. */
  readonly #mac = Buffer.alloc(64)

  /** `hmac`: the native HMAC (default: the fanout addon's when built); null signs with node:crypto. */
  constructor(opts: { readonly hmac?: Hmac | null } = {}) {
    this.#hmac = opts.hmac === undefined ? fanoutNative?.hmac : (opts.hmac ?? undefined)
  }

  /**
   * The event for one LLQ, signed with `key` (time signed `timeSigned`, seconds) when given. Throws what the
   * codec throws (a change too large for a message).
   */
  event(ev: LlqEventFields, key?: TsigKey, timeSigned = 0, fudge = 0): Buffer {
    const t = this.#template(ev)
    const len = t.wire.length
    const s = key ? this.#signer(t, key, timeSigned, fudge) : undefined
    const out = Buffer.allocUnsafe(len + (s ? s.rr.length : 0))
    t.wire.copy(out, 0)
    out.writeUInt16BE(ev.msgId, OFF_ID)
    const opt = len - LLQ_OPTION_WIRE
    out.writeBigUInt64BE(ev.opt.id, opt + LLQ_ID_OFFSET)
    out.writeUInt32BE(ev.opt.leaseSec, opt + LLQ_LEASE_OFFSET)
    if (!s) return out
    // RFC 8945 §4.3.2: the MAC covers the message as it is before the TSIG RR is added (original ID = its ID),
    // then the TSIG variables: laid out right after it, where the (longer) TSIG RR is written next.
    s.variables.copy(out, len)
    const end = len + s.variables.length
    let mac: Buffer
    if (this.#hmac) mac = this.#mac.subarray(0, this.#hmac(s.hash, s.secretBytes, out, end, this.#mac))
    else mac = createHmac(s.hash, s.secret).update(out.subarray(0, end)).digest()
    s.rr.copy(out, len)
    mac.copy(out, len + s.macOffset)
    out.writeUInt16BE(ev.msgId, len + s.macOffset + mac.length)
    out.writeUInt16BE(out.readUInt16BE(OFF_ARCOUNT) + 1, OFF_ARCOUNT)
    return out
  }

  #template(ev: LlqEventFields): Template {
    const t = this.#t
    const q = ev.question
    if (
      t &&
      t.added === ev.added &&
      t.removed === ev.removed &&
      (t.question === q || (t.question.name === q.name && t.question.type === q.type && t.question.class === q.class))
    )
      return t
    const fresh: Template = {
      added: ev.added,
      removed: ev.removed,
      question: q,
      wire: encodeLlqEvent(ev),
      signer: undefined,
    }
    this.#t = fresh
    return fresh
  }

  #signer(t: Template, key: TsigKey, timeSigned: number, fudge: number): Signer {
    const s = t.signer
    if (s && s.key === key && s.timeSigned === timeSigned && s.fudge === fudge) return s
    const k = keyInfo(key)
    const signed = signMessage(t.wire, key, { timeSigned, fudge })
    const rr = signed.wire.subarray(t.wire.length)
    const variables = tsigVariables(k, { timeSigned, fudge, error: 0, otherData: Buffer.alloc(0) })
    const fresh: Signer = {
      key,
      timeSigned,
      fudge,
      hash: k.hash,
      secret: createSecretKey(key.secret),
      secretBytes: Buffer.from(key.secret),
      variables,
      rr: Buffer.from(rr),
      macOffset: rr.length - TSIG_AFTER_MAC - k.len,
    }
    t.signer = fresh
    return fresh
  }
}
