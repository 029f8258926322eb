// The agent's local DNS resolver: answers the user's host names with their ULAs, from the data the agent watches
// (peers.ts), so `ssh desktop` and `ssh desktop.alice.members.example` reach the peer through the tunnel.
//
//   NAME.D  AAAA  -> the host's ULA (this host's own name too)        D = the user's domain (USER.ZONE)
//   NAME    AAAA  -> the same (a short name: one label)
//   other types for those names (A, MX, ...)  -> NOERROR with no answer (NODATA) at once: the hosts have no IPv4
//                                                through the tunnel, and an immediate authoritative "no A" lets
//                                                getaddrinfo use the AAAA without waiting (docs/resolver.md)
//   unknown NAME.D                              -> NXDOMAIN
//   anything else (other domains, unknown NAME) -> forwarded to the machine's previous nameservers when the agent
//                                                manages /etc/resolv.conf (forwarder.ts), else REFUSED (NXDOMAIN
//                                                for an unknown short name): this is not a recursive resolver
//
// UDP and TCP (RFC 7766 two-octet length framing) on one address, 127.0.0.153:53 by default: /etc/resolv.conf has
// no port, so a resolver it names must listen on port 53 (docs/resolver.md). Malformed queries get FORMERR when
// the header is readable, else are dropped; everything is counted.
import net from 'node:net'
import { Opcode, Rcode } from '../dns/wire/header.js'
import { emptyMessage, encodeMessage, type Message, tryDecode } from '../dns/wire/message.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Forwarder } from './forwarder.js'
import { fq } from './records.js'

/**
 * Port 53 of a loopback address of its own: resolv.conf can name it (it has no port), it is not the mDNS port
 * (avahi holds 5353), and neither systemd-resolved's stubs (127.0.0.53, 127.0.0.54) nor a local dnsmasq or BIND
 * on 127.0.0.1:53 is in its way. docs/resolver.md.
 */
export const RESOLVER_DEFAULT = '127.0.0.153:53'
export const RESOLVER_DEFAULT_PORT = 53
/** TTL of our answers: short, a peer's ULA changes when it restarts. */
export const RESOLVER_TTL_SEC = 5
/** UDP answers without EDNS fit 512 octets (RFC 1035 4.2.1); ours are one AAAA, far below. */
const UDP_LIMIT = 512
const TCP_LEN = 2
/** A stalled TCP client is dropped after this long. */
const TCP_IDLE_MS = 10_000

export interface ResolverOptions {
  /** The user's domain D. */
  readonly domain: string
  /** Host label ("desktop") -> its ULA, or undefined when the user has no such host. */
  readonly ulaOf: (host: string) => string | undefined
  /** TTL of the answers. @default 5 */
  readonly ttlSec?: number
  /** Where names outside the user's domain go; none: REFUSED. */
  readonly forwarder?: Forwarder
}

export interface ResolverCounters {
  queries: number
  answered: number
  nodata: number
  nxdomain: number
  refused: number
  formerr: number
  notimp: number
  dropped: number
  /** Queries for other names handed to the forwarder, and those no upstream answered. */
  forwarded: number
  servfail: number
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export class LocalResolver {
  readonly #log: Logger
  readonly #domain: string
  readonly #ulaOf: (host: string) => string | undefined
  readonly #ttlSec: number
  readonly #forwarder: Forwarder | undefined
  readonly counters: ResolverCounters = {
    queries: 0,
    answered: 0,
    nodata: 0,
    nxdomain: 0,
    refused: 0,
    formerr: 0,
    notimp: 0,
    dropped: 0,
    forwarded: 0,
    servfail: 0,
  }
  #udp: DatagramSocket | undefined
  #tcp: net.Server | undefined
  readonly #conns = new Set<net.Socket>()
  #bound: { address: string; port: number } | undefined

  constructor(deps: { log: Logger }, opts: ResolverOptions) {
    this.#log = deps.log
    this.#domain = fq(opts.domain).toLowerCase()
    this.#ulaOf = opts.ulaOf
    this.#ttlSec = opts.ttlSec ?? RESOLVER_TTL_SEC
    this.#forwarder = opts.forwarder
  }

  get forwarder(): Forwarder | undefined {
    return this.#forwarder
  }

  get address(): { address: string; port: number } | undefined {
    return this.#bound
  }

  /** Binds `udp` (a fresh socket) and a TCP listener to address:port (port 0: the UDP port, for both). */
  async listen(udp: DatagramSocket, address: string, port: number): Promise<{ address: string; port: number }> {
    udp.onMessage((msg, from) => {
      void this.respond(msg, true).then((out) => {
        if (out) udp.send(out, 0, out.length, from.port, from.address)
      })
    })
    const b = await udp.bind(port, address).catch(async (e: unknown) => {
      await udp.close().catch(() => {})
      throw e
    })
    this.#udp = udp
    const tcp = net.createServer((s) => this.#serveTcp(s))
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen(b.port, address, () => {
        tcp.off('error', reject)
        resolve()
      })
    }).catch(async (e) => {
      await udp.close()
      this.#udp = undefined
      throw e
    })
    this.#tcp = tcp
    this.#bound = { address, port: b.port }
    this.#log.info('resolver.listening', { address, port: b.port, domain: this.#domain })
    return this.#bound
  }

