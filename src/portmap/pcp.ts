// PCP, RFC 6887: the codec (7.1 request header, 7.2 response header, 7.3 options, 7.4 result codes,
// 11.1 MAP payload, 14.1 ANNOUNCE) and a MAP client for one gateway (8.1.1 retransmission, here from
// 250 ms as the issue asks; 8.5 epoch check; 11.2.1 renewal and 15 deletion reusing the mapping nonce).

import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { EpochTracker } from './epoch.js'
import { PortmapResultError, PortmapWireError } from './errors.js'
import { readIp16, writeIp16 } from './ip.js'
import type { MappingClient, MapRequest, MapResult, PortmapSockets, RetrySchedule } from './types.js'
import { RFC6886_RETRY } from './types.js'
import { UdpTransaction } from './udp-transaction.js'

/** RFC 6887 19.1: the server port; ANNOUNCE goes to 224.0.0.1:5350 (14.1.3). */
export const PCP_PORT = 5351
export const PCP_VERSION = 2
/** RFC 6887 7: no PCP message is longer than this. */
export const PCP_MAX_MESSAGE_LEN = 1100

/** RFC 6887 19.2 opcodes; the R bit marks a response (7.1). */
export const PcpOpcode = { Announce: 0, Map: 1, Peer: 2 } as const
export const PCP_RESPONSE_BIT = 0x80

/** RFC 6887 7.4 result codes. */
export const PcpResult = {
  Success: 0,
  UnsuppVersion: 1,
  NotAuthorized: 2,
  MalformedRequest: 3,
  UnsuppOpcode: 4,
  UnsuppOption: 5,
  MalformedOption: 6,
  NetworkFailure: 7,
  NoResources: 8,
  UnsuppProtocol: 9,
  UserExQuota: 10,
  CannotProvideExternal: 11,
  AddressMismatch: 12,
  ExcessiveRemotePeers: 13,
} as const

/** IANA protocol numbers, as the MAP payload carries them (RFC 6887 11.1). */
export const IanaProtocol = { TCP: 6, UDP: 17 } as const

// RFC 6887 7.1 / 7.2 header layout.
const OFF_VERSION = 0
const OFF_OPCODE = 1
const OFF_RSP_RESULT = 3
const OFF_LIFETIME = 4
const OFF_REQ_CLIENT_IP = 8
const OFF_RSP_EPOCH = 8
export const PCP_HEADER_LEN = 24
// RFC 6887 11.1 MAP payload layout, relative to the payload.
const OFF_MAP_NONCE = 0
export const PCP_NONCE_LEN = 12
const OFF_MAP_PROTOCOL = 12
const OFF_MAP_INTERNAL_PORT = 16
const OFF_MAP_EXTERNAL_PORT = 18
const OFF_MAP_EXTERNAL_IP = 20
export const PCP_MAP_PAYLOAD_LEN = 36
// RFC 6887 7.3 option header.
const OFF_OPTION_CODE = 0
const OFF_OPTION_RESERVED = 1
const OFF_OPTION_LENGTH = 2
const OPTION_HEADER_LEN = 4
const OPTION_ALIGN = 4

export interface PcpOption {
  readonly code: number
  readonly data: Buffer
}

export interface PcpMapPayload {
  readonly nonce: Buffer
  /** IANA protocol number; 0 means all protocols. */
  readonly protocol: number
  readonly internalPort: number
  /** Suggested (request) or assigned (response) external port and address. */
  readonly externalPort: number
  readonly externalAddress: string
}

export type PcpRequest =
  | {
      readonly opcode: 'map'
      readonly lifetimeSec: number
      readonly clientAddress: string
      readonly map: PcpMapPayload
      readonly options?: readonly PcpOption[]
    }
  | { readonly opcode: 'announce'; readonly clientAddress: string; readonly options?: readonly PcpOption[] }

