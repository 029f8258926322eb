// TSIG over TCP message streams (RFC 8945 5.3.1): the first message is signed like any response (chained to the
// request MAC); each later MAC covers the prior MAC, every message since it (unsigned ones included) and only
// the timers (time signed, fudge), as in signed zone transfers.
import { createHmac, timingSafeEqual } from 'node:crypto'
import {
  appendTsig,
  checkMacSize,
  DEFAULT_FUDGE_SEC,
  fail,
  keyInfo,
  nowSec,
  parseTsigAlgorithm,
  signMessage,
  type TsigKey,
  type TsigResult,
  timers,
  updateMessage,
  verifyMessage,
} from './tsig.js'
import { WireError } from './wire/errors.js'
import { OFF_ID } from './wire/header.js'
import { decodeMessage, type Message } from './wire/message.js'
import { nameEqual } from './wire/name.js'
import type { TSIGData } from './wire/rr-table.js'

const U16 = 2

function u16(v: number): Buffer {
  const b = Buffer.allocUnsafe(U16)
  b.writeUInt16BE(v, 0)
  return b
}

/**
 * Signs a TCP message stream (RFC 8945 5.3.1): the first message like any response, later ones over the prior
 * MAC, the messages since (unsigned ones included) and the timers only. Every message may be signed; RFC 8945
 * requires at least every 100th and the last.
 */
export class TsigStreamSigner {
  private prior: Buffer | undefined
  private readonly pending: Buffer[] = []
  constructor(
    private readonly key: TsigKey,
    private readonly requestMac?: Buffer,
  ) {}

  /** Signs `wire` (no TSIG) and returns it with the TSIG RR; `sign: false` sends it unsigned. */
  next(wire: Buffer, opts: { timeSigned?: number; fudge?: number; sign?: boolean } = {}): Buffer {
    if (this.prior === undefined) {
      const s = signMessage(wire, this.key, {
        requestMac: this.requestMac,
        timeSigned: opts.timeSigned,
        fudge: opts.fudge,
      })
      this.prior = s.mac
      return s.wire
    }
    if (opts.sign === false) {
      this.pending.push(wire)
      return wire
    }
    const k = keyInfo(this.key)
    const h = createHmac(k.hash, this.key.secret)
    h.update(u16(this.prior.length))
    h.update(this.prior)
    for (const p of this.pending) updateMessage(h, p, p.length, p.readUInt16BE(OFF_ID), 0)
    this.pending.length = 0
    const t: TSIGData = {
      algorithm: k.algorithm,
      timeSigned: opts.timeSigned ?? nowSec(),
      fudge: opts.fudge ?? DEFAULT_FUDGE_SEC,
      mac: Buffer.alloc(0),
      originalId: wire.readUInt16BE(OFF_ID),
      error: 0,
      otherData: Buffer.alloc(0),
    }
    updateMessage(h, wire, wire.length, t.originalId, 0)
    h.update(timers(t.timeSigned, t.fudge))
    t.mac = h.digest()
    this.prior = t.mac
    return appendTsig(wire, this.key, k, t)
  }
}

/** Maximum unsigned messages in a row in a TSIG stream (RFC 8945 5.3.1). */
export const MAX_UNSIGNED_IN_STREAM = 99

/** Verifies a TCP message stream signed as TsigStreamSigner does (e.g. a signed AXFR from BIND). */
export class TsigStreamVerifier {
  private prior: Buffer | undefined
  private readonly pending: Buffer[] = []
  constructor(
    private readonly key: TsigKey,
    private readonly requestMac?: Buffer,
  ) {}

  next(wire: Buffer, now?: number): TsigResult {
    if (this.prior === undefined) {
      const r = verifyMessage(wire, (n) => (nameEqual(n, this.key.name) ? this.key : undefined), {
        requestMac: this.requestMac,
        now,
      })
      if (r.ok) this.prior = r.mac
      return r
    }
    let msg: Message
    try {
      msg = decodeMessage(wire)
    } catch (e) {
      return fail('FORMERR', { cause: e instanceof WireError ? e : undefined })
    }
    if (msg.tsig === undefined || msg.tsigOffset === undefined) {
      if (this.pending.length >= MAX_UNSIGNED_IN_STREAM) return fail('UNSIGNED', { msg })
      this.pending.push(wire)
      return fail('UNSIGNED', { msg })
    }
    const t = msg.tsig.data
    const k = keyInfo(this.key)
    if (!nameEqual(msg.tsig.name, this.key.name) || parseTsigAlgorithm(t.algorithm) !== k.algorithm)
      return fail('BADKEY', { msg, tsig: t })
    if (!checkMacSize(t.mac.length, k.len)) return fail('FORMERR', { msg, tsig: t, key: this.key })
    const h = createHmac(k.hash, this.key.secret)
    h.update(u16(this.prior.length))
    h.update(this.prior)
    for (const p of this.pending) updateMessage(h, p, p.length, p.readUInt16BE(OFF_ID), 0)
    updateMessage(h, wire, msg.tsigOffset, t.originalId, 1)
    h.update(timers(t.timeSigned, t.fudge))
    const mac = h.digest().subarray(0, t.mac.length)
    if (!timingSafeEqual(mac, t.mac)) return fail('BADSIG', { msg, tsig: t, key: this.key })
    this.pending.length = 0
    this.prior = t.mac
    if (Math.abs((now ?? nowSec()) - t.timeSigned) > t.fudge)
      return fail('BADTIME', { msg, tsig: t, key: this.key, mac: t.mac })
    return { ok: true, key: this.key, mac: t.mac, tsig: t, msg }
  }
}
