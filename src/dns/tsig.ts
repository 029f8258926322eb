// TSIG (RFC 8945): HMAC signing and verification of DNS messages.
//
// - MAC input (4.3.3): [request MAC size + MAC, for responses] | the message without its TSIG RR, with the
//   original ID and ARCOUNT decremented | TSIG variables (key name and algorithm in canonical form, class ANY,
//   TTL 0, time signed, fudge, error, other len, other data).
// - TCP message streams (5.3.1): see tsig-stream.ts. The helpers exported below without documentation
//   (keyInfo, updateMessage, timers, appendTsig, checkMacSize, fail, nowSec) are shared with it only.
// - Checks in RFC order (5.2): key known and algorithm matching (BADKEY); MAC size within the hash length and
//   not under max(10, hash/2) octets (5.2.2.1: else FORMERR); MAC (BADSIG); time within fudge (BADTIME);
//   local truncation policy `key.minMacSize` (BADTRUNC).
// - Error responses (5.3.2): BADKEY and BADSIG go unsigned (MAC size 0); BADTIME and BADTRUNC are signed and
//   chained to the request MAC; BADTIME carries the server's time in Other Data and echoes the request's
//   Time Signed (as BIND does), so the client can measure its skew.
import { createHmac, type Hmac, timingSafeEqual } from 'node:crypto'
import { WireError } from './wire/errors.js'
import { HEADER_SIZE, OFF_ARCOUNT, OFF_ID, Rcode } from './wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from './wire/message.js'
import { nameToLowerCanonical, nameToWire } from './wire/name.js'
import { RRClass, RRType, type TSIGData } from './wire/rr-table.js'

/** Algorithm names (RFC 8945 6, IANA "TSIG Algorithm Names"). */
export const TsigAlgorithm = {
  HMAC_MD5: 'hmac-md5.sig-alg.reg.int.',
  HMAC_SHA1: 'hmac-sha1.',
  HMAC_SHA224: 'hmac-sha224.',
  HMAC_SHA256: 'hmac-sha256.',
  HMAC_SHA384: 'hmac-sha384.',
  HMAC_SHA512: 'hmac-sha512.',
} as const

const HASHES: Readonly<Record<string, { hash: string; len: number }>> = {
  [TsigAlgorithm.HMAC_MD5]: { hash: 'md5', len: 16 },
  [TsigAlgorithm.HMAC_SHA1]: { hash: 'sha1', len: 20 },
  [TsigAlgorithm.HMAC_SHA224]: { hash: 'sha224', len: 28 },
  [TsigAlgorithm.HMAC_SHA256]: { hash: 'sha256', len: 32 },
  [TsigAlgorithm.HMAC_SHA384]: { hash: 'sha384', len: 48 },
  [TsigAlgorithm.HMAC_SHA512]: { hash: 'sha512', len: 64 },
}

/** Short names accepted by parseTsigAlgorithm, as nsupdate/dig spell them ('hmac-sha256', 'hmac-md5'). */
const SHORT_NAMES: Readonly<Record<string, string>> = {
  'hmac-md5': TsigAlgorithm.HMAC_MD5,
  'hmac-md5.sig-alg.reg.int': TsigAlgorithm.HMAC_MD5,
  'hmac-sha1': TsigAlgorithm.HMAC_SHA1,
  'hmac-sha224': TsigAlgorithm.HMAC_SHA224,
  'hmac-sha256': TsigAlgorithm.HMAC_SHA256,
  'hmac-sha384': TsigAlgorithm.HMAC_SHA384,
  'hmac-sha512': TsigAlgorithm.HMAC_SHA512,
}

/** Recommended fudge (RFC 8945 10: 300 seconds). */
export const DEFAULT_FUDGE_SEC = 300
/** RFC 8945 5.2.2.1: a truncated MAC is never shorter than 10 octets. */
export const MIN_TRUNCATED_MAC = 10
const U16 = 2
const U32 = 4
const U48 = 6
const TIME_LEN = 6

export interface TsigKey {
  /** Key name, e.g. 'alice.members.example.' or 'upd-sha256.' */
  name: string
  /** One of TsigAlgorithm (case-insensitive, trailing dot optional). */
  algorithm: string
  secret: Buffer
  /** Local truncation policy (RFC 8945 5.2.2.1): shorter received MACs get BADTRUNC. Default: full length. */
  minMacSize?: number
}

