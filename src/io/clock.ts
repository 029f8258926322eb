// Time as an injected edge (STYLE.md section 6): every timer in the project comes from a Clock,
// so state machines (leases, LLQ, PCP renewals, IKE retransmits) can be driven by a fake in tests.

export interface TimerHandle {
  readonly id: number
}

export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock: TSIG time, lease expiry in the store). */
  now(): number
  /** Monotonic milliseconds, for measuring intervals. */
  monotonic(): number
  setTimeout(fn: () => void, delayMs: number): TimerHandle
  clearTimeout(handle: TimerHandle | undefined): void
}

interface RealHandle extends TimerHandle {
  readonly t: NodeJS.Timeout
}

/** The process clock. Timers are unref'd only when asked, so a pending timer keeps a server alive. */
export class SystemClock implements Clock {
  readonly #unref: boolean
  #next = 1
  constructor(opts: { unref?: boolean } = {}) {
    this.#unref = opts.unref ?? false
  }
  now(): number {
    return Date.now()
  }
  monotonic(): number {
    return performance.now()
  }
  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const t = setTimeout(fn, Math.max(0, delayMs))
    if (this.#unref) t.unref()
    const h: RealHandle = { id: this.#next++, t }
    return h
  }
  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle && 't' in handle) clearTimeout((handle as RealHandle).t)
  }
}