export type PcpResponse =
  | {
      readonly opcode: 'map'
      readonly resultCode: number
      readonly lifetimeSec: number
      readonly epochSec: number
      readonly map: PcpMapPayload
      readonly options: readonly PcpOption[]
    }
  | {
      readonly opcode: 'announce'
      readonly resultCode: number
      readonly lifetimeSec: number
      readonly epochSec: number
      readonly options: readonly PcpOption[]
    }

function optionsLen(options: readonly PcpOption[] | undefined): number {
  let n = 0
  for (const o of options ?? []) n += OPTION_HEADER_LEN + Math.ceil(o.data.length / OPTION_ALIGN) * OPTION_ALIGN
  return n
}

function writeOptions(b: Buffer, off: number, options: readonly PcpOption[] | undefined): void {
  for (const o of options ?? []) {
    b[off + OFF_OPTION_CODE] = o.code
    b[off + OFF_OPTION_RESERVED] = 0
    b.writeUInt16BE(o.data.length, off + OFF_OPTION_LENGTH)
    o.data.copy(b, off + OPTION_HEADER_LEN)
    off += OPTION_HEADER_LEN + Math.ceil(o.data.length / OPTION_ALIGN) * OPTION_ALIGN
  }
}

function readOptions(buf: Buffer, off: number): PcpOption[] {
  const options: PcpOption[] = []
  while (off < buf.length) {
    if (buf.length - off < OPTION_HEADER_LEN) throw new PortmapWireError('PcpOption.header', off, 'short')
    const len = buf.readUInt16BE(off + OFF_OPTION_LENGTH)
    const padded = Math.ceil(len / OPTION_ALIGN) * OPTION_ALIGN
    if (buf.length - off - OPTION_HEADER_LEN < padded)
      throw new PortmapWireError('PcpOption.length', off + OFF_OPTION_LENGTH, 'overruns')
    options.push({
      code: buf[off]!,
      data: Buffer.from(buf.subarray(off + OPTION_HEADER_LEN, off + OPTION_HEADER_LEN + len)),
    })
    off += OPTION_HEADER_LEN + padded
  }
  return options
}

function writeMap(b: Buffer, off: number, m: PcpMapPayload): void {
  if (m.nonce.length !== PCP_NONCE_LEN) throw new RangeError('PCP nonce must be 12 bytes')
  m.nonce.copy(b, off + OFF_MAP_NONCE)
  b[off + OFF_MAP_PROTOCOL] = m.protocol
  b.writeUInt16BE(m.internalPort, off + OFF_MAP_INTERNAL_PORT)
  b.writeUInt16BE(m.externalPort, off + OFF_MAP_EXTERNAL_PORT)
  writeIp16(b, off + OFF_MAP_EXTERNAL_IP, m.externalAddress)
}

function readMap(buf: Buffer, off: number): PcpMapPayload {
  if (buf.length - off < PCP_MAP_PAYLOAD_LEN) throw new PortmapWireError('PcpMap', off, 'short')
  return {
    nonce: Buffer.from(buf.subarray(off + OFF_MAP_NONCE, off + OFF_MAP_NONCE + PCP_NONCE_LEN)),
    protocol: buf[off + OFF_MAP_PROTOCOL]!,
    internalPort: buf.readUInt16BE(off + OFF_MAP_INTERNAL_PORT),
    externalPort: buf.readUInt16BE(off + OFF_MAP_EXTERNAL_PORT),
    externalAddress: readIp16(buf, off + OFF_MAP_EXTERNAL_IP),
  }
}

