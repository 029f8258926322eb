// A small stub DNS client shared by the watcher and the agent: one query/response exchange over UDP with
// retries and a TCP retry on truncation (RFC 1035 4.2, RFC 7766 5), or over TCP or TLS (RFC 7858), plus the
// SRV look-ups of service discovery (RFC 2782; seed 002 §5.2-5.3). Signing is the caller's: `encode` turns the
// request into wire form (e.g. TSIG-signed with the user's key) and `check` may verify the response.

import { randomInt } from 'node:crypto'
import dgram from 'node:dgram'
import net from 'node:net'
import { Opcode, Rcode } from '../wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../wire/message.js'
import { RRClass, RRType, type SRVData } from '../wire/rr-table.js'
import { DnsStream, type StreamTarget } from './stream.js'

export type Transport = 'udp' | 'tcp' | 'tls'

export interface ServerAddr extends StreamTarget {
  /** 'udp' (default: TCP retry on TC), 'tcp' or 'tls' (needs `tls`). */
  readonly transport?: Transport
}

export interface ExchangeOptions {
  /** Per-attempt timeout. @default 2000 */
  readonly timeoutMs?: number
  /** UDP attempts in total. @default 3 */
  readonly attempts?: number
  /** Request to wire form; @default encodeMessage. Use it to TSIG-sign. */
  readonly encode?: (m: Message) => Buffer
  /** Raw response check (e.g. TSIG verification); throw to reject the response. */
  readonly check?: (wire: Buffer, m: Message) => void
}

export class DnsTimeoutError extends Error {
  override readonly name = 'DnsTimeoutError'
}

/** A fresh query message for (name, type) with a random ID and EDNS (4096-octet payload). */
export function queryMessage(name: string, type: number, fields: Partial<Message> = {}): Message {
  return emptyMessage({
    id: randomInt(0x10000),
    opcode: Opcode.QUERY,
    questions: [{ name: name.endsWith('.') ? name : `${name}.`, type, class: RRClass.IN }],
    edns: { udpSize: 4096, version: 0, do: false, options: [] },
    ...fields,
  })
}

function matches(req: Message, res: Message): boolean {
  if (res.id !== req.id || !res.qr) return false
  const a = req.questions[0]
  const b = res.questions[0]
  if (!a) return true
  return !!b && b.type === a.type && b.name.toLowerCase() === a.name.toLowerCase()
}

/** The response to `req` in `buf`, or undefined when it does not decode, match or pass `opts.check`. */
function acceptResponse(req: Message, buf: Buffer, opts: ExchangeOptions): Message | undefined {
  try {
    const m = decodeMessage(buf)
    if (!matches(req, m)) return undefined
    opts.check?.(buf, m)
    return m
  } catch {
    return undefined
  }
}

/** Sends `req` to `server` and resolves with the matching response. */
export async function exchange(server: ServerAddr, req: Message, opts: ExchangeOptions = {}): Promise<Message> {
  const wire = (opts.encode ?? encodeMessage)(req)
  const transport = server.transport ?? 'udp'
  if (transport !== 'udp') return exchangeStream(server, req, wire, opts)
  const res = await exchangeUdp(server, req, wire, opts)
  if (res.tc) return exchangeStream({ ...server, transport: 'tcp' }, req, wire, opts)
  return res
}

function exchangeUdp(server: ServerAddr, req: Message, wire: Buffer, opts: ExchangeOptions): Promise<Message> {
  const timeoutMs = opts.timeoutMs ?? 2000
  const attempts = opts.attempts ?? 3
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4')
    let sent = 0
    let timer: NodeJS.Timeout | undefined
    const finish = (err: Error | undefined, m?: Message): void => {
      clearTimeout(timer)
      sock.close()
      if (err) reject(err)
      else resolve(m!)
    }
    const send = (): void => {
      if (sent >= attempts) {
        finish(new DnsTimeoutError(`no answer from ${server.host}:${server.port}`))
        return
      }
      sent++
      sock.send(wire, server.port, server.host)
      timer = setTimeout(send, timeoutMs)
    }
    sock.on('error', (e) => finish(e))
    sock.on('message', (buf) => {
      const m = acceptResponse(req, buf, opts)
      if (m) finish(undefined, m)
    })
    send()
  })
}

