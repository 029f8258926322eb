// When a cluster node reads the change feed (docs/cluster.md, "Doorbell"): on a ring of the doorbell, on the poll,
// and when a read asks for another; at most one read at a time and one start every gapMs, however often it rings.
// While the node commits, a kick waits up to busyWaitMs for the node's next commit, whose statement
// reads the feed too (COMMIT_FEED_SQL): under load a node commits every few milliseconds, and its commits then
// bring it the other nodes' changes without a round trip of their own.
import type { Clock, TimerHandle } from '../../io/clock.js'

export class FeedSchedule {
  readonly #clock: Clock
  readonly #read: () => Promise<void>
  readonly #gapMs: number
  readonly #busyWaitMs: number
  #reading = false
  #again = false
  /** Monotonic time the last read started, and the timer of a read waiting for the gap. */
  #startedAt = -Infinity
  #gapTimer: TimerHandle | undefined
  /** The oldest kick no read has served yet (while committing), and its timer. */
  #wantedAt: number | undefined
  #wantTimer: TimerHandle | undefined
  #closed = false
  #committing = false
  /** Monotonic time the node's last commit returned. */
  #committedAt = -Infinity

  /** `read` reads the feed to its end and never rejects. */
  constructor(deps: { clock: Clock; read: () => Promise<void> }, opts: { gapMs: number; busyWaitMs: number }) {
    this.#clock = deps.clock
    this.#read = deps.read
    this.#gapMs = opts.gapMs
    this.#busyWaitMs = opts.busyWaitMs
  }

  /** A commit of this node (which reads the feed too) is running, or has returned. */
  set committing(on: boolean) {
    this.#committing = on
    if (!on) this.#committedAt = this.#clock.monotonic()
  }

  /**
   * Reads the feed soon: now, after the gap, after the running read, or, while the node commits (one is running or
   * returned within busyWaitMs), with its next commit if that is sent within busyWaitMs.
   */
  kick(): void {
    if (this.#closed) return
    if (this.#committing || this.#clock.monotonic() - this.#committedAt < this.#busyWaitMs) {
      this.#wantedAt ??= this.#clock.monotonic()
      this.#wantTimer ??= this.#clock.setTimeout(() => {
        this.#wantTimer = undefined
        if (this.#wantedAt !== undefined) this.#kickRead()
      }, this.#busyWaitMs)
      return
    }
    this.#kickRead()
  }

  /** A read (on its own or in a commit) whose statement was sent at `sentAt` was applied: it serves earlier kicks. */
  served(sentAt: number): void {
    if (this.#wantedAt === undefined || this.#wantedAt > sentAt) return
    this.#wantedAt = undefined
    this.#clock.clearTimeout(this.#wantTimer)
    this.#wantTimer = undefined
  }

  /**
   * Reads the feed soon (after the gap or the running read) even while the node commits: for a page that the
   * commits' reads cannot apply (it names an account change, whose account list only a read of its own fetches).
   * Waiting for the next commit there would wait for nothing, and under a steady stream of commits for ever.
   */
  readNow(): void {
    this.#kickRead()
  }

  /** The running read asks for another after it (its page was not applied). */
  again(): void {
    this.#again = true
  }

  close(): void {
    this.#closed = true
    this.#clock.clearTimeout(this.#gapTimer)
    this.#clock.clearTimeout(this.#wantTimer)
  }

  #kickRead(): void {
    if (this.#closed) return
    if (this.#reading || this.#gapTimer) {
      this.#again = true
      return
    }
    const wait = this.#startedAt + this.#gapMs - this.#clock.monotonic()
    if (wait > 0) {
      this.#gapTimer = this.#clock.setTimeout(() => {
        this.#gapTimer = undefined
        this.#start()
      }, wait)
      return
    }
    this.#start()
  }

  #start(): void {
    if (this.#closed) return
    this.#reading = true
    this.#again = false
    this.#startedAt = this.#clock.monotonic()
    this.served(this.#startedAt)
    void this.#read().finally(() => {
      this.#reading = false
      if (this.#again) this.kick()
    })
  }
}
