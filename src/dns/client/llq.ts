// RFC 8764 (DNS Long-Lived Queries), client side: the four-way handshake (Initial Request, Challenge,
// Challenge Response, ACK + Answers), lease refresh at ~80% of the granted lease, event acknowledgement and
// cancel (refresh with lease 0). Over UDP (one socket for the LLQ's life: the server sends events to its
// address) or over a TCP/TLS stream. With `key` (private names, seed 002 §7.2: LLQ messages carry the user's
// TSIG) every request and acknowledgement is TSIG-signed (RFC 8945), every response must verify against its
// request's MAC and every event against the key alone (events are unsolicited); anything else is dropped and
// counted in `rejected`, so nobody but the server holding the key can inject or forge an event.

import dgram from 'node:dgram'
import net from 'node:net'
import { type Clock, SystemClock, type TimerHandle } from '../../io/clock.js'
import { type Random, SystemRandom } from '../../io/random.js'
import { EdnsOptionCode, findOption } from '../edns.js'
import { decodeLlq, encodeLlq, LLQ_VERSION, LlqError, LlqOpcode, type LlqOption } from '../llq.js'
import { signMessage, type TsigKey, verifyMessage } from '../tsig.js'
import { Opcode } from '../wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../wire/message.js'
import { type RR, RRClass } from '../wire/rr-table.js'
import { DnsStream, type StreamTarget } from './stream.js'

/** How often an LLQ over UDP is refreshed to learn that the server forgot it (LlqClientOptions.probeMs). */
export const LLQ_UDP_PROBE_MS = 3000

/** TTL marking a removed record in an LLQ event (RFC 8764 §6.2). */
export const LLQ_REMOVED_TTL = 0xffffffff

export interface LlqTarget extends StreamTarget {
  /** 'udp' (default) or a stream: 'tcp' / 'tls'. */
  readonly transport?: 'udp' | 'tcp' | 'tls'
}

export interface LlqClientOptions {
  readonly name: string
  readonly type: number
  /** Lease to ask for (the server clamps it). @default 3600 */
  readonly leaseSec?: number
  /**
   * The user's TSIG key: requests and acknowledgements are signed with it, responses and events must be signed
   * with it (else dropped). Without it nothing is signed or checked (public names).
   */
  readonly key?: TsigKey
  /** Request to wire form when there is no `key` (tests: hand-made signing). @default encodeMessage */
  readonly encode?: (m: Message) => Buffer
  /** Per-attempt timeout. @default 1500 */
  readonly timeoutMs?: number
  /** Attempts per handshake step and refresh. @default 3 */
  readonly attempts?: number
  /** Refresh when this fraction of the lease has passed. @default 0.8 */
  readonly refreshAt?: number
  /**
   * Over UDP, refresh at least this often (ms; 0: only at `refreshAt`). A server that restarted has forgotten the
   * LLQ and answers NO-SUCH-LLQ, which nothing else would tell a UDP client; the same traffic keeps a NAT's mapping
   * for the server's events open (issue 13 finding 2). Over TCP/TLS the closed connection says it at once.
   * @default 3000
   */
  readonly probeMs?: number
  /** Tests only: stop acknowledging events (the server must give up after 3 transmissions). */
  readonly ackEvents?: boolean
}

export interface LlqEvent {
  readonly added: readonly RR[]
  readonly removed: readonly RR[]
  /** The event's message ID (the same across the server's retransmissions). */
  readonly msgId: number
}

export class LlqClientError extends Error {
  override readonly name = 'LlqError'
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message)
  }
}

interface Channel {
  /** The local UDP port (undefined for streams). */
  readonly localPort?: number
  send(b: Buffer): void
  onMessage(h: (b: Buffer) => void): void
  onClose(h: (e?: Error) => void): void
  close(): void
}

async function openChannel(t: LlqTarget): Promise<Channel> {
  if ((t.transport ?? 'udp') !== 'udp') {
    const s = await DnsStream.connect(t.transport === 'tls' ? t : { ...t, tls: undefined })
    return s
  }
  const sock = dgram.createSocket(net.isIPv6(t.host) ? 'udp6' : 'udp4')
  await new Promise<void>((res, rej) => {
    sock.once('error', rej)
    sock.bind(0, () => {
      sock.off('error', rej)
      res()
    })
  })
  let closeHandlers: ((e?: Error) => void)[] = []
  let closed = false
  sock.on('error', () => {})
  return {
    localPort: sock.address().port,
    send: (b) => {
      if (!closed) sock.send(b, t.port, t.host)
    },
    onMessage: (h) => {
      sock.removeAllListeners('message')
      sock.on('message', (m, r) => {
        if (r.port === t.port) h(m)
      })
    },
    onClose: (h) => closeHandlers.push(h),
    close: () => {
      if (closed) return
      closed = true
      sock.close()
      for (const h of closeHandlers) h()
      closeHandlers = []
    },
  }
}

