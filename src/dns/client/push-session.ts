// One RFC 8490 DSO session carrying any number of RFC 8765 DNS Push subscriptions (push.ts's PushClient is one
// subscription on it). RFC 8765 section 6.2 lets a client send many SUBSCRIBEs on one session; an agent that watches
// the host list and each peer's SRV, TXT and target names used to open one TLS connection per name (seven for two
// peers), each with its own handshake, keepalive timer and server-side session. A PushSessionPool shares one session
// per (server, TLS identity, TSIG key): one connection, one keepalive, one TLS state.
//
//   open():      connect ──► authentication query (TSIG, optional) ──► Keepalive (the session exists) ──► ready
//   subscribe(): SUBSCRIBE once per (name, type) on the session ──► query on the same connection (the current RRset,
//                answered after the server's initial PUSH, so nothing falls between them)
//   PUSH:        each record goes to the subscriptions of its name and type (or ANY), as RFC 8765 section 6.3 asks
//   loss:        connection closed, keepalive unanswered, Retry Delay: every subscription hears it (its watcher
//                re-subscribes, and the first one back opens the next session)
//
// Two subscribers of the same (name, type) share one server subscription (the server refuses a second SUBSCRIBE for a
// question the session already has, RFC 8765 section 6.2): it is UNSUBSCRIBEd when the last one leaves, and the
// session is closed when no subscription is left.

import type { Clock, TimerHandle } from '../../io/clock.js'
import type { Random } from '../../io/random.js'
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
/** RFC 8490 §6.5.2: a keepalive interval under 10 s is not honoured. */
const MIN_KEEPALIVE_MS = 10_000
/** What we assume when the server's Keepalive response carries no Keepalive TLV. */
const DEFAULT_KEEPALIVE_MS = 60_000

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

export interface PushSessionOptions {
  /** Request to wire form for the authentication query (TSIG signing); without it no authentication is sent. */
  readonly sign?: (m: Message) => Buffer
  /** Name to query for authentication (any name works; the user's domain is natural). */
  readonly authName?: string
  readonly timeoutMs?: number
}

/** One subscriber of a (name, type): a PushClient. */
export interface PushListener {
  onChanges(c: PushChange[]): void
  onLost(why: string, retryDelayMs?: number): void
}

interface ServerSub {
  readonly name: string
  readonly type: number
  readonly listeners: Set<PushListener>
  /** The SUBSCRIBE's message ID (its subscription ID for UNSUBSCRIBE) once acknowledged. */
  id: number
  readonly acked: Promise<void>
}

/** "name|type", the name lower-case without its final dot: how PUSH records find their subscriptions. */
const subKey = (name: string, type: number): string => `${name.toLowerCase().replace(/\.$/, '')}|${type}`

export class PushSession {
  readonly #target: StreamTarget
  readonly #opts: PushSessionOptions
  readonly #clock: Clock
  readonly #random: Random
  readonly #onGone: () => void
  #s: DnsStream | undefined
  #opening: Promise<void> | undefined
  readonly #pending = new Map<number, (m: Buffer) => void>()
  readonly #subs = new Map<string, ServerSub>()
  /** Subscribers registered or on their way (subscribe() running): the session closes when none is left. */
  #users = 0
  #keepaliveTimer: TimerHandle | undefined
  #closed = false
  #lost = false
  /** PUSH messages received (all subscriptions). */
  pushesReceived = 0

  /** `onGone`: the session closed or was lost (its pool forgets it). */
  constructor(
    target: StreamTarget,
    opts: PushSessionOptions,
    deps: { readonly clock: Clock; readonly random: Random },
    onGone: () => void = () => {},
  ) {
    this.#target = target
    this.#opts = opts
    this.#clock = deps.clock
    this.#random = deps.random
    this.#onGone = onGone
  }

  /** False once closed or lost: a pool opens a new session for the next subscriber. */
  get usable(): boolean {
    return !this.#closed && !this.#lost
  }

