// Watches one (name, type) and delivers add/remove events with the full current RRset (seed 002 §5.3).
// Finds the notification server by SRV: `_dns-push-tls._tcp.DOMAIN` (DNS Push, RFC 8765), else
// `_dns-llq-tls._udp.DOMAIN` (LLQ over TLS) or `_dns-llq._udp.DOMAIN` (LLQ over UDP, RFC 8764), else polls.
// After a connection loss or a server restart it re-subscribes with exponential back-off and re-reads the
// answer, reporting the difference, so nothing is missed. Which server, and the fall-backs: discovery.ts.
//
//   idle ──start──► connecting ──push ok / llq ok──► watching(push|llq) ──lost──► backoff ──timer──► connecting
//                       │ nothing works                                                  ▲
//                       └───────────────► watching(poll) (re-tries push/LLQ every retry) ┘

import { type Clock, SystemClock, type TimerHandle } from '../../io/clock.js'
import { type Logger, nullLogger } from '../../io/log.js'
import { type Random, SystemRandom } from '../../io/random.js'
import type { TsigKey } from '../tsig.js'
import { signMessage } from '../tsig.js'
import { encodeMessage, type Message } from '../wire/message.js'
import { type RR, RRType } from '../wire/rr-table.js'
import { LLQ_PLAIN_SERVICE, ServerSilentError, ServiceDiscovery } from './discovery.js'
import { explainTransport } from './explain.js'
import { LlqClient } from './llq.js'
import { type PushChange, PushClient } from './push.js'
import { exchange, queryMessage, type ServerAddr } from './query.js'
import type { StreamTarget } from './stream.js'

/** Back-off delays vary by ±20% (in 1000 steps) so that watchers that lost the same server do not return together. */
const JITTER = 0.2
const JITTER_STEPS = 1000
const RETRY_MAX_MS = 4000

export type WatchMechanism = 'push' | 'llq' | 'poll'

export interface WatchEvent {
  readonly kind: 'add' | 'remove'
  /** The records added or removed by this change. */
  readonly records: readonly RR[]
  /** The full RRset after the change. */
  readonly rrset: readonly RR[]
  readonly via: WatchMechanism
}

export interface WatcherOptions {
  readonly name: string
  readonly type: number
  /** The domain whose discovery SRV records name the notification server (e.g. the user's domain). */
  readonly domain: string
  /** Bootstrap server for SRV look-ups, polling and the initial read. */
  readonly server: ServerAddr
  /** The user's TSIG key: every query, LLQ message and the Push authentication query is signed with it. */
  readonly key?: TsigKey
  /** TLS options for DNS Push / LLQ over TLS (e.g. `{ rejectUnauthorized: false }` plus `fingerprint256`). */
  readonly tls?: StreamTarget['tls']
  readonly fingerprint256?: string
  /** Mechanisms to try, in order. @default ['push', 'llq', 'poll'] */
  readonly mechanisms?: readonly WatchMechanism[]
  /** LLQ over 'udp' (`_dns-llq._udp`) or 'tls' (`_dns-llq-tls._udp`). @default 'tls' then 'udp' */
  readonly llqTransports?: readonly ('udp' | 'tls')[]
  /** LLQ lease asked for. @default 3600 */
  readonly llqLeaseSec?: number
  /** Polling interval when neither Push nor LLQ is available. @default 30000 */
  readonly pollIntervalMs?: number
  /**
   * Back-off after a loss: from retryMinMs doubling to retryMaxMs (with ±20% jitter). The small maximum brings a
   * watcher back within 5 s of a server that restarted, however long it was away (issue 13 finding 2).
   * @default 500 / 4000
   */
  readonly retryMinMs?: number
  readonly retryMaxMs?: number
  readonly timeoutMs?: number
}

function rrKey(rr: RR): string {
  return `${rr.type}|${JSON.stringify(rr.data, (_k, v) =>
    v && typeof v === 'object' && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v,
  ).toLowerCase()}`
}

