// Many deadlines, one Clock timer. The LLQs of a 10,000-watcher fan-out all move to "resend in 2 s" at once;
// one Node timer per LLQ made that 10,000 clearTimeout + setTimeout pairs inside the fan-out (and a timer list per
// distinct delay). Here a deadline is a slot in a binary min-heap; the one timer is armed for the earliest slot and
// sweeps every slot that is due when it fires. Moving a deadline marks the old slot dead (dropped when it reaches
// the top, or when dead slots outnumber the live ones) and pushes a new one: O(log n), no timer call unless the new
// deadline is the earliest.

import type { Clock, TimerHandle } from '../io/clock.js'
import { MinHeap } from '../io/min-heap.js'

/** A scheduled deadline; keep it to cancel or replace it. */
export interface DeadlineSlot<T> {
  readonly at: number
  readonly item: T
  live: boolean
}

/** Dead slots tolerated beyond the live ones before the heap is rebuilt from the live ones. */
const COMPACT_SLACK = 64

export class DeadlineSweep<T> {
  readonly #clock: Clock
  readonly #fire: (item: T) => void
  readonly #heap = new MinHeap<DeadlineSlot<T>>((s) => s.at)
  #live = 0
  #timer: TimerHandle | undefined
  #armedAt = Number.POSITIVE_INFINITY

  /** `fire(item)` runs (in deadline order) for every slot due when the timer fires. */
  constructor(clock: Clock, fire: (item: T) => void) {
    this.#clock = clock
    this.#fire = fire
  }

  /** Live deadlines. */
  get size(): number {
    return this.#live
  }

  /** Schedules `item` at monotonic time `at`, replacing `prev` (its current slot) if given. */
  schedule(item: T, at: number, prev?: DeadlineSlot<T>): DeadlineSlot<T> {
    if (prev) this.cancel(prev)
    const slot: DeadlineSlot<T> = { at, item, live: true }
    this.#heap.push(slot)
    this.#live++
    if (at < this.#armedAt) this.#arm(at)
    return slot
  }

  cancel(slot: DeadlineSlot<T> | undefined): void {
    if (!slot?.live) return
    slot.live = false
    this.#live--
    if (this.#live === 0) {
      this.#heap.reset()
      this.#disarm()
    } else if (this.#heap.size > 2 * this.#live + COMPACT_SLACK)
      this.#heap.reset(this.#heap.entries().filter((s) => s.live))
  }

  close(): void {
    for (const s of this.#heap.entries()) s.live = false
    this.#heap.reset()
    this.#live = 0
    this.#disarm()
  }

  #arm(at: number): void {
    this.#clock.clearTimeout(this.#timer)
    this.#armedAt = at
    this.#timer = this.#clock.setTimeout(() => this.#sweep(), at - this.#clock.monotonic())
  }

  #disarm(): void {
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedAt = Number.POSITIVE_INFINITY
  }

  /** Takes every due slot first, then fires them: what they schedule (even already due) waits for the next sweep. */
  #sweep(): void {
    this.#timer = undefined
    this.#armedAt = Number.POSITIVE_INFINITY
    const now = this.#clock.monotonic()
    const due: T[] = []
    const h = this.#heap
    for (let top = h.peek(); top && (!top.live || top.at <= now); top = h.peek()) {
      const s = h.pop()!
      if (!s.live) continue
      s.live = false
      this.#live--
      due.push(s.item)
    }
    for (const item of due) this.#fire(item)
    this.#rearm()
  }

  #rearm(): void {
    const h = this.#heap
    while (h.peek()?.live === false) h.pop()
    const top = h.peek()
    if (!top) this.#disarm()
    else if (top.at !== this.#armedAt || this.#timer === undefined) this.#arm(top.at)
  }
}
