// RFC 8765 (DNS Push Notifications) over RFC 8490 (DSO), client side: one subscription on a TLS (or TCP) connection
// carrying a DSO session (push-session.ts), its own or shared. Optional authentication first (docs/notify.md): a
// TSIG-signed query on the same connection tells the server which user is there, since DSO messages carry no TSIG.
// Then Keepalive (establishes the session), SUBSCRIBE, and PUSH messages as changes; keepalives at the server's
// interval, one timer per session.

import { type Clock, SystemClock } from '../../io/clock.js'
import { type Random, SystemRandom } from '../../io/random.js'
import type { Message } from '../wire/message.js'
import type { RR } from '../wire/rr-table.js'
import { type PushChange, type PushListener, PushSession, type PushSessionPool } from './push-session.js'
import type { StreamTarget } from './stream.js'

export { type PushChange, PushClientError, PushSessionPool } from './push-session.js'

export interface PushClientOptions {
  readonly name: string
  readonly type: number
  /** Request to wire form for the authentication query (TSIG signing); without it no authentication is sent. */
  readonly sign?: (m: Message) => Buffer
  /** Name to query for authentication (any name works; the user's domain is natural). */
  readonly authName?: string
  /** Who `sign` signs as (the TSIG key's name): only clients with the same one share a pooled session. */
  readonly authId?: string
  readonly timeoutMs?: number
}

/**
 * One DNS Push subscription: on its own DSO session, or with `deps.sessions` on the session that pool shares with
 * the other subscriptions to the same server and identity (push-session.ts). `start()` resolves once SUBSCRIBE
 * succeeded, with the current RRset read by a query on the same connection (sent after SUBSCRIBE, so it is answered
 * after the server's initial PUSH: nothing falls between them).
 */
export class PushClient {
  #session: PushSession | undefined
  #onChanges: (c: PushChange[]) => void = () => {}
  #onLost: (why: string, retryDelayMs?: number) => void = () => {}
  readonly #clock: Clock
  readonly #random: Random
  readonly #sessions: PushSessionPool | undefined
  #closed = false
  #lost = false
  pushesReceived = 0
  readonly #listener: PushListener = {
    onChanges: (c) => {
      if (this.#closed || this.#lost) return
      this.pushesReceived++
      this.#onChanges(c)
    },
    onLost: (why, delay) => {
      if (this.#lost || this.#closed) return
      this.#lost = true
      this.#onLost(why, delay)
    },
  }

  /**
   * `deps`: the keepalive and request timers and the message IDs come from them (STYLE.md section 6). The default
   * clock's timers are unref'd: an idle subscription alone does not keep a process alive.
   */
  constructor(
    readonly target: StreamTarget,
    readonly opts: PushClientOptions,
    deps: { readonly clock?: Clock; readonly random?: Random; readonly sessions?: PushSessionPool } = {},
  ) {
    this.#clock = deps.clock ?? new SystemClock({ unref: true })
    this.#random = deps.random ?? new SystemRandom()
    this.#sessions = deps.sessions
  }

  onChanges(h: (c: PushChange[]) => void): void {
    this.#onChanges = h
  }
  onLost(h: (why: string, retryDelayMs?: number) => void): void {
    this.#onLost = h
  }

  async start(): Promise<RR[]> {
    const opts = {
      ...(this.opts.sign ? { sign: this.opts.sign } : {}),
      authName: this.opts.authName ?? this.opts.name,
      ...(this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}),
    }
    const deps = { clock: this.#clock, random: this.#random }
    const s = this.#sessions
      ? this.#sessions.session(this.target, this.opts.sign ? `tsig:${this.opts.authId ?? ''}` : 'anonymous', opts, deps)
      : new PushSession(this.target, opts, deps)
    this.#session = s
    let rrs: RR[]
    try {
      rrs = await s.subscribe(this.opts.name, this.opts.type, this.#listener)
    } catch (e) {
      this.#closed = true
      throw e
    }
    // close() while SUBSCRIBE was on its way found nothing to unsubscribe yet: do it now.
    if (this.#closed) s.unsubscribe(this.opts.name, this.opts.type, this.#listener)
    return rrs
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#session?.unsubscribe(this.opts.name, this.opts.type, this.#listener)
  }
}