async function exchangeStream(server: ServerAddr, req: Message, wire: Buffer, opts: ExchangeOptions): Promise<Message> {
  const timeoutMs = opts.timeoutMs ?? 2000
  const s = await DnsStream.connect(server.transport === 'tls' ? server : { ...server, tls: undefined }, timeoutMs)
  try {
    return await streamRequest(s, req, wire, opts)
  } finally {
    s.close()
  }
}

/** One request/response on an open stream (other messages are left to the stream's own handler). */
export function streamRequest(s: DnsStream, req: Message, wire: Buffer, opts: ExchangeOptions = {}): Promise<Message> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new DnsTimeoutError('no answer on the stream')), opts.timeoutMs ?? 2000)
    s.onClose((e) => {
      clearTimeout(timer)
      reject(e ?? new Error('connection closed'))
    })
    s.onMessage((buf) => {
      const m = acceptResponse(req, buf, opts)
      if (!m) return
      clearTimeout(timer)
      resolve(m)
    })
    s.send(wire)
  })
}

export interface SrvTarget {
  readonly priority: number
  readonly weight: number
  readonly port: number
  readonly target: string
  /** Addresses of the target found in the additional section (may be empty). */
  readonly addrs: readonly string[]
}

/**
 * SRV records for `name` (e.g. `_dns-push-tls._tcp.alice.members.example.`), by priority; empty on
 * NXDOMAIN/NODATA. Target addresses come from the additional section, else from A/AAAA queries.
 */
export async function lookupSrv(server: ServerAddr, name: string, opts: ExchangeOptions = {}): Promise<SrvTarget[]> {
  const res = await exchange(server, queryMessage(name, RRType.SRV), opts)
  // Only an authoritative "no such record" (NXDOMAIN, or NOERROR without SRV) means the service is absent. SERVFAIL,
  // REFUSED and the like say nothing about it: treating them as absent would let a server that is still loading, or
  // anyone who can drop one answer, downgrade a client from the -tls service to the plain one.
  if (res.rcode === Rcode.NXDOMAIN) return []
  if (res.rcode !== Rcode.NOERROR) throw new DnsLookupError(name, res.rcode)
  const out: SrvTarget[] = []
  for (const rr of res.answers) {
    if (rr.type !== RRType.SRV || !rr.data) continue
    const d = rr.data as SRVData
    const addrs: string[] = []
    for (const a of res.additionals)
      if ((a.type === RRType.A || a.type === RRType.AAAA) && a.name.toLowerCase() === d.target.toLowerCase())
        addrs.push((a.data as { address: string }).address)
    if (addrs.length === 0 && d.target !== '.') {
      for (const t of [RRType.A, RRType.AAAA]) {
        const r = await exchange(server, queryMessage(d.target, t), opts).catch(() => undefined)
        for (const a of r?.answers ?? []) if (a.type === t) addrs.push((a.data as { address: string }).address)
      }
    }
    out.push({ priority: d.priority, weight: d.weight, port: d.port, target: d.target, addrs })
  }
  return out.sort((a, b) => a.priority - b.priority || b.weight - a.weight)
}

/**
 * A server without a TLS listener answers the -tls SRV names with its plain port (src/server/discovery.ts): a -tls
 * SRV with the same target and port as the plain service's SRV means "no TLS here", anything else is a TLS endpoint.
 */
export function isPlainStandIn(tlsSrv: SrvTarget, plainSrv: SrvTarget | undefined): boolean {
  return (
    plainSrv !== undefined &&
    tlsSrv.port === plainSrv.port &&
    tlsSrv.target.toLowerCase() === plainSrv.target.toLowerCase()
  )
}

/** An SRV (or other) look-up that got an answer which is neither data nor an authoritative denial. */
export class DnsLookupError extends Error {
  override readonly name = 'DnsLookupError'
  constructor(
    readonly qname: string,
    readonly rcode: number,
  ) {
    super(`look-up of ${qname} failed with rcode ${rcode}`)
  }
}