export function encodePcpRequest(req: PcpRequest): Buffer {
  const payloadLen = req.opcode === 'map' ? PCP_MAP_PAYLOAD_LEN : 0
  const b = Buffer.alloc(PCP_HEADER_LEN + payloadLen + optionsLen(req.options))
  b[OFF_VERSION] = PCP_VERSION
  b[OFF_OPCODE] = req.opcode === 'map' ? PcpOpcode.Map : PcpOpcode.Announce
  b.writeUInt32BE(req.opcode === 'map' ? req.lifetimeSec : 0, OFF_LIFETIME)
  writeIp16(b, OFF_REQ_CLIENT_IP, req.clientAddress)
  if (req.opcode === 'map') writeMap(b, PCP_HEADER_LEN, req.map)
  writeOptions(b, PCP_HEADER_LEN + payloadLen, req.options)
  return b
}

function checkCommon(buf: Buffer, off: number, response: boolean): number {
  if (buf.length - off < PCP_HEADER_LEN) throw new PortmapWireError('Pcp.header', off, 'short')
  if (buf.length - off > PCP_MAX_MESSAGE_LEN) throw new PortmapWireError('Pcp', off, 'longer than 1100 bytes')
  if (buf[off + OFF_VERSION] !== PCP_VERSION) throw new PortmapWireError('Pcp.version', off + OFF_VERSION)
  const raw = buf[off + OFF_OPCODE]!
  if (((raw & PCP_RESPONSE_BIT) !== 0) !== response) throw new PortmapWireError('Pcp.R', off + OFF_OPCODE)
  const op = raw & ~PCP_RESPONSE_BIT
  if (op !== PcpOpcode.Map && op !== PcpOpcode.Announce)
    throw new PortmapWireError('Pcp.opcode', off + OFF_OPCODE, `unsupported ${op}`)
  return op
}

export function decodePcpRequest(buf: Buffer, off = 0): PcpRequest {
  const op = checkCommon(buf, off, false)
  const clientAddress = readIp16(buf, off + OFF_REQ_CLIENT_IP)
  if (op === PcpOpcode.Announce)
    return { opcode: 'announce', clientAddress, options: readOptions(buf, off + PCP_HEADER_LEN) }
  const map = readMap(buf, off + PCP_HEADER_LEN)
  return {
    opcode: 'map',
    lifetimeSec: buf.readUInt32BE(off + OFF_LIFETIME),
    clientAddress,
    map,
    options: readOptions(buf, off + PCP_HEADER_LEN + PCP_MAP_PAYLOAD_LEN),
  }
}

export function encodePcpResponse(rsp: PcpResponse): Buffer {
  const payloadLen = rsp.opcode === 'map' ? PCP_MAP_PAYLOAD_LEN : 0
  const b = Buffer.alloc(PCP_HEADER_LEN + payloadLen + optionsLen(rsp.options))
  b[OFF_VERSION] = PCP_VERSION
  b[OFF_OPCODE] = PCP_RESPONSE_BIT | (rsp.opcode === 'map' ? PcpOpcode.Map : PcpOpcode.Announce)
  b[OFF_RSP_RESULT] = rsp.resultCode
  b.writeUInt32BE(rsp.lifetimeSec, OFF_LIFETIME)
  b.writeUInt32BE(rsp.epochSec, OFF_RSP_EPOCH)
  if (rsp.opcode === 'map') writeMap(b, PCP_HEADER_LEN, rsp.map)
  writeOptions(b, PCP_HEADER_LEN + payloadLen, rsp.options)
  return b
}

/**
 * Decodes a response. RFC 6887 7.2: an error response may be cut short after the header; its MAP payload
 * then reads as undefined fields, so only the header is returned for it (as an announce-shaped value is
 * not right either, a short MAP error keeps opcode 'map' with an empty payload).
 */
