// DNS Push (RFC 8765) over DSO (RFC 8490) on the wire, server side: DSO messages decoded into what a PushSession
// receives (push.ts), and what it sends encoded.
//
// A change's PUSH is a DSO unidirectional message, message ID 0 (RFC 8490 §5.4), whose octets depend on the change
// only: every session subscribed to the RRset gets the same message. `PushFrames` encodes it once per change,
// with its 2-octet TCP length prefix (RFC 1035 §4.2.2), and every session writes that same Buffer (never changed
// after). Tests check the shared frame against a freshly encoded message octet for octet (push-wire.test.ts).

import {
  type DsoTlv,
  DsoType,
  decodeDso,
  decodeKeepaliveTlv,
  decodeReconfirmTlv,
  decodeSubscribeTlv,
  decodeUnsubscribeTlv,
  encodeDso,
  keepaliveTlv,
  type PushRR,
  pushTlv,
  retryDelayTlv,
} from '../dns/dso.js'
import { frameTcp, TCP_LENGTH_PREFIX } from '../dns/tcp-framing.js'
import { HEADER_SIZE } from '../dns/wire/header.js'
import { RRClass } from '../dns/wire/rr-table.js'
import type { RRsetChange } from './notify-types.js'
import {
  changeRecords,
  PUSH_REMOVE_RR_TTL,
  PUSH_REMOVE_SET_TTL,
  type PushInbound,
  type PushOutbound,
  type PushRecordOp,
} from './push.js'
import { ownerOf } from './rdata.js'
import type { ZoneRR } from './zone-index.js'

/** The TCP length prefix (RFC 1035 §4.2.2). */
export const FRAME_PREFIX = TCP_LENGTH_PREFIX

/** A DSO message as a PushSession takes it; `malformed` when it did not decode (counted by the caller). */
export function decodePushInbound(raw: Buffer): { readonly m: PushInbound; readonly malformed: boolean } {
  let d: ReturnType<typeof decodeDso>
  try {
    d = decodeDso(raw)
  } catch {
    return { m: { kind: 'malformed', msgId: raw.length >= HEADER_SIZE ? raw.readUInt16BE(0) : 0 }, malformed: true }
  }
  if (d.qr) return { m: { kind: 'other' }, malformed: false }
  const primary = d.tlvs[0]
  try {
    return { m: classify(d.id, primary), malformed: false }
  } catch {
    return { m: { kind: 'malformed', msgId: d.id }, malformed: true }
  }
}

function classify(id: number, primary: DsoTlv | undefined): PushInbound {
  if (id !== 0) {
    if (!primary) return { kind: 'malformed', msgId: id }
    if (primary.type === DsoType.KEEPALIVE) return { kind: 'keepalive', msgId: id, ...decodeKeepaliveTlv(primary.data) }
    if (primary.type === DsoType.SUBSCRIBE)
      return { kind: 'subscribe', msgId: id, question: decodeSubscribeTlv(primary.data) }
    return { kind: 'unknown-request', msgId: id, tlvType: primary.type }
  }
  if (primary?.type === DsoType.UNSUBSCRIBE)
    return { kind: 'unsubscribe', subscribeId: decodeUnsubscribeTlv(primary.data) }
  if (primary?.type === DsoType.RECONFIRM) {
    const r = decodeReconfirmTlv(primary.data)
    return { kind: 'reconfirm', question: r.q, rdata: Buffer.from(r.rdata) }
  }
  return { kind: 'other' }
}

/**
 * DSO on plain TCP without DNS Push (RFC 8765 §6: clients MUST use TLS). The session itself (Keepalive, RFC 8490)
 * works, but SUBSCRIBE is a request whose primary TLV this transport does not implement: DSOTYPENI (RFC 8490
 * §5.1.1; RFC 8765 §6.2 "SUBSCRIBE operation not supported"). Closing instead would look like a server fault and
 * make the client retry; DSOTYPENI tells it to look elsewhere. The Push unidirectionals are ignored.
 */
export function withoutPush(m: PushInbound): PushInbound {
  if (m.kind === 'subscribe') return { kind: 'unknown-request', msgId: m.msgId, tlvType: DsoType.SUBSCRIBE }
  if (m.kind === 'unsubscribe' || m.kind === 'reconfirm') return { kind: 'other' }
  return m
}

/** A DSO response (the only messages with an ID other than 0 the server sends). */
export function encodePushResponse(out: Extract<PushOutbound<ZoneRR>, { kind: 'response' }>): Buffer {
  const tlvs: DsoTlv[] = []
  if (out.keepalive) tlvs.push(keepaliveTlv(out.keepalive.inactivityMs, out.keepalive.keepaliveMs))
  if (out.retryDelayMs !== undefined) tlvs.push(retryDelayTlv(out.retryDelayMs))
  return encodeDso({ id: out.msgId, qr: true, rcode: out.rcode, tlvs })
}

/** The RETRY DELAY unidirectional sent before the server closes a session (RFC 8490 §7.1.1). */
export function encodeRetryDelay(ms: number): Buffer {
  return encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [retryDelayTlv(ms)] })
}

/** A PUSH message (RFC 8765 §6.3): DSO unidirectional, ID 0, one PUSH TLV with the records. */
export function encodePush(records: readonly PushRecordOp<ZoneRR>[]): Buffer {
  const rrs: PushRR[] = records.map((r) => {
    if (r.op === 'remove-rrset')
      return { name: r.name, type: r.type, class: RRClass.ANY, ttl: PUSH_REMOVE_SET_TTL, rdata: Buffer.alloc(0) }
    const z = r.rr
    return {
      name: ownerOf(z),
      type: z.type,
      class: z.class,
      ttl: r.op === 'add' ? z.ttl : PUSH_REMOVE_RR_TTL,
      rdata: z.wire ?? z.rdata,
    }
  })
  return encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [pushTlv(rrs)] })
}

/** The framed PUSH of the change being fanned out: built for the first session, the same Buffer for the rest. */
export class PushFrames {
  #change: RRsetChange<ZoneRR> | undefined
  #frame: Buffer | undefined

  /** Throws what the codec throws (a change too large for one message); the next call tries again. */
  frame(change: RRsetChange<ZoneRR>): Buffer {
    if (this.#change === change && this.#frame) return this.#frame
    const f = frameTcp(encodePush(changeRecords(change)))
    this.#change = change
    this.#frame = f
    return f
  }
}