  async close(): Promise<void> {
    this.#forwarder?.close()
    for (const c of this.#conns) c.destroy()
    await Promise.all([this.#udp?.close(), new Promise<void>((r) => (this.#tcp ? this.#tcp.close(() => r()) : r()))])
    this.#udp = undefined
    this.#tcp = undefined
  }

  #serveTcp(s: net.Socket): void {
    this.#conns.add(s)
    s.setTimeout(TCP_IDLE_MS, () => s.destroy())
    s.on('error', () => {})
    s.on('close', () => this.#conns.delete(s))
    let buf: Buffer = Buffer.alloc(0)
    s.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk
      while (buf.length >= TCP_LEN) {
        const len = buf.readUInt16BE(0)
        if (buf.length < TCP_LEN + len) break
        const query = Buffer.from(buf.subarray(TCP_LEN, TCP_LEN + len))
        buf = buf.subarray(TCP_LEN + len)
        void this.respond(query, false).then((out) => {
          if (!out || s.destroyed) return
          const framed = Buffer.alloc(TCP_LEN + out.length)
          framed.writeUInt16BE(out.length, 0)
          out.copy(framed, TCP_LEN)
          s.write(framed)
        })
      }
    })
  }

  /**
   * The response to one query: ours (answer()), or, for a name outside the user's domain and a forwarder with
   * upstreams, the upstream's; SERVFAIL when no upstream answered (RFC 2308 2.1: the client may try another).
   */
  async respond(wire: Buffer, udp: boolean): Promise<Buffer | undefined> {
    const f = this.#forwarder
    if (f?.enabled) {
      const d = tryDecode(wire)
      const question = d.ok ? d.msg.questions[0] : undefined
      if (d.ok && !d.msg.qr && d.msg.opcode === Opcode.QUERY && question && !this.#ours(question.name)) {
        this.counters.queries++
        this.counters.forwarded++
        const r = await f.forward(wire, !udp)
        if (r) return r
        this.counters.servfail++
        return encodeMessage(
          emptyMessage({
            id: d.msg.id,
            qr: true,
            opcode: d.msg.opcode,
            rd: d.msg.rd,
            ra: true,
            rcode: Rcode.SERVFAIL,
            questions: [question],
          }),
        )
      }
    }
    return this.answer(wire, udp)
  }

  /** Whether `name` is ours to answer: the domain, a name under it, or one of the user's hosts by its short name. */
  #ours(name: string): boolean {
    const n = fq(name.toLowerCase())
    if (n === this.#domain || n.endsWith(`.${this.#domain}`)) return true
    const label = n.slice(0, -1)
    return LABEL.test(label) && this.#ulaOf(label) !== undefined
  }

  /** The response to one query in wire form, or undefined when it must be dropped. */
  answer(wire: Buffer, udp = true): Buffer | undefined {
    this.counters.queries++
    const d = tryDecode(wire)
    if (!d.ok) {
      if (d.id === undefined) {
        this.counters.dropped++
        return undefined
      }
      this.counters.formerr++
      return encodeMessage(
        emptyMessage({ id: d.id, qr: true, opcode: d.opcode ?? 0, rd: d.rd ?? false, rcode: Rcode.FORMERR }),
      )
    }
    const q = d.msg
    if (q.qr) {
      this.counters.dropped++
      return undefined
    }
    const res = this.#respond(q)
    return encodeMessage(res, udp ? { maxSize: Math.max(UDP_LIMIT, q.edns?.udpSize ?? 0) } : {})
  }

  #respond(q: Message): Message {
    const base = {
      id: q.id,
      qr: true,
      opcode: q.opcode,
      rd: q.rd,
      questions: q.questions.slice(0, 1),
      ...(q.edns ? { edns: { udpSize: 1232, version: 0, do: false, options: [] } } : {}),
    }
    if (q.opcode !== Opcode.QUERY) {
      this.counters.notimp++
      return emptyMessage({ ...base, rcode: Rcode.NOTIMP })
    }
    const question = q.questions[0]
    if (q.questions.length !== 1 || !question) {
      this.counters.formerr++
      return emptyMessage({ ...base, rcode: Rcode.FORMERR })
    }
    const host = this.#hostOf(question.name)
    if (host === undefined || (question.class !== RRClass.IN && question.class !== RRClass.ANY)) {
      this.counters.refused++
      return emptyMessage({ ...base, rcode: Rcode.REFUSED })
    }
    const ula = host === '' ? undefined : this.#ulaOf(host)
    if (!ula) {
      if (host === '') {
        // The domain apex exists (it holds the user's records) but has nothing for us to say.
        this.counters.nodata++
        return emptyMessage({ ...base, aa: true })
      }
      this.counters.nxdomain++
      return emptyMessage({ ...base, aa: true, rcode: Rcode.NXDOMAIN })
    }
    if (question.type !== RRType.AAAA && question.type !== RRType.ANY) {
      this.counters.nodata++
      return emptyMessage({ ...base, aa: true })
    }
    this.counters.answered++
    return emptyMessage({
      ...base,
      aa: true,
      answers: [
        { name: question.name, type: RRType.AAAA, class: RRClass.IN, ttl: this.#ttlSec, data: { address: ula } },
      ],
    })
  }

  /** "h.D." or "h." -> "h"; "D." -> ""; anything else -> undefined (not ours: REFUSED). */
  #hostOf(name: string): string | undefined {
    const n = fq(name.toLowerCase())
    if (n === this.#domain) return ''
    const label = n.endsWith(`.${this.#domain}`) ? n.slice(0, -this.#domain.length - 1) : n.slice(0, -1)
    if (label.includes('.') || !LABEL.test(label)) return undefined
    return label
  }
}

/** "ADDR:PORT", "[v6]:PORT" or "ADDR" (port 53). */
export function parseResolverAddress(s: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s)
  const port = m?.[2] === undefined ? RESOLVER_DEFAULT_PORT : Number(m[2])
  if (!m?.[1] || !(port >= 0 && port <= 0xffff)) throw new RangeError(`bad resolver address ${JSON.stringify(s)}`)
  return { address: m[1], port }
}