export function decodePcpResponse(buf: Buffer, off = 0): PcpResponse {
  const op = checkCommon(buf, off, true)
  const resultCode = buf[off + OFF_RSP_RESULT]!
  const lifetimeSec = buf.readUInt32BE(off + OFF_LIFETIME)
  const epochSec = buf.readUInt32BE(off + OFF_RSP_EPOCH)
  if (op === PcpOpcode.Announce)
    return { opcode: 'announce', resultCode, lifetimeSec, epochSec, options: readOptions(buf, off + PCP_HEADER_LEN) }
  if (resultCode !== PcpResult.Success && buf.length - off < PCP_HEADER_LEN + PCP_MAP_PAYLOAD_LEN) {
    const empty = {
      nonce: Buffer.alloc(PCP_NONCE_LEN),
      protocol: 0,
      internalPort: 0,
      externalPort: 0,
      externalAddress: '::',
    }
    return { opcode: 'map', resultCode, lifetimeSec, epochSec, map: empty, options: [] }
  }
  const map = readMap(buf, off + PCP_HEADER_LEN)
  return {
    opcode: 'map',
    resultCode,
    lifetimeSec,
    epochSec,
    map,
    options: readOptions(buf, off + PCP_HEADER_LEN + PCP_MAP_PAYLOAD_LEN),
  }
}

/** An unsolicited ANNOUNCE (RFC 6887 14.1.3) heard on 224.0.0.1:5350, or undefined for anything else. */
export function decodePcpAnnouncement(buf: Buffer): { kind: 'pcp-announce'; epochSec: number } | undefined {
  const r = decodePcpResponse(buf)
  if (r.opcode !== 'announce' || r.resultCode !== PcpResult.Success) return undefined
  return { kind: 'pcp-announce', epochSec: r.epochSec }
}

export interface PcpClientDeps {
  readonly clock: Clock
  readonly log: Logger
  readonly random: Random
  readonly sockets: PortmapSockets
}

export interface PcpClientOptions {
  readonly gateway: string
  /** This host's LAN address: the PCP client IP, and the source address of every request. */
  readonly internalAddress: string
  /** @default 5351 */
  readonly port?: number
  /** @default RFC6886_RETRY (250 ms, doubling, 9 tries), as the issue asks instead of RFC 6887's 3 s */
  readonly retry?: RetrySchedule
}

/** NAT-PMP gateways answer a PCP request with a version-0 header (RFC 6887 9). */
const NATPMP_VERSION = 0
const NATPMP_MIN_ERROR_LEN = 4

/** PCP MAP against one gateway. Calls must not overlap (the PortMapper serializes them). */
export class PcpClient implements MappingClient {
  readonly protocol = 'pcp' as const
  readonly #clock: Clock
  readonly #log: Logger
  readonly #random: Random
  readonly #socket: DatagramSocket
  readonly #tx: UdpTransaction
  readonly #retry: RetrySchedule
  readonly #internalAddress: string
  #bound: Promise<unknown> | undefined
  readonly #epoch = new EpochTracker()
  /** One nonce per mapping, kept for renewals and the delete: miniupnpd refuses both with a new one. */
  #nonce: Buffer | undefined

