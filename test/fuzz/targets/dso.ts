// DNS Stateful Operations over TCP (RFC 8490) carrying DNS Push (RFC 8765), as the notify service and the Push
// client read them: the stream is deframed (RFC 7766 8), each message decoded as DSO, every TLV body decoded
// by its type, and PUSH RDATA by the RR table, as src/dns/client/push.ts does. Successful decodes re-encode to
// the same bytes.
import {
  DsoType,
  decodeDso,
  decodeKeepaliveTlv,
  decodePushTlv,
  decodeReconfirmTlv,
  decodeRetryDelayTlv,
  decodeSubscribeTlv,
  decodeUnsubscribeTlv,
  encodeDso,
  isDso,
  pushTlv,
  reconfirmTlv,
  subscribeTlv,
} from '../../../src/dns/dso.js'
import { TcpDeframer } from '../../../src/dns/tcp-framing.js'
import { reader } from '../../../src/dns/wire/buffer.js'
import { WireError } from '../../../src/dns/wire/errors.js'
import { readRData } from '../../../src/dns/wire/rr-table.js'
import { assertRoundTrip, expectOnly } from './harness.js'

function tlv(type: number, data: Buffer): void {
  switch (type) {
    case DsoType.KEEPALIVE:
      expectOnly([WireError], () => decodeKeepaliveTlv(data))
      return
    case DsoType.RETRY_DELAY:
      expectOnly([WireError], () => decodeRetryDelayTlv(data))
      return
    case DsoType.UNSUBSCRIBE:
      expectOnly([WireError], () => decodeUnsubscribeTlv(data))
      return
    case DsoType.SUBSCRIBE: {
      const q = expectOnly([WireError], () => decodeSubscribeTlv(data))
      if (q) assertRoundTrip('SUBSCRIBE', q, decodeSubscribeTlv(subscribeTlv(q).data))
      return
    }
    case DsoType.RECONFIRM: {
      const r = expectOnly([WireError], () => decodeReconfirmTlv(data))
      if (r) assertRoundTrip('RECONFIRM', r, decodeReconfirmTlv(reconfirmTlv(r.q, r.rdata).data))
      return
    }
    case DsoType.PUSH: {
      const rrs = expectOnly([WireError], () => decodePushTlv(data))
      if (rrs === undefined) return
      for (const p of rrs) expectOnly([WireError], () => readRData(reader(p.rdata), p.type, p.rdata.length))
      assertRoundTrip('PUSH', rrs, decodePushTlv(pushTlv(rrs).data))
      return
    }
  }
}

export function fuzz(data: Buffer): void {
  const d = new TcpDeframer()
  // Two chunks, cut where the input says, so the deframer's carry-over path runs too.
  const cut = data.length > 0 ? data[0]! % (data.length + 1) : 0
  const msgs = [...d.push(data.subarray(0, cut)), ...d.push(data.subarray(cut))]
  for (const raw of [...msgs, data]) {
    if (!isDso(raw)) continue
    const m = expectOnly([WireError], () => decodeDso(raw))
    if (m === undefined) continue
    for (const t of m.tlvs) tlv(t.type, t.data)
    assertRoundTrip('DSO', m, decodeDso(encodeDso(m)))
  }
}
