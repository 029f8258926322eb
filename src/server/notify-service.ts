// Change notification for the DNS service: wires LLQ (RFC 8764, llq.ts + notify-llq-service.ts) and DNS Push
// (RFC 8765 over RFC 8490, push.ts) to the listeners and to the store's change feed, and runs the fan-out of a
// committed change to every watcher of its name. Wire encoding is in llq-event-wire.ts and push-wire.ts (each
// change encoded once for all its watchers), options in notify-config.ts. Plugged in by run.ts:
//   service.use(notify.handler)          LLQ requests (queries with the LLQ option) and event ACKs (responses)
//   DSO messages (opcode 6) on TCP/TLS   -> notify.handleDso(raw, ctx)
// The TSIG user of a connection is what DnsService recorded under connection.state 'tsig.user' (docs/notify.md).

import { EdnsOptionCode, findOption } from '../dns/edns.js'
import { decodeLlq } from '../dns/llq.js'
import type { TsigKey } from '../dns/tsig.js'
import { Opcode } from '../dns/wire/header.js'
import type { Clock } from '../io/clock.js'
import { type Logger, nullLogger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { FanWriter } from './fan-write.js'
import { LLQ_VERSION, LlqError, LlqOpcode } from './llq.js'
import { LlqEventWire, llqResponse } from './llq-event-wire.js'
import type { NotifyHost, NotifyOptions } from './notify-config.js'
import { type LlqOutboundEvent, type LlqPeer, LlqService } from './notify-llq-service.js'
import { fanOut, type NotifySubscriber, type RRsetChange } from './notify-types.js'
import { type PushConfig, type PushOutbound, PushSession } from './push.js'
import {
  decodePushInbound,
  encodePush,
  encodePushResponse,
  encodeRetryDelay,
  FRAME_PREFIX,
  PushFrames,
  withoutPush,
} from './push-wire.js'
import { canonicalRData, decodeRData, fromZoneRR } from './rdata.js'
import type { DnsRequest, MessageHandler } from './service.js'
import { SubscriptionIndex } from './subscriptions.js'
import type { InboundContext, StreamConnection } from './transport.js'
import type { ZoneRR } from './zone-index.js'

export { type NotifyCliOptions, type NotifyHost, type NotifyOptions, notifyOptions } from './notify-config.js'

/** Fan-outs to this many watchers are logged at info, with how long they took. */
const LOG_FANOUT_AT = 1000
/** How the fan-out log waits for the last octets to leave the process (#fanOut). */
const FLUSH_POLL_FAST_MS = 200
const FLUSH_POLL_MS = 10
const FLUSH_WAIT_MAX_MS = 10_000
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
    /** PUSH messages not sent because the change does not fit in one DSO message. */
    pushUnencodable: 0,
    fanOuts: 0,
    deliveries: 0,
  }
  /** Writes each change's PUSH to a batch of sessions in one native call (fan-write.ts); `stats` counts both ways. */
  readonly fanWriter = new FanWriter<StreamConnection>({
    onQueued: (c) => {
      if (this.#unflushed && (c.queued ?? 0) > 0) this.#unflushed.push(c)
    },
  })
  /** True while #fanOut runs: PUSH frames go to the batch writer, flushed before the pass returns. */
  #inPass = false
  readonly #llqWire = new LlqEventWire()
  readonly #pushFrames = new PushFrames()
  /** During a fan-out that is timed: the connections whose PUSH the kernel did not take at once. */
  #unflushed: StreamConnection[] | undefined
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
    this.#unsubscribe = deps.host.store.onChange((changes) => this.#fanOut(changes))
  }

  /**
   * Hands each change to every watcher of its RRset, synchronously (the store calls this after the COMMIT and
   * after the UPDATE's answer). Large fan-outs are logged at info with `ms`, the time until the last watcher's
   * message was written, and `flushedMs`, until every octet had left this process: stream writes the kernel did
   * not take at once, and the batch of LLQ datagrams, flushed when this run of JavaScript ends. On loopback the
   * kernel puts a message in the watcher's socket while the write returns, so `flushedMs` is the server's part
   * of commit-to-watcher latency (bench/notify).
   */
  #fanOut(changes: RRsetChange<ZoneRR>[]): void {
    const t0 = performance.now()
    const timed = this.index.size >= LOG_FANOUT_AT || this.#log.enabled('debug')
    const cpu0 = timed ? process.cpuUsage() : undefined
    const unflushed: StreamConnection[] = []
    if (timed) this.#unflushed = unflushed
    let delivered: number
    this.#inPass = true
    try {
      delivered = fanOut(this.index, changes)
    } finally {
      this.#inPass = false
      this.fanWriter.flush()
      this.#unflushed = undefined
    }
    this.stats.fanOuts++
    this.stats.deliveries += delivered
    if (delivered < LOG_FANOUT_AT && !(delivered > 0 && this.#log.enabled('debug'))) return
    const ms = performance.now() - t0
    // CPU time of the synchronous pass: what it takes on a core of its own (wall time also counts waiting for one).
    const cpu = cpu0 ? process.cpuUsage(cpu0) : undefined
    const level = delivered >= LOG_FANOUT_AT ? 'info' : 'debug'
    const round = (x: number): number => Math.round(x * 1000) / 1000
    // Diagnostics only, so plain timers, not the Clock: checked once per event-loop turn for the first
    // FLUSH_POLL_FAST_MS, then every FLUSH_POLL_MS; a watcher that does not read (its socket buffer full) ends the
    // wait after FLUSH_WAIT_MAX_MS, logged with flushedMs null and how many were still queued.
    const check = (): void => {
      const elapsed = performance.now() - t0
      const pending = unflushed.filter((c) => !c.closed && (c.queued ?? 0) > 0).length
      if (pending > 0 && elapsed < FLUSH_WAIT_MAX_MS) {
        if (elapsed < FLUSH_POLL_FAST_MS) setImmediate(check)
        else setTimeout(check, FLUSH_POLL_MS).unref()
        return
      }
      this.#log[level]('notify.fanout', {
        rrsets: changes.length,
        delivered,
        ms: round(ms),
        ...(cpu ? { cpuMs: round((cpu.user + cpu.system) / 1000), sysMs: round(cpu.system / 1000) } : {}),
        flushedMs: pending > 0 ? null : round(elapsed),
        queuedConnections: unflushed.length,
        nativeWrites: this.fanWriter.native,
        ...(pending > 0 ? { stillQueued: pending } : {}),
      })
    }
    setImmediate(check)
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
    c(
      'autotunnel_push_direct_writes_total',
      'PUSH messages the kernel took from the batched native send (fan-write.ts)',
      () => this.fanWriter.direct,
    )
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
          llqResponse(msg, { version: LLQ_VERSION, opcode: 0, error: LlqError.FORMAT_ERR, id: 0n, leaseSec: 0 }),
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
      req.respond(llqResponse(msg, { ...llq, error: LlqError.FORMAT_ERR }))
      return true
    }
    const reply = this.llq.handle({ question: q, opt: llq, peer, user: req.signer?.user, binding: req.signer })
    if (reply.kind === 'rcode') {
      const res = llqResponse(msg, undefined)
      res.rcode = reply.rcode
      req.respond(res)
    } else {
      const res = llqResponse(msg, reply.opt)
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
      const { m, malformed } = decodePushInbound(raw)
      if (malformed) this.stats.dsoMalformed++
      session.receive(conn.peer.transport === 'tcp' && !this.#pushPlainTcp ? withoutPush(m) : m)
    } finally {
      conn.state.delete('push.reply')
      reply(undefined)
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
      case 'change': {
        let f: Buffer
        try {
          f = this.#pushFrames.frame(out.change)
        } catch (e) {
          this.stats.pushUnencodable++
          this.#log.warn('push.encode_failed', { err: String(e) })
          return
        }
        this.stats.pushMessages++
        if (this.#inPass) {
          this.fanWriter.write(conn, f)
          return
        }
        if (conn.sendFramed) conn.sendFramed(f)
        else conn.send(f.subarray(FRAME_PREFIX))
        return
      }
      case 'response': {
        // Anything else for a connection goes after the PUSH frames batched for it (none outside a pass).
        this.fanWriter.flush()
        const buf = encodePushResponse(out)
        const reply = conn.state.get('push.reply') as ((b: Buffer) => void) | undefined
        if (reply) reply(buf)
        else conn.send(buf)
        return
      }
      case 'push':
        this.fanWriter.flush()
        this.stats.pushMessages++
        conn.send(encodePush(out.records))
        return
      case 'close':
        this.fanWriter.flush()
        if (out.retryDelayMs !== undefined) conn.send(encodeRetryDelay(out.retryDelayMs))
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

  /**
   * An LLQ event: a gratuitous response listing added records, and removed ones with TTL -1 (RFC 8764 §6.2).
   * The unsigned message ends with the LLQ option, so the copies for the other LLQs of the same change differ
   * only in the header ID and the option's LLQ-ID and LEASE, patched in place. An LLQ set up with TSIG gets its
   * copy signed with the user's key (seed 002 §7.2: LLQ messages carry the user's TSIG): one HMAC per watcher,
   * not chained to any request MAC (the event is unsolicited), the client verifies it as such.
   */
  #sendLlqEvent(ev: LlqOutboundEvent<ZoneRR>): void {
    let key: TsigKey | undefined
    if (ev.user !== undefined) {
      key = this.#host.tsigKey(ev.user)
      if (!key) {
        this.stats.llqEventsUnsignable++
        return
      }
    }
    let wire: Buffer
    try {
      wire = key
        ? this.#llqWire.event(ev, key, Math.floor(this.#clock.now() / 1000), this.#host.cfg.fudgeSec)
        : this.#llqWire.event(ev)
    } catch (e) {
      this.#log.warn('llq.event_encode_failed', { err: String(e) })
      return
    }
    ;(ev.peer as Peer).send(wire)
  }
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
