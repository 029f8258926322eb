// A cluster node's housekeeping, at least once a second and at the next lease expiry it knows of (docs/cluster.md):
// - lease expiry by the database's clock: DELETE ... FOR UPDATE SKIP LOCKED batches (SWEEP_SQL) with their
//   'expire' feed rows in the same statement, so a lease expires exactly once across the cluster whichever nodes
//   are up;
// - the offset of the database's clock to this node's (leases are granted in database time);
// - the node's heartbeat (nodes.ts), and the pruning of old feed rows (at most once a minute, by any node).
import type pg from 'pg'
import type { Clock, TimerHandle } from '../../io/clock.js'
import type { Logger } from '../../io/log.js'
import type { NodeHeartbeat } from './nodes.js'
import { PRUNE_SQL, SWEEP_BATCH, SWEEP_SQL } from './sql.js'

/** Sweep period (and the upper bound of how late a lease is removed). */
const SWEEP_MS = 1000
const SWEEP_MIN_MS = 20
/**
 * Feed rows older than this are deleted; a node that has not read the feed for half as long re-reads the whole
 * zone instead of trusting its cursor (store.ts).
 */
export const FEED_RETENTION_MS = 3_600_000
const PRUNE_EVERY_MS = 60_000

export class LeaseSweeper {
  readonly #pool: pg.Pool
  readonly #clock: Clock
  readonly #log: Logger
  readonly #nodes: NodeHeartbeat
  readonly #nextExpiryMs: () => number | undefined
  readonly #onExpired: (n: number) => void
  #timer: TimerHandle | undefined
  #prunedAt = -Infinity
  #closed = false
  /** Database clock minus local clock, ms. */
  offsetMs = 0

  /** `nextExpiryMs`: the earliest lease this node knows of (database time); `onExpired`: after n records expired. */
  constructor(deps: {
    pool: pg.Pool
    clock: Clock
    log: Logger
    nodes: NodeHeartbeat
    nextExpiryMs: () => number | undefined
    onExpired: (n: number) => void
  }) {
    this.#pool = deps.pool
    this.#clock = deps.clock
    this.#log = deps.log
    this.#nodes = deps.nodes
    this.#nextExpiryMs = deps.nextExpiryMs
    this.#onExpired = deps.onExpired
  }

  start(): void {
    this.#arm(0)
  }

  close(): void {
    this.#closed = true
    this.#clock.clearTimeout(this.#timer)
  }

  #arm(delayMs: number): void {
    if (this.#closed) return
    this.#clock.clearTimeout(this.#timer)
    this.#timer = this.#clock.setTimeout(() => {
      this.#sweep().then(
        (more) => this.#arm(more ? 0 : this.#nextMs()),
        () => this.#arm(SWEEP_MS),
      )
    }, delayMs)
  }

  #nextMs(): number {
    const next = this.#nextExpiryMs()
    if (next === undefined) return SWEEP_MS
    return Math.min(SWEEP_MS, Math.max(SWEEP_MIN_MS, next - (this.#clock.now() + this.offsetMs)))
  }

  /** One expiry batch and a heartbeat; true when the batch was full (more may be due). */
  async #sweep(): Promise<boolean> {
    const t0 = this.#clock.now()
    let n: number
    try {
      const r = (await this.#pool.query<{ n: number; now_ms: string }>(SWEEP_SQL)).rows[0]!
      n = r.n
      this.offsetMs = Number(r.now_ms) - (t0 + this.#clock.now()) / 2
      await this.#nodes.beat()
      if (this.#clock.monotonic() - this.#prunedAt > PRUNE_EVERY_MS) {
        this.#prunedAt = this.#clock.monotonic()
        await this.#pool.query({ name: 'autotunnel_prune', text: PRUNE_SQL, values: [FEED_RETENTION_MS / 1000] })
      }
    } catch (e) {
      if (!this.#closed) this.#log.warn('pg.sweep_failed', { err: (e as Error).message })
      throw e
    }
    if (n > 0) this.#onExpired(n)
    return n >= SWEEP_BATCH
  }
}
