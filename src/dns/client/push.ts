// RFC 8765 (DNS Push Notifications) over RFC 8490 (DSO), client side: one TLS (or TCP) connection carrying a
// DSO session. Optional authentication first (docs/notify.md): a TSIG-signed query on the same connection
// tells the server which user is there, since DSO messages carry no TSIG. Then Keepalive (establishes the
// session), SUBSCRIBE, and PUSH messages as changes; keepalives at the server's interval.

import { type Clock, SystemClock, type TimerHandle } from '../../io/clock.js'
import { type Random, SystemRandom } from '../../io/random.js'
import {
  DsoType,
  decodeDso,
  decodeKeepaliveTlv,
  decodePushTlv,
  decodeRetryDelayTlv,
  encodeDso,
  isDso,
  keepaliveTlv,
  subscribeTlv,
  unsubscribeTlv,
} from '../dso.js'
import { reader } from '../wire/buffer.js'
import { decodeMessage, encodeMessage, type Message } from '../wire/message.js'
import { type RR, RRClass, RRType, readRData } from '../wire/rr-table.js'
import { queryMessage } from './query.js'
import { DnsStream, type StreamTarget } from './stream.js'

/** PUSH TTLs (RFC 8765 §6.3.1). */
const REMOVE_RR_TTL = 0xffffffff
const REMOVE_SET_TTL = 0xfffffffe
const MIN_KEEPALIVE_MS = 10_000

export type PushChange =
  | { readonly op: 'add'; readonly rr: RR }
  | { readonly op: 'remove'; readonly rr: RR }
  /** CLASS ANY: every record of `type` at `name` (every type for ANY). */
  | { readonly op: 'remove-rrset'; readonly name: string; readonly type: number }

export class PushClientError extends Error {
  override readonly name = 'PushClientError'
  constructor(
    message: string,
    readonly rcode: number,
    readonly retryDelayMs?: number,
  ) {
    super(message)
  }
}

export interface PushClientOptions {
  readonly name: string
  readonly type: number
  /** Request to wire form for the authentication query (TSIG signing); without it no authentication is sent. */
  readonly sign?: (m: Message) => Buffer
  /** Name to query for authentication (any name works; the user's domain is natural). */
  readonly authName?: string
  readonly timeoutMs?: number
}

/**
 * One DNS Push subscription on its own DSO session. `start()` resolves once SUBSCRIBE succeeded, with the
 * current RRset read by a query on the same connection (sent after SUBSCRIBE, so it is answered after the
 * server's initial PUSH: nothing falls between them).
 */
export class PushClient {
  #s: DnsStream | undefined
  #pending = new Map<number, (m: Buffer) => void>()
  #onChanges: (c: PushChange[]) => void = () => {}
  #onLost: (why: string, retryDelayMs?: number) => void = () => {}
  #keepaliveTimer: TimerHandle | undefined
  readonly #clock: Clock
  readonly #random: Random
  #subscribeId = 0
  #closed = false
  #lost = false
  pushesReceived = 0

  /**
   * `deps`: the keepalive and request timers and the message IDs come from them (STYLE.md section 6). The default
   * clock's timers are unref'd: an idle subscription alone does not keep a process alive.
   */
  constructor(
    readonly target: StreamTarget,
    readonly opts: PushClientOptions,
    deps: { readonly clock?: Clock; readonly random?: Random } = {},
  ) {
    this.#clock = deps.clock ?? new SystemClock({ unref: true })
    this.#random = deps.random ?? new SystemRandom()
  }

  onChanges(h: (c: PushChange[]) => void): void {
    this.#onChanges = h
  }
  onLost(h: (why: string, retryDelayMs?: number) => void): void {
    this.#onLost = h
  }