/**
 * One LLQ. `start()` completes the handshake and resolves with the current answer; then events arrive on
 * `onEvent`, and `onLost` fires once when the LLQ can no longer be trusted (refresh failed, NO-SUCH-LLQ,
 * connection closed): the caller re-reads and sets up a new one.
 */
export class LlqClient {
  readonly opts: LlqClientOptions
  #ch: Channel | undefined
  #id = 0n
  #leaseSec = 0
  #refreshTimer: TimerHandle | undefined
  readonly #clock: Clock
  readonly #random: Random
  #pending = new Map<number, { mac: Buffer | undefined; resolve: (m: Message) => void }>()
  #onEvent: (e: LlqEvent) => void = () => {}
  #onLost: (why: string) => void = () => {}
  #lost = false
  #closed = false
  eventsReceived = 0
  /** Refreshes the server accepted (each one scheduled at `refreshAt` of the granted lease). */
  refreshes = 0
  /** Messages dropped because their TSIG was missing or did not verify (with `key`). */
  rejected = 0

  /** `deps`: the refresh and retransmission timers and the message IDs come from them (STYLE.md section 6). */
  constructor(
    readonly target: LlqTarget,
    opts: LlqClientOptions,
    deps: { readonly clock?: Clock; readonly random?: Random } = {},
  ) {
    this.opts = opts
    this.#clock = deps.clock ?? new SystemClock()
    this.#random = deps.random ?? new SystemRandom()
  }

  get id(): bigint {
    return this.#id
  }
  get leaseSec(): number {
    return this.#leaseSec
  }
  /** The UDP port events arrive on (undefined over TCP/TLS or before start()). */
  get localPort(): number | undefined {
    return this.#ch?.localPort
  }

  onEvent(h: (e: LlqEvent) => void): void {
    this.#onEvent = h
  }
  onLost(h: (why: string) => void): void {
    this.#onLost = h
  }

