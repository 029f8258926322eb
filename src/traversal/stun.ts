// STUN Binding client on the agent's shared UDP port (RFC 8489; NAT behaviour discovery after RFC 5780 section
// 4.3), for UDP hole punching (docs/punch.md): the reflexive address that matters is the NAT binding of the socket
// that carries IKE and ESP, so requests leave from that socket and answers are picked out of its traffic.
//
//   RFC 8489 5     header: 2 zero bits, type, length, magic cookie 0x2112A442, 96-bit transaction id
//   RFC 8489 14    attributes: MAPPED-ADDRESS (14.1), XOR-MAPPED-ADDRESS (14.2), SOFTWARE (14.14), FINGERPRINT (14.7)
//   RFC 5780 7.4   OTHER-ADDRESS (the server's alternate address), 7.3 RESPONSE-ORIGIN
//   RFC 8489 6.2.1 retransmission: RTO 500 ms doubling (Rc = 7, capped here at STUN_GIVE_UP_MS in all)
//   RFC 8489 8     DNS discovery: SRV _stun._udp.DOMAIN (stunServersFromSrv)
//
// Demultiplexing (RFC 8489 section 6.3 and RFC 7983's first-octet rule): a datagram is taken as STUN only while a
// request is outstanding, when it has the STUN shape (two zero bits, the cookie at offset 4, the length field
// matching) AND its transaction id is one we sent. Anything else stays ESP, so an SPI that happens to look
// like a STUN header is never stolen.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { WireError } from '../dns/wire/errors.js'
import type { Clock } from '../io/clock.js'
import type { RemoteInfo } from '../io/datagram.js'
import { splitHostPort } from '../io/host-port.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { StunTransactions } from './stun-transactions.js'

export const STUN_MAGIC_COOKIE = 0x2112a442
export const STUN_HEADER_LEN = 20
export const STUN_TXID_OFFSET = 8
export const STUN_TXID_LEN = 12
export const STUN_LENGTH_OFFSET = 2
export const STUN_COOKIE_OFFSET = 4
export const STUN_ATTR_HEADER_LEN = 4
export const STUN_DEFAULT_PORT = 3478
/** RFC 8489 14.7: the CRC-32 is XORed with "STUN". */
export const STUN_FINGERPRINT_XOR = 0x5354554e
const FINGERPRINT_LEN = 4
const TOP_TWO_BITS = 0xc0
const FAMILY_OFFSET = 1
const PORT_OFFSET = 2
const ADDR_OFFSET = 4
const IPV4_LEN = 4
const IPV6_LEN = 16
const PAD = 4

/** Message types (RFC 8489 5 and 18.2): method Binding = 0x001 in the three classes we see. */
export const StunType = { BINDING_REQUEST: 0x0001, BINDING_SUCCESS: 0x0101, BINDING_ERROR: 0x0111 } as const

/** Attribute types (RFC 8489 18.3, RFC 5780 9.1). */
export const StunAttr = {
  MAPPED_ADDRESS: 0x0001,
  /** RFC 5780 7.2 (NAT behaviour discovery, nat-behaviour.ts). */
  CHANGE_REQUEST: 0x0003,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  /** RFC 8656 18: TURN attributes. */
  CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  DATA: 0x0013,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_TRANSPORT: 0x0019,
  XOR_MAPPED_ADDRESS: 0x0020,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
} as const

/** Address family octet (RFC 8489 14.1). */
export const StunFamily = { IPV4: 0x01, IPV6: 0x02 } as const

export interface AddrPort {
  readonly address: string
  readonly port: number
}

export interface StunMessage {
  readonly type: number
  readonly txid: Buffer
  /** XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489 servers). */
  readonly mapped: AddrPort | undefined
  readonly other: AddrPort | undefined
  readonly origin: AddrPort | undefined
  readonly software: string | undefined
  readonly errorCode: number | undefined
  /** undefined: no FINGERPRINT attribute; else whether it matched. */
  readonly fingerprintOk: boolean | undefined
  /** Every attribute in order (the TURN client reads its own from here): type, offset of its header, value. */
  readonly attrs: readonly StunRawAttr[]
}

export interface StunRawAttr {
  readonly type: number
  readonly offset: number
  readonly value: Buffer
}

/** Cheap shape test (no allocation): could this datagram be a STUN message? */
export function looksLikeStun(b: Buffer): boolean {
  return (
    b.length >= STUN_HEADER_LEN &&
    (b[0]! & TOP_TWO_BITS) === 0 &&
    b.readUInt32BE(STUN_COOKIE_OFFSET) === STUN_MAGIC_COOKIE &&
    b.readUInt16BE(STUN_LENGTH_OFFSET) + STUN_HEADER_LEN === b.length
  )
}