  async start(): Promise<RR[]> {
    const s = await DnsStream.connect(this.target, this.opts.timeoutMs ?? 5000)
    this.#s = s
    s.onMessage((b) => this.#receive(b))
    s.onClose(() => this.#lose('connection closed'))
    try {
      if (this.opts.sign) {
        const q = queryMessage(this.opts.authName ?? this.opts.name, RRType.SOA)
        const res = decodeMessage(await this.#request(q.id, this.opts.sign(q)))
        if (res.rcode !== 0 && res.rcode !== 3)
          throw new PushClientError(`authentication query: RCODE ${res.rcode}`, res.rcode)
      }
      const kaId = this.#messageId()
      const ka = decodeDso(
        await this.#request(kaId, encodeDso({ id: kaId, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] })),
      )
      if (ka.rcode !== 0) throw new PushClientError(`DSO keepalive: RCODE ${ka.rcode}`, ka.rcode)
      const kaTlv = ka.tlvs.find((t) => t.type === DsoType.KEEPALIVE)
      const interval = kaTlv ? decodeKeepaliveTlv(kaTlv.data).keepaliveMs : 60_000
      this.#keepaliveEvery(Math.max(MIN_KEEPALIVE_MS, interval))
      const subId = this.#messageId()
      const q = { name: this.opts.name, type: this.opts.type, class: RRClass.IN }
      const sub = decodeDso(
        await this.#request(subId, encodeDso({ id: subId, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] })),
      )
      if (sub.rcode !== 0) {
        const rd = sub.tlvs.find((t) => t.type === DsoType.RETRY_DELAY)
        throw new PushClientError(
          `SUBSCRIBE: RCODE ${sub.rcode}`,
          sub.rcode,
          rd ? decodeRetryDelayTlv(rd.data) : undefined,
        )
      }
      this.#subscribeId = subId
      const read = queryMessage(this.opts.name, this.opts.type)
      const wire = this.opts.sign ? this.opts.sign(read) : encodeMessage(read)
      const answer = decodeMessage(await this.#request(read.id, wire))
      return answer.answers.filter((rr) => rr.type === this.opts.type || this.opts.type === RRType.ANY)
    } catch (e) {
      this.#closed = true
      s.close()
      throw e
    }
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#keepaliveTimer)
    if (this.#subscribeId && this.#s && !this.#s.closed)
      this.#s.send(encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [unsubscribeTlv(this.#subscribeId)] }))
    this.#s?.close()
  }

  /** A nonzero DNS message ID (ID 0 is reserved for unidirectional DSO messages, RFC 8490 section 5.1). */
  #messageId(): number {
    return 1 + this.#random.int(0xffff)
  }

  #keepaliveEvery(ms: number): void {
    this.#keepaliveTimer = this.#clock.setTimeout(() => {
      if (this.#closed || this.#lost) return
      const id = this.#messageId()
      this.#request(id, encodeDso({ id, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] })).catch(() =>
        this.#lose('keepalive unanswered'),
      )
      this.#keepaliveEvery(ms)
    }, ms)
  }

  #request(id: number, wire: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pending.delete(id)
        reject(new PushClientError('no answer on the DSO session', 2))
      }, this.opts.timeoutMs ?? 5000)
      this.#pending.set(id, (b) => {
        this.#clock.clearTimeout(timer)
        this.#pending.delete(id)
        resolve(b)
      })
      this.#s!.send(wire)
    })
  }

  #receive(b: Buffer): void {
    if (b.length < 12) return
    const id = b.readUInt16BE(0)
    const qr = (b[2]! & 0x80) !== 0
    if (qr) {
      this.#pending.get(id)?.(b)
      return
    }
    if (!isDso(b) || id !== 0) return
    let m: ReturnType<typeof decodeDso>
    try {
      m = decodeDso(b)
    } catch {
      return
    }
    const primary = m.tlvs[0]
    if (primary?.type === DsoType.RETRY_DELAY) {
      this.#lose('server asked to retry later', decodeRetryDelayTlv(primary.data))
      return
    }
    if (primary?.type !== DsoType.PUSH) return
    let rrs: ReturnType<typeof decodePushTlv>
    try {
      rrs = decodePushTlv(primary.data)
    } catch {
      return
    }
    const changes: PushChange[] = []
    for (const p of rrs) {
      if (p.ttl === REMOVE_SET_TTL || p.class === RRClass.ANY) {
        changes.push({ op: 'remove-rrset', name: p.name, type: p.type })
        continue
      }
      const r = reader(p.rdata)
      let data: RR['data']
      try {
        data = readRData(r, p.type, p.rdata.length)
      } catch {
        continue
      }
      const rr: RR = { name: p.name, type: p.type, class: p.class, ttl: p.ttl, data }
      changes.push(p.ttl === REMOVE_RR_TTL ? { op: 'remove', rr } : { op: 'add', rr })
    }
    this.pushesReceived++
    if (changes.length) this.#onChanges(changes)
  }

  #lose(why: string, retryDelayMs?: number): void {
    if (this.#lost || this.#closed) return
    this.#lost = true
    this.#clock.clearTimeout(this.#keepaliveTimer)
    this.#s?.close()
    this.#onLost(why, retryDelayMs)
  }
}
