// The DNS service's message path: decode, TSIG (RFC 8945), extension handlers, then the core opcodes: QUERY
// (query.ts) and UPDATE (update-handler.ts: update.ts through the group-commit queue). Every answer is encoded here, sized for its
// transport (512 octets, or the EDNS payload size for UDP, RFC 6891 6.2.5; TC set when answer data was dropped)
// and TSIG-signed when the request was.
//
// Extension point: `use(handler)` registers a handler that sees every decoded message before the core (LLQ
// requests are queries carrying the LLQ option; DSO messages, opcode 6, arrive on TCP/TLS connections). A
// handler returns true when it took the message; it must then call req.respond() or req.drop().

import { randomBytes } from 'node:crypto'
import { fail, type TsigKey } from '../dns/tsig.js'
import { HEADER_SIZE, Opcode, Rcode } from '../dns/wire/header.js'
import { emptyMessage, type Message, tryDecode } from '../dns/wire/message.js'
import { nameToLowerCanonical } from '../dns/wire/name.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import type { Clock } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import { type Account, isPossibleUser, type KeyRing } from './accounts.js'
import { advertisedFor } from './advertise.js'
import type { ServiceConfig } from './config.js'
import { discoveryService } from './discovery.js'
import type { ServerMetrics } from './metrics.js'
import { ZoneAnswerer } from './query.js'
import { baseResponse } from './response.js'
import type { InboundContext } from './transport.js'
import { accountTsigKey, type TsigCheck, tsigEncode, tsigVerify } from './tsig-adapter.js'
import { type ReplayVerdict, TsigReplayCache } from './tsig-replay.js'
import { UpdateHandler } from './update-handler.js'
import { UpdateQueue } from './update-queue.js'
import { labelBelow, type ZoneRR } from './zone-index.js'
import type { ZoneStore } from './zone-tx.js'

const CLASSIC_UDP_MAX = 512
const MAX_UDP_PAYLOAD = 4096
/** Entries in the encoded-response cache before it is emptied (it refills from the hot names). */
const RESPONSE_CACHE_MAX = 20_000
const MAX_CACHED_QUERY = 512
const ID_SIZE = 2
const DECOY_SECRET_LEN = 64

/** A decoded message on its way through the handlers. */
/** Re-exported: it was defined here before response.ts. */
export { SERVER_UDP_PAYLOAD } from './response.js'

export interface DnsRequest {
  readonly raw: Buffer
  readonly msg: Message
  readonly ctx: InboundContext
  /** The account whose key signed the message (TSIG verified), if any. */
  readonly signer: Account | undefined
  /** Encodes (sized for the transport, signed if the request was) and sends `res`. */
  respond(res: Message): void
  /** Answers nothing (the listener is told, so TCP bookkeeping stays right). */
  drop(): void
  /** Encodes `res` as respond() would, without sending: for messages sent later through ctx.send. */
  encode(res: Message): Buffer
}

export type MessageHandler = (req: DnsRequest) => boolean

/** Who may watch a question (for LLQ and DNS Push, seed 002 section 7.2). */
export type WatchVerdict = 'ok' | 'refused' | 'notauth' | 'static'

export class DnsService {
  readonly cfg: ServiceConfig
  readonly store: ZoneStore
  readonly keys: KeyRing
  readonly answerer: ZoneAnswerer
  readonly queue: UpdateQueue
  readonly metrics: ServerMetrics
  readonly #clock: Clock
  readonly #log: Logger
  readonly #handlers: MessageHandler[] = []
  readonly #updates: UpdateHandler
  /**
   * Encoded answers to unsigned queries, keyed by transport class and the query bytes after the ID; a hit
   * costs one copy and the ID patch. Emptied on every commit and whenever the account set changes.
   */
  readonly #cache = new Map<string, Buffer>()
  readonly #cacheKeys = new WeakMap<DnsRequest, string>()
  /** MACs of accepted signed requests within the fudge window (tsig-replay.ts). */
  readonly replay: TsigReplayCache
  #cacheAccounts = -1