/** A Binding request with the given 12-octet transaction id (no attributes, or FINGERPRINT only). */
export function encodeBindingRequest(txid: Buffer, opts: { fingerprint?: boolean } = {}): Buffer {
  if (txid.length !== STUN_TXID_LEN) throw new TypeError('STUN transaction id must be 12 octets')
  const fp = opts.fingerprint ?? false
  const b = Buffer.alloc(STUN_HEADER_LEN + (fp ? STUN_ATTR_HEADER_LEN + FINGERPRINT_LEN : 0))
  b.writeUInt16BE(StunType.BINDING_REQUEST, 0)
  b.writeUInt16BE(b.length - STUN_HEADER_LEN, STUN_LENGTH_OFFSET)
  b.writeUInt32BE(STUN_MAGIC_COOKIE, STUN_COOKIE_OFFSET)
  txid.copy(b, STUN_TXID_OFFSET)
  if (fp) {
    const at = STUN_HEADER_LEN
    b.writeUInt16BE(StunAttr.FINGERPRINT, at)
    b.writeUInt16BE(FINGERPRINT_LEN, at + 2)
    b.writeUInt32BE(fingerprintOf(b, at), at + STUN_ATTR_HEADER_LEN)
  }
  return b
}

/** RFC 8489 14.7 over b[0, end) with the length field already covering the FINGERPRINT attribute. */
function fingerprintOf(b: Buffer, end: number): number {
  return (crc32(b.subarray(0, end)) ^ STUN_FINGERPRINT_XOR) >>> 0
}

/** Decodes a STUN message; throws WireError { field, offset } on anything malformed. */
export function decodeStun(b: Buffer): StunMessage {
  if (b.length < STUN_HEADER_LEN) throw new WireError('stun.header', 0, 'short')
  if ((b[0]! & TOP_TWO_BITS) !== 0) throw new WireError('stun.type', 0, 'top bits set')
  if (b.readUInt32BE(STUN_COOKIE_OFFSET) !== STUN_MAGIC_COOKIE)
    throw new WireError('stun.cookie', STUN_COOKIE_OFFSET, 'no magic cookie')
  const len = b.readUInt16BE(STUN_LENGTH_OFFSET)
  if (len % PAD !== 0 || STUN_HEADER_LEN + len !== b.length)
    throw new WireError('stun.length', STUN_LENGTH_OFFSET, `length ${len} for ${b.length} octets`)
  const txid = Buffer.from(b.subarray(STUN_TXID_OFFSET, STUN_HEADER_LEN))
  let xorMapped: AddrPort | undefined
  let mapped: AddrPort | undefined
  let other: AddrPort | undefined
  let origin: AddrPort | undefined
  let software: string | undefined
  let errorCode: number | undefined
  let fingerprintOk: boolean | undefined
  const attrs: StunRawAttr[] = []
  let off = STUN_HEADER_LEN
  while (off < b.length) {
    if (off + STUN_ATTR_HEADER_LEN > b.length) throw new WireError('stun.attr', off, 'truncated header')
    const type = b.readUInt16BE(off)
    const alen = b.readUInt16BE(off + 2)
    const v = off + STUN_ATTR_HEADER_LEN
    if (v + alen > b.length) throw new WireError('stun.attr', off, `attribute 0x${type.toString(16)} overruns`)
    const val = b.subarray(v, v + alen)
    if (fingerprintOk !== undefined) throw new WireError('stun.fingerprint', off, 'attribute after FINGERPRINT')
    attrs.push({ type, offset: off, value: val })
    switch (type) {
      case StunAttr.XOR_MAPPED_ADDRESS:
        xorMapped = decodeAddress(val, v, 'stun.xor-mapped-address', b)
        break
      case StunAttr.MAPPED_ADDRESS:
        mapped = decodeAddress(val, v, 'stun.mapped-address')
        break
      case StunAttr.OTHER_ADDRESS:
        other = decodeAddress(val, v, 'stun.other-address')
        break
      case StunAttr.RESPONSE_ORIGIN:
        origin = decodeAddress(val, v, 'stun.response-origin')
        break
      case StunAttr.SOFTWARE:
        software = val.toString('utf8')
        break
      case StunAttr.ERROR_CODE:
        if (alen < 4) throw new WireError('stun.error-code', v, 'short')
        errorCode = (val[2]! & 0x07) * 100 + val[3]!
        break
      case StunAttr.FINGERPRINT:
        if (alen !== FINGERPRINT_LEN) throw new WireError('stun.fingerprint', v, 'bad length')
        fingerprintOk = val.readUInt32BE(0) === fingerprintOf(b, off)
        break
      default:
        break
    }
    off = v + Math.ceil(alen / PAD) * PAD
  }
  if (off !== b.length) throw new WireError('stun.attr', off, 'padding overruns the message')
  return {
    type: b.readUInt16BE(0) & 0x3fff,
    txid,
    mapped: xorMapped ?? mapped,
    other,
    origin,
    software,
    errorCode,
    fingerprintOk,
    attrs,
  }
}