/** Canonical algorithm name for 'hmac-sha256', 'HMAC-SHA256.' etc.; undefined if unsupported. */
export function parseTsigAlgorithm(name: string): string | undefined {
  const n = nameToLowerCanonical(name)
  if (HASHES[n] !== undefined) return n
  return SHORT_NAMES[n.slice(0, -1)]
}

/** Output length in octets of the key's HMAC; throws WireError for an unsupported algorithm. */
export function tsigMacLength(algorithm: string): number {
  const a = parseTsigAlgorithm(algorithm)
  if (a === undefined) throw new WireError('TSIG.algorithm', 0, `unsupported algorithm '${algorithm}'`)
  return HASHES[a]!.len
}

/** A fresh HMAC of `algorithm` (any spelling parseTsigAlgorithm accepts) keyed with `secret`. */
export function tsigHmac(algorithm: string, secret: Buffer): Hmac {
  const a = parseTsigAlgorithm(algorithm)
  if (a === undefined) throw new WireError('TSIG.algorithm', 0, `unsupported algorithm '${algorithm}'`)
  return createHmac(HASHES[a]!.hash, secret)
}

export interface KeyInfo {
  hash: string
  len: number
  algorithm: string
  nameWire: Buffer
  algWire: Buffer
}
const KEY_INFO = new WeakMap<TsigKey, KeyInfo>()

export function keyInfo(key: TsigKey): KeyInfo {
  let k = KEY_INFO.get(key)
  if (k === undefined) {
    const algorithm = parseTsigAlgorithm(key.algorithm)
    if (algorithm === undefined) throw new WireError('TSIG.algorithm', 0, `unsupported algorithm '${key.algorithm}'`)
    const h = HASHES[algorithm]!
    k = {
      hash: h.hash,
      len: h.len,
      algorithm,
      nameWire: nameToWire(key.name, true),
      algWire: nameToWire(algorithm, true),
    }
    KEY_INFO.set(key, k)
  }
  return k
}

function u16(v: number): Buffer {
  const b = Buffer.allocUnsafe(U16)
  b.writeUInt16BE(v, 0)
  return b
}

function u48(v: number): Buffer {
  const b = Buffer.allocUnsafe(U48)
  b.writeUIntBE(v, 0, U48)
  return b
}

/** Feeds `wire[0..end)` as RFC 8945 4.3.2 wants it: original ID and ARCOUNT minus `tsigCount`. */
export function updateMessage(h: Hmac, wire: Buffer, end: number, originalId: number, arcountDelta: number): void {
  h.update(u16(originalId))
  h.update(wire.subarray(OFF_ID + U16, OFF_ARCOUNT))
  h.update(u16(wire.readUInt16BE(OFF_ARCOUNT) - arcountDelta))
  h.update(wire.subarray(HEADER_SIZE, end))
}

export function timers(timeSigned: number, fudge: number): Buffer {
  const b = Buffer.allocUnsafe(U48 + U16)
  b.writeUIntBE(timeSigned, 0, U48)
  b.writeUInt16BE(fudge, U48)
  return b
}

/**
 * The TSIG variables (RFC 8945 4.3.3) that follow the message in the MAC input: key name and algorithm in canonical
 * form, class ANY, TTL 0, time signed, fudge, error, other len, other data.
 */
export function tsigVariables(k: KeyInfo, t: Pick<TSIGData, 'timeSigned' | 'fudge' | 'error' | 'otherData'>): Buffer {
  const v = Buffer.alloc(k.nameWire.length + U16 + U32 + k.algWire.length + U48 + U16 + U16 + U16 + t.otherData.length)
  let o = k.nameWire.copy(v, 0)
  o = v.writeUInt16BE(RRClass.ANY, o)
  o = v.writeUInt32BE(0, o)
  o += k.algWire.copy(v, o)
  o = v.writeUIntBE(t.timeSigned, o, U48)
  o = v.writeUInt16BE(t.fudge, o)
  o = v.writeUInt16BE(t.error, o)
  o = v.writeUInt16BE(t.otherData.length, o)
  t.otherData.copy(v, o)
  return v
}

function updateVariables(h: Hmac, k: KeyInfo, t: TSIGData): void {
  h.update(tsigVariables(k, t))
}