  constructor(
    deps: { store: ZoneStore; keys: KeyRing; clock: Clock; log: Logger; metrics: ServerMetrics },
    cfg: ServiceConfig,
  ) {
    this.cfg = cfg
    this.store = deps.store
    this.keys = deps.keys
    this.metrics = deps.metrics
    this.#clock = deps.clock
    this.#log = deps.log
    this.queue = new UpdateQueue({ store: deps.store, log: deps.log })
    this.replay = new TsigReplayCache({
      windowSec: cfg.fudgeSec,
      ...(cfg.replayCacheEntries !== undefined ? { maxEntries: cfg.replayCacheEntries } : {}),
    })
    this.answerer = new ZoneAnswerer({
      cfg,
      index: deps.store.index,
      serial: () => deps.store.serial,
      isUser: (label) => deps.keys.byUser(label) !== undefined,
      now: () => deps.clock.now(),
    })
    const m = deps.metrics.registry
    m.gauge('autotunnel_leases_live', 'Records holding an update lease', () => deps.store.leases.size)
    m.gauge('autotunnel_zone_records', 'Records in the zone store', () => deps.store.index.recordCount)
    m.gauge('autotunnel_zone_serial', 'SOA serial', () => deps.store.serial)
    m.gauge('autotunnel_accounts', 'Accounts', () => deps.keys.size)
    m.gauge('autotunnel_tsig_replay_cache_entries', 'MACs remembered against TSIG replay', () => this.replay.size)
    m.gauge('autotunnel_tsig_replays_total', 'Signed requests seen again', () => this.replay.stats.replays, 'counter')
    m.gauge('autotunnel_store_commits_total', 'SQLite transactions committed', () => this.queue.batches, 'counter')
    m.gauge('autotunnel_store_committed_jobs_total', 'Updates and expiries committed', () => this.queue.jobs, 'counter')
    this.#updates = new UpdateHandler(
      {
        store: deps.store,
        queue: this.queue,
        replay: this.replay,
        metrics: deps.metrics,
        clock: deps.clock,
        log: deps.log,
        onCommitted: () => this.#cache.clear(),
      },
      cfg,
    )
    deps.store.onChange(() => {
      this.#cache.clear()
      this.#updates.armLeaseTimer()
    })
  }

  // --- notify hook (notify engineer): DSO messages (RFC 8490, opcode 6) skip the DNS decoder and go to
  // src/server/notify-service.ts, which owns the DNS Push sessions.
  #dso: ((raw: Buffer, ctx: InboundContext) => void) | undefined
  useDso(fn: (raw: Buffer, ctx: InboundContext) => void): void {
    this.#dso = fn
  }
  // --- end notify hook

  /** Drops the encoded answers (what they depend on changed outside the store: the live nodes of a cluster). */
  invalidateAnswers(): void {
    this.#cache.clear()
  }

  /** Registers a handler that sees every decoded message before the core (see the file comment). */
  use(handler: MessageHandler): void {
    this.#handlers.push(handler)
  }

  /** Removes records whose lease ran out (also those that expired while the server was down), then arms the timer. */
  start(): void {
    this.#updates.expireLeases()
    this.#updates.armLeaseTimer()
  }

  stop(): void {
    this.#updates.stop()
    this.queue.close()
  }

  /** Current records answering (name, type) from the store (the LLQ / Push initial answer). */
  lookup(name: string, type: number): ZoneRR[] {
    const node = this.store.index.node(nameToLowerCanonical(name))
    if (!node) return []
    const out: ZoneRR[] = []
    for (const set of node.rrsets.values())
      if (type === RRType.ANY || set.type === type) for (const r of set.records.values()) out.push(r.rr)
    return out
  }

  /** The user's TSIG key, for messages the server signs on its own (LLQ events). */
  tsigKey(user: string): TsigKey | undefined {
    const a = this.keys.byUser(user)
    return a ? accountTsigKey(a) : undefined
  }

  /** A key with a secret nobody knows, for TSIG names that could be accounts but are not (tsigVerify). */
  readonly #decoy = (keyName: string, algorithm: string): TsigKey | undefined => {
    const label = labelBelow(keyName, this.cfg.zone)
    if (label === undefined || keyName !== `${label}.${this.cfg.zone}` || !isPossibleUser(label)) return undefined
    return { name: keyName, algorithm, secret: this.#decoySecret }
  }
  readonly #decoySecret = randomBytes(DECOY_SECRET_LEN)

  /** Whether `binding` (an Account recorded for a connection or an LLQ) still holds its user's key. */
  keyIsCurrent(binding: unknown): boolean {
    const a = binding as Account | undefined
    if (!a || typeof a !== 'object' || !Buffer.isBuffer(a.secret)) return false
    this.keys.refresh()
    return this.keys.isCurrent(a)
  }

  /** Account-set changes (CLI edits picked up by KeyRing): the users whose key changed or whose account went. */
  onAccountsChange(fn: (revoked: ReadonlySet<string>) => void): () => void {
    return this.keys.onChange((c) => fn(c.revoked))
  }

  /** Privacy for watchers: the same rule as for queries. */
  canWatch(q: { name: string; type: number; class: number }, user: string | undefined): WatchVerdict {
    const name = nameToLowerCanonical(q.name)
    const aud = this.answerer.audience(name)
    if (aud.kind === 'outside') return 'notauth'
    if (aud.kind === 'user' && aud.user !== user) return 'refused'
    if (discoveryService(this.cfg, name) || name === this.cfg.nsName) return 'static'
    return 'ok'
  }

  /** The listener entry point (a MessageSink). */
  readonly handle = (raw: Buffer, ctx: InboundContext): void => {
    try {
      this.#handle(raw, ctx)
    } catch (e) {
      this.metrics.dropped({ reason: 'internal' })
      this.#log.error('dns.internal_error', { err: String((e as Error)?.stack ?? e) })
      ctx.reply(undefined)
    }
  }

  #handle(raw: Buffer, ctx: InboundContext): void {
    if (this.#dso && raw.length >= HEADER_SIZE && ((raw[2]! >> 3) & 0xf) === Opcode.DSO) {
      this.#dso(raw, ctx)
      return
    }
    let cacheKey: string | undefined
    if (raw.length > HEADER_SIZE && raw.length <= MAX_CACHED_QUERY) {
      if (this.keys.generation !== this.#cacheAccounts) {
        this.#cache.clear()
        this.#cacheAccounts = this.keys.generation
      }
      cacheKey =
        (ctx.peer.transport === 'udp' ? 'u' : 's') +
        // The server's own addresses in the answer depend on where the query arrived (advertise.ts).
        (this.cfg.advertiseLocal ? `${advertisedFor(ctx.peer, this.cfg).join(',')}|` : '') +
        raw.latin1Slice(ID_SIZE, raw.length)
      const hit = this.#cache.get(cacheKey)
      if (hit) {
        const out = Buffer.allocUnsafe(hit.length)
        hit.copy(out)
        out[0] = raw[0]!
        out[1] = raw[1]!
        this.metrics.query(ctx.peer.transport, hit[3]! & 0xf)
        ctx.reply(out)
        return
      }
    }
    const dec = tryDecode(raw)
    if (!dec.ok) {
      this.metrics.dropped({ reason: 'formerr' })
      if (this.#log.enabled('debug')) this.#log.debug('dns.formerr', { peer: ctx.peer.address, err: dec.error.message })
      // Answer FORMERR when the header is readable and it is not itself a response.
      if (dec.id === undefined || raw.length < HEADER_SIZE || (raw[2]! & 0x80) !== 0) {
        ctx.reply(undefined)
        return
      }
      const res = emptyMessage({
        id: dec.id,
        qr: true,
        opcode: dec.opcode ?? 0,
        rd: dec.rd ?? false,
        rcode: Rcode.FORMERR,
      })
      ctx.reply(tsigEncode(res, undefined, this.#clock.now(), CLASSIC_UDP_MAX))
      return
    }
    const msg = dec.msg
    let check: TsigCheck | undefined
    let signer: Account | undefined
    let replay: ReplayVerdict | undefined
    if (msg.tsig) {
      check = tsigVerify(raw, msg, (keyName) => this.keys.byKeyName(keyName), this.#clock.now(), {
        maxFudgeSec: this.cfg.fudgeSec,
        decoy: this.#decoy,
      })
      if (!check.ok) {
        this.metrics.tsigFailures({ kind: check.error })
        if (msg.qr) {
          ctx.reply(undefined)
          return
        }
        this.#log.info('tsig.failed', { peer: ctx.peer.address, key: msg.tsig.name, error: check.error })
        const res = baseResponse(msg)
        const formErr = check.error === 'FORMERR' || check.error === 'UNSIGNED'
        res.rcode = formErr ? Rcode.FORMERR : Rcode.NOTAUTH
        if (msg.opcode === Opcode.UPDATE) this.metrics.updates({ rcode: formErr ? 'FORMERR' : 'NOTAUTH' })
        ctx.reply(tsigEncode(res, check, this.#clock.now(), this.#maxSize(msg, ctx), this.cfg.fudgeSec))
        return
      }
      signer = check.account
      if (!msg.qr) {
        replay = this.replay.check(check.requestMac, msg.tsig.data.timeSigned, Math.floor(this.#clock.now() / 1000))
        if (replay.kind === 'too-old') {
          this.metrics.tsigFailures({ kind: 'BADTIME' })
          this.#log.info('tsig.failed', { peer: ctx.peer.address, key: msg.tsig.name, error: 'BADTIME', replay: true })
          const failure = fail('BADTIME', { msg, tsig: msg.tsig.data, key: check.key, mac: check.requestMac })
          const res = baseResponse(msg)
          res.rcode = Rcode.NOTAUTH
          ctx.reply(
            tsigEncode(res, { ok: false, error: 'BADTIME', failure }, this.#clock.now(), this.#maxSize(msg, ctx)),
          )
          return
        }
        // A DNS Push session is authenticated by a fresh signed request on its own connection (docs/notify.md):
        // never by a response (an LLQ event sent in clear over UDP) or a replayed request (issue 16 finding 2).
        // The Account is kept so the binding dies with the key (keyIsCurrent).
        if (ctx.connection && replay.kind === 'fresh') {
          ctx.connection.state.set('tsig.user', signer.user)
          ctx.connection.state.set('tsig.binding', signer)
        }
      }
    }
    const maxSize = this.#maxSize(msg, ctx)
    let done = false
    const req: DnsRequest = {
      raw,
      msg,
      ctx,
      signer,
      respond: (res) => {
        if (done) return
        done = true
        ctx.reply(tsigEncode(res, check, this.#clock.now(), maxSize, this.cfg.fudgeSec))
      },
      drop: () => {
        if (done) return
        done = true
        ctx.reply(undefined)
      },
      encode: (res) => tsigEncode(res, check, this.#clock.now(), maxSize, this.cfg.fudgeSec),
    }
    for (const h of this.#handlers) if (h(req)) return
    if (cacheKey !== undefined && !check && msg.opcode === Opcode.QUERY && !msg.qr) this.#cacheKeys.set(req, cacheKey)
    if (msg.qr) {
      req.drop()
      return
    }
    if (msg.edns && msg.edns.version !== 0) {
      const res = baseResponse(msg)
      res.rcode = Rcode.BADVERS
      req.respond(res)
      return
    }
    switch (msg.opcode) {
      case Opcode.QUERY:
        this.#query(req)
        return
      case Opcode.UPDATE:
        this.#updates.handle(req, replay)
        return
      default: {
        const res = baseResponse(msg)
        res.rcode = Rcode.NOTIMP
        req.respond(res)
        return
      }
    }
  }

  #maxSize(msg: Message, ctx: InboundContext): number {
    if (ctx.peer.transport !== 'udp') return 0xffff
    if (!msg.edns) return CLASSIC_UDP_MAX
    return Math.max(CLASSIC_UDP_MAX, Math.min(msg.edns.udpSize, MAX_UDP_PAYLOAD))
  }

  #query(req: DnsRequest): void {
    const { msg } = req
    const res = baseResponse(msg)
    const q = msg.questions[0]
    if (msg.questions.length !== 1 || !q) {
      res.rcode = Rcode.FORMERR
    } else if (q.class !== RRClass.IN && q.class !== RRClass.ANY) {
      res.rcode = Rcode.REFUSED
    } else if (q.type === RRType.AXFR || q.type === RRType.IXFR) {
      res.rcode = Rcode.REFUSED
    } else {
      const a = this.answerer.answer(
        nameToLowerCanonical(q.name),
        q.type,
        req.signer?.user,
        q.name,
        advertisedFor(req.ctx.peer, this.cfg),
      )
      res.aa = a.rcode !== Rcode.REFUSED
      res.rcode = a.rcode
      res.answers = a.answers
      res.authorities = a.authorities
      res.additionals = a.additionals
    }
    this.metrics.query(req.ctx.peer.transport, res.rcode)
    const key = this.#cacheKeys.get(req)
    if (key === undefined) {
      req.respond(res)
      return
    }
    const wire = req.encode(res)
    if (this.#cache.size >= RESPONSE_CACHE_MAX) this.#cache.clear()
    this.#cache.set(key, wire)
    req.ctx.reply(Buffer.from(wire))
  }
}