/** MAPPED-ADDRESS layout (RFC 8489 14.1); with `msg`, the XOR form (14.2: port ^ cookie>>16, address ^ cookie|txid). */
export function decodeAddress(v: Buffer, at: number, field: string, msg?: Buffer): AddrPort {
  if (v.length < ADDR_OFFSET) throw new WireError(field, at, 'short')
  const family = v[FAMILY_OFFSET]
  const alen = family === StunFamily.IPV4 ? IPV4_LEN : family === StunFamily.IPV6 ? IPV6_LEN : 0
  if (alen === 0) throw new WireError(field, at + FAMILY_OFFSET, `unknown family ${family}`)
  if (v.length !== ADDR_OFFSET + alen) throw new WireError(field, at, 'bad length')
  let port = v.readUInt16BE(PORT_OFFSET)
  const a = Buffer.from(v.subarray(ADDR_OFFSET))
  if (msg) {
    port ^= STUN_MAGIC_COOKIE >>> 16
    // The cookie then the transaction id: bytes 4..20 of the message.
    for (let i = 0; i < alen; i++) a[i] = a[i]! ^ msg[STUN_COOKIE_OFFSET + i]!
  }
  if (alen === IPV4_LEN) return { address: [...a].join('.'), port }
  const groups: string[] = []
  for (let i = 0; i < IPV6_LEN; i += 2) groups.push(a.readUInt16BE(i).toString(16))
  return { address: new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1), port }
}

/** The XOR-MAPPED-ADDRESS layout (RFC 8489 14.2) of an IPv4 `ep` (IPv4 XORs with the cookie only). */
export function encodeXorAddress(ep: AddrPort): Buffer {
  const parts = ep.address.split('.').map(Number)
  if (parts.length !== IPV4_LEN || parts.some((x) => !(x >= 0 && x <= 0xff)))
    throw new TypeError(`not an IPv4 address: ${ep.address}`)
  const v = Buffer.alloc(ADDR_OFFSET + IPV4_LEN)
  v[FAMILY_OFFSET] = StunFamily.IPV4
  v.writeUInt16BE((ep.port ^ (STUN_MAGIC_COOKIE >>> 16)) & 0xffff, PORT_OFFSET)
  const a = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0
  v.writeUInt32BE((a ^ STUN_MAGIC_COOKIE) >>> 0, ADDR_OFFSET)
  return v
}

/** RFC 8489 14.5: MESSAGE-INTEGRITY is HMAC-SHA1, 20 octets. */
export const STUN_INTEGRITY_LEN = 20

export interface StunEncodeOptions {
  /** MESSAGE-INTEGRITY with this key (long-term: MD5(username ":" realm ":" password), RFC 8489 9.2.2). */
  readonly integrityKey?: Buffer | undefined
  readonly fingerprint?: boolean
}