export class Watcher {
  readonly opts: WatcherOptions
  readonly #log: Logger
  readonly #clock: Clock
  readonly #random: Random
  readonly #rrset = new Map<string, RR>()
  /** Finds the notification servers (SRV, RFC 2782 order, fall-backs). */
  readonly #find: ServiceDiscovery
  readonly #handlers = new Set<(e: WatchEvent) => void>()
  readonly #wakers = new Set<() => void>()
  readonly #lostHandlers = new Set<(why: string) => void>()
  #mechanism: WatchMechanism | undefined
  #push: PushClient | undefined
  #llq: LlqClient | undefined
  #timer: TimerHandle | undefined
  #retryMs: number
  #closed = false
  #generation = 0
  #lastError: string | undefined

  /** `deps.clock` runs the retry and polling timers, `deps.random` the back-off jitter; both default to the system's. */
  constructor(deps: { log?: Logger; clock?: Clock; random?: Random }, opts: WatcherOptions) {
    this.#log = deps.log ?? nullLogger
    this.#clock = deps.clock ?? new SystemClock()
    this.#random = deps.random ?? new SystemRandom()
    this.opts = opts
    this.#retryMs = opts.retryMinMs ?? 500
    this.#find = new ServiceDiscovery(opts, this.#log)
  }

