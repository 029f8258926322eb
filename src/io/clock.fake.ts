import type { Clock, TimerHandle } from './clock.js'

interface Pending {
  readonly id: number
  readonly at: number
  readonly fn: () => void
}

/**
 * A clock that moves only when a test says so. `advance(ms)` fires due timers in time order,
 * including timers scheduled by the callbacks themselves while the advance runs.
 */
export class FakeClock implements Clock {
  #now: number
  #mono = 0
  #next = 1
  #timers = new Map<number, Pending>()

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#now = startMs
  }
  now(): number {
    return this.#now
  }
  monotonic(): number {
    return this.#mono
  }
  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const id = this.#next++
    this.#timers.set(id, { id, at: this.#mono + Math.max(0, delayMs), fn })
    return { id }
  }
  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) this.#timers.delete(handle.id)
  }
  /** Number of timers still pending: tests assert zero at the end (no leaked timers). */
  get pending(): number {
    return this.#timers.size
  }
  advance(ms: number): void {
    const end = this.#mono + ms
    for (;;) {
      let due: Pending | undefined
      for (const t of this.#timers.values())
        if (t.at <= end && (!due || t.at < due.at || (t.at === due.at && t.id < due.id))) due = t
      if (!due) break
      this.#timers.delete(due.id)
      this.#now += due.at - this.#mono
      this.#mono = due.at
      due.fn()
    }
    this.#now += end - this.#mono
    this.#mono = end
  }
}