/** A STUN message of `type` with `attrs` in order, then MESSAGE-INTEGRITY and FINGERPRINT as asked. */
export function encodeStun(
  type: number,
  txid: Buffer,
  attrs: readonly { readonly type: number; readonly value: Buffer }[],
  opts: StunEncodeOptions = {},
): Buffer {
  if (txid.length !== STUN_TXID_LEN) throw new TypeError('STUN transaction id must be 12 octets')
  let len = 0
  for (const a of attrs) len += STUN_ATTR_HEADER_LEN + Math.ceil(a.value.length / PAD) * PAD
  const miAt = len
  if (opts.integrityKey) len += STUN_ATTR_HEADER_LEN + STUN_INTEGRITY_LEN
  const fpAt = len
  if (opts.fingerprint) len += STUN_ATTR_HEADER_LEN + FINGERPRINT_LEN
  const b = Buffer.alloc(STUN_HEADER_LEN + len)
  b.writeUInt16BE(type, 0)
  b.writeUInt32BE(STUN_MAGIC_COOKIE, STUN_COOKIE_OFFSET)
  txid.copy(b, STUN_TXID_OFFSET)
  let off = STUN_HEADER_LEN
  for (const a of attrs) {
    b.writeUInt16BE(a.type, off)
    b.writeUInt16BE(a.value.length, off + 2)
    a.value.copy(b, off + STUN_ATTR_HEADER_LEN)
    off += STUN_ATTR_HEADER_LEN + Math.ceil(a.value.length / PAD) * PAD
  }
  if (opts.integrityKey) {
    const at = STUN_HEADER_LEN + miAt
    b.writeUInt16BE(miAt + STUN_ATTR_HEADER_LEN + STUN_INTEGRITY_LEN, STUN_LENGTH_OFFSET)
    b.writeUInt16BE(StunAttr.MESSAGE_INTEGRITY, at)
    b.writeUInt16BE(STUN_INTEGRITY_LEN, at + 2)
    createHmac('sha1', opts.integrityKey)
      .update(b.subarray(0, at))
      .digest()
      .copy(b, at + STUN_ATTR_HEADER_LEN)
  }
  b.writeUInt16BE(len, STUN_LENGTH_OFFSET)
  if (opts.fingerprint) {
    const at = STUN_HEADER_LEN + fpAt
    b.writeUInt16BE(StunAttr.FINGERPRINT, at)
    b.writeUInt16BE(FINGERPRINT_LEN, at + 2)
    b.writeUInt32BE(fingerprintOf(b, at), at + STUN_ATTR_HEADER_LEN)
  }
  return b
}

/**
 * RFC 8489 14.5: true when `b` (a decoded message `m`) carries a MESSAGE-INTEGRITY that matches `key`: HMAC-SHA1
 * over the message up to that attribute, with the length field counting up to its end. undefined: no such attribute.
 */
export function checkIntegrity(b: Buffer, m: StunMessage, key: Buffer): boolean | undefined {
  const mi = m.attrs.find((a) => a.type === StunAttr.MESSAGE_INTEGRITY)
  if (!mi) return undefined
  if (mi.value.length !== STUN_INTEGRITY_LEN) return false
  const head = Buffer.from(b.subarray(0, mi.offset))
  head.writeUInt16BE(mi.offset - STUN_HEADER_LEN + STUN_ATTR_HEADER_LEN + STUN_INTEGRITY_LEN, STUN_LENGTH_OFFSET)
  const want = createHmac('sha1', key).update(head).digest()
  return timingSafeEqual(want, mi.value)
}

// --- client --------------------------------------------------------------------------------------------------

/** RFC 8489 6.2.1: initial RTO. */
export const STUN_RTO_MS = 500
/** Rc = 7 in the RFC (39.5 s); we give up well before: a punch decision must not wait that long. */
export const STUN_GIVE_UP_MS = 3500

export interface BindingResult {
  /** The server we asked. */
  readonly server: AddrPort
  /** Our reflexive transport address as that server saw it. */
  readonly mapped: AddrPort
  readonly other: AddrPort | undefined
  readonly rttMs: number
}

/** What the receive paths (the agent's socket handler, the tunnel's receiver) ask of the client. */
export interface StunDemux {
  /** Outstanding transactions: when 0, nothing is ever taken (the check costs one property read). */
  readonly outstanding: number
  /** True when `msg` answered one of our transactions (and was consumed). */
  offer(msg: Buffer, from: RemoteInfo): boolean
}

export interface StunClientDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  /** Sends on the agent's shared socket (the one carrying IKE/ESP). */
  readonly send: (buf: Buffer, port: number, address: string) => void
}

export interface StunClientOptions {
  /** @default STUN_RTO_MS */
  readonly rtoMs?: number
  /** @default STUN_GIVE_UP_MS */
  readonly giveUpMs?: number
}

export interface StunCounters {
  requests: number
  retransmits: number
  responses: number
  errors: number
  timeouts: number
  malformed: number
}

export class StunClient implements StunDemux {
  readonly #d: StunClientDeps
  readonly #tx: StunTransactions<StunMessage>
  #closed = false
  readonly #counts = { responses: 0, errors: 0, timeouts: 0, malformed: 0 }