  /** Runs the handshake; resolves with the ACK's answers (the full current RRset). */
  async start(): Promise<RR[]> {
    const ch = await openChannel(this.target)
    this.#ch = ch
    ch.onMessage((b) => this.#receive(b))
    ch.onClose(() => this.#lose('connection closed'))
    try {
      const lease = this.opts.leaseSec ?? 3600
      const challenge = await this.#request(LlqOpcode.SETUP, 0n, lease)
      const c = this.#llqOf(challenge)
      if (c.error !== LlqError.NO_ERROR || c.id === 0n)
        throw new LlqClientError(`LLQ setup refused (error ${c.error})`, c.error)
      const ack = await this.#request(LlqOpcode.SETUP, c.id, lease)
      const a = this.#llqOf(ack)
      if (a.error !== LlqError.NO_ERROR)
        throw new LlqClientError(`LLQ challenge response refused (error ${a.error})`, a.error)
      this.#id = a.id
      this.#leaseSec = a.leaseSec
      this.#scheduleRefresh()
      return ack.answers.filter((rr) => rr.type === this.opts.type || this.opts.type === 255)
    } catch (e) {
      this.#closed = true
      ch.close()
      throw e
    }
  }

  /** Sends an LLQ Refresh now and returns the server's LLQ option (NO-SUCH-LLQ once the server dropped it). */
  async refresh(leaseSec = this.opts.leaseSec ?? 3600): Promise<LlqOption> {
    return this.#llqOf(await this.#request(LlqOpcode.REFRESH, this.#id, leaseSec))
  }

  /** Cancels the LLQ (refresh with lease 0, RFC 8764 §7) and closes the channel. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#refreshTimer)
    if (this.#id !== 0n && !this.#lost) await this.#request(LlqOpcode.REFRESH, this.#id, 0, 1).catch(() => {})
    this.#ch?.close()
  }

  #llqOf(m: Message): LlqOption {
    if (m.rcode !== 0) throw new LlqClientError(`server answered RCODE ${m.rcode}`, LlqError.UNKNOWN_ERR)
    const o = findOption(m.edns, EdnsOptionCode.LLQ)
    if (!o) throw new LlqClientError('server does not support LLQ (no LLQ option in the answer)', LlqError.UNKNOWN_ERR)
    return decodeLlq(o.data)
  }

  #query(opcode: number, id: bigint, leaseSec: number): Message {
    return emptyMessage({
      id: 1 + this.#random.int(0xffff),
      opcode: Opcode.QUERY,
      questions: [{ name: this.opts.name, type: this.opts.type, class: RRClass.IN }],
      edns: {
        udpSize: 4096,
        version: 0,
        do: false,
        options: [encodeLlq({ version: LLQ_VERSION, opcode, error: 0, id, leaseSec })],
      },
    })
  }

  #request(opcode: number, id: bigint, leaseSec: number, attempts = this.opts.attempts ?? 3): Promise<Message> {
    const msg = this.#query(opcode, id, leaseSec)
    const { wire, mac } = this.#encode(msg)
    const timeoutMs = this.opts.timeoutMs ?? 1500
    return new Promise((resolve, reject) => {
      let n = 0
      let timer: TimerHandle | undefined
      const attempt = (): void => {
        if (n >= attempts || !this.#ch) {
          this.#pending.delete(msg.id)
          reject(new LlqClientError('no answer from the LLQ server', LlqError.UNKNOWN_ERR))
          return
        }
        n++
        this.#ch.send(wire)
        timer = this.#clock.setTimeout(attempt, timeoutMs)
      }
      this.#pending.set(msg.id, {
        mac,
        resolve: (m) => {
          this.#clock.clearTimeout(timer)
          this.#pending.delete(msg.id)
          resolve(m)
        },
      })
      attempt()
    })
  }

  #encode(m: Message): { wire: Buffer; mac: Buffer | undefined } {
    const k = this.opts.key
    if (!k) return { wire: (this.opts.encode ?? encodeMessage)(m), mac: undefined }
    const s = signMessage(m, k)
    return { wire: s.wire, mac: s.mac }
  }

  /** With a key: the message decoded if its TSIG verifies (chained to `requestMac` for a response), else undefined. */
  #verified(b: Buffer, requestMac: Buffer | undefined): Message | undefined {
    const k = this.opts.key
    if (!k) return undefined
    const v = verifyMessage(b, (n) => (n.toLowerCase() === k.name.toLowerCase() ? k : undefined), {
      ...(requestMac ? { requestMac } : {}),
    })
    if (v.ok) return v.msg
    this.rejected++
    return undefined
  }

  #receive(b: Buffer): void {
    let m: Message | undefined
    try {
      m = decodeMessage(b)
    } catch {
      return
    }
    if (!m.qr) return
    const o = findOption(m.edns, EdnsOptionCode.LLQ)
    let llq: LlqOption | undefined
    try {
      llq = o ? decodeLlq(o.data) : undefined
    } catch {
      return
    }
    if (llq?.opcode === LlqOpcode.EVENT) {
      if (llq.id !== this.#id || this.#id === 0n) return
      if (this.opts.key && !this.#verified(b, undefined)) return
      if (this.opts.ackEvents !== false) this.#ack(m, llq)
      this.eventsReceived++
      const added: RR[] = []
      const removed: RR[] = []
      for (const rr of m.answers) (rr.ttl === LLQ_REMOVED_TTL ? removed : added).push(rr)
      this.#onEvent({ added, removed, msgId: m.id })
      return
    }
    const p = this.#pending.get(m.id)
    if (!p) return
    if (this.opts.key) {
      m = this.#verified(b, p.mac)
      if (!m) return
    }
    p.resolve(m)
  }

  /** The acknowledgement: a response with the event's ID and its LLQ option echoed (RFC 8764 §6.3). */
  #ack(ev: Message, llq: LlqOption): void {
    const ack = emptyMessage({
      id: ev.id,
      qr: true,
      opcode: Opcode.QUERY,
      questions: ev.questions,
      edns: { udpSize: 4096, version: 0, do: false, options: [encodeLlq({ ...llq, error: LlqError.NO_ERROR })] },
    })
    this.#ch?.send(this.#encode(ack).wire)
  }

  #scheduleRefresh(): void {
    this.#clock.clearTimeout(this.#refreshTimer)
    const probe = (this.target.transport ?? 'udp') === 'udp' ? (this.opts.probeMs ?? LLQ_UDP_PROBE_MS) : 0
    const atLease = this.#leaseSec * 1000 * (this.opts.refreshAt ?? 0.8)
    const ms = Math.max(500, probe > 0 ? Math.min(probe, atLease) : atLease)
    this.#refreshTimer = this.#clock.setTimeout(() => {
      this.#request(LlqOpcode.REFRESH, this.#id, this.opts.leaseSec ?? 3600).then(
        (m) => {
          let o: LlqOption
          try {
            o = this.#llqOf(m)
          } catch (e) {
            this.#lose(String(e))
            return
          }
          if (o.error !== LlqError.NO_ERROR) {
            this.#lose(`refresh refused (error ${o.error})`)
            return
          }
          this.#leaseSec = o.leaseSec
          this.refreshes++
          this.#scheduleRefresh()
        },
        () => this.#lose('refresh timed out'),
      )
    }, ms)
  }

  #lose(why: string): void {
    if (this.#lost || this.#closed) return
    this.#lost = true
    this.#clock.clearTimeout(this.#refreshTimer)
    this.#ch?.close()
    this.#onLost(why)
  }
}