/** The TSIG RR (owner and algorithm uncompressed, class ANY, TTL 0) appended to `wire`, ARCOUNT incremented. */
export function appendTsig(wire: Buffer, key: TsigKey, k: KeyInfo, t: TSIGData): Buffer {
  const owner = nameToWire(key.name)
  const rdlen = k.algWire.length + U48 + U16 + U16 + t.mac.length + U16 + U16 + U16 + t.otherData.length
  const out = Buffer.allocUnsafe(wire.length + owner.length + U16 + U16 + U32 + U16 + rdlen)
  wire.copy(out, 0)
  let o = wire.length
  owner.copy(out, o)
  o += owner.length
  o = out.writeUInt16BE(RRType.TSIG, o)
  o = out.writeUInt16BE(RRClass.ANY, o)
  o = out.writeUInt32BE(0, o)
  o = out.writeUInt16BE(rdlen, o)
  nameToWire(k.algorithm).copy(out, o)
  o += k.algWire.length
  o = out.writeUIntBE(t.timeSigned, o, U48)
  o = out.writeUInt16BE(t.fudge, o)
  o = out.writeUInt16BE(t.mac.length, o)
  t.mac.copy(out, o)
  o += t.mac.length
  o = out.writeUInt16BE(t.originalId, o)
  o = out.writeUInt16BE(t.error, o)
  o = out.writeUInt16BE(t.otherData.length, o)
  t.otherData.copy(out, o)
  out.writeUInt16BE(wire.readUInt16BE(OFF_ARCOUNT) + 1, OFF_ARCOUNT)
  return out
}

/** Octets of TYPE, CLASS, TTL, RDLENGTH after the TSIG owner name. */
const RR_FIXED = 10
/** TSIG RDATA fixed fields besides the algorithm name: time signed, fudge, MAC size, original ID, error, other len. */
const TSIG_RDATA_FIXED = U48 + 5 * U16

/** Exact size of the TSIG RR that signMessage appends. */
function tsigRRSize(k: KeyInfo, macSize: number, otherLen: number): number {
  return k.nameWire.length + RR_FIXED + k.algWire.length + TSIG_RDATA_FIXED + macSize + otherLen
}

export interface SignOptions {
  /** MAC of the request this message answers (RFC 8945 4.3.3); omit for requests. */
  requestMac?: Buffer
  /** Seconds since the epoch; default now. */
  timeSigned?: number
  fudge?: number
  /** Truncate the MAC to this many octets (RFC 8945 5.2.2.1: at least max(10, hash/2)). */
  macSize?: number
  /** TSIG error field (for error responses). Default 0. */
  error?: number
  otherData?: Buffer
  /** Original ID; default the message's ID. */
  originalId?: number
  /** Encoding limit when a Message is passed (the TSIG RR is kept within it). */
  maxSize?: number
}

export interface Signed {
  /** The message with the TSIG RR appended. */
  wire: Buffer
  /** The full (untruncated) MAC, for chaining the response or the next stream message. */
  mac: Buffer
  /** The MAC as sent (truncated when macSize was given). */
  sentMac: Buffer
  tsig: TSIGData
}

export function nowSec(): number {
  return Math.floor(Date.now() / 1000)
}

export function checkMacSize(size: number, len: number): boolean {
  return size <= len && size >= Math.max(MIN_TRUNCATED_MAC, Math.ceil(len / 2))
}