  constructor(deps: StunClientDeps, opts: StunClientOptions = {}) {
    this.#d = deps
    this.#tx = new StunTransactions(deps.clock, {
      rtoMs: opts.rtoMs ?? STUN_RTO_MS,
      giveUpMs: opts.giveUpMs ?? STUN_GIVE_UP_MS,
    })
  }

  get counters(): StunCounters {
    return { requests: this.#tx.requests, retransmits: this.#tx.retransmits, ...this.#counts }
  }

  get outstanding(): number {
    return this.#tx.size
  }

  /** One Binding transaction; undefined when no success response came within giveUpMs (or on an error response). */
  async binding(server: AddrPort): Promise<BindingResult | undefined> {
    if (this.#closed) return undefined
    const { clock, random, log } = this.#d
    const txid = random.bytes(STUN_TXID_LEN)
    const req = encodeBindingRequest(txid, { fingerprint: true })
    const at = `${server.address}:${server.port}`
    const sentAt = clock.monotonic()
    const m = await this.#tx.start(txid.toString('hex'), () => {
      try {
        this.#d.send(req, server.port, server.address)
      } catch (e) {
        log.debug('stun.send_failed', { server: at, err: String(e) })
      }
    })
    if (!m) {
      if (!this.#closed) {
        this.#counts.timeouts++
        log.debug('stun.timeout', { server: at })
      }
      return undefined
    }
    if (m.type !== StunType.BINDING_SUCCESS || !m.mapped) {
      this.#counts.errors++
      log.info('stun.error_response', { server: at, code: m.errorCode })
      return undefined
    }
    this.#counts.responses++
    return { server, mapped: m.mapped, other: m.other, rttMs: clock.monotonic() - sentAt }
  }

  readonly offer = (msg: Buffer, from: RemoteInfo): boolean => {
    if (this.#tx.size === 0 || !looksLikeStun(msg)) return false
    const key = msg.toString('hex', STUN_TXID_OFFSET, STUN_HEADER_LEN)
    if (!this.#tx.has(key)) return false
    let m: StunMessage
    try {
      m = decodeStun(msg)
    } catch (e) {
      this.#counts.malformed++
      this.#d.log.debug('stun.malformed', { from: `${from.address}:${from.port}`, err: (e as Error).message })
      return true
    }
    if (m.fingerprintOk === false) {
      this.#counts.malformed++
      return true
    }
    this.#tx.settle(key, m)
    return true
  }

  /** Ends every transaction (undefined) and refuses new ones. */
  close(): void {
    this.#closed = true
    this.#tx.close()
  }
}

// --- NAT behaviour --------------------------------------------------------------------------------------------

/** RFC 4787 mapping behaviour as far as two servers tell: endpoint-independent, or not ('symmetric'). */
export type MappingKind = 'eim' | 'symmetric'

export interface NatProbe {
  /** Our reflexive endpoint as the first server that answered saw it. */
  readonly reflexive: AddrPort
  /** undefined when only one server answered (no second address to compare with). */
  readonly mapping: MappingKind | undefined
  readonly servers: readonly AddrPort[]
}

/**
 * RFC 5780 section 4.3, tests I and II: ask `servers[0]`; then a second address (`servers[1]`, else the first
 * server's OTHER-ADDRESS with the primary port, as test II does). The same reflexive address and port from both:
 * endpoint-independent mapping; different: address(-and-port)-dependent, which we call symmetric. Undefined when
 * no server answered.
 */
export async function probeNat(client: StunClient, servers: readonly AddrPort[]): Promise<NatProbe | undefined> {
  let first: BindingResult | undefined
  let i = 0
  for (; i < servers.length && !first; i++) first = await client.binding(servers[i]!)
  if (!first) return undefined
  const second = servers[i] ?? (first.other ? { address: first.other.address, port: first.server.port } : undefined)
  if (!second || (second.address === first.server.address && second.port === first.server.port))
    return { reflexive: first.mapped, mapping: undefined, servers: [first.server] }
  const r2 = await client.binding(second)
  if (!r2) return { reflexive: first.mapped, mapping: undefined, servers: [first.server] }
  const same = r2.mapped.address === first.mapped.address && r2.mapped.port === first.mapped.port
  return { reflexive: first.mapped, mapping: same ? 'eim' : 'symmetric', servers: [first.server, second] }
}

/** "HOST[:PORT]" of `--stun` -> AddrPort (HOST must be an address here; names are resolved by the caller). */
export function parseStunServer(s: string): { host: string; port: number } {
  const hp = splitHostPort(s, STUN_DEFAULT_PORT)
  if (!hp) throw new TypeError(`--stun wants HOST[:PORT], got ${JSON.stringify(s)}`)
  return hp
}