  /** The mechanism in use now (undefined while (re)connecting). */
  get mechanism(): WatchMechanism | undefined {
    return this.#mechanism
  }
  /** Why the last attempt at a mechanism failed (cleared once one works). */
  get lastError(): string | undefined {
    return this.#lastError
  }
  get rrset(): RR[] {
    return [...this.#rrset.values()]
  }

  onEvent(h: (e: WatchEvent) => void): () => void {
    this.#handlers.add(h)
    return () => this.#handlers.delete(h)
  }

  /** Called when a Push or LLQ session is lost (its server closed it or went away); the watcher retries by itself. */
  onLost(h: (why: string) => void): () => void {
    this.#lostHandlers.add(h)
    return () => this.#lostHandlers.delete(h)
  }

  /** Events as an async iterator, buffered from the moment of this call; it ends when the watcher is closed. */
  events(): AsyncIterableIterator<WatchEvent> {
    const queue: WatchEvent[] = []
    let wake: () => void = () => {}
    const waker = (): void => wake()
    this.#wakers.add(waker)
    const off = this.onEvent((e) => {
      queue.push(e)
      wake()
    })
    const done = (): IteratorResult<WatchEvent> => {
      off()
      this.#wakers.delete(waker)
      return { done: true, value: undefined }
    }
    const it: AsyncIterableIterator<WatchEvent> = {
      next: async () => {
        for (;;) {
          const e = queue.shift()
          if (e) return { done: false, value: e }
          if (this.#closed) return done()
          await new Promise<void>((r) => {
            wake = r
          })
        }
      },
      return: async () => done(),
      [Symbol.asyncIterator]: () => it,
    }
    return it
  }

  /**
   * Connects with the best mechanism; resolves once the first answer is known, with the mechanism in use, or
   * undefined when nothing worked yet (the watcher keeps retrying with back-off).
   */
  async start(): Promise<WatchMechanism | undefined> {
    await this.#connect()
    return this.#mechanism
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#clock.clearTimeout(this.#timer)
    this.#push?.close()
    await this.#llq?.close()
    this.#push = undefined
    this.#llq = undefined
    this.#mechanism = undefined
    for (const w of this.#wakers) w()
  }

  #sign = (m: Message): Buffer => {
    const k = this.opts.key
    return k ? signMessage(m, k).wire : encodeMessage(m)
  }

  async #connect(): Promise<void> {
    const gen = ++this.#generation
    const mechs = this.opts.mechanisms ?? ['push', 'llq', 'poll']
    let failed = false
    for (const m of mechs) {
      if (this.#closed || gen !== this.#generation) return
      try {
        if (m === 'push' && (await this.#tryPush(gen))) return
        if (m === 'llq' && (await this.#tryLlq(gen))) return
        if (m === 'poll') {
          await this.#poll()
          if (!failed) {
            this.#using('poll')
            this.#schedule(this.opts.pollIntervalMs ?? 30_000, true)
            return
          }
          // Push or LLQ is offered but failed (e.g. a server still starting after a restart): poll now, and try
          // them again on the back-off schedule, not after a whole polling interval.
          const retry = this.#lastError
          this.#mechanism = 'poll'
          this.#lastError = retry
          this.#log.info('watch.mechanism', { name: this.opts.name, type: this.opts.type, mechanism: 'poll', retry })
          this.#retryLater()
          return
        }
      } catch (e) {
        failed = true
        // The discovery server did not answer (it is restarting): the other mechanisms would ask it too. Start
        // again from the preferred one on the back-off, so a watcher that lost Push comes back on Push.
        // Say why at info level once per distinct cause (a TLS certificate that is not trusted must not hide at
        // debug level while the watcher silently falls back: issue 13 findings 1 and 3).
        const why = explainTransport(e, { via: m }).message
        if (why !== this.#lastError)
          this.#log.info('watch.mechanism_failed', { mechanism: m, name: this.opts.name, err: why })
        this.#lastError = why
        // The discovery server did not answer (it is restarting): the other mechanisms would ask it too. Start
        // again from the preferred one on the back-off, so a watcher that lost Push comes back on Push.
        if (e instanceof ServerSilentError) break
      }
    }
    this.#mechanism = undefined
    this.#retryLater()
  }

  #using(m: WatchMechanism): void {
    this.#mechanism = m
    this.#lastError = undefined
    this.#retryMs = this.opts.retryMinMs ?? 500
    this.#log.info('watch.mechanism', { name: this.opts.name, type: this.opts.type, mechanism: m })
  }

  async #tryPush(gen: number): Promise<boolean> {
    const targets = await this.#find.targets('_dns-push-tls._tcp', true)
    let last: unknown
    for (const target of targets) {
      try {
        return await this.#find.withFallback(target, 'push', (t) => this.#pushOn(gen, t))
      } catch (e) {
        last = e
        this.#log.info('watch.target_failed', {
          mechanism: 'push',
          target: `${target.host}:${target.port}`,
          err: String(e),
        })
      }
    }
    if (last !== undefined) throw last
    return false
  }

  async #pushOn(gen: number, t: StreamTarget): Promise<boolean> {
    const c = new PushClient(
      t,
      {
        name: this.opts.name,
        type: this.opts.type,
        ...(this.opts.key ? { sign: this.#sign } : {}),
        authName: fqdn(this.opts.domain),
        ...(this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}),
      },
      { clock: this.#clock, random: this.#random },
    )
    const buffered: PushChange[][] = []
    let ready = false
    c.onChanges((ch) => (ready ? this.#applyPush(ch) : buffered.push(ch)))
    c.onLost((why, delay) => this.#lost(gen, why, delay))
    const current = await c.start()
    if (gen !== this.#generation || this.#closed) {
      c.close()
      return true
    }
    this.#push = c
    ready = true
    this.#using('push')
    // The query answer is newer than anything pushed before it: it replaces the set.
    this.#replace(current, 'push')
    return true
  }

  async #tryLlq(gen: number): Promise<boolean> {
    let failure: unknown
    for (const tr of this.opts.llqTransports ?? ['tls', 'udp'])
      for (const target of await this.#find.targets(
        tr === 'tls' ? '_dns-llq-tls._udp' : LLQ_PLAIN_SERVICE,
        tr === 'tls',
      )) {
        let c: LlqClient
        let answers: RR[]
        try {
          ;[c, answers] = await this.#find.withFallback(target, `llq-${tr}`, (t) => this.#llqOn(gen, t, tr))
        } catch (e) {
          this.#log.debug('watch.llq_failed', {
            transport: tr,
            target: `${target.host}:${target.port}`,
            err: String(e),
          })
          failure ??= e
          continue
        }
        if (gen !== this.#generation || this.#closed) {
          await c.close()
          return true
        }
        this.#llq = c
        this.#using('llq')
        this.#replace(answers, 'llq')
        return true
      }
    // Offered but failed (not merely absent): the caller retries it on the back-off schedule.
    if (failure !== undefined) throw failure
    return false
  }

  async #llqOn(gen: number, t: StreamTarget, tr: 'udp' | 'tls'): Promise<[LlqClient, RR[]]> {
    const c = new LlqClient(
      { ...t, transport: tr },
      {
        name: this.opts.name,
        type: this.opts.type,
        leaseSec: this.opts.llqLeaseSec ?? 3600,
        ...(this.opts.key ? { key: this.opts.key } : {}),
        ...(this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}),
      },
      { clock: this.#clock, random: this.#random },
    )
    c.onEvent((ev) => this.#applyDelta(ev.added, ev.removed, 'llq'))
    c.onLost((why) => this.#lost(gen, why))
    return [c, await c.start()]
  }

  async #poll(): Promise<void> {
    const q = queryMessage(this.opts.name, this.opts.type)
    const res = await exchange(this.opts.server, q, { ...this.#xopts(), encode: this.#sign })
    if (res.rcode !== 0 && res.rcode !== 3) throw new Error(`poll: RCODE ${res.rcode}`)
    this.#replace(
      res.answers.filter((rr) => rr.type === this.opts.type || this.opts.type === RRType.ANY),
      'poll',
    )
  }

  #xopts(): { timeoutMs?: number } {
    return this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}
  }

  #lost(gen: number, why: string, retryDelayMs?: number): void {
    if (gen !== this.#generation || this.#closed) return
    this.#log.info('watch.lost', { name: this.opts.name, mechanism: this.#mechanism, why })
    this.#push = undefined
    this.#llq = undefined
    this.#mechanism = undefined
    this.#retryLater(retryDelayMs)
    for (const h of this.#lostHandlers) h(why)
  }

  #retryLater(delayMs?: number): void {
    const base = delayMs ?? this.#retryMs
    this.#retryMs = Math.min(this.opts.retryMaxMs ?? RETRY_MAX_MS, this.#retryMs * 2)
    this.#schedule(base * (1 - JITTER + (2 * JITTER * this.#random.int(JITTER_STEPS + 1)) / JITTER_STEPS), false)
  }

  /** poll=true: a polling round (which also re-tries Push/LLQ when they come first in the list). */
  #schedule(ms: number, poll: boolean): void {
    this.#clock.clearTimeout(this.#timer)
    if (this.#closed) return
    this.#timer = this.#clock.setTimeout(() => {
      if (poll && (this.opts.mechanisms ?? ['push', 'llq', 'poll'])[0] === 'poll') {
        this.#poll().then(
          () => this.#schedule(this.opts.pollIntervalMs ?? 30_000, true),
          () => this.#retryLater(),
        )
        return
      }
      void this.#connect()
    }, ms)
  }

  #applyPush(changes: PushChange[]): void {
    const added: RR[] = []
    const removed: RR[] = []
    for (const c of changes) {
      if (c.op === 'add') added.push(c.rr)
      else if (c.op === 'remove') removed.push(c.rr)
      else for (const rr of this.#rrset.values()) if (c.type === RRType.ANY || rr.type === c.type) removed.push(rr)
    }
    this.#applyDelta(added, removed, 'push')
  }

  #applyDelta(added: readonly RR[], removed: readonly RR[], via: WatchMechanism): void {
    const gone: RR[] = []
    const fresh: RR[] = []
    for (const rr of removed) {
      const k = rrKey(rr)
      const had = this.#rrset.get(k)
      if (had) {
        this.#rrset.delete(k)
        gone.push(had)
      }
    }
    for (const rr of added) {
      const k = rrKey(rr)
      if (!this.#rrset.has(k)) fresh.push(rr)
      this.#rrset.set(k, rr)
    }
    this.#emit(gone, fresh, via)
  }

  #replace(current: readonly RR[], via: WatchMechanism): void {
    const next = new Map(current.map((rr) => [rrKey(rr), rr] as const))
    const gone = [...this.#rrset.entries()].filter(([k]) => !next.has(k)).map(([, rr]) => rr)
    const fresh = [...next.entries()].filter(([k]) => !this.#rrset.has(k)).map(([, rr]) => rr)
    this.#rrset.clear()
    for (const [k, rr] of next) this.#rrset.set(k, rr)
    this.#emit(gone, fresh, via)
  }

  #emit(gone: RR[], fresh: RR[], via: WatchMechanism): void {
    if (gone.length) {
      const e: WatchEvent = { kind: 'remove', records: gone, rrset: this.rrset, via }
      for (const h of this.#handlers) h(e)
    }
    if (fresh.length) {
      const e: WatchEvent = { kind: 'add', records: fresh, rrset: this.rrset, via }
      for (const h of this.#handlers) h(e)
    }
  }
}

function fqdn(n: string): string {
  return n.endsWith('.') ? n : `${n}.`
}
