// NAT-PMP, RFC 6886: the codec (3.2 external address, 3.3 MAP UDP/TCP, 3.5 result codes, 3.2.1 address
// announcements) and a client for one gateway (3.1 retransmission, 3.3 renewal, 3.4 deletion, 3.6 epoch).

import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import { EpochTracker } from './epoch.js'
import { PortmapResultError, PortmapWireError } from './errors.js'
import { readIPv4, writeIPv4 } from './ip.js'
import type {
  GatewayAnnouncement,
  MappingClient,
  MapRequest,
  MapResult,
  PortmapSockets,
  RetrySchedule,
} from './types.js'
import { RFC6886_RETRY } from './types.js'
import { UdpTransaction } from './udp-transaction.js'

/** RFC 6886 3: the gateway listens on 5351; clients listen for announcements on 224.0.0.1:5350. */
export const NATPMP_PORT = 5351
export const NATPMP_ANNOUNCE_PORT = 5350
export const NATPMP_ANNOUNCE_GROUP = '224.0.0.1'
export const NATPMP_VERSION = 0

/** RFC 6886 3.2, 3.3: opcodes; a response carries the request's opcode plus 128. */
export const NatPmpOpcode = { ExternalAddress: 0, MapUdp: 1, MapTcp: 2 } as const
export const NATPMP_RESPONSE_BIT = 0x80

/** RFC 6886 3.5 result codes. */
export const NatPmpResult = {
  Success: 0,
  UnsupportedVersion: 1,
  NotAuthorized: 2,
  NetworkFailure: 3,
  OutOfResources: 4,
  UnsupportedOpcode: 5,
} as const

/** RFC 6886 3.3: the lifetime the RFC recommends, in seconds. */
export const NATPMP_RECOMMENDED_LIFETIME_SEC = 7200

// Field offsets (RFC 6886 3.2 and 3.3 figures).
const OFF_VERSION = 0
const OFF_OPCODE = 1
const OFF_RESERVED = 2
const OFF_RESULT = 2
const OFF_EPOCH = 4
const OFF_EXTERNAL_ADDRESS = 8
const OFF_REQ_INTERNAL_PORT = 4
const OFF_REQ_EXTERNAL_PORT = 6
const OFF_REQ_LIFETIME = 8
const OFF_RSP_INTERNAL_PORT = 8
const OFF_RSP_EXTERNAL_PORT = 10
const OFF_RSP_LIFETIME = 12
export const NATPMP_ADDRESS_REQUEST_LEN = 2
export const NATPMP_ADDRESS_RESPONSE_LEN = 12
export const NATPMP_MAP_REQUEST_LEN = 12
export const NATPMP_MAP_RESPONSE_LEN = 16
/** Version, opcode, result code and epoch: what even an error response carries. */
const NATPMP_RESPONSE_HEADER_LEN = 8

export type NatPmpRequest =
  | { readonly op: 'external-address' }
  | {
      readonly op: 'map'
      readonly protocol: 'udp' | 'tcp'
      readonly internalPort: number
      readonly suggestedExternalPort: number
      readonly lifetimeSec: number
    }

export type NatPmpResponse =
  | {
      readonly op: 'external-address'
      readonly resultCode: number
      readonly epochSec: number
      readonly externalAddress: string
    }
  | {
      readonly op: 'map'
      readonly protocol: 'udp' | 'tcp'
      readonly resultCode: number
      readonly epochSec: number
      readonly internalPort: number
      readonly externalPort: number
      readonly lifetimeSec: number
    }

function mapOpcode(protocol: 'udp' | 'tcp'): number {
  return protocol === 'udp' ? NatPmpOpcode.MapUdp : NatPmpOpcode.MapTcp
}

export function encodeNatPmpRequest(req: NatPmpRequest): Buffer {
  if (req.op === 'external-address') {
    const b = Buffer.alloc(NATPMP_ADDRESS_REQUEST_LEN)
    b[OFF_VERSION] = NATPMP_VERSION
    b[OFF_OPCODE] = NatPmpOpcode.ExternalAddress
    return b
  }
  const b = Buffer.alloc(NATPMP_MAP_REQUEST_LEN)
  b[OFF_VERSION] = NATPMP_VERSION
  b[OFF_OPCODE] = mapOpcode(req.protocol)
  b.writeUInt16BE(0, OFF_RESERVED)
  b.writeUInt16BE(req.internalPort, OFF_REQ_INTERNAL_PORT)
  b.writeUInt16BE(req.suggestedExternalPort, OFF_REQ_EXTERNAL_PORT)
  b.writeUInt32BE(req.lifetimeSec, OFF_REQ_LIFETIME)
  return b
}

