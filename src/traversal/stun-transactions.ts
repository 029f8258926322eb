// STUN transactions over UDP (RFC 8489 section 6.2.1), shared by the Binding client (stun.ts) and the TURN client
// (turn.ts): the request goes out at once and again after RTO, 3 RTO, 7 RTO, ... (the interval doubling) while that
// stays before `giveUpMs`; the transaction then ends with undefined. RFC 8489's Rc = 7 would wait 39.5 s at the
// default RTO; the agent's callers give up after a few seconds and retry at their own pace. A response is matched by
// its 96-bit transaction ID, which is the map key (hex).
import type { Clock, TimerHandle } from '../io/clock.js'

interface Pending<T> {
  readonly resolve: (r: T | undefined) => void
  timer: TimerHandle | undefined
}

export class StunTransactions<T> {
  readonly #clock: Clock
  readonly #rtoMs: number
  readonly #giveUpMs: number
  readonly #pending = new Map<string, Pending<T>>()
  /** Requests started and retransmissions sent. */
  requests = 0
  retransmits = 0

  constructor(clock: Clock, opts: { readonly rtoMs: number; readonly giveUpMs: number }) {
    this.#clock = clock
    this.#rtoMs = opts.rtoMs
    this.#giveUpMs = opts.giveUpMs
  }

  /** Transactions waiting for their response. */
  get size(): number {
    return this.#pending.size
  }

  has(txidHex: string): boolean {
    return this.#pending.has(txidHex)
  }

  /** Runs `send` on the retransmission schedule until settle(txidHex) or the give-up (then undefined). */
  start(txidHex: string, send: () => void): Promise<T | undefined> {
    const clock = this.#clock
    this.requests++
    return new Promise((resolve) => {
      const p: Pending<T> = { resolve, timer: undefined }
      this.#pending.set(txidHex, p)
      const start = clock.monotonic()
      let rto = this.#rtoMs
      let next = 0
      const attempt = (): void => {
        if (this.#pending.get(txidHex) !== p) return
        if (next > 0) this.retransmits++
        send()
        next += rto
        rto *= 2
        const elapsed = clock.monotonic() - start
        // The next send if it comes before the give-up time, else the give-up itself.
        if (next < this.#giveUpMs) p.timer = clock.setTimeout(attempt, Math.max(0, next - elapsed))
        else p.timer = clock.setTimeout(() => this.settle(txidHex, undefined), Math.max(0, this.#giveUpMs - elapsed))
      }
      attempt()
    })
  }

  /** Ends the transaction with `r`; false when none is waiting under that ID. */
  settle(txidHex: string, r: T | undefined): boolean {
    const p = this.#pending.get(txidHex)
    if (!p) return false
    this.#pending.delete(txidHex)
    this.#clock.clearTimeout(p.timer)
    p.resolve(r)
    return true
  }

  /** Ends every transaction with undefined. */
  close(): void {
    for (const k of [...this.#pending.keys()]) this.settle(k, undefined)
  }
}