/** Signs a message (its bytes without TSIG, or a Message, whose `tsig` is ignored) with `key`. */
export function signMessage(msg: Buffer | Message, key: TsigKey, opts: SignOptions = {}): Signed {
  const k = keyInfo(key)
  let wire: Buffer
  if (Buffer.isBuffer(msg)) wire = msg
  else {
    const { tsig: _ignored, ...plain } = msg
    const overhead = tsigRRSize(k, opts.macSize ?? k.len, opts.otherData?.length ?? 0)
    const maxSize = opts.maxSize === undefined ? undefined : opts.maxSize - overhead
    wire = encodeMessage(plain, maxSize === undefined ? {} : { maxSize })
  }
  if (wire.length < HEADER_SIZE) throw new WireError('header', 0, 'shorter than 12 octets')
  const macSize = opts.macSize ?? k.len
  if (!checkMacSize(macSize, k.len))
    throw new WireError('TSIG.mac', 0, `MAC size ${macSize} not allowed for ${k.algorithm}`)
  const t: TSIGData = {
    algorithm: k.algorithm,
    timeSigned: opts.timeSigned ?? nowSec(),
    fudge: opts.fudge ?? DEFAULT_FUDGE_SEC,
    mac: Buffer.alloc(0),
    originalId: opts.originalId ?? wire.readUInt16BE(OFF_ID),
    error: opts.error ?? 0,
    otherData: opts.otherData ?? Buffer.alloc(0),
  }
  const h = createHmac(k.hash, key.secret)
  if (opts.requestMac !== undefined) {
    h.update(u16(opts.requestMac.length))
    h.update(opts.requestMac)
  }
  updateMessage(h, wire, wire.length, t.originalId, 0)
  updateVariables(h, k, t)
  const mac = h.digest()
  t.mac = macSize === k.len ? mac : mac.subarray(0, macSize)
  return { wire: appendTsig(wire, key, k, t), mac, sentMac: t.mac, tsig: t }
}

export type TsigErrorName = 'FORMERR' | 'BADKEY' | 'BADSIG' | 'BADTIME' | 'BADTRUNC' | 'UNSIGNED'

export interface TsigVerified {
  ok: true
  key: TsigKey
  /** The MAC as received (use it as requestMac when signing the response). */
  mac: Buffer
  tsig: TSIGData
  msg: Message
}

export interface TsigFailure {
  ok: false
  error: TsigErrorName
  /** TSIG error code for the response (BADSIG 16, BADKEY 17, BADTIME 18, BADTRUNC 22), or FORMERR 1. */
  code: number
  /** True when the peer reported this error in its TSIG RR (a response to our request). */
  peer: boolean
  msg?: Message
  tsig?: TSIGData
  key?: TsigKey
  /** The received MAC when it verified (BADTIME, BADTRUNC): chain the signed error response to it. */
  mac?: Buffer
  /** Decode error, for FORMERR. */
  cause?: WireError
}

export type TsigResult = TsigVerified | TsigFailure

export interface VerifyOptions {
  /** For responses: the MAC of our request. */
  requestMac?: Buffer
  /** Seconds since the epoch; default now. */
  now?: number
  /** The already decoded message (saves a second decode). */
  msg?: Message
  /**
   * The verifier's own fudge: the accepted window is min(the signer's fudge, this), so a signer cannot widen it
   * by writing fudge 65535 (issue 16 finding 7). Default: the signer's fudge (RFC 8945 5.2.3).
   */
  maxFudge?: number
}

const TSIG_CODES = {
  BADSIG: Rcode.BADSIG,
  BADKEY: Rcode.BADKEY,
  BADTIME: Rcode.BADTIME,
  BADTRUNC: Rcode.BADTRUNC,
} as const

function peerError(code: number): TsigErrorName {
  if (code === Rcode.BADKEY) return 'BADKEY'
  if (code === Rcode.BADTIME) return 'BADTIME'
  if (code === Rcode.BADTRUNC) return 'BADTRUNC'
  return 'BADSIG'
}

export function fail(error: TsigErrorName, extra: Partial<TsigFailure> = {}): TsigFailure {
  const code = error === 'FORMERR' || error === 'UNSIGNED' ? Rcode.FORMERR : TSIG_CODES[error]
  return { ok: false, error, code, peer: false, ...extra }
}

/**
 * Verifies the TSIG of received bytes. `lookup` returns the key of that name (compare names with nameEqual);
 * the key's algorithm must match the TSIG's. Works on the raw bytes: the TSIG RR is stripped and ARCOUNT and
 * the original ID restored for the MAC, as RFC 8945 4.3.2 requires.
 */