export function decodeNatPmpRequest(buf: Buffer, off = 0): NatPmpRequest {
  const avail = buf.length - off
  if (avail < NATPMP_ADDRESS_REQUEST_LEN) throw new PortmapWireError('NatPmp.header', off, 'short')
  if (buf[off + OFF_VERSION] !== NATPMP_VERSION) throw new PortmapWireError('NatPmp.version', off + OFF_VERSION)
  const op = buf[off + OFF_OPCODE]!
  if (op === NatPmpOpcode.ExternalAddress) return { op: 'external-address' }
  if (op !== NatPmpOpcode.MapUdp && op !== NatPmpOpcode.MapTcp)
    throw new PortmapWireError('NatPmp.opcode', off + OFF_OPCODE, `unknown ${op}`)
  if (avail < NATPMP_MAP_REQUEST_LEN) throw new PortmapWireError('NatPmpMap', off, 'short')
  return {
    op: 'map',
    protocol: op === NatPmpOpcode.MapUdp ? 'udp' : 'tcp',
    internalPort: buf.readUInt16BE(off + OFF_REQ_INTERNAL_PORT),
    suggestedExternalPort: buf.readUInt16BE(off + OFF_REQ_EXTERNAL_PORT),
    lifetimeSec: buf.readUInt32BE(off + OFF_REQ_LIFETIME),
  }
}

export function encodeNatPmpResponse(rsp: NatPmpResponse): Buffer {
  const len = rsp.op === 'external-address' ? NATPMP_ADDRESS_RESPONSE_LEN : NATPMP_MAP_RESPONSE_LEN
  const b = Buffer.alloc(len)
  b[OFF_VERSION] = NATPMP_VERSION
  b.writeUInt16BE(rsp.resultCode, OFF_RESULT)
  b.writeUInt32BE(rsp.epochSec, OFF_EPOCH)
  if (rsp.op === 'external-address') {
    b[OFF_OPCODE] = NATPMP_RESPONSE_BIT | NatPmpOpcode.ExternalAddress
    writeIPv4(b, OFF_EXTERNAL_ADDRESS, rsp.externalAddress)
  } else {
    b[OFF_OPCODE] = NATPMP_RESPONSE_BIT | mapOpcode(rsp.protocol)
    b.writeUInt16BE(rsp.internalPort, OFF_RSP_INTERNAL_PORT)
    b.writeUInt16BE(rsp.externalPort, OFF_RSP_EXTERNAL_PORT)
    b.writeUInt32BE(rsp.lifetimeSec, OFF_RSP_LIFETIME)
  }
  return b
}

/**
 * Decodes a response. An error response may stop after the epoch (some gateways send only the 8-byte
 * header on failure); its remaining fields then read as zero. A success must be full length.
 */
export function decodeNatPmpResponse(buf: Buffer, off = 0): NatPmpResponse {
  const avail = buf.length - off
  if (avail < NATPMP_RESPONSE_HEADER_LEN) throw new PortmapWireError('NatPmp.header', off, 'short')
  if (buf[off + OFF_VERSION] !== NATPMP_VERSION) throw new PortmapWireError('NatPmp.version', off + OFF_VERSION)
  const rawOp = buf[off + OFF_OPCODE]!
  if ((rawOp & NATPMP_RESPONSE_BIT) === 0)
    throw new PortmapWireError('NatPmp.opcode', off + OFF_OPCODE, 'not a response')
  const op = rawOp & ~NATPMP_RESPONSE_BIT
  const resultCode = buf.readUInt16BE(off + OFF_RESULT)
  const epochSec = buf.readUInt32BE(off + OFF_EPOCH)
  const full = (len: number, field: string): boolean => {
    if (avail >= len) return true
    if (resultCode === NatPmpResult.Success) throw new PortmapWireError(field, off, 'short')
    return false
  }
  if (op === NatPmpOpcode.ExternalAddress) {
    const externalAddress = full(NATPMP_ADDRESS_RESPONSE_LEN, 'NatPmpAddress')
      ? readIPv4(buf, off + OFF_EXTERNAL_ADDRESS)
      : '0.0.0.0'
    return { op: 'external-address', resultCode, epochSec, externalAddress }
  }
  if (op !== NatPmpOpcode.MapUdp && op !== NatPmpOpcode.MapTcp)
    throw new PortmapWireError('NatPmp.opcode', off + OFF_OPCODE, `unknown ${rawOp}`)
  const protocol = op === NatPmpOpcode.MapUdp ? 'udp' : 'tcp'
  if (!full(NATPMP_MAP_RESPONSE_LEN, 'NatPmpMap'))
    return { op: 'map', protocol, resultCode, epochSec, internalPort: 0, externalPort: 0, lifetimeSec: 0 }
  return {
    op: 'map',
    protocol,
    resultCode,
    epochSec,
    internalPort: buf.readUInt16BE(off + OFF_RSP_INTERNAL_PORT),
    externalPort: buf.readUInt16BE(off + OFF_RSP_EXTERNAL_PORT),
    lifetimeSec: buf.readUInt32BE(off + OFF_RSP_LIFETIME),
  }
}

/** RFC 6886 3.2.1: an unsolicited external-address response sent to 224.0.0.1:5350 after a change. */
export function decodeNatPmpAnnouncement(buf: Buffer): GatewayAnnouncement | undefined {
  const r = decodeNatPmpResponse(buf)
  if (r.op !== 'external-address' || r.resultCode !== NatPmpResult.Success) return undefined
  return { kind: 'natpmp-address', epochSec: r.epochSec, address: r.externalAddress }
}