  constructor(deps: PcpClientDeps, opts: PcpClientOptions) {
    this.#clock = deps.clock
    this.#log = deps.log
    this.#random = deps.random
    this.#retry = opts.retry ?? RFC6886_RETRY
    this.#internalAddress = opts.internalAddress
    this.#socket = deps.sockets.udp()
    this.#tx = new UdpTransaction({ clock: deps.clock, log: deps.log, socket: this.#socket }, 'pcp', {
      address: opts.gateway,
      port: opts.port ?? PCP_PORT,
    })
  }

  get counters(): { sends: number; drops: number } {
    return { sends: this.#tx.sends, drops: this.#tx.drops }
  }

  get nonce(): Buffer | undefined {
    return this.#nonce
  }

  async #exchange(internalAddress: string, wire: Buffer, match: (r: PcpResponse) => boolean, maxTries?: number) {
    // Bound to the internal address so the source address equals the client IP field (else ADDRESS_MISMATCH).
    this.#bound ??= this.#socket.bind(0, internalAddress)
    await this.#bound
    const schedule = maxTries ? { ...this.#retry, maxTries } : this.#retry
    const rsp = await this.#tx.request(
      wire,
      (msg) => {
        if (msg.length >= NATPMP_MIN_ERROR_LEN && msg[OFF_VERSION] === NATPMP_VERSION)
          throw new PortmapResultError('pcp', PcpResult.UnsuppVersion, 'gateway speaks NAT-PMP only')
        const r = decodePcpResponse(msg)
        return match(r) ? r : undefined
      },
      schedule,
    )
    const prev = this.#epoch.last?.epochSec
    const restarted = this.#epoch.response(rsp.epochSec, this.#clock.monotonic())
    if (restarted) this.#log.info('pcp.epoch-reset', { prev, epoch: rsp.epochSec })
    if (rsp.resultCode !== PcpResult.Success) throw new PortmapResultError('pcp', rsp.resultCode, rsp.opcode)
    return { rsp, restarted }
  }

  async #mapRequest(req: MapRequest, lifetimeSec: number, suggestedExternalPort: number, maxTries?: number) {
    this.#nonce ??= this.#random.bytes(PCP_NONCE_LEN)
    const nonce = this.#nonce
    const protocol = req.protocol === 'udp' ? IanaProtocol.UDP : IanaProtocol.TCP
    const wire = encodePcpRequest({
      opcode: 'map',
      lifetimeSec,
      clientAddress: req.internalAddress,
      map: {
        nonce,
        protocol,
        internalPort: req.internalPort,
        externalPort: suggestedExternalPort,
        externalAddress: '0.0.0.0',
      },
    })
    const { rsp, restarted } = await this.#exchange(
      req.internalAddress,
      wire,
      (r) =>
        r.opcode === 'map' &&
        (r.resultCode !== PcpResult.Success ||
          (r.map.nonce.equals(nonce) && r.map.protocol === protocol && r.map.internalPort === req.internalPort)),
      maxTries,
    )
    if (rsp.opcode !== 'map') throw new Error('unreachable')
    return { rsp, restarted }
  }

  /** RFC 6887 14.1: an ANNOUNCE request, answered with the server's epoch and no state created. */
  async probe(opts: { maxTries?: number } = {}): Promise<void> {
    const wire = encodePcpRequest({ opcode: 'announce', clientAddress: this.#internalAddress })
    await this.#exchange(this.#internalAddress, wire, (r) => r.opcode === 'announce', opts.maxTries)
  }

  /** RFC 6887 11.2: MAP with the external port suggested; renewing is the same request with the same nonce. */
  async map(req: MapRequest, opts: { maxTries?: number } = {}): Promise<MapResult> {
    const { rsp, restarted } = await this.#mapRequest(req, req.lifetimeSec, req.suggestedExternalPort, opts.maxTries)
    const external = { address: rsp.map.externalAddress, port: rsp.map.externalPort }
    this.#log.debug('pcp.mapped', { external: `${external.address}:${external.port}`, lifetimeSec: rsp.lifetimeSec })
    return { external, lifetimeSec: rsp.lifetimeSec, gatewayRestarted: restarted }
  }

  /** RFC 6887 15: MAP with lifetime 0 and the mapping's nonce. */
  async unmap(req: MapRequest, opts: { maxTries?: number } = {}): Promise<void> {
    if (!this.#nonce) return
    await this.#mapRequest(req, 0, req.suggestedExternalPort, opts.maxTries)
  }

  /** The gateway announced its epoch (mapper.ts): a restart it shows is reported with the next response. */
  announced(epochSec: number): void {
    const prev = this.#epoch.last?.epochSec
    if (this.#epoch.announced(epochSec, this.#clock.monotonic()))
      this.#log.info('pcp.epoch-reset', { prev, epoch: epochSec, announced: true })
  }

  cancel(): void {
    this.#tx.abort()
  }

  async close(): Promise<void> {
    this.#tx.abort()
    await this.#socket.close()
  }
}
