// Change notification for the DNS service: wires LLQ (RFC 8764, llq.ts + notify-llq-service.ts) and DNS Push
// (RFC 8765 over RFC 8490, push.ts) to the listeners and to the store's change feed, and does their wire
// encoding. Plugged in by run.ts:
//   service.use(notify.handler)          LLQ requests (queries with the LLQ option) and event ACKs (responses)
//   DSO messages (opcode 6) on TCP/TLS   -> notify.handleDso(raw, ctx)
// The TSIG user of a connection is what DnsService recorded under connection.state 'tsig.user' (docs/notify.md).

import {
  DsoType,
  decodeDso,
  decodeKeepaliveTlv,
  decodeReconfirmTlv,
  decodeSubscribeTlv,
  decodeUnsubscribeTlv,
  encodeDso,
  keepaliveTlv,
  pushTlv,
  retryDelayTlv,
} from '../dns/dso.js'
import { EdnsOptionCode, findOption } from '../dns/edns.js'
import { decodeLlq, encodeLlq, LLQ_OPTION_LEN } from '../dns/llq.js'
import { signMessage, type TsigKey } from '../dns/tsig.js'
import { HEADER_SIZE, Opcode, Rcode } from '../dns/wire/header.js'
import { emptyMessage, encodeMessage, type Message } from '../dns/wire/message.js'
import { type RR, RRClass } from '../dns/wire/rr-table.js'
import type { Clock } from '../io/clock.js'
import { type Logger, nullLogger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { LLQ_REMOVED_TTL, LLQ_VERSION, type LlqConfig, LlqError, LlqOpcode } from './llq.js'
import { type LlqOutboundEvent, type LlqPeer, LlqService } from './notify-llq-service.js'
import {
  fanOut,
  type NotifyQuestion,
  type NotifySubscriber,
  type NotifyVerdict,
  type RRsetChange,
} from './notify-types.js'
import {
  PUSH_REMOVE_RR_TTL,
  PUSH_REMOVE_SET_TTL,
  type PushConfig,
  type PushInbound,
  type PushOutbound,
  PushSession,
} from './push.js'
import { canonicalRData, decodeRData, fromZoneRR, ownerOf } from './rdata.js'
import type { DnsRequest, MessageHandler } from './service.js'
import { SubscriptionIndex, type SubscriptionLimits } from './subscriptions.js'
import type { InboundContext, StreamConnection } from './transport.js'
import type { ZoneRR } from './zone-index.js'

/** What the notify services need from the DNS service (DnsService satisfies it). */
export interface NotifyHost {
  lookup(name: string, type: number): ZoneRR[]
  canWatch(q: NotifyQuestion, user: string | undefined): NotifyVerdict
  /** The user's current TSIG key (LLQ events of an LLQ set up with TSIG are signed with it), if the account exists. */
  tsigKey(user: string): TsigKey | undefined
  /** TSIG fudge written in signed events (RFC 8945 5.2.3). */
  readonly cfg: { readonly fudgeSec: number }
  readonly store: { onChange(fn: (changes: RRsetChange<ZoneRR>[]) => void): () => void }
  /**
   * Whether the key a connection or an LLQ was bound with (the Account DnsService recorded) is still the user's
   * key: false after `account passwd`, `account remove` or a re-created account. Without it, bindings never expire.
   */
  keyIsCurrent?(binding: unknown): boolean
  /** Called after the account set changed, with the users whose key changed or whose account went. */
  onAccountsChange?(fn: (revoked: ReadonlySet<string>) => void): () => void
}

export interface NotifyOptions {
  readonly llq?: Partial<LlqConfig>
  readonly push?: Partial<PushConfig>
  readonly limits?: Partial<SubscriptionLimits>
  /**
   * Serve DNS Push SUBSCRIBE on plain TCP too (tests and benchmarks only: RFC 8765 §6, clients MUST use TLS).
   * @default false
   */
  readonly pushPlainTcp?: boolean
}

/** The `autotunnel server` options this component adds (src/cli/server.ts). */
export interface NotifyCliOptions {
  llqLeaseMin?: number
  llqLeaseMax?: number
  llqResendMs?: number
  watchLimitClient?: number
  watchLimitUser?: number
  watchLimitAnonymous?: number
  watchLimitTotal?: number
  pushKeepaliveMs?: number
  pushPlainTcp?: boolean
}

export function notifyOptions(o: NotifyCliOptions): NotifyOptions {
  const llqLeaseMinSec = o.llqLeaseMin ?? 900
  const llqLeaseMaxSec = o.llqLeaseMax ?? 7200
  if (!(llqLeaseMinSec > 0 && llqLeaseMaxSec >= llqLeaseMinSec))
    throw new TypeError('need 0 < --llq-lease-min <= --llq-lease-max')
  return {
    llq: { leaseMinSec: llqLeaseMinSec, leaseMaxSec: llqLeaseMaxSec, resendMs: o.llqResendMs ?? 2000 },
    limits: {
      perClient: o.watchLimitClient ?? 1000,
      perUser: o.watchLimitUser ?? 1000,
      total: o.watchLimitTotal ?? 200_000,
      ...(o.watchLimitAnonymous !== undefined ? { anonymous: o.watchLimitAnonymous } : {}),
    },
    push: { keepaliveMs: o.pushKeepaliveMs ?? 60_000 },
    pushPlainTcp: o.pushPlainTcp === true,
  }
}

const RESPONSE_UDP_PAYLOAD = 1232
const LOG_FANOUT_AT = 1000
/** Offsets inside the 18-octet LLQ option data (RFC 8764 §3.2). */
const LLQ_ID_OFFSET = 6
const LLQ_LEASE_OFFSET = 14
const SESSION_KEY = 'push.session'
const LLQ_HOOK_KEY = 'llq.hooked'
const TSIG_USER_KEY = 'tsig.user'
/** The Account whose signed request bound the connection (DnsService), checked with NotifyHost.keyIsCurrent. */
const TSIG_BINDING_KEY = 'tsig.binding'

interface Peer extends LlqPeer {
  readonly send: (buf: Buffer) => void
}

export class NotifyService {
  readonly index: SubscriptionIndex<NotifySubscriber<ZoneRR>>
  readonly llq: LlqService<ZoneRR>
  readonly stats = {
    llqAcks: 0,
    /** LLQ acknowledgements ignored: unsigned or signed by another key than the LLQ's (seed 002 §7.2). */
    llqAcksRefused: 0,
    /** LLQ events not sent because the LLQ's account (hence its key) is gone. */
    llqEventsUnsignable: 0,
    pushMessages: 0,
    dsoMalformed: 0,
    fanOuts: 0,
    deliveries: 0,
  }
  /** One encoded event per change and question: every LLQ of it gets a copy with its own ID patched in. */
  #eventTemplate: { added: readonly ZoneRR[]; removed: readonly ZoneRR[]; qkey: string; wire: Buffer } | undefined
  readonly #host: NotifyHost
  readonly #clock: Clock
  readonly #log: Logger
  readonly #pushCfg: Partial<PushConfig>
  readonly #pushPlainTcp: boolean
  readonly #sessions = new Map<PushSession<ZoneRR>, StreamConnection>()
  readonly #unsubscribe: () => void
  readonly #unsubscribeAccounts: () => void

  constructor(deps: { host: NotifyHost; clock: Clock; random: Random; log?: Logger }, opts: NotifyOptions = {}) {
    this.#host = deps.host
    this.#clock = deps.clock
    this.#log = deps.log ?? nullLogger
    this.#pushCfg = opts.push ?? {}
    this.#pushPlainTcp = opts.pushPlainTcp === true
    this.index = new SubscriptionIndex(opts.limits)
    this.llq = new LlqService<ZoneRR>(
      {
        clock: deps.clock,
        random: deps.random,
        log: this.#log,
        index: this.index,
        answer: (q) => this.#host.lookup(q.name, q.type),
        policy: (q, user) => this.#host.canWatch(q, user),
        sendEvent: (ev) => this.#sendLlqEvent(ev),
      },
      opts.llq,
    )
    this.#unsubscribeAccounts = deps.host.onAccountsChange?.((revoked) => this.#accountsChanged(revoked)) ?? (() => {})
    this.#unsubscribe = deps.host.store.onChange((changes) => {
      const t0 = performance.now()
      const delivered = fanOut(this.index, changes)
      this.stats.fanOuts++
      this.stats.deliveries += delivered
      // Large fan-outs are logged at info: their duration is the commit-to-last-send latency.
      if (delivered >= LOG_FANOUT_AT || (delivered > 0 && this.#log.enabled('debug')))
        this.#log[delivered >= LOG_FANOUT_AT ? 'info' : 'debug']('notify.fanout', {
          rrsets: changes.length,
          delivered,
          ms: Math.round((performance.now() - t0) * 1000) / 1000,
        })
    })
  }

  get sessions(): number {
    return this.#sessions.size
  }

  /** Prometheus gauges and counters for `--metrics` (the server's registry). */
  registerMetrics(r: {
    gauge(name: string, help: string, read: () => number, type?: 'gauge' | 'counter'): void
  }): void {
    r.gauge('autotunnel_watch_subscriptions', 'Live LLQs and DNS Push subscriptions', () => this.index.size)
    r.gauge('autotunnel_llq_live', 'LLQs (challenged or established)', () => this.llq.size)
    r.gauge('autotunnel_push_sessions', 'DNS Push (DSO) sessions', () => this.#sessions.size)
    const c = (name: string, help: string, read: () => number): void => r.gauge(name, help, read, 'counter')
    c('autotunnel_llq_events_total', 'LLQ events sent (first transmissions)', () => this.llq.stats.eventsSent)
    c('autotunnel_llq_retransmissions_total', 'LLQ event retransmissions', () => this.llq.stats.retransmissions)
    c(
      'autotunnel_llq_unreachable_total',
      'LLQs deleted after 3 unacknowledged sends',
      () => this.llq.stats.deleted.unreachable,
    )
    c('autotunnel_push_messages_total', 'DNS Push PUSH messages sent', () => this.stats.pushMessages)
    c('autotunnel_notify_deliveries_total', 'Changes handed to subscribers', () => this.stats.deliveries)
  }

  close(): void {
    this.#unsubscribe()
    this.#unsubscribeAccounts()
    this.llq.close()
    for (const s of [...this.#sessions.keys()]) s.close('server stopping')
  }

  /**
   * The account set changed (a CLI edit seen within a second, KeyRing): a session or LLQ bound to a key that is
   * no longer its user's ends at once; every other watch is checked again against the privacy rule, so none keeps
   * a name its binding can no longer read (docs/security.md, issue 16 findings 1 and 3).
   */
  #accountsChanged(revoked: ReadonlySet<string>): void {
    let ended = 0
    for (const [s, conn] of [...this.#sessions]) {
      if (s.user !== undefined && revoked.has(s.user) && !this.#bindingCurrent(conn.state.get(TSIG_BINDING_KEY))) {
        conn.state.delete(TSIG_USER_KEY)
        conn.state.delete(TSIG_BINDING_KEY)
        s.close('key revoked')
        ended++
      } else if (!s.recheck()) ended++
    }
    const llqs = this.llq.retain(
      (q, user, binding) =>
        (user === undefined || !revoked.has(user) || this.#bindingCurrent(binding)) &&
        this.#host.canWatch(q, user) === 'ok',
    )
    this.#log.info('notify.accounts_changed', { revoked: [...revoked], sessionsEnded: ended, llqsEnded: llqs })
  }

  #bindingCurrent(binding: unknown): boolean {
    return binding !== undefined && (this.#host.keyIsCurrent?.(binding) ?? true)
  }

  /** For DnsService.use(): takes queries carrying the LLQ option and LLQ event acknowledgements. */
  readonly handler: MessageHandler = (req) => {
    const msg = req.msg
    const opt = findOption(msg.edns, EdnsOptionCode.LLQ)
    if (!opt || msg.opcode !== Opcode.QUERY) return false
    const peer = this.#peer(req.ctx)
    let llq: ReturnType<typeof decodeLlq>
    try {
      llq = decodeLlq(opt.data)
    } catch {
      if (msg.qr) req.drop()
      else
        req.respond(
          this.#llqResponse(msg, { version: LLQ_VERSION, opcode: 0, error: LlqError.FORMAT_ERR, id: 0n, leaseSec: 0 }),
        )
      return true
    }
    if (msg.qr) {
      if (llq.opcode === LlqOpcode.EVENT) {
        const r = this.llq.ack(peer, llq.id, msg.id, req.signer?.user)
        if (r === 'ok') this.stats.llqAcks++
        else if (r === 'refused') this.stats.llqAcksRefused++
      }
      req.drop()
      return true
    }
    const q = msg.questions[0]
    if (msg.questions.length !== 1 || !q) {
      req.respond(this.#llqResponse(msg, { ...llq, error: LlqError.FORMAT_ERR }))
      return true
    }
    const reply = this.llq.handle({ question: q, opt: llq, peer, user: req.signer?.user, binding: req.signer })
    if (reply.kind === 'rcode') {
      const res = this.#llqResponse(msg, undefined)
      res.rcode = reply.rcode
      req.respond(res)
    } else {
      const res = this.#llqResponse(msg, reply.opt)
      res.answers = reply.answers.map((z) => fromZoneRR(z))
      req.respond(res)
    }
    return true
  }

  /** A DSO message (opcode 6) on a TCP/TLS connection. */
  handleDso(raw: Buffer, ctx: InboundContext): void {
    const conn = ctx.connection
    if (!conn) {
      ctx.reply(undefined)
      return
    }
    const session = this.#session(conn, ctx)
    let user = conn.state.get(TSIG_USER_KEY)
    if (typeof user === 'string' && !this.#bindingCurrent(conn.state.get(TSIG_BINDING_KEY) ?? user)) {
      // Bound with a key that has since been changed or removed: the binding is void.
      conn.state.delete(TSIG_USER_KEY)
      conn.state.delete(TSIG_BINDING_KEY)
      user = undefined
      if (session.user !== undefined) {
        session.close('key revoked')
        ctx.reply(undefined)
        return
      }
    }
    if (typeof user === 'string' && user !== session.user) session.authenticated(user)
    let replied = false
    const reply = (buf: Buffer | undefined): void => {
      if (replied) return
      replied = true
      ctx.reply(buf)
    }
    conn.state.set('push.reply', reply)
    try {
      const m = this.#inbound(raw)
      session.receive(conn.peer.transport === 'tcp' && !this.#pushPlainTcp ? withoutPush(m) : m)
    } finally {
      conn.state.delete('push.reply')
      reply(undefined)
    }
  }

  #inbound(raw: Buffer): PushInbound {
    let m: ReturnType<typeof decodeDso>
    try {
      m = decodeDso(raw)
    } catch {
      this.stats.dsoMalformed++
      return { kind: 'malformed', msgId: raw.length >= HEADER_SIZE ? raw.readUInt16BE(0) : 0 }
    }
    if (m.qr) return { kind: 'other' }
    const primary = m.tlvs[0]
    try {
      if (m.id !== 0) {
        if (!primary) return { kind: 'malformed', msgId: m.id }
        if (primary.type === DsoType.KEEPALIVE)
          return { kind: 'keepalive', msgId: m.id, ...decodeKeepaliveTlv(primary.data) }
        if (primary.type === DsoType.SUBSCRIBE)
          return { kind: 'subscribe', msgId: m.id, question: decodeSubscribeTlv(primary.data) }
        return { kind: 'unknown-request', msgId: m.id, tlvType: primary.type }
      }
      if (primary?.type === DsoType.UNSUBSCRIBE)
        return { kind: 'unsubscribe', subscribeId: decodeUnsubscribeTlv(primary.data) }
      if (primary?.type === DsoType.RECONFIRM) {
        const r = decodeReconfirmTlv(primary.data)
        return { kind: 'reconfirm', question: r.q, rdata: Buffer.from(r.rdata) }
      }
      return { kind: 'other' }
    } catch {
      this.stats.dsoMalformed++
      return { kind: 'malformed', msgId: m.id }
    }
  }

  #session(conn: StreamConnection, ctx: InboundContext): PushSession<ZoneRR> {
    const existing = conn.state.get(SESSION_KEY)
    if (existing instanceof PushSession) return existing as PushSession<ZoneRR>
    const session: PushSession<ZoneRR> = new PushSession<ZoneRR>(
      {
        clock: this.#clock,
        log: this.#log,
        index: this.index,
        answer: (q) => this.#host.lookup(q.name, q.type),
        policy: (q, user) => this.#host.canWatch(q, user),
        exists: (q, rdata) => {
          const key = canonicalOrSelf(q.type, rdata)
          return this.#host.lookup(q.name, q.type).some((z) => z.rdata.equals(key))
        },
        removal: (q, rdata) => ({ name: q.name, type: q.type, class: q.class, ttl: 0, rdata, text: '' }),
        send: (out) => this.#sendPush(conn, out),
      },
      ctx.peer.address,
      this.#pushCfg,
    )
    conn.state.set(SESSION_KEY, session)
    // The session keeps its own keepalive/inactivity timers (RFC 8490 §6); the listener's idle timer is off.
    conn.setIdleTimeout(0)
    this.#sessions.set(session, conn)
    conn.onClose(() => {
      session.close('connection closed')
      this.#sessions.delete(session)
    })
    return session
  }

  #sendPush(conn: StreamConnection, out: PushOutbound<ZoneRR>): void {
    switch (out.kind) {
      case 'response': {
        const tlvs = []
        if (out.keepalive) tlvs.push(keepaliveTlv(out.keepalive.inactivityMs, out.keepalive.keepaliveMs))
        if (out.retryDelayMs !== undefined) tlvs.push(retryDelayTlv(out.retryDelayMs))
        const buf = encodeDso({ id: out.msgId, qr: true, rcode: out.rcode, tlvs })
        const reply = conn.state.get('push.reply') as ((b: Buffer) => void) | undefined
        if (reply) reply(buf)
        else conn.send(buf)
        return
      }
      case 'push': {
        const rrs = out.records.map((r) => {
          if (r.op === 'remove-rrset')
            return { name: r.name, type: r.type, class: RRClass.ANY, ttl: PUSH_REMOVE_SET_TTL, rdata: Buffer.alloc(0) }
          const z = r.rr
          return {
            name: ownerOf(z),
            type: z.type,
            class: z.class,
            ttl: r.op === 'add' ? z.ttl : PUSH_REMOVE_RR_TTL,
            rdata: z.wire ?? z.rdata,
          }
        })
        this.stats.pushMessages++
        conn.send(encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [pushTlv(rrs)] }))
        return
      }
      case 'close':
        if (out.retryDelayMs !== undefined)
          conn.send(encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [retryDelayTlv(out.retryDelayMs)] }))
        conn.close()
        return
    }
  }

  #peer(ctx: InboundContext): Peer {
    const conn = ctx.connection
    if (conn) {
      if (!conn.state.has(LLQ_HOOK_KEY)) {
        conn.state.set(LLQ_HOOK_KEY, true)
        conn.onClose(() => this.llq.dropPeer(`conn:${conn.id}`))
      }
      return { key: `conn:${conn.id}`, client: ctx.peer.address, send: (b) => conn.send(b) }
    }
    return { key: `udp:${ctx.peer.address}:${ctx.peer.port}`, client: ctx.peer.address, send: (b) => ctx.send(b) }
  }

  #llqResponse(req: Message, opt: Parameters<typeof encodeLlq>[0] | undefined): Message {
    return emptyMessage({
      id: req.id,
      qr: true,
      opcode: Opcode.QUERY,
      aa: true,
      rd: req.rd,
      rcode: Rcode.NOERROR,
      questions: req.questions.slice(0, 1),
      edns: { udpSize: RESPONSE_UDP_PAYLOAD, version: 0, do: false, options: opt ? [encodeLlq(opt)] : [] },
    })
  }

  /**
   * An LLQ event: a gratuitous response listing added records, and removed ones with TTL -1 (RFC 8764 §6.2).
   * The unsigned message ends with the LLQ option, so the copies for the other LLQs of the same change differ
   * only in the header ID and the option's LLQ-ID and LEASE, patched in place. An LLQ set up with TSIG gets its
   * copy signed with the user's key (seed 002 §7.2: LLQ messages carry the user's TSIG): one HMAC per watcher,
   * not chained to any request MAC (the event is unsolicited), the client verifies it as such.
   */
  #sendLlqEvent(ev: LlqOutboundEvent<ZoneRR>): void {
    const qkey = `${ev.question.name.toLowerCase()}|${ev.question.type}`
    let t = this.#eventTemplate
    if (!t || t.added !== ev.added || t.removed !== ev.removed || t.qkey !== qkey) {
      const answers: RR[] = []
      for (const z of ev.removed) answers.push({ ...fromZoneRR(z), ttl: LLQ_REMOVED_TTL })
      for (const z of ev.added) answers.push(fromZoneRR(z))
      const msg = emptyMessage({
        id: ev.msgId,
        qr: true,
        opcode: Opcode.QUERY,
        aa: true,
        questions: [ev.question],
        answers,
        edns: { udpSize: RESPONSE_UDP_PAYLOAD, version: 0, do: false, options: [encodeLlq(ev.opt)] },
      })
      try {
        t = { added: ev.added, removed: ev.removed, qkey, wire: encodeMessage(msg) }
      } catch (e) {
        this.#log.warn('llq.event_encode_failed', { err: String(e) })
        return
      }
      this.#eventTemplate = t
    }
    let key: TsigKey | undefined
    if (ev.user !== undefined) {
      key = this.#host.tsigKey(ev.user)
      if (!key) {
        this.stats.llqEventsUnsignable++
        return
      }
    }
    const wire = Buffer.from(t.wire)
    wire.writeUInt16BE(ev.msgId, 0)
    const opt = wire.length - LLQ_OPTION_LEN
    wire.writeBigUInt64BE(ev.opt.id, opt + LLQ_ID_OFFSET)
    wire.writeUInt32BE(ev.opt.leaseSec, opt + LLQ_LEASE_OFFSET)
    const out = key
      ? signMessage(wire, key, { timeSigned: Math.floor(this.#clock.now() / 1000), fudge: this.#host.cfg.fudgeSec })
          .wire
      : wire
    ;(ev.peer as Peer).send(out)
  }
}

/**
 * DSO on plain TCP without DNS Push (RFC 8765 §6: clients MUST use TLS). The session itself (Keepalive, RFC 8490)
 * works, but SUBSCRIBE is a request whose primary TLV this transport does not implement: DSOTYPENI (RFC 8490
 * §5.1.1; RFC 8765 §6.2 "SUBSCRIBE operation not supported"). Closing instead would look like a server fault and
 * make the client retry; DSOTYPENI tells it to look elsewhere. The Push unidirectionals are ignored.
 */
function withoutPush(m: PushInbound): PushInbound {
  if (m.kind === 'subscribe') return { kind: 'unknown-request', msgId: m.msgId, tlvType: DsoType.SUBSCRIBE }
  if (m.kind === 'unsubscribe' || m.kind === 'reconfirm') return { kind: 'other' }
  return m
}

/** RECONFIRM RDATA in canonical form (names compare case-insensitively, RFC 4343); as given if it does not parse. */
function canonicalOrSelf(type: number, rdata: Buffer): Buffer {
  try {
    return canonicalRData(type, decodeRData(type, rdata))
  } catch {
    return rdata
  }
}

export type { DnsRequest }