export interface NatPmpClientDeps {
  readonly clock: Clock
  readonly log: Logger
  readonly sockets: PortmapSockets
}

export interface NatPmpClientOptions {
  readonly gateway: string
  /** @default 5351 */
  readonly port?: number
  /** @default RFC6886_RETRY (250 ms, doubling, 9 tries) */
  readonly retry?: RetrySchedule
}

/** NAT-PMP against one gateway. Calls must not overlap (the PortMapper serializes them). */
export class NatPmpClient implements MappingClient {
  readonly protocol = 'natpmp' as const
  readonly #clock: Clock
  readonly #log: Logger
  readonly #socket: DatagramSocket
  readonly #tx: UdpTransaction
  readonly #retry: RetrySchedule
  #bound: Promise<unknown> | undefined
  readonly #epoch = new EpochTracker()

  constructor(deps: NatPmpClientDeps, opts: NatPmpClientOptions) {
    this.#clock = deps.clock
    this.#log = deps.log
    this.#retry = opts.retry ?? RFC6886_RETRY
    this.#socket = deps.sockets.udp()
    this.#tx = new UdpTransaction({ clock: deps.clock, log: deps.log, socket: this.#socket }, 'natpmp', {
      address: opts.gateway,
      port: opts.port ?? NATPMP_PORT,
    })
  }

  /** Requests sent (retransmissions included) and datagrams dropped, for tests and status. */
  get counters(): { sends: number; drops: number } {
    return { sends: this.#tx.sends, drops: this.#tx.drops }
  }

  async #request(req: NatPmpRequest, maxTries?: number): Promise<NatPmpResponse & { restarted: boolean }> {
    this.#bound ??= this.#socket.bind(0)
    await this.#bound
    const expectOp = req.op === 'external-address' ? NatPmpOpcode.ExternalAddress : mapOpcode(req.protocol)
    const schedule = maxTries ? { ...this.#retry, maxTries } : this.#retry
    const rsp = await this.#tx.request(
      encodeNatPmpRequest(req),
      (msg) => {
        const r = decodeNatPmpResponse(msg)
        const op = r.op === 'external-address' ? NatPmpOpcode.ExternalAddress : mapOpcode(r.protocol)
        if (op !== expectOp) return undefined
        if (
          r.op === 'map' &&
          req.op === 'map' &&
          r.resultCode === NatPmpResult.Success &&
          r.internalPort !== req.internalPort
        )
          return undefined
        return r
      },
      schedule,
    )
    const prev = this.#epoch.last?.epochSec
    const restarted = this.#epoch.response(rsp.epochSec, this.#clock.monotonic())
    if (restarted) this.#log.info('natpmp.epoch-reset', { prev, epoch: rsp.epochSec })
    if (rsp.resultCode !== NatPmpResult.Success) throw new PortmapResultError('natpmp', rsp.resultCode, req.op)
    return { ...rsp, restarted }
  }

  async externalAddress(opts: { maxTries?: number } = {}): Promise<{ address: string; restarted: boolean }> {
    const r = await this.#request({ op: 'external-address' }, opts.maxTries)
    if (r.op !== 'external-address') throw new Error('unreachable')
    return { address: r.externalAddress, restarted: r.restarted }
  }

  async probe(opts: { maxTries?: number } = {}): Promise<void> {
    await this.externalAddress(opts)
  }

  /** RFC 6886 3.3: external address, then MAP; renewing is sending the same request again. */
  async map(req: MapRequest, opts: { maxTries?: number } = {}): Promise<MapResult> {
    const addr = await this.externalAddress(opts)
    const r = await this.#request(
      {
        op: 'map',
        protocol: req.protocol,
        internalPort: req.internalPort,
        suggestedExternalPort: req.suggestedExternalPort,
        lifetimeSec: req.lifetimeSec,
      },
      opts.maxTries,
    )
    if (r.op !== 'map') throw new Error('unreachable')
    this.#log.debug('natpmp.mapped', { external: `${addr.address}:${r.externalPort}`, lifetimeSec: r.lifetimeSec })
    return {
      external: { address: addr.address, port: r.externalPort },
      lifetimeSec: r.lifetimeSec,
      gatewayRestarted: addr.restarted || r.restarted,
    }
  }

  /** RFC 6886 3.4: lifetime 0 and suggested external port 0 delete the mapping of this internal port. */
  async unmap(req: MapRequest, opts: { maxTries?: number } = {}): Promise<void> {
    await this.#request(
      { op: 'map', protocol: req.protocol, internalPort: req.internalPort, suggestedExternalPort: 0, lifetimeSec: 0 },
      opts.maxTries,
    )
  }

  /** The gateway announced its epoch (mapper.ts): a restart it shows is reported with the next response. */
  announced(epochSec: number): void {
    const prev = this.#epoch.last?.epochSec
    if (this.#epoch.announced(epochSec, this.#clock.monotonic()))
      this.#log.info('natpmp.epoch-reset', { prev, epoch: epochSec, announced: true })
  }

  cancel(): void {
    this.#tx.abort()
  }

  async close(): Promise<void> {
    this.#tx.abort()
    await this.#socket.close()
  }
}