  /** How many (name, type) subscriptions the session holds on the server. */
  get subscriptions(): number {
    return this.#subs.size
  }

  /**
   * Subscribes `l` to (name, type), opening the session first if needed; resolves with the current RRset. On failure
   * `l` is not subscribed (and a session left without subscriptions is closed).
   */
  async subscribe(name: string, type: number, l: PushListener): Promise<RR[]> {
    this.#users++
    const key = subKey(name, type)
    let sub: ServerSub | undefined
    try {
      await this.#open()
      sub = this.#subs.get(key)
      if (!sub) {
        const created: ServerSub = {
          name,
          type,
          listeners: new Set(),
          id: 0,
          acked: this.#subscribeOnServer(name, type),
        }
        sub = created
        this.#subs.set(key, created)
        created.acked.then(
          () => {},
          () => {
            if (this.#subs.get(key) === created) this.#subs.delete(key)
          },
        )
      }
      sub.listeners.add(l)
      await sub.acked
      const read = queryMessage(name, type)
      const wire = this.#opts.sign ? this.#opts.sign(read) : encodeMessage(read)
      const answer = decodeMessage(await this.#request(read.id, wire))
      return answer.answers.filter((rr) => rr.type === type || type === RRType.ANY)
    } catch (e) {
      sub?.listeners.delete(l)
      this.#leave()
      throw e
    }
  }

  /** `l` no longer wants (name, type): UNSUBSCRIBE when it was the last, close the session when nothing is left. */
  unsubscribe(name: string, type: number, l: PushListener): void {
    const key = subKey(name, type)
    const sub = this.#subs.get(key)
    if (!sub?.listeners.delete(l)) return
    if (sub.listeners.size === 0) {
      this.#subs.delete(key)
      if (sub.id && this.#s && !this.#s.closed && this.usable)
        this.#s.send(encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [unsubscribeTlv(sub.id)] }))
    }
    this.#leave()
  }

  /** Closes the connection (every subscription ends without being told: the caller is closing them). */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#keepaliveTimer)
    this.#s?.close()
    this.#onGone()
  }

  #leave(): void {
    this.#users--
    if (this.#users <= 0 && this.#subs.size === 0) this.close()
  }

  #open(): Promise<void> {
    if (!this.usable) return Promise.reject(new PushClientError('DSO session closed', 2))
    this.#opening ??= this.#connect()
    return this.#opening
  }

  async #connect(): Promise<void> {
    const s = await DnsStream.connect(this.#target, this.#opts.timeoutMs ?? 5000).catch((e) => {
      this.#lose(String(e))
      throw e
    })
    this.#s = s
    s.onMessage((b) => this.#receive(b))
    s.onClose(() => this.#lose('connection closed'))
    try {
      if (this.#opts.sign) {
        const q = queryMessage(this.#opts.authName ?? '.', RRType.SOA)
        const res = decodeMessage(await this.#request(q.id, this.#opts.sign(q)))
        if (res.rcode !== 0 && res.rcode !== 3)
          throw new PushClientError(`authentication query: RCODE ${res.rcode}`, res.rcode)
      }
      const kaId = this.#messageId()
      const ka = decodeDso(
        await this.#request(kaId, encodeDso({ id: kaId, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] })),
      )
      if (ka.rcode !== 0) throw new PushClientError(`DSO keepalive: RCODE ${ka.rcode}`, ka.rcode)
      const kaTlv = ka.tlvs.find((t) => t.type === DsoType.KEEPALIVE)
      const interval = kaTlv ? decodeKeepaliveTlv(kaTlv.data).keepaliveMs : DEFAULT_KEEPALIVE_MS
      this.#keepaliveEvery(Math.max(MIN_KEEPALIVE_MS, interval))
    } catch (e) {
      // Nobody can use a session that did not open: its subscribers are all in subscribe() and get this error.
      this.#lost = true
      s.close()
      this.#onGone()
      throw e
    }
  }

  async #subscribeOnServer(name: string, type: number): Promise<void> {
    const subId = this.#messageId()
    const q = { name, type, class: RRClass.IN }
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
    const s = this.#subs.get(subKey(name, type))
    if (s) s.id = subId
  }

  /** A nonzero DNS message ID not in use on this session (ID 0 is for unidirectional DSO messages, RFC 8490 5.1). */
  #messageId(): number {
    for (;;) {
      const id = 1 + this.#random.int(0xffff)
      if (!this.#pending.has(id)) return id
    }
  }

  #keepaliveEvery(ms: number): void {
    this.#keepaliveTimer = this.#clock.setTimeout(() => {
      if (!this.usable) return
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
      }, this.#opts.timeoutMs ?? 5000)
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
    let changes: PushChange[]
    try {
      changes = decodeChanges(primary.data)
    } catch {
      return
    }
    this.pushesReceived++
    for (const [l, cs] of this.#route(changes)) l.onChanges(cs)
  }

  /** Each change to the subscribers of its name and type (RFC 8765 section 6.3.1: CLASS ANY + TYPE ANY is the name). */
  #route(changes: readonly PushChange[]): Map<PushListener, PushChange[]> {
    const out = new Map<PushListener, PushChange[]>()
    for (const c of changes) {
      const name = c.op === 'remove-rrset' ? c.name : c.rr.name
      const type = c.op === 'remove-rrset' ? c.type : c.rr.type
      const subs =
        type === RRType.ANY
          ? [...this.#subs.values()].filter((s) => subKey(s.name, 0) === subKey(name, 0))
          : [this.#subs.get(subKey(name, type)), this.#subs.get(subKey(name, RRType.ANY))]
      for (const s of subs) if (s) for (const l of s.listeners) (out.get(l) ?? out.set(l, []).get(l)!).push(c)
    }
    return out
  }

  #lose(why: string, retryDelayMs?: number): void {
    if (this.#lost || this.#closed) return
    this.#lost = true
    this.#clock.clearTimeout(this.#keepaliveTimer)
    this.#s?.close()
    const listeners = [...this.#subs.values()].flatMap((s) => [...s.listeners])
    this.#subs.clear()
    this.#onGone()
    for (const l of listeners) l.onLost(why, retryDelayMs)
  }
}

/** A PUSH TLV's records as changes (RFC 8765 section 6.3.1): TTL 0xFFFFFFFF removes a record, 0xFFFFFFFE an RRset. */
export function decodeChanges(data: Buffer): PushChange[] {
  const changes: PushChange[] = []
  for (const p of decodePushTlv(data)) {
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
  return changes
}

/**
 * Shares sessions between the subscriptions of one process: one per (server, TLS identity, authentication identity).
 * `authId` names who the session is authenticated as (the TSIG key's name): sessions of different keys never mix.
 */
export class PushSessionPool {
  readonly #sessions = new Map<string, PushSession>()

  session(
    target: StreamTarget,
    authId: string,
    opts: PushSessionOptions,
    deps: { readonly clock: Clock; readonly random: Random },
  ): PushSession {
    const key = [
      target.host,
      target.port,
      target.tls ? (target.tls.servername ?? '') : 'tcp',
      target.fingerprint256 ?? '',
      target.localAddress ?? '',
      authId,
    ].join('|')
    const have = this.#sessions.get(key)
    if (have?.usable) return have
    const s: PushSession = new PushSession(target, opts, deps, () => {
      if (this.#sessions.get(key) === s) this.#sessions.delete(key)
    })
    this.#sessions.set(key, s)
    return s
  }

  /**
   * Subscribers from now on get new sessions; the current ones stay with the subscribers they have until those leave.
   * For a network change: a session on the old address may be dead without knowing it (no FIN or RST crosses a NAT
   * that forgot it), and the watchers opened again must not join it.
   */
  renew(): void {
    this.#sessions.clear()
  }

  /** Open sessions (for status and tests). */
  get size(): number {
    return this.#sessions.size
  }
}