export function verifyMessage(
  wire: Buffer,
  lookup: (name: string) => TsigKey | undefined,
  opts: VerifyOptions = {},
): TsigResult {
  let msg = opts.msg
  if (msg === undefined) {
    try {
      msg = decodeMessage(wire)
    } catch (e) {
      return fail('FORMERR', { cause: e instanceof WireError ? e : undefined })
    }
  }
  const rr = msg.tsig
  if (rr === undefined || msg.tsigOffset === undefined) return fail('UNSIGNED', { msg })
  const t = rr.data
  const key = lookup(rr.name)
  const algorithm = parseTsigAlgorithm(t.algorithm)
  if (key === undefined || algorithm === undefined || parseTsigAlgorithm(key.algorithm) !== algorithm)
    return peerOr(fail('BADKEY', { msg, tsig: t }), t)
  const k = keyInfo(key)
  if (t.mac.length === 0 && t.error !== 0) return peerOr(fail('BADSIG', { msg, tsig: t, key }), t)
  if (!checkMacSize(t.mac.length, k.len)) return fail('FORMERR', { msg, tsig: t, key })
  const h = createHmac(k.hash, key.secret)
  if (opts.requestMac !== undefined) {
    h.update(u16(opts.requestMac.length))
    h.update(opts.requestMac)
  }
  updateMessage(h, wire, msg.tsigOffset, t.originalId, 1)
  updateVariables(h, k, t)
  const mac = h.digest().subarray(0, t.mac.length)
  if (!timingSafeEqual(mac, t.mac)) return peerOr(fail('BADSIG', { msg, tsig: t, key }), t)
  if (t.error !== 0) return { ...fail(peerError(t.error), { msg, tsig: t, key, mac: t.mac }), peer: true }
  const now = opts.now ?? nowSec()
  if (Math.abs(now - t.timeSigned) > Math.min(t.fudge, opts.maxFudge ?? t.fudge))
    return fail('BADTIME', { msg, tsig: t, key, mac: t.mac })
  if (t.mac.length < (key.minMacSize ?? k.len)) return fail('BADTRUNC', { msg, tsig: t, key, mac: t.mac })
  return { ok: true, key, mac: t.mac, tsig: t, msg }
}

/** When the peer put an error in its TSIG (a response), report that error instead of ours. */
function peerOr(f: TsigFailure, t: TSIGData): TsigFailure {
  if (t.error === 0) return f
  return { ...f, error: peerError(t.error), code: t.error, peer: true }
}

/**
 * The response a server sends when verifyMessage failed with BADKEY, BADSIG, BADTIME or BADTRUNC
 * (RFC 8945 5.3.2): RCODE NOTAUTH, the question copied, the TSIG error set. BADTIME and BADTRUNC are signed
 * (chained to the request MAC); BADTIME carries the server time in Other Data. Returns undefined for FORMERR
 * and UNSIGNED, which have no TSIG error response.
 */
export function tsigErrorResponse(f: TsigFailure, opts: { now?: number; key?: TsigKey } = {}): Buffer | undefined {
  if (f.msg === undefined || f.tsig === undefined || f.error === 'FORMERR' || f.error === 'UNSIGNED') return undefined
  const req = f.msg
  const reply = emptyMessage({
    id: req.id,
    qr: true,
    opcode: req.opcode,
    rd: req.rd,
    rcode: Rcode.NOTAUTH,
    questions: req.questions,
  })
  const wire = encodeMessage(reply)
  const now = opts.now ?? nowSec()
  const key = f.key ?? opts.key
  if ((f.error === 'BADTIME' || f.error === 'BADTRUNC') && key !== undefined && f.mac !== undefined) {
    const badTime = f.error === 'BADTIME'
    return signMessage(wire, key, {
      requestMac: f.mac,
      timeSigned: badTime ? f.tsig.timeSigned : now,
      fudge: f.tsig.fudge,
      error: f.code,
      otherData: badTime ? u48(now) : Buffer.alloc(0),
      originalId: f.tsig.originalId,
    }).wire
  }
  const t: TSIGData = {
    algorithm: f.tsig.algorithm,
    timeSigned: now,
    fudge: f.tsig.fudge,
    mac: Buffer.alloc(0),
    originalId: f.tsig.originalId,
    error: f.code,
    otherData: Buffer.alloc(0),
  }
  const name = f.msg.tsig?.name ?? '.'
  return encodeMessage({ ...reply, tsig: { name, type: RRType.TSIG, class: RRClass.ANY, ttl: 0, data: t } })
}

/** Server time a BADTIME response carries in Other Data (RFC 8945 5.2.3), or undefined. */
export function badTimeServerTime(t: TSIGData): number | undefined {
  return t.error === Rcode.BADTIME && t.otherData.length === TIME_LEN ? t.otherData.readUIntBE(0, TIME_LEN) : undefined
}
